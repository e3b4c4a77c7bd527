// A stand-in for the emnify REST API on plain node:http, so faults can reach down to the socket.
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { validateContactBody } from './data.ts'
import { applyFault, parseFault } from './faults.ts'
import type { Fault, FaultError, Operation } from './faults.ts'
import { isRecord, parseJson } from './json.ts'
import { errors, internalError, sendEmpty, sendJson } from './responses.ts'
import type { EmnifyError } from './responses.ts'
import { SimulatorState } from './state.ts'
import type { SimulatorOptions } from './state.ts'

export { decodeTokenClaims } from './tokens.ts'
export type { IssueOptions, TokenClaims } from './tokens.ts'
export { FaultError, OPERATIONS, parseFault } from './faults.ts'
export type { Fault, FaultKind, FaultOperation, Operation } from './faults.ts'
export { COUNTRIES, CONTACT_TYPES } from './data.ts'
export type { ContactView } from './data.ts'
export { DEFAULT_APPLICATION_TOKEN, DEFAULT_TOKEN_LIFETIME_S, SimulatorState } from './state.ts'
export type { Counters, RecordedCall, SimulatorOptions } from './state.ts'

export interface Simulator {
  readonly state: SimulatorState
  /** Not listening yet; `startSimulator` listens for you. */
  readonly server: Server
  /** Replaces all faults. */
  setFault: (fault: Fault | Fault[]) => void
  addFault: (fault: Fault) => void
  clearFaults: () => void
  /** Clears calls, counters and faults. */
  reset: () => void
  revokeAllTokens: () => void
}

export interface StartOptions extends SimulatorOptions {
  host?: string
  /** 0 (default) picks a free port. */
  port?: number
}

export interface RunningSimulator extends Simulator {
  /** Origin, e.g. `http://127.0.0.1:45678`. */
  readonly url: string
  readonly port: number
  /** Stops listening and drops every connection, hung ones included. */
  close: () => Promise<void>
}

// emnify sits behind a gateway with a payload limit; 1 MiB keeps a misbehaving client from exhausting memory.
const BODY_LIMIT_BYTES = 1024 * 1024
const LONG_MAX = 9_223_372_036_854_775_807n
const LONG_MIN = -9_223_372_036_854_775_808n
const BEARER = /^Bearer +([\w-]+\.[\w-]+\.[\w-]+)$/i

type Resource = 'authenticate' | 'contacts' | 'contact' | 'unknown_api' | 'outside'

interface Route {
  operation: Operation
  resource: Resource
  org: string
  contact: string
}

interface Body {
  text: string
  /** False when the client went away before the body ended. */
  complete: boolean
  tooLarge: boolean
}

function matchRoute (method: string, path: string): Route {
  const route: Route = { operation: 'other', resource: 'outside', org: '', contact: '' }
  if (path === '/api/v1/authenticate') {
    route.resource = 'authenticate'
    if (method === 'POST') route.operation = 'authenticate'
    return route
  }
  if (!path.startsWith('/api/')) return route
  route.resource = 'unknown_api'
  const parts = path.split('/')
  const org = parts[4]
  if (parts[2] !== 'v1' || parts[3] !== 'organisation' || parts[5] !== 'contact' || org === undefined || org === '') {
    return route
  }
  route.org = org
  if (parts.length === 6) {
    route.resource = 'contacts'
    if (method === 'GET') route.operation = 'list_contacts'
    else if (method === 'POST') route.operation = 'create_contact'
    return route
  }
  const contact = parts[6]
  if (parts.length === 7 && contact !== undefined && contact !== '') {
    route.resource = 'contact'
    route.contact = contact
    if (method === 'GET') route.operation = 'get_contact'
    else if (method === 'PATCH') route.operation = 'patch_contact'
    else if (method === 'DELETE') route.operation = 'delete_contact'
  }
  return route
}

/** emnify parses path ids as Java Longs; returns the canonical decimal or undefined if that would fail. */
function parseLong (raw: string): string | undefined {
  if (!/^-?\d{1,19}$/.test(raw)) return undefined
  const value = BigInt(raw)
  return value > LONG_MAX || value < LONG_MIN ? undefined : value.toString()
}

function readBody (req: IncomingMessage, keep: boolean): Promise<Body> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let settled = false
    const finish = (complete: boolean, tooLarge: boolean): void => {
      if (settled) return
      settled = true
      resolve({ text: keep ? Buffer.concat(chunks).toString('utf8') : '', complete, tooLarge })
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size <= BODY_LIMIT_BYTES) {
        if (keep) chunks.push(chunk)
        return
      }
      if (keep) chunks.push(chunk.subarray(0, chunk.length - (size - BODY_LIMIT_BYTES)))
      // The stream keeps flowing without a listener, so the rest is read and dropped.
      req.off('data', onData)
      finish(false, true)
    }
    req.on('data', onData)
    req.once('end', () => finish(true, false))
    req.on('error', () => finish(false, false))
    req.once('close', () => finish(false, false))
  })
}

