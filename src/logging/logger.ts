import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify'
import pino, { type LoggerOptions, type DestinationStream } from 'pino'
import type { UpstreamContext } from '../upstream/context.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by routes that call emnify; the access line reports its time, calls and outcome. */
    upstream: UpstreamContext | null
  }
}

/** Everything that could carry a credential, wherever it appears in a log object. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-csrf"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'headers["set-cookie"]',
  'password',
  '*.password',
  'application_token',
  '*.application_token',
  'auth_token',
  '*.auth_token',
  'token',
  '*.token',
  'SESSION_SECRET',
  'EMNIFY_APPLICATION_TOKEN'
]

/** Where a TurnBuffer writes: a synchronous destination (pino's sonic-boom with `sync: true`). */
export interface LineSink {
  write: (data: string) => unknown
}

/** Bytes a turn may gather before they are written at once, so the buffer stays bounded. */
export const TURN_BUFFER_MAX_BYTES = 16 * 1024

/** The level of a line in pino's format, `{"level":<n>…`; 0 when it does not start so. */
function levelOf (line: string): number {
  return line.startsWith('{"level":') ? Number.parseInt(line.slice(9, 12), 10) || 0 : 0
}

/** pino's documented destination flag: pino then sets `lastLevel` (and more) on it before each write. */
export const PINO_METADATA = Symbol.for('pino.metadata')

/**
 * Log lines gathered for the rest of the event-loop turn and written together, once, at its end
 * (setImmediate), instead of one synchronous write per line: a request's access line and audit
 * record, and those of every other request answered in the same turn, cost one system call.
 * Bounded: at TURN_BUFFER_MAX_BYTES the buffer is written at once. Error and fatal lines are
 * written at once (a crash often follows them), and the rest on process exit, which
 * close-with-grace reaches on SIGTERM, SIGINT and uncaught errors. What a SIGKILL or an OOM kill
 * loses is the current turn's lines only; SECURITY.md states the trade-off.
 *
 * A line's level comes from `lastLevel`, which pino (and fieldLines) set just before each write:
 * reading the line's `{"level":` prefix instead would make V8 flatten every line, a string built
 * piece by piece, once more than its final write does. A writer that sets no level is read by
 * the prefix.
 */
export class TurnBuffer implements DestinationStream {
  readonly [PINO_METADATA] = true
  /** The level of the line about to be written, set by its writer; write() clears it. */
  lastLevel: number | undefined = undefined
  readonly #sink: LineSink
  readonly #maxBytes: number
  #pending = ''
  #scheduled = false
  readonly #endOfTurn = (): void => {
    this.#scheduled = false
    this.flushSync()
  }

  constructor (sink: LineSink, maxBytes = TURN_BUFFER_MAX_BYTES) {
    this.#sink = sink
    this.#maxBytes = maxBytes
  }

  write (line: string): void {
    const level = this.lastLevel ?? levelOf(line)
    this.lastLevel = undefined
    this.#pending += line
    // 50 and 60 are error and fatal.
    if (level >= 50 || this.#pending.length >= this.#maxBytes) {
      this.flushSync()
    } else if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(this.#endOfTurn)
    }
  }

  /** Writes what is gathered now, synchronously. */
  flushSync (): void {
    if (this.#pending === '') return
    const data = this.#pending
    this.#pending = ''
    this.#sink.write(data)
  }

  /** pino's logger.flush() calls this. */
  flush (callback?: (error?: Error) => void): void {
    this.flushSync()
    callback?.()
  }
}

let stdoutBuffer: TurnBuffer | undefined

/** The process's one stdout log buffer, written out on exit (one exit listener however many apps). */
export function stdoutLines (): TurnBuffer {
  if (stdoutBuffer === undefined) {
    const buffer = new TurnBuffer(pino.destination({ dest: 1, sync: true }))
    process.on('exit', () => buffer.flushSync())
    stdoutBuffer = buffer
  }
  return stdoutBuffer
}

