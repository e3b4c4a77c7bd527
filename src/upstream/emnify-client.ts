import type { ServerResponse } from 'node:http'
import { TokenCache } from './token-cache.ts'
import type { UpstreamContext } from './context.ts'
import { TransportError, UpstreamHttp, type CallObserver, type UpstreamResponse } from './http.ts'
import type { OperationIds, OperationSpec } from './operations.ts'
import { problemForAuthenticate, problemForStatus, problemForTransport, retryAfterSeconds } from './translate.ts'

/** The budget every upstream call spends from (authenticate excluded); see upstream/budget.ts. */
export interface CallBudget {
  /** One token for a call made for session `sub`: true when free at once, else a promise of one. */
  take: (sub: string, inbound?: ServerResponse) => true | Promise<void>
  /** emnify answered 429: stop spending for this long. */
  pause: (retryAfterMs: number) => void
}

export interface EmnifyClientOptions {
  origin: string
  applicationToken: string
  timeoutMs: number
  userAgent: string
  observe?: CallObserver
  onTokenRefresh?: (event: { ok: boolean, expiresAt?: number }) => void
  budget?: CallBudget
  /** Overrides for tests (clock, jitter, backoff) and the shared token of a fleet. */
  tokenCache?: Partial<ConstructorParameters<typeof TokenCache>[0]>
  /** Configured secrets besides the application token that no upstream message may echo. */
  secrets?: readonly string[]
}

/**
 * The client left before a call was sent, so it was not sent: nobody waits for its answer, and a
 * change the client may believe abandoned must not be applied behind its back. 499 is how nginx
 * logs such requests; as a 4xx it is not reported as an upstream failure.
 */
export class ClientGoneError extends Error {
  override name = 'ClientGoneError'
  readonly statusCode = 499
  constructor () {
    super('the client closed the connection before the upstream call was sent')
  }
}

// 502 and 503 from emnify's edge mean the call did not get through; a GET may try once more.
const RETRYABLE_STATUS = new Set([502, 503])
const DEFAULT_429_PAUSE_MS = 5_000

/**
 * The emnify API as the BFF needs it. Knows the token exchange, the one re-auth on 401, the
 * budget and which failures may be retried; everything it throws is a Problem ready for the
 * frontend. Each operation is a row of the operation table (operations.ts).
 */
export class EmnifyClient {
  readonly #http: UpstreamHttp
  readonly #tokens: TokenCache
  readonly #authBody: string
  readonly #userAgent: string
  readonly #budget: CallBudget | undefined
  readonly #secrets: readonly string[]

  constructor (options: EmnifyClientOptions) {
    this.#secrets = [options.applicationToken, ...(options.secrets ?? [])]
    this.#http = new UpstreamHttp({ origin: options.origin, timeoutMs: options.timeoutMs, observe: options.observe })
    this.#authBody = JSON.stringify({ application_token: options.applicationToken })
    this.#userAgent = options.userAgent
    this.#budget = options.budget
    this.#tokens = new TokenCache({
      ...options.tokenCache,
      fetchToken: () => this.#authenticate(),
      onRefresh: options.onTokenRefresh
    })
  }

  get tokens (): TokenCache {
    return this.#tokens
  }

  async #authenticate (): Promise<string> {
    let response: UpstreamResponse
    try {
      response = await this.#http.call({
        operation: 'authenticate',
        method: 'POST',
        path: '/api/v1/authenticate',
        headers: { 'content-type': 'application/json', accept: 'application/json', 'user-agent': this.#userAgent },
        body: this.#authBody,
        readBody: true
      })
    } catch (error) {
      throw problemForTransport(error as TransportError)
    }
    if (response.status !== 200 && response.status !== 201) throw problemForAuthenticate(response)
    let token: unknown
    try {
      token = (JSON.parse(response.body.toString('utf8')) as { auth_token?: unknown } | null)?.auth_token
    } catch {
      throw problemForAuthenticate(response)
    }
    // A token goes into an HTTP header: refuse anything that could not be sent safely.
    if (typeof token !== 'string' || !/^[\x21-\x7e]{1,8192}$/.test(token)) throw problemForAuthenticate(response)
    return token
  }

  /**
   * Sends one operation and answers its successful response; a failure is thrown as a Problem.
   * On 401 re-authenticates once and retries once; a GET is re-sent once after a reset or a
   * 502/503. Every call sent, retries included, takes one budget token.
   */
  async call (op: OperationSpec, ids: OperationIds, context: UpstreamContext, body?: string): Promise<UpstreamResponse> {
    let reauthenticated = false
    let resent = false
    for (;;) {
      const token = this.#tokens.peek() ?? await this.#tokens.get()
      if (this.#budget !== undefined) {
        const granted = this.#budget.take(context.sub, context.inbound as ServerResponse | undefined)
        if (granted !== true) await granted
      }
      // Checked after the token and budget waits and before any retry; a call already sent is left
      // to finish within its budget (it may have been applied, and the audit record needs its outcome).
      if (context.inbound?.destroyed === true) throw new ClientGoneError()
      const headers: Record<string, string> = {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        'user-agent': this.#userAgent,
        'x-request-id': context.requestId
      }
      if (body !== undefined) headers['content-type'] = 'application/json'
      if (context.traceparent !== undefined) headers.traceparent = context.traceparent
      let response: UpstreamResponse
      try {
        response = await this.#http.call({ operation: op.name, method: op.method, path: op.path(ids), headers, body, readBody: op.readBody, context })
      } catch (error) {
        const failure = error as TransportError
        if (op.idempotent && !resent && failure.kind === 'reset') {
          resent = true
          continue
        }
        throw problemForTransport(failure)
      }
      if (op.success.has(response.status)) {
        // A token that served a call has proved itself: a later 401 is a revocation worth a re-auth.
        this.#tokens.confirm(token)
        return response
      }
      // 401 means the call was refused before it was applied, so one retry is safe.
      if (response.status === 401 && !reauthenticated && this.#tokens.reject(token)) {
        reauthenticated = true
        continue
      }
      if (op.idempotent && !resent && RETRYABLE_STATUS.has(response.status)) {
        resent = true
        continue
      }
      if (response.status === 429) {
        this.#budget?.pause(retryAfterSeconds(response.headers['retry-after'], DEFAULT_429_PAUSE_MS / 1000) * 1000)
      }
      throw problemForStatus(response, op.notFound, this.#secrets)
    }
  }

  close (): Promise<void> {
    return this.#http.close()
  }
}
