// A thin client for the emnify BFF, for any browser frontend to copy. It never sees a token:
// the BFF's HttpOnly session cookie does the work (`credentials: 'include'`), and every unsafe
// request carries `X-CSRF: 1`, which a page on another site cannot add without a CORS preflight.

/** One field-level message of a validation problem; `pointer` is an RFC 6901 JSON Pointer. */
export interface FieldError {
  pointer: string
  detail: string
  /** Which part of the request the pointer points into: `body`, `path`, `header` or `upstream`. */
  in?: string
}

/** An RFC 9457 problem as the BFF answers it. */
export interface Problem {
  type?: string
  title?: string
  status?: number
  detail?: string
  instance?: string
  code?: string
  request_id?: string
  errors?: FieldError[]
}

/** Every failure of a call: an HTTP problem, or `status` 0 when the BFF could not be reached at all. */
export class ApiError extends Error {
  readonly status: number
  /** The problem's stable `code`, or `NETWORK_ERROR` (status 0) / `HTTP_<status>` without a problem body. */
  readonly code: string
  readonly title: string
  readonly detail: string
  /** Quote this when reporting the failure: it names the request in the BFF's logs. */
  readonly requestId: string | undefined
  readonly errors: FieldError[]
  /** Seconds from `Retry-After` (429, 503), when the BFF sent one. */
  readonly retryAfterS: number | undefined

  constructor (status: number, problem: Problem, requestId: string | undefined, retryAfterS: number | undefined) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`)
    this.name = 'ApiError'
    this.status = status
    this.code = problem.code ?? (status === 0 ? 'NETWORK_ERROR' : `HTTP_${status}`)
    this.title = problem.title ?? (status === 0 ? 'The BFF could not be reached' : `HTTP ${status}`)
    this.detail = problem.detail ?? ''
    this.requestId = problem.request_id ?? requestId
    this.errors = Array.isArray(problem.errors) ? problem.errors : []
    this.retryAfterS = retryAfterS
  }
}

export type Orgs = number[] | '*'

export interface SessionInfo {
  sub: string
  orgs: Orgs
  scope: string
  expires_at: string
}

export interface IdName {
  id: number
  name?: string
}

export interface ContactType {
  id: number
  description?: string
}

export const STRING_FIELDS = [
  'name', 'title', 'department', 'street', 'zipcode', 'city', 'email', 'phone', 'mobile',
  'state', 'secondary_address', 'purchase_order_number'
] as const

export type StringField = typeof STRING_FIELDS[number]

export interface Contact extends Partial<Record<StringField, string | null>> {
  id: number
  type?: ContactType
  organisation?: IdName
  country?: IdName | null
}

/** A create or patch body: `null` clears a string field. */
export interface ContactChanges extends Partial<Record<StringField, string | null>> {
  type?: { id: number }
  country?: { id: number }
}

export interface Country {
  id: number
  name: string
  iso_code?: string
  country_code?: string
}

/** A representation with the strong `ETag` to send back as `If-Match`. */
export interface Tagged<T> {
  value: T
  etag: string | undefined
}

export interface Created {
  /** The created contact as read back, or undefined when emnify named no new id. */
  contact: Contact | undefined
  /** True when the BFF replayed an earlier answer for the same `Idempotency-Key`. */
  replayed: boolean
}

interface CallOptions {
  body?: unknown
  headers?: Record<string, string>
}

interface Answer {
  status: number
  headers: Headers
  body: unknown
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** An `Idempotency-Key`: 128 random bits, from a generator that works outside secure contexts too. */
export function newIdempotencyKey (): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
}

function parseRetryAfter (value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value)) return undefined
  return Number(value)
}

export class BffClient {
  readonly origin: string

  /** `origin`: the BFF's origin, e.g. `http://127.0.0.1:3000`; it must be same-site with the page. */
  constructor (origin: string) {
    this.origin = origin.replace(/\/$/, '')
  }

