// Switchable upstream misbehaviour: error statuses, slowness, broken connections and bad bodies.
import type { ServerResponse } from 'node:http'
import { isRecord } from './json.ts'
import { defaultBodyFor, internalError, send, sendEmpty, sendRaw } from './responses.ts'
import type { Reply } from './responses.ts'

export const OPERATIONS = [
  'authenticate',
  'get_contact',
  'patch_contact',
  'list_contacts',
  'create_contact',
  'delete_contact',
  'list_countries',
  'other'
] as const

export type Operation = typeof OPERATIONS[number]

export type FaultOperation = Operation | 'any'

export type RedirectStatus = 301 | 302 | 303 | 307 | 308

export type FaultKind =
  | { kind: 'status', status: number, body?: unknown, headers?: Record<string, string> }
  | { kind: 'delay', ms: number }
  | { kind: 'hang' }
  | { kind: 'reset_before_headers' }
  | { kind: 'reset_after_headers' }
  | { kind: 'trickle', intervalMs: number, chunks: number, status?: number, body?: string }
  | { kind: 'huge_body', bytes: number, status?: number, chunked?: boolean }
  | { kind: 'garbage', status?: number }
  | { kind: 'redirect', status?: RedirectStatus, location: string }
  | { kind: 'unauthorized_empty' }
  | { kind: 'gateway_unauthorized' }
  // The rest carry the operation out and then bend its answer (a malformed list, a lost Location, …).
  | { kind: 'not_a_list' }
  | { kind: 'bad_item', item?: Record<string, unknown>, index?: number }
  | { kind: 'no_location' }
  | { kind: 'location', location: string }

export type Fault = FaultKind & {
  operation: FaultOperation
  /** How many matching requests the fault answers; unlimited until cleared when absent. */
  times?: number
  /**
   * Carry the operation out first (a create creates, a delete deletes), then answer with the fault:
   * the ambiguous outcome a client sees when emnify acted but the answer was lost or late.
   */
  afterCommit?: boolean
}

/** What `bad_item` merges into one element when no `item` is given: an id that is not a number. */
export const DEFAULT_BAD_ITEM: Readonly<Record<string, unknown>> = { id: 'not-a-number' }

export class FaultError extends Error {
  override name = 'FaultError'
}

const MAX_DELAY_MS = 3_600_000
const MAX_HUGE_BODY_BYTES = 1024 * 1024 * 1024
const MAX_TRICKLE_CHUNKS = 100_000
const REDIRECT_STATUSES: readonly number[] = [301, 302, 303, 307, 308]
const MAX_ITEM_INDEX = 1_000_000
// What node:http accepts in a header value without throwing.
const HEADER_VALUE = /^[\x20-\x7e]*$/
const TRANSFORMS: ReadonlySet<string> = new Set(['not_a_list', 'bad_item', 'no_location', 'location'])

function integer (source: Record<string, unknown>, key: string, min: number, max: number, required: true): number
function integer (source: Record<string, unknown>, key: string, min: number, max: number, required: false): number | undefined
function integer (source: Record<string, unknown>, key: string, min: number, max: number, required: boolean): number | undefined {
  const value = source[key]
  if (value === undefined && !required) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new FaultError(`fault.${key} must be an integer between ${min} and ${max}`)
  }
  return value
}

function optionalStatus (source: Record<string, unknown>): number | undefined {
  return integer(source, 'status', 200, 599, false)
}

