// Response helpers and the error bodies emnify (and its edge gateway) answer with.
import { STATUS_CODES } from 'node:http'
import type { ServerResponse } from 'node:http'

export interface EmnifyError {
  error_code: number
  error_token: string
  message: string
  errors?: EmnifyError[]
}

export function emnifyError (code: number, token: string, message: string): EmnifyError {
  return { error_code: code, error_token: token, message }
}

export const errors = {
  badRequest: (message = 'Bad request') => emnifyError(1000, 'BadRequest', message),
  invalidToken: () => emnifyError(1102, 'InvalidToken', 'Invalid token'),
  tokenExpired: () => emnifyError(1103, 'TokenExpired', 'Token expired'),
  forbidden: () => emnifyError(1104, 'Forbidden', 'Forbidden'),
  tooManyRequests: () => emnifyError(1105, 'TooManyRequests', 'Too many requests'),
  notFound: (message = 'Not found') => emnifyError(1201, 'NotFound', message),
  duplicated: () => emnifyError(1405, 'Duplicated', 'Duplicated'),
  validation: (messages: readonly string[]): EmnifyError => ({
    ...emnifyError(1400, 'InputValidationFailed', 'Validation failed'),
    errors: messages.map((message) => emnifyError(1400, 'InputValidationFailed', message))
  }),
  /** What the edge gateway (not emnify itself) answers, e.g. for a malformed bearer token. */
  gateway: (message: string) => ({ message })
}

/** The body emnify would most plausibly send with `status`; `undefined` means an empty body. */
export function defaultBodyFor (status: number): unknown {
  switch (status) {
    case 400: return errors.badRequest()
    case 401: return errors.invalidToken()
    case 403: return errors.forbidden()
    case 404: return errors.notFound()
    case 409: return errors.duplicated()
    case 422: return errors.validation(['Validation failed'])
    case 429: return errors.tooManyRequests()
    case 500: return errors.gateway('Internal server error')
    case 502: return errors.gateway('Bad Gateway')
    case 503: return errors.gateway('Service Unavailable')
    case 504: return errors.gateway('Endpoint request timed out')
  }
  if (status === 204 || status === 304 || (status >= 300 && status < 400)) return undefined
  if (status >= 200 && status < 300) return {}
  return errors.gateway(STATUS_CODES[status] ?? 'Error')
}

/** An answer before it is written, so a fault can bend it (see faults.ts). */
export interface Reply {
  status: number
  /** A JSON value; undefined sends no body. */
  body?: unknown
  headers?: Record<string, string>
}

export function json (status: number, body: unknown, headers?: Record<string, string>): Reply {
  return headers === undefined ? { status, body } : { status, body, headers }
}

export function empty (status: number, headers?: Record<string, string>): Reply {
  return headers === undefined ? { status } : { status, headers }
}

export function send (res: ServerResponse, reply: Reply): void {
  if (reply.body === undefined) sendEmpty(res, reply.status, reply.headers)
  else sendJson(res, reply.status, reply.body, reply.headers)
}

export function sendJson (res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  sendRaw(res, status, JSON.stringify(body), headers)
}

/** Sends `text` as-is with a JSON content type; an empty text sends no body and no content type. */
export function sendRaw (res: ServerResponse, status: number, text: string, headers?: Record<string, string>): void {
  if (text === '' || status === 204 || status === 304) {
    sendEmpty(res, status, headers)
    return
  }
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...headers
  })
  res.end(text)
}

/** For bugs in the simulator itself: answer 500 if still possible, else cut the connection. */
export function internalError (res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  sendJson(res, 500, errors.gateway('Internal server error'))
}

export function sendEmpty (res: ServerResponse, status: number, headers?: Record<string, string>): void {
  // 204/304 must not carry a content-length; everything else states its (zero) length for keep-alive.
  const length: Record<string, string> = status === 204 || status === 304 ? {} : { 'content-length': '0' }
  res.writeHead(status, { ...length, ...headers })
  res.end()
}