function copyHeaders (req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {}
  // Node has already lower-cased names and joined most repeats; set-cookie stays an array.
  for (const [name, value] of Object.entries(req.headers)) headers[name] = [value].flat().join(', ')
  return headers
}

function authFailure (state: SimulatorState, header: string | undefined): EmnifyError | { message: string } | undefined {
  const token = header === undefined ? undefined : BEARER.exec(header)?.[1]
  // The edge gateway rejects absent or malformed bearer tokens before emnify sees them.
  if (token === undefined) return errors.gateway('Unauthorized')
  switch (state.checkToken(token)) {
    case 'valid': return undefined
    case 'expired': return errors.tokenExpired()
    case 'invalid': return errors.invalidToken()
  }
}

function parseObject (res: ServerResponse, text: string): Record<string, unknown> | undefined {
  const parsed = parseJson(text)
  if (parsed.ok && isRecord(parsed.value)) return parsed.value
  sendJson(res, 400, errors.badRequest('Malformed JSON request body'))
  return undefined
}

function authenticate (state: SimulatorState, res: ServerResponse, text: string): void {
  const body = parseObject(res, text)
  if (body === undefined) return
  const applicationToken = body.application_token
  if (typeof applicationToken === 'string') {
    const application = state.applicationTokens.indexOf(applicationToken)
    if (application === -1) {
      sendEmpty(res, 401)
      return
    }
    sendJson(res, 200, { auth_token: state.issueToken({ application }) })
    return
  }
  if (applicationToken === undefined && ('username' in body || 'refresh_token' in body)) {
    // Real emnify supports these flows; the simulator knows no users, so they fail like bad credentials.
    sendEmpty(res, 401)
    return
  }
  sendJson(res, 400, errors.badRequest('application_token is required'))
}

function contactNotFound (res: ServerResponse): void {
  sendJson(res, 404, errors.notFound('Contact not found'))
}

function handleContacts (state: SimulatorState, res: ServerResponse, route: Route, text: string): void {
  const org = parseLong(route.org)
  if (org === undefined) {
    sendJson(res, 400, errors.badRequest('Cannot parse parameter org_id as Long'))
    return
  }

  if (route.resource === 'contacts') {
    if (route.operation === 'list_contacts') {
      const contacts = state.listContacts(org)
      if (contacts === undefined) sendJson(res, 404, errors.notFound('Organisation not found'))
      else sendJson(res, 200, contacts)
      return
    }
    if (route.operation === 'create_contact') {
      createContact(state, res, org, text)
      return
    }
    sendJson(res, 405, errors.badRequest('Method not allowed'), { allow: 'GET, POST' })
    return
  }

  const id = parseLong(route.contact)
  if (id === undefined) {
    sendJson(res, 400, errors.badRequest('Cannot parse parameter id as Long'))
    return
  }
  switch (route.operation) {
    case 'get_contact': {
      const contact = state.getContact(org, id)
      if (contact === undefined) contactNotFound(res)
      else sendJson(res, 200, contact)
      return
    }
    case 'patch_contact':
      patchContact(state, res, org, id, text)
      return
    case 'delete_contact':
      if (state.deleteContact(org, id)) sendEmpty(res, 204)
      else contactNotFound(res)
      return
    default:
      sendJson(res, 405, errors.badRequest('Method not allowed'), { allow: 'GET, PATCH, DELETE' })
  }
}

function patchContact (state: SimulatorState, res: ServerResponse, org: string, id: string, text: string): void {
  if (state.lean) {
    sendEmpty(res, 204)
    return
  }
  const body = parseObject(res, text)
  if (body === undefined) return
  if (!state.hasContact(org, id)) {
    contactNotFound(res)
    return
  }
  const result = validateContactBody(body)
  if (!result.ok) {
    sendJson(res, 422, errors.validation(result.messages))
    return
  }
  state.updateContact(org, id, result.changes)
  sendEmpty(res, 204)
}

function createContact (state: SimulatorState, res: ServerResponse, org: string, text: string): void {
  const body = parseObject(res, text)
  if (body === undefined) return
  if (!state.hasOrganisation(org)) {
    sendJson(res, 404, errors.notFound('Organisation not found'))
    return
  }
  const result = validateContactBody(body)
  const messages = result.ok ? [] : [...result.messages]
  if (!('type' in body)) messages.unshift('type: may not be null')
  if (!result.ok || result.changes.type === undefined) {
    sendJson(res, 422, errors.validation(messages))
    return
  }
  const id = state.createContact(org, { ...result.changes, type: result.changes.type })
  sendEmpty(res, 201, { location: `/api/v1/organisation/${org}/contact/${String(id)}` })
}

function handleApi (state: SimulatorState, req: IncomingMessage, res: ServerResponse, route: Route, text: string): void {
  if (route.resource === 'outside') {
    sendJson(res, 404, errors.gateway('Not Found'))
    return
  }
  if (route.resource === 'authenticate') {
    if (route.operation === 'authenticate') authenticate(state, res, text)
    else sendJson(res, 405, errors.badRequest('Method not allowed'), { allow: 'POST' })
    return
  }
  const failure = authFailure(state, req.headers.authorization)
  if (failure !== undefined) {
    state.countUnauthorized()
    sendJson(res, 401, failure)
    return
  }
  if (route.resource === 'unknown_api') {
    sendJson(res, 404, errors.notFound('Resource not found'))
    return
  }
  handleContacts(state, res, route, text)
}

