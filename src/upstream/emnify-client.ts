import { Problem } from '../errors/problems.ts'
import { TokenCache } from './token-cache.ts'
import type { UpstreamContext } from './context.ts'
import { TransportError, UpstreamHttp, type CallObserver, type UpstreamResponse } from './http.ts'
import { problemForAuthenticate, problemForStatus, problemForTransport } from './translate.ts'

export interface EmnifyClientOptions {
  origin: string
  applicationToken: string
  timeoutMs: number
  userAgent: string
  observe?: CallObserver
  onTokenRefresh?: (event: { ok: boolean, expiresAt?: number }) => void
  /** Overrides for tests (clock, jitter, backoff). */
  tokenCache?: { now?: () => number, random?: () => number, minBackoffMs?: number, maxBackoffMs?: number, fallbackLifetimeMs?: number }
}

export type ContactRepresentation = Record<string, unknown>

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

function contactPath (orgId: string, contactId: string): string {
  return `/api/v1/organisation/${orgId}/contact/${contactId}`
}

/**
 * The emnify API as the BFF needs it. Knows the token exchange, the one re-auth on 401 and
 * which failures may be retried; everything it throws is a Problem ready for the frontend.
 */
export class EmnifyClient {
  readonly #http: UpstreamHttp
  readonly #tokens: TokenCache
  readonly #authBody: string
  readonly #userAgent: string

  constructor (options: EmnifyClientOptions) {
    this.#http = new UpstreamHttp({ origin: options.origin, timeoutMs: options.timeoutMs, observe: options.observe })
    this.#authBody = JSON.stringify({ application_token: options.applicationToken })
    this.#userAgent = options.userAgent
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

  /** Sends one authorised call; on 401 re-authenticates once and retries once. */
  async #authorised (
    operation: 'patch_contact' | 'get_contact',
    method: 'GET' | 'PATCH',
    path: string,
    context: UpstreamContext,
    body: string | undefined,
    readBody: boolean
  ): Promise<UpstreamResponse> {
    for (let attempt = 0; ; attempt++) {
      const token = this.#tokens.peek() ?? await this.#tokens.get()
      // Checked after the token wait and before the 401 retry; a call already sent is left to
      // finish within its budget (it may have been applied, and the audit record needs its outcome).
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
        response = await this.#http.call({ operation, method, path, headers, body, readBody, context })
      } catch (error) {
        throw problemForTransport(error as TransportError)
      }
      // 401 means the call was refused before it was applied, so one retry is safe.
      if (response.status === 401 && attempt === 0 && this.#tokens.reject(token)) continue
      return response
    }
  }

  /** `context` is the inbound request's upstream record: request id, traceparent, time spent. */
  async patchContact (orgId: string, contactId: string, patch: string, context: UpstreamContext): Promise<void> {
    const response = await this.#authorised('patch_contact', 'PATCH', contactPath(orgId, contactId), context, patch, false)
    if (response.status < 200 || response.status >= 300) throw problemForStatus(response)
  }

  async getContact (orgId: string, contactId: string, context: UpstreamContext): Promise<ContactRepresentation> {
    const response = await this.#authorised('get_contact', 'GET', contactPath(orgId, contactId), context, undefined, true)
    if (response.status !== 200) throw problemForStatus(response)
    let contact: unknown
    try {
      contact = JSON.parse(response.body.toString('utf8'))
    } catch {
      throw new Problem('UPSTREAM_ERROR', { detail: 'emnify answered with a malformed contact' })
    }
    if (contact === null || typeof contact !== 'object' || Array.isArray(contact)) {
      throw new Problem('UPSTREAM_ERROR', { detail: 'emnify answered with a malformed contact' })
    }
    return contact as ContactRepresentation
  }

  close (): Promise<void> {
    return this.#http.close()
  }
}
