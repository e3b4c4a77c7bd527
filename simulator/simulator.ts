// A stand-in for the emnify REST API on plain node:http, so faults can reach down to the socket.
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { validateContactBody, validateNewContact } from './data.ts'
import { applyFault, parseFault } from './faults.ts'
import type { Fault, FaultError, Operation } from './faults.ts'
import { isRecord, parseJson } from './json.ts'
import { empty, errors, internalError, json, send, sendEmpty, sendJson } from './responses.ts'
import type { EmnifyError, Reply } from './responses.ts'
import type { SettingsError, SettingsInput } from './settings.ts'
import { SimulatorState } from './state.ts'
import type { SimulatorOptions } from './state.ts'

export { decodeTokenClaims } from './tokens.ts'
export type { IssueOptions, TokenClaims } from './tokens.ts'
export { DEFAULT_BAD_ITEM, FaultError, OPERATIONS, parseFault } from './faults.ts'
export type { Fault, FaultKind, FaultOperation, Operation } from './faults.ts'
export { COUNTRIES, CONTACT_TYPES, EXTRA_FIELD_MARKER, listCountries } from './data.ts'
export type { ContactView, Country } from './data.ts'
export { EMNIFY_RATE_LIMIT, RATE_LIMIT_SLOTS } from './rate-limit.ts'
export type { RateLimit } from './rate-limit.ts'
export { CREATED_LOCATIONS, DEFAULT_SETTINGS, SettingsError } from './settings.ts'
export type { CreatedLocation, Settings, SettingsInput } from './settings.ts'
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
  /** Clears calls, counters, faults and the rate limit's window; settings stay. */
  reset: () => void
  revokeAllTokens: () => void
  /** Changes the given settings only (`createdLocation`, `extraFields`, `rateLimit`); throws SettingsError. */
  configure: (settings: SettingsInput) => void
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

type Resource = 'authenticate' | 'contacts' | 'contact' | 'countries' | 'unknown_api' | 'outside'

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
  if (path === '/api/v1/country') {
    route.resource = 'countries'
    if (method === 'GET') route.operation = 'list_countries'
    return route
  }
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

const MALFORMED_BODY = json(400, errors.badRequest('Malformed JSON request body'))
const NO_CONTENT = empty(204)
const ORGANISATION_NOT_FOUND = (): Reply => json(404, errors.notFound('Organisation not found'))
const CONTACT_NOT_FOUND = (): Reply => json(404, errors.notFound('Contact not found'))
const methodNotAllowed = (allow: string): Reply => json(405, errors.badRequest('Method not allowed'), { allow })

function parseObject (text: string): Record<string, unknown> | undefined {
  const parsed = parseJson(text)
  return parsed.ok && isRecord(parsed.value) ? parsed.value : undefined
}

function authenticate (state: SimulatorState, text: string): Reply {
  const body = parseObject(text)
  if (body === undefined) return MALFORMED_BODY
  const applicationToken = body.application_token
  if (typeof applicationToken === 'string') {
    const application = state.applicationTokens.indexOf(applicationToken)
    if (application === -1) return empty(401)
    return json(200, { auth_token: state.issueToken({ application }) })
  }
  if (applicationToken === undefined && ('username' in body || 'refresh_token' in body)) {
    // Real emnify supports these flows; the simulator knows no users, so they fail like bad credentials.
    return empty(401)
  }
  return json(400, errors.badRequest('application_token is required'))
}

function handleContacts (state: SimulatorState, req: IncomingMessage, route: Route, text: string): Reply {
  const org = parseLong(route.org)
  if (org === undefined) return json(400, errors.badRequest('Cannot parse parameter org_id as Long'))

  if (route.resource === 'contacts') {
    if (route.operation === 'list_contacts') {
      const contacts = state.answerContacts(org)
      return contacts === undefined ? ORGANISATION_NOT_FOUND() : json(200, contacts)
    }
    if (route.operation === 'create_contact') return createContact(state, req, org, text)
    return methodNotAllowed('GET, POST')
  }

  const id = parseLong(route.contact)
  if (id === undefined) return json(400, errors.badRequest('Cannot parse parameter id as Long'))
  switch (route.operation) {
    case 'get_contact': {
      const contact = state.answerContact(org, id)
      return contact === undefined ? CONTACT_NOT_FOUND() : json(200, contact)
    }
    case 'patch_contact':
      return patchContact(state, org, id, text)
    case 'delete_contact':
      return state.deleteContact(org, id) ? NO_CONTENT : CONTACT_NOT_FOUND()
    default:
      return methodNotAllowed('GET, PATCH, DELETE')
  }
}

