import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { Problem } from '../errors/problems.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Counted against RATE_LIMIT_PER_MINUTE: per session `sub`, per client IP without a valid session. */
    sessionRateLimit?: boolean
  }
}

const WINDOW_MS = 60_000
/** Keys tracked at once; beyond it the window that started first is dropped (it is the nearest to its reset anyway). */
export const MAX_TRACKED_KEYS = 10_000

function sessionKey (request: FastifyRequest): string {
  return request.session === null ? `ip:${request.ip}` : `sub:${request.session.sub}`
}

interface Window { count: number, resetAt: number }

/**
 * Fixed one-minute windows per key, in memory, bounded. Synchronous: the plugin's
 * `createRateLimit` costs several promises and microtask hops per request for a store that is
 * a plain map anyway.
 */
export class WindowCounter {
  readonly #windows = new Map<string, Window>()
  readonly #windowMs: number
  readonly #capacity: number
  readonly #now: () => number

  constructor (windowMs: number, capacity = MAX_TRACKED_KEYS, now: () => number = Date.now) {
    this.#windowMs = windowMs
    this.#capacity = capacity
    this.#now = now
  }

  get size (): number {
    return this.#windows.size
  }

  get capacity (): number {
    return this.#capacity
  }

  /** Whole seconds until `window` resets, at least 1. */
  secondsLeft (window: Readonly<Window>): number {
    return Math.max(1, Math.ceil((window.resetAt - this.#now()) / 1000))
  }

  /** Counts one hit for `key` and returns its window. */
  hit (key: string): Readonly<Window> {
    const now = this.#now()
    let window = this.#windows.get(key)
    if (window !== undefined && window.resetAt > now) {
      window.count++
      return window
    }
    // A new window goes to the end of the map, so the first entry is always the oldest window.
    if (window !== undefined) this.#windows.delete(key)
    else if (this.#windows.size >= this.#capacity) this.#windows.delete(this.#windows.keys().next().value as string)
    window = { count: 1, resetAt: now + this.#windowMs }
    this.#windows.set(key, window)
    return window
  }
}

export interface SessionRateLimit {
  /** The counts behind the limit (its size is exported as a metric). */
  counter: WindowCounter
  /** For the session plugin: counts a request it is about to refuse, so unauthenticated floods are limited per IP. */
  onReject: (request: FastifyRequest, reply: FastifyReply) => void
}

/**
 * The per-session limit of routes marked `config: { sessionRateLimit: true }`, on a
 * WindowCounter. It runs first among the route's own onRequest hooks, after the
 * global session hook: over the limit, nothing is parsed, validated or sent upstream. Answers carry
 * both the IETF draft `RateLimit-*` and the common `X-RateLimit-*` headers. Register before the
 * routes.
 */
export function sessionRateLimit (app: FastifyInstance, max: number, counter = new WindowCounter(WINDOW_MS)): SessionRateLimit {
  const policy = `${max};w=${WINDOW_MS / 1000}`
  const limit = String(max)

  function count (request: FastifyRequest, reply: FastifyReply): void {
    const window = counter.hit(sessionKey(request))
    const remaining = max - window.count
    const seconds = counter.secondsLeft(window)
    const reset = String(seconds)
    const left = String(Math.max(0, remaining))
    reply.header('ratelimit-policy', policy)
      .header('ratelimit-limit', limit).header('ratelimit-remaining', left).header('ratelimit-reset', reset)
      .header('x-ratelimit-limit', limit).header('x-ratelimit-remaining', left).header('x-ratelimit-reset', reset)
    if (remaining < 0) {
      throw new Problem('RATE_LIMITED', { detail: 'Too many requests for this session; try again later', retryAfter: seconds })
    }
  }

  function limitBySession (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    count(request, reply)
    done()
  }

  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.config?.sessionRateLimit !== true) return
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [limitBySession, ...own]
  })

  return {
    counter,
    onReject: (request, reply) => {
      if (request.routeOptions.config.sessionRateLimit === true) count(request, reply)
    }
  }
}
