import { Problem, type ProblemField } from '../errors/problems.ts'
import { TransportError, type UpstreamResponse } from './http.ts'

const DEFAULT_RETRY_AFTER_S = { unavailable: 5, rateLimited: 60 }
const MAX_RETRY_AFTER_S = 300
const MAX_MESSAGE = 300
// Redaction patterns backtrack; bodies can be 256 KiB, and only MAX_MESSAGE characters are shown.
const MAX_INPUT = 1024
const MAX_ERRORS = 20

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
 * Upstream messages are shown to frontends, so they lose anything that could identify
 * infrastructure or carry a credential: URLs, IP addresses, host names, JWTs, control characters.
 */
export function sanitiseMessage (value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  // Cut at a space, so no half of a secret escapes the patterns below.
  const input = value.length > MAX_INPUT ? value.slice(0, MAX_INPUT).replace(/\S*$/, '') : value
  let text = input
    // eslint-disable-next-line no-control-regex -- removing control characters is the point
    .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ')
    .replace(/\beyJ[\w-]*\.[\w-]*\.?[\w-]*/g, '[redacted]')
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, '[url]')
    .replace(/\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b/g, '[address]')
    // Compressed IPv6 (`::1`, `fe80::1`, `[2001:db8::1]:443`), which the next pattern only sees in part.
    .replace(/\[?(?<![\w:])(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{0,4}::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{0,4}(?:%[\w.-]+)?\]?(?::\d+)?/gi, '[address]')
    .replace(/\[?\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{0,4}\]?/gi, '[address]')
    // Host names, but not the domain of an e-mail address (`alice@mail.example.com` stays readable).
    .replace(/(?:((?<![\w.+-])[\w.+-]+@)|(?<!@)\b)(?:[a-z0-9-]+\.)+(?:net|com|org|io|internal|local|cloud|aws|amazonaws)\b(?::\d+)?/gi,
      (host: string, mailbox: string | undefined) => mailbox === undefined ? '[host]' : host)
    .replace(/\s+/g, ' ')
    .trim()
  if (text.length > MAX_MESSAGE) text = text.slice(0, MAX_MESSAGE - 1) + '…'
  return text === '' ? undefined : text
}

/** Parses an error body defensively: emnify's `{error_code,error_token,message,errors}`, the gateway's `{message}`, or anything. */
export function parseErrorBody (body: Buffer): { message?: string, errors: string[] } {
  if (body.length === 0) return { errors: [] }
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return { errors: [] }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { errors: [] }
  const record = parsed as Record<string, unknown>
  const errors: string[] = []
  if (Array.isArray(record.errors)) {
    for (const item of record.errors.slice(0, MAX_ERRORS)) {
      const message = sanitiseMessage(typeof item === 'string' ? item : (item as Record<string, unknown> | null)?.message)
      if (message !== undefined) errors.push(message)
    }
  }
  const message = sanitiseMessage(record.message)
  return message === undefined ? { errors } : { message, errors }
}

/** Maps a non-2xx contact answer (401 is handled by the client's re-auth) to the BFF's problem. */
export function problemForStatus (response: UpstreamResponse): Problem {
  const { status } = response
  switch (status) {
    case 400:
    case 422: {
      const { message, errors } = parseErrorBody(response.body)
      const fields: ProblemField[] = errors.map((detail) => ({ pointer: '', detail, in: 'upstream' as const }))
      return new Problem('UPSTREAM_VALIDATION_FAILED', {
        detail: message ?? errors[0] ?? 'emnify rejected the change',
        errors: fields.length > 0 ? fields : undefined
      })
    }
    case 401:
      return new Problem('UPSTREAM_AUTH_FAILED', { detail: 'emnify rejected the service credential' })
    case 403:
      return new Problem('UPSTREAM_FORBIDDEN', { detail: 'The service credential is not allowed to do this at emnify' })
    case 404:
      return new Problem('CONTACT_NOT_FOUND', { detail: 'emnify has no such contact in this organisation' })
    case 409:
      return new Problem('UPSTREAM_CONFLICT', { detail: parseErrorBody(response.body).message ?? 'emnify reported a conflict' })
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
