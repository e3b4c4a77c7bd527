import { Pool, type Dispatcher } from 'undici'
import type { IncomingHttpHeaders } from 'node:http'
import type { UpstreamContext } from './context.ts'

export type Operation = 'authenticate' | 'patch_contact' | 'get_contact'
export type Outcome = '2xx' | '3xx' | '4xx' | '5xx' | 'timeout' | 'unreachable' | 'reset'
export type TransportFailure = 'timeout' | 'unreachable' | 'reset' | 'too_large'

/** A failure before a complete HTTP response arrived. `unreachable` means nothing was sent. */
export class TransportError extends Error {
  readonly kind: TransportFailure
  constructor (kind: TransportFailure, cause?: unknown) {
    super(`upstream ${kind}`, cause === undefined ? undefined : { cause })
    this.name = 'TransportError'
    this.kind = kind
  }
}

export interface UpstreamResponse {
  status: number
  headers: IncomingHttpHeaders
  /** Empty unless the caller asked for the body, or the status is not 2xx. */
  body: Buffer
}

export interface CallRequest {
  operation: Operation
  method: 'GET' | 'POST' | 'PATCH'
  path: string
  headers: Record<string, string>
  body?: string
  /** Read the body of a 2xx answer (error bodies are always read, for translation). */
  readBody: boolean
  /** The inbound request this call serves; its time and outcome are added to it. */
  context?: UpstreamContext
}

export interface CallObserver {
  (operation: Operation, outcome: Outcome, durationMs: number): void
}

export interface UpstreamHttpOptions {
  origin: string
  timeoutMs: number
  maxResponseBytes?: number
  connections?: number
  observe?: CallObserver
}

// Errors that happen before a byte of the request can have left this process.
const CONNECT_FAILURES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN',
  'UND_ERR_CONNECT_TIMEOUT', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'ERR_TLS_CERT_ALTNAME_INVALID', 'SELF_SIGNED_CERT_IN_CHAIN'
])
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

function classify (error: unknown, timedOut: boolean): TransportError {
  if (error instanceof TransportError) return error
  if (timedOut) return new TransportError('timeout', error)
  const e = error as { code?: string, syscall?: string }
  if (e.code !== undefined && TIMEOUTS.has(e.code)) return new TransportError('timeout', error)
  if ((e.code !== undefined && CONNECT_FAILURES.has(e.code)) || e.syscall === 'connect' || e.syscall === 'getaddrinfo') {
    return new TransportError('unreachable', error)
  }
  return new TransportError('reset', error)
}

function outcomeOf (status: number): Outcome {
  if (status < 300) return '2xx'
  if (status < 400) return '3xx'
  return status < 500 ? '4xx' : '5xx'
}

async function readCapped (body: Dispatcher.ResponseData['body'], cap: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > cap) {
      body.destroy()
      throw new TransportError('too_large')
    }
    chunks.push(chunk as Buffer)
  }
  return chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, size)
}

const EMPTY: Buffer = Buffer.alloc(0)

/**
 * One keep-alive pool to the emnify origin. Every call has one budget from connect to last
 * byte; redirects are never followed (undici's request does not follow them); bodies are read
 * only up to a cap; a connect failure, where nothing was sent, is retried once.
 */
export class UpstreamHttp {
  readonly #pool: Pool
  readonly #timeoutMs: number
  readonly #cap: number
  readonly #observe: CallObserver | undefined

  constructor (options: UpstreamHttpOptions) {
    this.#timeoutMs = options.timeoutMs
    this.#cap = options.maxResponseBytes ?? 256 * 1024
    this.#observe = options.observe
    this.#pool = new Pool(options.origin, {
      connections: options.connections ?? 64,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 60_000,
      // The overall budget below is what bounds a call; these only stop a stuck socket.
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connect: { timeout: Math.min(options.timeoutMs, 5_000) }
    })
  }

  async call (request: CallRequest): Promise<UpstreamResponse> {
    try {
      return await this.#once(request)
    } catch (error) {
      if (error instanceof TransportError && error.kind === 'unreachable') return this.#once(request)
      throw error
    }
  }

  async #once (request: CallRequest): Promise<UpstreamResponse> {
    const started = performance.now()
    const controller = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, this.#timeoutMs)
    try {
      const response = await this.#pool.request({
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body,
        signal: controller.signal
      })
      const status = response.statusCode
      // Every body is read to its end within the budget and the cap, even one the caller does not
      // need: a 2xx whose body is cut off, stalls or never ends is a garbled answer, not a success
      // (undici's dump() would swallow those failures).
      const declared = Number(response.headers['content-length'])
      if (declared > this.#cap) {
        response.body.destroy()
        throw new TransportError('too_large')
      }
      const received = await readCapped(response.body, this.#cap)
      const body = status >= 300 || request.readBody ? received : EMPTY
      this.#record(request, outcomeOf(status), started)
      return { status, headers: response.headers, body }
    } catch (error) {
      const failure = classify(error, timedOut)
      this.#record(request, failure.kind === 'too_large' ? 'reset' : failure.kind, started)
      throw failure
    } finally {
      clearTimeout(timer)
    }
  }

  #record (request: CallRequest, outcome: Outcome, started: number): void {
    const ms = performance.now() - started
    this.#observe?.(request.operation, outcome, ms)
    const context = request.context
    if (context !== undefined) {
      context.ms += ms
      context.calls++
      context.outcome = outcome
    }
  }

  close (): Promise<void> {
    return this.#pool.close()
  }
}