function stringRecord (value: unknown): Record<string, string> | undefined {
  if (value === undefined) return undefined
  if (!isRecord(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new FaultError('fault.headers must be an object of strings')
  }
  return value as Record<string, string>
}

function parseKind (source: Record<string, unknown>): FaultKind {
  const kind = source.kind
  switch (kind) {
    case 'status': {
      const fault: FaultKind = { kind, status: integer(source, 'status', 200, 599, true) }
      if ('body' in source) fault.body = source.body
      const headers = stringRecord(source.headers)
      if (headers !== undefined) fault.headers = headers
      return fault
    }
    case 'delay':
      return { kind, ms: integer(source, 'ms', 0, MAX_DELAY_MS, true) }
    case 'hang':
    case 'reset_before_headers':
    case 'reset_after_headers':
    case 'unauthorized_empty':
    case 'gateway_unauthorized':
    case 'not_a_list':
    case 'no_location':
      return { kind }
    case 'bad_item': {
      const fault: FaultKind = { kind }
      if (source.item !== undefined) {
        if (!isRecord(source.item)) throw new FaultError('fault.item must be an object')
        fault.item = source.item
      }
      const index = integer(source, 'index', 0, MAX_ITEM_INDEX, false)
      if (index !== undefined) fault.index = index
      return fault
    }
    case 'location':
      if (typeof source.location !== 'string' || !HEADER_VALUE.test(source.location)) {
        throw new FaultError('fault.location must be a string of printable ASCII')
      }
      return { kind, location: source.location }
    case 'trickle': {
      const fault: FaultKind = {
        kind,
        intervalMs: integer(source, 'intervalMs', 1, MAX_DELAY_MS, true),
        chunks: integer(source, 'chunks', 1, MAX_TRICKLE_CHUNKS, true)
      }
      const status = optionalStatus(source)
      if (status !== undefined) fault.status = status
      if (source.body !== undefined) {
        if (typeof source.body !== 'string') throw new FaultError('fault.body must be a string')
        fault.body = source.body
      }
      return fault
    }
    case 'huge_body': {
      const fault: FaultKind = { kind, bytes: integer(source, 'bytes', 0, MAX_HUGE_BODY_BYTES, true) }
      const status = optionalStatus(source)
      if (status !== undefined) fault.status = status
      if (source.chunked !== undefined) {
        if (typeof source.chunked !== 'boolean') throw new FaultError('fault.chunked must be a boolean')
        fault.chunked = source.chunked
      }
      return fault
    }
    case 'garbage': {
      const fault: FaultKind = { kind }
      const status = optionalStatus(source)
      if (status !== undefined) fault.status = status
      return fault
    }
    case 'redirect': {
      if (typeof source.location !== 'string' || source.location === '') {
        throw new FaultError('fault.location must be a non-empty string')
      }
      const fault: FaultKind = { kind, location: source.location }
      if (source.status !== undefined) {
        if (typeof source.status !== 'number' || !REDIRECT_STATUSES.includes(source.status)) {
          throw new FaultError(`fault.status must be one of ${REDIRECT_STATUSES.join(', ')}`)
        }
        fault.status = source.status as RedirectStatus
      }
      return fault
    }
    default:
      throw new FaultError(`unknown fault kind ${JSON.stringify(kind)}`)
  }
}

/** Validates an untrusted fault description (from the control endpoint or a test). */
export function parseFault (value: unknown): Fault {
  if (!isRecord(value)) throw new FaultError('a fault must be an object')
  const operation = value.operation
  if (operation !== 'any' && !OPERATIONS.includes(operation as Operation)) {
    throw new FaultError(`fault.operation must be one of any, ${OPERATIONS.join(', ')}`)
  }
  const times = integer(value, 'times', 1, Number.MAX_SAFE_INTEGER, false)
  const fault: Fault = { ...parseKind(value), operation: operation as FaultOperation }
  if (times !== undefined) fault.times = times
  if (value.afterCommit !== undefined) {
    if (typeof value.afterCommit !== 'boolean') throw new FaultError('fault.afterCommit must be a boolean')
    fault.afterCommit = value.afterCommit
  }
  return fault
}

// Keeps a fault's timer from outliving the connection it was meant for.
function onClose (res: ServerResponse, cleanup: () => void): void {
  res.once('close', cleanup)
}

function jsonPadding (bytes: number): { prefix: string, fill: number, suffix: string } {
  // A syntactically valid JSON object of exactly `bytes` bytes, when that many allow one.
  const prefix = '{"padding":"'
  const suffix = '"}'
  if (bytes < prefix.length + suffix.length) return { prefix: '', fill: bytes, suffix: '' }
  return { prefix, fill: bytes - prefix.length - suffix.length, suffix }
}

const FILL_CHUNK = Buffer.alloc(64 * 1024, 'x')

function sendHugeBody (res: ServerResponse, fault: Extract<FaultKind, { kind: 'huge_body' }>): void {
  const { prefix, fill, suffix } = jsonPadding(fault.bytes)
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (fault.chunked !== true) headers['content-length'] = String(fault.bytes)
  res.writeHead(fault.status ?? 200, headers)
  res.write(prefix)
  let remaining = fill
  const pump = (): void => {
    while (remaining > 0) {
      const size = Math.min(remaining, FILL_CHUNK.length)
      remaining -= size
      // A gone client makes write() return false and 'drain' never comes, which ends the pump.
      if (!res.write(size === FILL_CHUNK.length ? FILL_CHUNK : FILL_CHUNK.subarray(0, size))) {
        res.once('drain', pump)
        return
      }
    }
    res.end(suffix)
  }
  pump()
}

function trickleBody (chunks: number): string {
  const body = JSON.stringify({ message: 'slow response', padding: '' })
  return body.length >= chunks ? body : JSON.stringify({ message: 'slow response', padding: 'x'.repeat(chunks) })
}

function sendTrickle (res: ServerResponse, fault: Extract<FaultKind, { kind: 'trickle' }>): void {
  const body = Buffer.from(fault.body ?? trickleBody(fault.chunks))
  const chunkSize = Math.max(1, Math.ceil(body.length / fault.chunks))
  res.writeHead(fault.status ?? 200, {
    'content-type': 'application/json',
    'content-length': String(body.length)
  })
  res.flushHeaders()
  let offset = 0
  const timer = setInterval(() => {
    const chunk = body.subarray(offset, offset + chunkSize)
    offset += chunk.length
    if (offset >= body.length) {
      clearInterval(timer)
      res.end(chunk)
    } else {
      res.write(chunk)
    }
  }, fault.intervalMs)
  onClose(res, () => clearInterval(timer))
}

function sendStatus (res: ServerResponse, fault: Extract<FaultKind, { kind: 'status' }>): void {
  const body = fault.body === undefined ? defaultBodyFor(fault.status) : fault.body
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body)
  sendRaw(res, fault.status, text, fault.headers)
}