  async #call (method: string, path: string, options: CallOptions = {}): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json', ...options.headers }
    if (UNSAFE.has(method)) headers['x-csrf'] = '1'
    let body: string | undefined
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(options.body)
    }
    let response: Response
    try {
      response = await fetch(`${this.origin}${path}`, { method, headers, body, credentials: 'include' })
    } catch {
      // The browser hides why (down, refused by CORS, blocked by CSP); say what to check.
      throw new ApiError(0, {
        detail: `No answer from the BFF at ${this.origin}: it is not running, or it does not list this page's origin (${location.origin}) in CORS_ORIGINS.`
      }, undefined, undefined)
    }
    const text = await response.text()
    let parsed: unknown
    if (text !== '' && /json/.test(response.headers.get('content-type') ?? '')) {
      try {
        parsed = JSON.parse(text)
      } catch {
        parsed = undefined
      }
    }
    if (!response.ok) {
      const problem = typeof parsed === 'object' && parsed !== null ? parsed as Problem : {}
      throw new ApiError(response.status, problem, response.headers.get('x-request-id') ?? undefined, parseRetryAfter(response.headers.get('retry-after')))
    }
    return { status: response.status, headers: response.headers, body: parsed }
  }

  /** Signs in; the BFF sets the session cookie. The token in the answer is deliberately dropped. */
  async login (username: string, password: string): Promise<{ sub: string, orgs: Orgs, expiresAt: string }> {
    const answer = await this.#call('POST', '/auth/login', { body: { username, password } })
    const body = answer.body as { user: { sub: string, orgs: Orgs }, expires_at: string }
    return { sub: body.user.sub, orgs: body.user.orgs, expiresAt: body.expires_at }
  }

  /** The session the cookie carries; ApiError 401 when there is none. */
  async session (): Promise<SessionInfo> {
    return (await this.#call('GET', '/auth/session')).body as SessionInfo
  }

  /**
   * Ends the session. After single sign-on the BFF may answer where to send the browser so that
   * the identity provider's session ends too; the provider then sends it back to `returnTo`.
   */
  async logout (returnTo: string): Promise<{ endSessionUrl: string | undefined }> {
    const answer = await this.#call('POST', `/auth/logout?return_to=${encodeURIComponent(returnTo)}`)
    const url = (answer.body as { end_session_url?: unknown } | undefined)?.end_session_url
    return { endSessionUrl: typeof url === 'string' && /^https?:\/\//.test(url) ? url : undefined }
  }

  /** Where to send the browser for single sign-on; the BFF comes back to `returnTo`. */
  ssoLoginUrl (returnTo: string): string {
    return `${this.origin}/auth/oidc/login?return_to=${encodeURIComponent(returnTo)}`
  }

  /** Whether the BFF offers single sign-on (its login route exists). Never follows the redirect. */
  async ssoOffered (): Promise<boolean> {
    try {
      // No cookies either way: the probe must not start a sign-in of its own.
      const response = await fetch(this.ssoLoginUrl(`${location.origin}${location.pathname}`), { credentials: 'omit', redirect: 'manual' })
      return response.type === 'opaqueredirect' || (response.status !== 404 && response.status !== 0)
    } catch {
      return false
    }
  }

  async listContacts (org: number): Promise<Contact[]> {
    return (await this.#call('GET', `/api/v1/organisation/${org}/contact`)).body as Contact[]
  }

  async getContact (org: number, id: number): Promise<Tagged<Contact>> {
    const answer = await this.#call('GET', `/api/v1/organisation/${org}/contact/${id}`)
    return { value: answer.body as Contact, etag: answer.headers.get('etag') ?? undefined }
  }

  /**
   * Creates a contact. Send the same `idempotencyKey` again for a retry of the same body (after a
   * network failure, say): the BFF then answers the first result instead of creating a second contact.
   */
  async createContact (org: number, body: ContactChanges & { type: { id: number } }, idempotencyKey: string): Promise<Created> {
    const answer = await this.#call('POST', `/api/v1/organisation/${org}/contact`, { body, headers: { 'idempotency-key': idempotencyKey } })
    const created = answer.body as Partial<Contact> | undefined
    return {
      contact: typeof created?.id === 'number' ? created as Contact : undefined,
      replayed: answer.headers.get('idempotency-replayed') === 'true'
    }
  }

  /**
   * Changes the given fields only. With the `etag` of the read, a change someone else made in
   * between is refused with 412 PRECONDITION_FAILED instead of being overwritten.
   */
  async updateContact (org: number, id: number, changes: ContactChanges, etag: string | undefined): Promise<Tagged<Contact> | undefined> {
    const headers: Record<string, string> = { prefer: 'return=representation' }
    if (etag !== undefined) headers['if-match'] = etag
    const answer = await this.#call('PATCH', `/api/v1/organisation/${org}/contact/${id}`, { body: changes, headers })
    // 204: the change happened but the read-back failed; the caller reads again.
    if (answer.status === 204) return undefined
    return { value: answer.body as Contact, etag: answer.headers.get('etag') ?? undefined }
  }

  async deleteContact (org: number, id: number, etag: string | undefined): Promise<void> {
    await this.#call('DELETE', `/api/v1/organisation/${org}/contact/${id}`, { headers: etag === undefined ? {} : { 'if-match': etag } })
  }

  async countries (): Promise<Country[]> {
    return (await this.#call('GET', '/api/v1/country')).body as Country[]
  }
}