function patchContact (state: SimulatorState, org: string, id: string, text: string): Reply {
  if (state.lean) return NO_CONTENT
  const body = parseObject(text)
  if (body === undefined) return MALFORMED_BODY
  if (!state.hasContact(org, id)) return CONTACT_NOT_FOUND()
  const result = validateContactBody(body)
  if (!result.ok) return json(422, errors.validation(result.messages))
  state.updateContact(org, id, result.changes)
  return NO_CONTENT
}

function locationHeader (state: SimulatorState, req: IncomingMessage, path: string): Record<string, string> | undefined {
  switch (state.settings.createdLocation) {
    case 'none':
      return undefined
    case 'relative':
      return { location: path }
    case 'absolute': {
      // Mounted without startSimulator there is no known origin; the Host the client used stands in.
      const host = req.headers.host
      const origin = state.origin ?? (host === undefined ? '' : `http://${host}`)
      return { location: `${origin}${path}` }
    }
  }
}

function createContact (state: SimulatorState, req: IncomingMessage, org: string, text: string): Reply {
  const body = parseObject(text)
  if (body === undefined) return MALFORMED_BODY
  if (!state.hasOrganisation(org)) return ORGANISATION_NOT_FOUND()
  const result = validateNewContact(body)
  if (!result.ok) return json(422, errors.validation(result.messages))
  const id = state.createContact(org, result.changes) as number
  return json(201, {}, locationHeader(state, req, `/api/v1/organisation/${org}/contact/${String(id)}`))
}

function listCountries (state: SimulatorState, query: string): Reply {
  const raw = query === '' ? null : new URLSearchParams(query).get('geographic')
  // Parsed like a JAX-RS Boolean: "true" in any case filters, anything else does not [inferred].
  const geographic = raw !== null && raw.toLowerCase() === 'true' ? true : undefined
  return json(200, state.answerCountries(geographic))
}

function handleApi (state: SimulatorState, req: IncomingMessage, route: Route, query: string, text: string): Reply {
  if (route.resource === 'outside') return json(404, errors.gateway('Not Found'))
  if (route.resource === 'authenticate') {
    return route.operation === 'authenticate' ? authenticate(state, text) : methodNotAllowed('POST')
  }
  const failure = authFailure(state, req.headers.authorization)
  if (failure !== undefined) {
    state.countUnauthorized()
    return json(401, failure)
  }
  if (route.resource === 'unknown_api') return json(404, errors.notFound('Resource not found'))
  if (route.resource === 'countries') {
    return route.operation === 'list_countries' ? listCountries(state, query) : methodNotAllowed('GET')
  }
  return handleContacts(state, req, route, text)
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
    case 'GET /_sim/settings':
      sendJson(res, 200, state.settings)
      return
    case 'POST /_sim/settings': {
      const parsed = parseJson(body.text)
      try {
        if (!parsed.ok) throw new Error('body must be a JSON object of settings')
        state.configure(parsed.value as SettingsInput)
      } catch (error) {
        // configure only throws SettingsError, whose message says which setting is wrong.
        sendJson(res, 400, { message: (error as SettingsError | Error).message })
        return
      }
      sendJson(res, 200, state.settings)
      return
    }
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
  // emnify's edge counts and refuses before anything else, faults included; it sends no Retry-After.
  if (state.limiting && state.rateLimited(req.socket.remoteAddress ?? 'unknown', route.operation)) {
    sendJson(res, 429, errors.tooManyRequests())
    return
  }
  if (body.tooLarge) {
    tooLarge(res)
    return
  }
  if (!body.complete) return

  const run = (): Reply => handleApi(state, req, route, query, body.text)
  const fault = state.takeFault(route.operation)
  if (fault === undefined) send(res, run())
  else applyFault(fault, res, run)
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
    revokeAllTokens: () => state.revokeAllTokens(),
    configure: (settings) => state.configure(settings)
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
  simulator.state.origin = url

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