type Transform = Extract<FaultKind, { kind: 'not_a_list' | 'bad_item' | 'no_location' | 'location' }>

function isTransform (fault: Fault): fault is Fault & Transform {
  return TRANSFORMS.has(fault.kind)
}

function mergeInto (element: unknown, item: Record<string, unknown>): unknown {
  return isRecord(element) ? { ...element, ...item } : { ...item }
}

/** Bends a successful JSON answer; error answers and empty bodies pass unchanged. */
function transform (fault: Transform, reply: Reply): Reply {
  const ok = reply.status >= 200 && reply.status < 300
  switch (fault.kind) {
    case 'not_a_list':
      // An envelope is the likeliest way a bare array would stop being one (e.g. for pagination).
      return ok && reply.body !== undefined ? { ...reply, body: { data: reply.body } } : reply
    case 'bad_item': {
      if (!ok || reply.body === undefined) return reply
      const item = fault.item ?? DEFAULT_BAD_ITEM
      if (!Array.isArray(reply.body)) return { ...reply, body: mergeInto(reply.body, item) }
      const list = [...reply.body]
      const index = Math.min(fault.index ?? 0, list.length)
      list[index] = mergeInto(list[index], item)
      return { ...reply, body: list }
    }
    case 'no_location': {
      const { location: _dropped, ...headers } = reply.headers ?? {}
      return { ...reply, headers }
    }
    case 'location':
      return ok ? { ...reply, headers: { ...reply.headers, location: fault.location } } : reply
  }
}

/**
 * Answers a request according to `fault`. `run` carries the operation out and returns emnify's
 * answer: `delay` runs it after the delay, transforms and `afterCommit` faults run it at once.
 * The request body has already been read, so a reset never races the client's upload.
 */
export function applyFault (fault: Fault, res: ServerResponse, run: () => Reply): void {
  if (isTransform(fault)) {
    send(res, transform(fault, run()))
    return
  }
  if (fault.afterCommit === true) {
    const reply = run()
    answer(fault, res, () => reply)
    return
  }
  answer(fault, res, run)
}

function answer (fault: Exclude<FaultKind, Transform>, res: ServerResponse, run: () => Reply): void {
  switch (fault.kind) {
    case 'status':
      sendStatus(res, fault)
      return
    case 'delay': {
      const timer = setTimeout(() => {
        // A timer runs outside the promise that guards the rest, so a bug is caught here.
        try {
          send(res, run())
        } catch {
          internalError(res)
        }
      }, fault.ms)
      onClose(res, () => clearTimeout(timer))
      return
    }
    case 'hang':
      // Nothing is written; the connection stays open until the client gives up or the simulator closes.
      return
    case 'reset_before_headers':
      res.socket?.destroy()
      return
    case 'reset_after_headers': {
      const partial = '{"id":1,"organisation":{"id":1,"na'
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': String(partial.length + 512)
      })
      res.write(partial, () => res.socket?.destroy())
      return
    }
    case 'trickle':
      sendTrickle(res, fault)
      return
    case 'huge_body':
      sendHugeBody(res, fault)
      return
    case 'garbage':
      sendRaw(res, fault.status ?? 200, '{"auth_token": <html><body>Bad Gateway</body></html>')
      return
    case 'redirect':
      sendEmpty(res, fault.status ?? 302, { location: fault.location })
      return
    case 'unauthorized_empty':
      sendEmpty(res, 401)
      return
    case 'gateway_unauthorized':
      sendRaw(res, 401, '{"message":"Unauthorized"}')
  }
}