export function loggerOptions (level: string, stream?: DestinationStream): LoggerOptions & { stream: DestinationStream } {
  return {
    level,
    base: { service: 'emnify-bff' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Only the fields an operator needs; Fastify's default serialiser would add host and port.
    serializers: {
      req: (req: { method: string, url: string }) => ({ method: req.method, url: req.url })
    },
    stream: stream ?? stdoutLines()
  }
}

/** The request path without its query string: what logs and problem `instance`s show. */
export function pathOf (url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/** Keeps a caller's X-Request-Id only when it is safe to log and forward; otherwise a fresh one. */
export function requestId (req: IncomingMessage): string {
  const header = req.headers['x-request-id']
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID()
}

/** Writes info lines built field by field, in pino's format, straight to the logger's destination. */
export interface FieldLines {
  info: (fields: object, msg: string) => void
  /**
   * The same line from fields already written as JSON: `fields` is `,"key":value…` (or empty),
   * `msg` the message as a JSON string.
   */
  written: (fields: string, msg: string) => void
}

/**
 * Info lines built field by field from values that cannot hold a credential (the access line,
 * the audit record), written without pino's generic path: no redact path can match their keys,
 * and the fields are plain, so one JSON.stringify gives the very line pino would write
 * (`{"level":30,"time":…,<bindings>,<fields>,"msg":…}`), to the same destination, at the same
 * level threshold. Redaction alone measured at about two thirds of pino's cost for such a line;
 * the rest is its per-value serialisation. Every other line, and anything carrying an error,
 * keeps the redacting logger.
 */
export function fieldLines (logger: FastifyBaseLogger, bindings: Record<string, string> = {}): FieldLines {
  const instance = logger.child(bindings) as unknown as Record<symbol, unknown> & { levelVal: number }
  const stream = instance[pino.symbols.streamSym] as DestinationStream
  // pino's own serialisation of the bindings, leading comma included.
  const head = instance[pino.symbols.chindingsSym] as string
  // Told the level as pino tells it, when the destination asks (TurnBuffer, pino.multistream).
  const metadata = (stream as unknown as Record<symbol, unknown>)[PINO_METADATA] === true
  const target = stream as DestinationStream & { lastLevel?: number }
  return {
    info (fields, msg) {
      // levelVal is read each time: the logger's level can be changed while it runs.
      if (instance.levelVal > 30) return
      const body = JSON.stringify(fields)
      const middle = body.length > 2 ? `,${body.slice(1, -1)}` : ''
      if (metadata) target.lastLevel = 30
      target.write(`{"level":30,"time":${Date.now()}${head}${middle},"msg":${JSON.stringify(msg)}}\n`)
    },
    written (fields, msg) {
      if (instance.levelVal > 30) return
      if (metadata) target.lastLevel = 30
      target.write(`{"level":30,"time":${Date.now()}${head}${fields},"msg":${msg}}\n`)
    }
  }
}

type LogMethod = (...args: unknown[]) => void

/**
 * The per-request logger, made only when the request logs something of its own. Fastify builds a
 * pino child per request (its bindings serialised through the redaction stringifiers), yet most
 * requests write nothing but the access line, which does not use it. This stands in for that
 * child: the same bindings and options, the same methods, and the real child from the first call.
 */
export class LazyChildLogger {
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Record<string, unknown>
  readonly #options: object
  #real: FastifyBaseLogger | undefined

  constructor (parent: FastifyBaseLogger, bindings: Record<string, unknown>, options: object) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  get real (): FastifyBaseLogger {
    this.#real ??= this.#parent.child(this.#bindings, this.#options as never)
    return this.#real
  }

  get level (): string {
    return this.#real?.level ?? this.#parent.level
  }

  set level (level: string) {
    this.real.level = level
  }

  info (...args: unknown[]): void { (this.real.info as LogMethod)(...args) }
  warn (...args: unknown[]): void { (this.real.warn as LogMethod)(...args) }
  error (...args: unknown[]): void { (this.real.error as LogMethod)(...args) }
  fatal (...args: unknown[]): void { (this.real.fatal as LogMethod)(...args) }
  debug (...args: unknown[]): void { (this.real.debug as LogMethod)(...args) }
  trace (...args: unknown[]): void { (this.real.trace as LogMethod)(...args) }
  silent (): void {}
  child (bindings: Record<string, unknown>, options?: object): FastifyBaseLogger {
    return this.real.child(bindings, options)
  }

  isLevelEnabled (level: string): boolean {
    return ((this.#real ?? this.#parent) as unknown as { isLevelEnabled: (level: string) => boolean }).isLevelEnabled(level)
  }
}

/** Fastify's childLoggerFactory: a LazyChildLogger per request. */
export function lazyChildLogger (logger: FastifyBaseLogger, bindings: Record<string, unknown>, options: object): FastifyBaseLogger {
  return new LazyChildLogger(logger, bindings, options) as unknown as FastifyBaseLogger
}

export interface AccessLine {
  request_id: string
  method: string
  path: string
  route: string | undefined
  status: number
  ms: number
  sub: string | undefined
  upstream_ms?: number
  upstream_calls?: number
  upstream_outcome?: string | undefined
  trace_id?: string
  /** The connection closed before the answer was written. */
  aborted?: true
}

const COMPLETED = JSON.stringify('request completed')
const TIMED_OUT = JSON.stringify('request timed out')
const ABORTED = JSON.stringify('request aborted by the client')

/** A number as JSON.stringify writes it (it has no NaN or Infinity). */
function jsonNumber (value: number): string {
  return Number.isFinite(value) ? `${value}` : 'null'
}

/**
 * The access line's fields as JSON.stringify writes them (a property test holds them equal), at
 * less cost: JSON.stringify walks the object and scans every key and every value for characters
 * to escape. Here the keys are written as they are, and so are the values the BFF makes in an
 * alphabet that never needs escaping: the request id (requestId()'s alphabet or a UUID; Fastify's
 * own `req-<n>` without genReqId), the outcome (a fixed word) and the trace id (hex, from a
 * validated traceparent). What a caller can shape (method, path, subject) goes through
 * JSON.stringify; a route template is written by it once.
 */
export function accessFields (line: AccessLine, routes: Map<string, string>): string {
  let out = `,"request_id":"${line.request_id}","method":${JSON.stringify(line.method)},"path":${JSON.stringify(line.path)}`
  const route = line.route
  if (route !== undefined) {
    let written = routes.get(route)
    if (written === undefined) {
      written = `,"route":${JSON.stringify(route)}`
      routes.set(route, written)
    }
    out += written
  }
  out += `,"status":${jsonNumber(line.status)},"ms":${jsonNumber(line.ms)}`
  if (line.sub !== undefined) out += `,"sub":${JSON.stringify(line.sub)}`
  if (line.upstream_ms !== undefined) out += `,"upstream_ms":${jsonNumber(line.upstream_ms)}`
  if (line.upstream_calls !== undefined) out += `,"upstream_calls":${jsonNumber(line.upstream_calls)}`
  if (line.upstream_outcome !== undefined) out += `,"upstream_outcome":"${line.upstream_outcome}"`
  if (line.trace_id !== undefined) out += `,"trace_id":"${line.trace_id}"`
  if (line.aborted === true) out += ',"aborted":true'
  return out
}

/** An audit record of a change: who, which contact of which organisation, which fields. */
export interface AuditRecord {
  event: 'contact.created' | 'contact.updated' | 'contact.deleted'
  request_id: string
  sub: string | undefined
  org_id: string
  contact_id: string | null
  fields: readonly string[]
}

const AUDIT_MESSAGES: Readonly<Record<AuditRecord['event'], string>> = {
  'contact.created': JSON.stringify('contact created'),
  'contact.updated': JSON.stringify('contact updated'),
  'contact.deleted': JSON.stringify('contact deleted')
}

/** The message an audit event is written with, as a JSON string. */
export function auditMessage (event: AuditRecord['event']): string {
  return AUDIT_MESSAGES[event]
}

/**
 * The audit record's fields as JSON.stringify writes them (a property test holds them equal), as
 * accessFields does for the access line: the event is a fixed word, the request id is the BFF's,
 * and the organisation and contact ids are digits (the routes' ID pattern, or the pattern the
 * created contact's Location is read with), so those are written as they are; the subject and
 * the field names go through JSON.stringify.
 */
export function auditFields (record: AuditRecord): string {
  const sub = record.sub === undefined ? '' : `,"sub":${JSON.stringify(record.sub)}`
  const contact = record.contact_id === null ? 'null' : `"${record.contact_id}"`
  return `,"event":"${record.event}","request_id":"${record.request_id}"${sub},"org_id":"${record.org_id}","contact_id":${contact},"fields":${JSON.stringify(record.fields)}`
}

/**
 * One access line per request (Fastify's default writes two), with the route template, the
 * actor and, for requests that called emnify, the time spent there and the last outcome.
 */
export class AccessLog extends LogController {
  #lines: FieldLines | undefined
  #errors: FastifyBaseLogger | undefined
  /** Each route template's `,"route":…`, written once (there are as many as the app has routes). */
  readonly #routes = new Map<string, string>()

  constructor () {
    super({ requestIdLogLabel: 'request_id' })
  }

  /** The app's logger, known only once Fastify has built it. */
  attach (logger: FastifyBaseLogger): void {
    this.#errors = logger
    this.#lines = fieldLines(logger)
  }

  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = this.#line(request, reply)
    if (error) (this.#errors ?? reply.log).error({ ...line, err: error }, 'request errored')
    else this.#info(reply, line, 'request completed', COMPLETED)
  }

  /**
   * The connection closed before the answer could be written, so Fastify logs nothing: the app
   * calls this instead. 408 when the server cut off a request that did not arrive in time,
   * otherwise 499 (the client left), as nginx logs it.
   */
  requestAborted (request: FastifyRequest, reply: FastifyReply): void {
    const line = this.#line(request, reply)
    const timedOut = (request.raw.socket.errored as { code?: string } | null)?.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    line.status = timedOut ? 408 : 499
    line.aborted = true
    if (timedOut) this.#info(reply, line, 'request timed out', TIMED_OUT)
    else this.#info(reply, line, 'request aborted by the client', ABORTED)
  }

  // Before attach (never, once the app is built) the request's own logger writes the line.
  #info (reply: FastifyReply, line: AccessLine, msg: string, msgJson: string): void {
    if (this.#lines !== undefined) this.#lines.written(accessFields(line, this.#routes), msgJson)
    else reply.log.info(line, msg)
  }

  #line (request: FastifyRequest, reply: FastifyReply): AccessLine {
    const line: AccessLine = {
      request_id: request.id,
      method: request.method,
      path: pathOf(request.url),
      route: request.routeOptions.url,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 100) / 100,
      sub: request.session?.sub
    }
    const upstream = request.upstream
    if (upstream != null) {
      line.upstream_ms = Math.round(upstream.ms * 100) / 100
      line.upstream_calls = upstream.calls
      line.upstream_outcome = upstream.outcome
      if (upstream.traceparent !== undefined) line.trace_id = upstream.traceparent.slice(3, 35)
    }
    return line
  }
}
