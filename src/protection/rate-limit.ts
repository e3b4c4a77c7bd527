import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { Problem } from '../errors/problems.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Counted against RATE_LIMIT_PER_MINUTE: per session `sub`, per client IP without a valid session. */
    sessionRateLimit?: boolean
  }
}

const WINDOW_MS = 60_000

// The session hook has run by then: a verified `sub` is the key; a forged one never gets this far.
function sessionKey (request: FastifyRequest): string {
  return request.session === null ? `ip:${request.ip}` : `sub:${request.session.sub}`
}

export interface SessionRateLimit {
  /** For the session plugin: counts a request it is about to refuse, so unauthenticated floods are limited per IP. */
  onReject: (request: FastifyRequest, reply: FastifyReply) => Promise<void> | undefined
}

/**
 * The per-session limit of routes marked `config: { sessionRateLimit: true }`, on
 * @fastify/rate-limit's store. It runs first among the route's own onRequest hooks, after the
 * global session hook: over the limit, nothing is parsed, validated or sent upstream. Answers carry
 * both the IETF draft `RateLimit-*` and the common `X-RateLimit-*` headers. Register before the
 * routes; needs @fastify/rate-limit registered.
 */
export function sessionRateLimit (app: FastifyInstance, max: number): SessionRateLimit {
  const check = app.createRateLimit({ max, timeWindow: WINDOW_MS, keyGenerator: sessionKey })
  const policy = `${max};w=${WINDOW_MS / 1000}`
  const limit = String(max)

  async function limitBySession (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const result = await check(request)
    if (result.isAllowed) return
    const remaining = String(result.remaining)
    const reset = String(Math.max(1, result.ttlInSeconds))
    reply.header('ratelimit-policy', policy)
      .header('ratelimit-limit', limit).header('ratelimit-remaining', remaining).header('ratelimit-reset', reset)
      .header('x-ratelimit-limit', limit).header('x-ratelimit-remaining', remaining).header('x-ratelimit-reset', reset)
    if (result.isExceeded) {
      throw new Problem('RATE_LIMITED', { detail: 'Too many requests for this session; try again later', retryAfter: Math.max(1, result.ttlInSeconds) })
    }
  }

  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.config?.sessionRateLimit !== true) return
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [limitBySession, ...own]
  })

  return {
    onReject: (request, reply) => request.routeOptions.config.sessionRateLimit === true ? limitBySession(request, reply) : undefined
  }
}
