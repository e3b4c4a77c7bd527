import { Type, type Static } from 'typebox'

/**
 * Every error the BFF can answer with, in one table: the HTTP status, the title shown to
 * frontends, and whether it is safe to retry later (Retry-After).
 */
export const PROBLEMS = {
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed' },
  MALFORMED_JSON: { status: 400, title: 'Request body is not valid JSON' },
  UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  INVALID_CREDENTIALS: { status: 401, title: 'Invalid username or password' },
  CSRF_HEADER_REQUIRED: { status: 403, title: 'CSRF header required' },
  ORGANISATION_FORBIDDEN: { status: 403, title: 'Organisation not allowed for this session' },
  INSUFFICIENT_SCOPE: { status: 403, title: 'Session lacks the scope this route needs' },
  OIDC_LOGIN_FAILED: { status: 401, title: 'Single sign-on failed' },
  OIDC_NO_ORGANISATIONS: { status: 403, title: 'The identity provider names no organisations for this user' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  REQUEST_TIMEOUT: { status: 408, title: 'Request not received in time' },
  CONTACT_NOT_FOUND: { status: 404, title: 'Contact not found' },
  UPSTREAM_CONFLICT: { status: 409, title: 'Conflict reported by emnify' },
  IDEMPOTENCY_KEY_IN_USE: { status: 409, title: 'A request with this Idempotency-Key is still in progress' },
  PRECONDITION_FAILED: { status: 412, title: 'The contact changed since it was read' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Request body too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  UPSTREAM_VALIDATION_FAILED: { status: 422, title: 'emnify rejected the change' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency-Key reused with another body' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  HEADERS_TOO_LARGE: { status: 431, title: 'Request headers too large' },
  INTERNAL_ERROR: { status: 500, title: 'Internal server error' },
  UPSTREAM_ERROR: { status: 502, title: 'emnify answered with an error' },
  UPSTREAM_AUTH_FAILED: { status: 502, title: 'Could not authenticate with emnify' },
  UPSTREAM_FORBIDDEN: { status: 502, title: 'The service credential lacks rights at emnify' },
  UPSTREAM_UNAVAILABLE: { status: 503, title: 'emnify is unavailable' },
  UPSTREAM_RATE_LIMITED: { status: 503, title: 'emnify rate limit reached' },
  UPSTREAM_BUDGET_EXHAUSTED: { status: 503, title: 'Upstream request budget exhausted' },
  STORE_UNAVAILABLE: { status: 503, title: 'Shared store unavailable' },
  OIDC_PROVIDER_UNAVAILABLE: { status: 503, title: 'The identity provider is unavailable' },
  SHUTTING_DOWN: { status: 503, title: 'Service is shutting down' },
  OVERLOADED: { status: 503, title: 'Service is overloaded' },
  UPSTREAM_TIMEOUT: { status: 504, title: 'emnify did not answer in time' }
} as const satisfies Record<string, { status: number, title: string }>

export type ProblemCode = keyof typeof PROBLEMS

export const PROBLEM_TYPE_BASE = 'urn:emnify-bff:problem:'

export function problemType (code: ProblemCode): string {
  return PROBLEM_TYPE_BASE + code.toLowerCase().replaceAll('_', '-')
}

export const ProblemFieldSchema = Type.Object({
  pointer: Type.String({ description: 'JSON Pointer (RFC 6901) into the request part named by `in`' }),
  detail: Type.String(),
  in: Type.Optional(Type.Union([Type.Literal('body'), Type.Literal('path'), Type.Literal('header'), Type.Literal('upstream')]))
})

export const ProblemSchema = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  instance: Type.String(),
  code: Type.String(),
  request_id: Type.String(),
  errors: Type.Optional(Type.Array(ProblemFieldSchema))
}, { description: 'RFC 9457 problem details' })

export type ProblemField = Static<typeof ProblemFieldSchema>
export type ProblemBody = Static<typeof ProblemSchema>

export interface ProblemOptions {
  detail?: string
  errors?: ProblemField[]
  /** Seconds, sent as Retry-After. */
  retryAfter?: number
  cause?: unknown
}

/** A domain error with a known code; the error handler turns it into problem+json. */
export class Problem extends Error {
  readonly code: ProblemCode
  readonly status: number
  readonly detail: string
  readonly errors: ProblemField[] | undefined
  retryAfter: number | undefined

  constructor (code: ProblemCode, options: ProblemOptions = {}) {
    super(options.detail ?? PROBLEMS[code].title, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'Problem'
    this.code = code
    this.status = PROBLEMS[code].status
    this.detail = options.detail ?? PROBLEMS[code].title
    this.errors = options.errors
    this.retryAfter = options.retryAfter
  }

  /** The same failure with a shorter Retry-After, for requests failing fast inside a backoff window. */
  withRetryAfter (seconds: number): Problem {
    // The cause stays: logs name what failed (connect refused, timeout) behind the copy too.
    return new Problem(this.code, { detail: this.detail, errors: this.errors, retryAfter: seconds, cause: this.cause })
  }
}

export function isProblem (error: unknown): error is Problem {
  return error instanceof Problem
}
