import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { LoggerOptions, DestinationStream } from 'pino'
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

export function loggerOptions (level: string, stream?: DestinationStream): LoggerOptions & { stream?: DestinationStream } {
  return {
    level,
    base: { service: 'emnify-bff' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Only the fields an operator needs; Fastify's default serialiser would add host and port.
    serializers: {
      req: (req: { method: string, url: string }) => ({ method: req.method, url: req.url })
    },
    ...(stream === undefined ? {} : { stream })
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

interface AccessLine {
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
}

/**
 * One access line per request (Fastify's default writes two), with the route template, the
 * actor and, for requests that called emnify, the time spent there and the last outcome.
 */
export class AccessLog extends LogController {
  constructor () {
    super({ requestIdLogLabel: 'request_id' })
  }

  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line: AccessLine = {
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
    if (error) reply.log.error({ ...line, err: error }, 'request errored')
    else reply.log.info(line, 'request completed')
  }
}