function splitUrl (url: string): { path: string, query: string } {
  const mark = url.indexOf('?')
  return mark === -1 ? { path: url, query: '' } : { path: url.slice(0, mark), query: url.slice(mark + 1) }
}

function tooLarge (res: ServerResponse): void {
  // Closing tells the client to stop uploading the rest.
  sendJson(res, 413, errors.gateway('Request Entity Too Large'), { connection: 'close' })
}

async function handleControl (
  state: SimulatorState,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  path: string,
  query: string
): Promise<void> {
  const body = await readBody(req, true)
  if (body.tooLarge) {
    tooLarge(res)
    return
  }
  if (!body.complete) return
  const params = new URLSearchParams(query)

  switch (`${method} ${path}`) {
    case 'GET /_sim/faults':
      sendJson(res, 200, { faults: state.faults })
      return
    case 'POST /_sim/faults': {
      const parsed = parseJson(body.text)
      if (!parsed.ok) {
        sendJson(res, 400, { message: 'body must be a JSON fault or an array of faults' })
        return
      }
      try {
        // Validate all before adding any, so a bad entry leaves the fault list untouched.
        const faults = (Array.isArray(parsed.value) ? parsed.value : [parsed.value]).map(parseFault)
        for (const fault of faults) state.addFault(fault)
      } catch (error) {
        // parseFault only throws FaultError, whose message says what is wrong with the fault.
        sendJson(res, 400, { message: (error as FaultError).message })
        return
      }
      sendJson(res, 200, { faults: state.faults })
      return
    }
    case 'DELETE /_sim/faults':
      state.clearFaults()
      sendEmpty(res, 204)
      return
    case 'GET /_sim/calls': {
      const operation = params.get('operation')
      const calls = operation === null ? state.calls : state.calls.filter((call) => call.operation === operation)
      sendJson(res, 200, { calls, counters: state.counters })
      return
    }
    case 'POST /_sim/reset':
      state.reset()
      if (params.get('data') === '1') state.restoreData()
      sendEmpty(res, 204)
      return
    case 'POST /_sim/revoke-tokens':
      state.revokeAllTokens()
      sendEmpty(res, 204)
      return
    default:
      sendJson(res, 404, { message: 'Not Found' })
  }
}

async function handle (state: SimulatorState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Both are always set on requests a server receives.
  const method = req.method as string
  const { path, query } = splitUrl(req.url as string)

  // Control traffic is neither logged nor faulted, so tests can inspect the simulator freely.
  if (path.startsWith('/_sim/')) {
    await handleControl(state, req, res, method, path, query)
    return
  }

  const route = matchRoute(method, path)
  // Lean PATCH never looks at the body, so it is drained rather than buffered.
  const body = await readBody(req, !(state.lean && route.operation === 'patch_contact'))
  state.count(route.operation)
  if (!state.lean) {
    state.record({
      method,
      path,
      query,
      headers: copyHeaders(req),
      body: body.text,
      at: state.now(),
      operation: route.operation
    })
  }
  if (body.tooLarge) {
    tooLarge(res)
    return
  }
  if (!body.complete) return

  const proceed = (): void => {
    // A delayed proceed runs from a timer, outside the promise that guards the rest.
    try {
      handleApi(state, req, res, route, body.text)
    } catch {
      internalError(res)
    }
  }
  const fault = state.takeFault(route.operation)
  if (fault === undefined) proceed()
  else applyFault(fault, res, proceed)
}

/** Builds the simulator without listening (e.g. to mount its server elsewhere). */
export async function createSimulator (options: SimulatorOptions = {}): Promise<Simulator> {
  const state = new SimulatorState(options)
  const server = createServer((req, res) => {
    // A bug must not take the simulator down mid-test.
    handle(state, req, res).catch(() => internalError(res))
  })
  // Longer than undici's default keep-alive, so the client closes idle sockets first and never reuses a dying one.
  server.keepAliveTimeout = 10_000
  return {
    state,
    server,
    setFault: (fault) => state.setFault(fault),
    addFault: (fault) => state.addFault(fault),
    clearFaults: () => state.clearFaults(),
    reset: () => state.reset(),
    revokeAllTokens: () => state.revokeAllTokens()
  }
}

/** Builds the simulator and listens (default 127.0.0.1 on a random port). */
export async function startSimulator (options: StartOptions = {}): Promise<RunningSimulator> {
  const { host = '127.0.0.1', port = 0, ...simulatorOptions } = options
  const simulator = await createSimulator(simulatorOptions)
  const { server } = simulator

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })

  const address = server.address() as AddressInfo
  const publicHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  const url = `http://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${address.port}`

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      // The only possible error is "not running", which `closing` already rules out.
      server.close(() => resolve())
      server.closeAllConnections()
    })
    return closing
  }

  return { ...simulator, url, port: address.port, close }
}
