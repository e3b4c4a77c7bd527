import { Problem, type ProblemCode } from '../errors/problems.ts'
import { TransportError, type UpstreamResponse } from './http.ts'
import { upstreamMessages } from './sanitise.ts'

const DEFAULT_RETRY_AFTER_S = { unavailable: 5, rateLimited: 60 }
const MAX_RETRY_AFTER_S = 300

/** Retry-After from the upstream (seconds or HTTP date), clamped; emnify usually sends none. */
export function retryAfterSeconds (header: string | string[] | undefined, fallback: number, now = Date.now()): number {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return fallback
  let seconds = /^\s*\d+\s*$/.test(value) ? Number(value) : (Date.parse(value) - now) / 1000
  if (!Number.isFinite(seconds)) return fallback
  seconds = Math.ceil(seconds)
  return Math.min(MAX_RETRY_AFTER_S, Math.max(1, seconds))
}

/**
 * Maps a non-2xx contact answer (401 is handled by the client's re-auth) to the BFF's problem.
 * `secrets`: configured values no upstream text may echo (see sanitise.ts).
 */
export function problemForStatus (response: UpstreamResponse, notFound: ProblemCode = 'CONTACT_NOT_FOUND', secrets: readonly string[] = []): Problem {
  const { status } = response
  switch (status) {
    case 400:
    case 422: {
      const { detail, errors } = upstreamMessages(response.body, secrets)
      return new Problem('UPSTREAM_VALIDATION_FAILED', {
        detail: detail ?? 'emnify rejected the change',
        errors: errors.length > 0 ? errors : undefined
      })
    }
    case 401:
      return new Problem('UPSTREAM_AUTH_FAILED', { detail: 'emnify rejected the service credential' })
    case 403:
      return new Problem('UPSTREAM_FORBIDDEN', { detail: 'The service credential is not allowed to do this at emnify' })
    case 404:
      return notFound === 'CONTACT_NOT_FOUND'
        ? new Problem('CONTACT_NOT_FOUND', { detail: 'emnify has no such contact in this organisation' })
        : new Problem(notFound, { detail: 'emnify answered 404 for a resource that always exists' })
    case 409:
      return new Problem('UPSTREAM_CONFLICT', { detail: upstreamMessages(response.body, secrets).detail ?? 'emnify reported a conflict' })
    case 429:
      return new Problem('UPSTREAM_RATE_LIMITED', {
        detail: 'emnify is rate limiting this service; try again later',
        retryAfter: retryAfterSeconds(response.headers['retry-after'], DEFAULT_RETRY_AFTER_S.rateLimited)
      })
    case 503:
      return new Problem('UPSTREAM_UNAVAILABLE', {
        detail: 'emnify is temporarily unavailable',
        retryAfter: retryAfterSeconds(response.headers['retry-after'], DEFAULT_RETRY_AFTER_S.unavailable)
      })
    default:
      return new Problem('UPSTREAM_ERROR', {
        detail: status >= 300 && status < 400
          ? 'emnify answered with a redirect, which is not followed'
          : `emnify answered with an unexpected status ${status}`
      })
  }
}

/** Maps the authenticate call's failures: rejections and unusable answers are auth failures. */
export function problemForAuthenticate (response: UpstreamResponse): Problem {
  if (response.status === 429 || response.status === 503) return problemForStatus(response)
  return new Problem('UPSTREAM_AUTH_FAILED', {
    detail: response.status < 300
      ? 'emnify answered authenticate without a usable auth_token'
      : `emnify refused to authenticate the service (status ${response.status})`
  })
}

export function problemForTransport (error: TransportError): Problem {
  switch (error.kind) {
    case 'timeout':
      return new Problem('UPSTREAM_TIMEOUT', { detail: 'emnify did not answer within the time budget', cause: error })
    case 'unreachable':
      return new Problem('UPSTREAM_UNAVAILABLE', { detail: 'emnify could not be reached', retryAfter: DEFAULT_RETRY_AFTER_S.unavailable, cause: error })
    case 'too_large':
      return new Problem('UPSTREAM_ERROR', { detail: 'emnify answered with an oversized response', cause: error })
    default:
      return new Problem('UPSTREAM_ERROR', { detail: 'The connection to emnify failed mid-request', cause: error })
  }
}
