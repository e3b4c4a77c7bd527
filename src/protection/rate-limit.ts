import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { Problem } from '../errors/problems.ts'
import { keyHash, type SharedRedis } from '../state/redis.ts'

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

/** The policy's name in both fields: one quota per session (per client IP without one). */
export const RATE_LIMIT_POLICY_NAME = 'session'

/** `RateLimit-Policy` (IETF draft): the quota `q` per window of `w` seconds. */
export function rateLimitPolicy (quota: number, windowSeconds: number): string {
  return `"${RATE_LIMIT_POLICY_NAME}";q=${quota};w=${windowSeconds}`
}

/** `RateLimit` (IETF draft): `r` requests remaining, `t` seconds until the window resets. */
export function rateLimitState (remaining: number, secondsLeft: number): string {
  return `"${RATE_LIMIT_POLICY_NAME}";r=${remaining};t=${secondsLeft}`
}

/** What the per-session limit counts with: one synchronous hit per request. */
export interface HitCounter {
  readonly size: number
  readonly capacity: number
  hit: (key: string) => Readonly<Window>
  secondsLeft: (window: Readonly<Window>) => number
}

/**
 * Fixed one-minute windows per key, in memory, bounded. Synchronous: the plugin's
 * `createRateLimit` costs several promises and microtask hops per request for a store that is
 * a plain map anyway.
 */
export class WindowCounter implements HitCounter {
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

interface SharedWindow extends Window {
  /** Epoch-aligned window number: every instance of the fleet agrees on it. */
  id: number
  /** The fleet's count as Redis last answered it (this instance's synced hits included). */
  fleet: number
  /** Hits counted here and not yet added in Redis. */
  unsynced: number
}

/**
 * The fleet's per-key count without a Redis round trip per request: hits are counted here at
 * once and added to Redis every `syncMs` in one pipeline, which answers the fleet's totals. The
 * fleet may therefore overshoot a limit by what the other instances admit within one sync
 * interval. Windows are epoch-aligned so all instances share them; while Redis is unreachable
 * each instance counts alone. Keys reach Redis only as hashes.
 */
export class SharedWindowCounter implements HitCounter {
  readonly #windows = new Map<string, SharedWindow>()
  readonly #dirty = new Set<string>()
  readonly #windowMs: number
  readonly #capacity: number
  readonly #now: () => number
  readonly #redis: SharedRedis
  readonly #timer: NodeJS.Timeout
  #syncing = false

  constructor (redis: SharedRedis, options: { windowMs?: number, capacity?: number, syncMs?: number, now?: () => number } = {}) {
    this.#redis = redis
    this.#windowMs = options.windowMs ?? WINDOW_MS
    this.#capacity = options.capacity ?? MAX_TRACKED_KEYS
    this.#now = options.now ?? Date.now
    this.#timer = setInterval(() => { this.sync().catch(() => {}) }, options.syncMs ?? 100)
    this.#timer.unref()
  }

  get size (): number {
    return this.#windows.size
  }

  get capacity (): number {
    return this.#capacity
  }

  secondsLeft (window: Readonly<Window>): number {
    return Math.max(1, Math.ceil((window.resetAt - this.#now()) / 1000))
  }

  hit (key: string): Readonly<Window> {
    const id = Math.floor(this.#now() / this.#windowMs)
    let window = this.#windows.get(key)
    if (window === undefined || window.id !== id) {
      if (window !== undefined) this.#windows.delete(key)
      else if (this.#windows.size >= this.#capacity) {
        const oldest = this.#windows.keys().next().value as string
        this.#windows.delete(oldest)
        this.#dirty.delete(oldest)
      }
      window = { id, fleet: 0, unsynced: 0, count: 0, resetAt: (id + 1) * this.#windowMs }
      this.#windows.set(key, window)
    }
    window.unsynced++
    window.count = window.fleet + window.unsynced
    this.#dirty.add(key)
    return window
  }

  /** Adds the unsynced hits in Redis and takes in the fleet's totals. */
  async sync (): Promise<void> {
    if (this.#syncing || this.#dirty.size === 0 || !this.#redis.up) return
    this.#syncing = true
    const batch: Array<{ key: string, window: SharedWindow, delta: number }> = []
    const pipeline = this.#redis.client.pipeline()
    for (const key of this.#dirty) {
      const window = this.#windows.get(key)
      if (window === undefined || window.unsynced === 0) continue
      const name = this.#redis.key(`rl:${keyHash(key)}:${window.id}`)
      pipeline.incrby(name, window.unsynced)
      pipeline.pexpireat(name, window.resetAt + this.#windowMs)
      batch.push({ key, window, delta: window.unsynced })
    }
    this.#dirty.clear()
    try {
      const results = await pipeline.exec()
      batch.forEach(({ key, window, delta }, i) => {
        const [error, total] = results?.[i * 2] ?? [new Error('no reply')]
        if (error !== null || typeof total !== 'number') {
          this.#redirty(key, window)
          return
        }
        window.unsynced -= delta
        window.fleet = total
        window.count = window.fleet + window.unsynced
      })
    } catch {
      for (const { key, window } of batch) this.#redirty(key, window)
    } finally {
      this.#syncing = false
    }
  }

  close (): void {
    clearInterval(this.#timer)
  }

  // Retried on the next sync, unless the window has passed or the key was dropped meanwhile.
  #redirty (key: string, window: SharedWindow): void {
    if (this.#windows.get(key) === window) this.#dirty.add(key)
  }
}

export interface SessionRateLimit {
  /** The counts behind the limit (its size is exported as a metric). */
  counter: HitCounter
  /** For the session plugin: counts a request it is about to refuse, so unauthenticated floods are limited per IP. */
  onReject: (request: FastifyRequest, reply: FastifyReply) => void
}

/**
 * The per-session limit of routes marked `config: { sessionRateLimit: true }`, on a
 * WindowCounter. It runs first among the route's own onRequest hooks, after the
 * global session hook: over the limit, nothing is parsed, validated or sent upstream. Answers carry
 * the two fields of the IETF draft (draft-ietf-httpapi-ratelimit-headers-11): `RateLimit-Policy`
 * (quota and window) and `RateLimit` (what is left and when it resets). Register before the routes.
 */
export function sessionRateLimit (app: FastifyInstance, max: number, counter: HitCounter = new WindowCounter(WINDOW_MS)): SessionRateLimit {
  const policy = rateLimitPolicy(max, WINDOW_MS / 1000)

  function count (request: FastifyRequest, reply: FastifyReply): void {
    const window = counter.hit(sessionKey(request))
    const remaining = max - window.count
    const seconds = counter.secondsLeft(window)
    reply.header('ratelimit-policy', policy).header('ratelimit', rateLimitState(Math.max(0, remaining), seconds))
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
