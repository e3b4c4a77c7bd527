import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { keyHash, type SharedRedis } from '../state/redis.ts'

/**
 * Failed logins per username: after `maxFailures` within `windowMs`, further attempts are
 * refused until the oldest of those failures leaves the window. A success clears the record.
 * Memory is bounded: at most `maxUsers` usernames are tracked, oldest first out.
 */
export class LoginLimiter {
  readonly #failures = new Map<string, number[]>()
  readonly #maxFailures: number
  readonly #windowMs: number
  readonly #maxUsers: number
  readonly #now: () => number

  constructor (options: { maxFailures?: number, windowMs?: number, maxUsers?: number, now?: () => number } = {}) {
    this.#maxFailures = options.maxFailures ?? 5
    this.#windowMs = options.windowMs ?? 15 * 60_000
    this.#maxUsers = options.maxUsers ?? 50_000
    this.#now = options.now ?? Date.now
  }

  // Case-folded so "Alice" and "alice" share one budget.
  static #key (username: string): string {
    return username.toLowerCase()
  }

  get size (): number {
    return this.#failures.size
  }

  get capacity (): number {
    return this.#maxUsers
  }

  #recent (key: string, now: number): number[] {
    const times = this.#failures.get(key)
    if (times === undefined) return []
    const recent = times.filter((at) => now - at < this.#windowMs)
    if (recent.length === 0) this.#failures.delete(key)
    else if (recent.length !== times.length) this.#failures.set(key, recent)
    return recent
  }

  /** Seconds until the username may try again, or 0 when it may try now. */
  blockedFor (username: string): number {
    const now = this.#now()
    const recent = this.#recent(LoginLimiter.#key(username), now)
    if (recent.length < this.#maxFailures) return 0
    const oldest = recent[recent.length - this.#maxFailures] as number
    return Math.max(1, Math.ceil((oldest + this.#windowMs - now) / 1000))
  }

  fail (username: string): void {
    const now = this.#now()
    const key = LoginLimiter.#key(username)
    const recent = this.#recent(key, now)
    recent.push(now)
    // Only the newest maxFailures matter for the decision.
    if (recent.length > this.#maxFailures) recent.splice(0, recent.length - this.#maxFailures)
    this.#failures.delete(key) // re-insert: Map order is then least-recently-failed first
    this.#failures.set(key, recent)
    if (this.#failures.size > this.#maxUsers) {
      const oldest = this.#failures.keys().next().value
      if (oldest !== undefined) this.#failures.delete(oldest)
    }
  }

  succeed (username: string): void {
    this.#failures.delete(LoginLimiter.#key(username))
  }
}

/**
 * Failed logins per username, on rate-limiter-flexible: memory for one instance, Redis for a
 * fleet (with a memory insurance limiter while Redis is unreachable). `attempt` counts first
 * and answers after, so parallel guesses cannot all slip past the limit; a success clears the
 * count. The window is fixed from the first failure: 5 within 15 minutes lock the name until
 * 15 minutes after that first one. Usernames reach Redis only as hashes.
 */
export class LoginLockout {
  readonly #limiter: RateLimiterAbstract
  /** Names the memory limiter tracks, with when each lapses: bounds it (the library does not). */
  readonly #tracked = new Map<string, number>()
  readonly #maxUsers: number
  readonly #now: () => number
  readonly #memory: RateLimiterMemory

  constructor (options: { maxFailures?: number, windowMs?: number, maxUsers?: number, now?: () => number, redis?: SharedRedis } = {}) {
    const points = options.maxFailures ?? 5
    const duration = Math.max(1, Math.round((options.windowMs ?? 15 * 60_000) / 1000))
    this.#maxUsers = options.maxUsers ?? 50_000
    this.#now = options.now ?? Date.now
    this.#memory = new RateLimiterMemory({ points, duration, keyPrefix: 'login' })
    this.#limiter = options.redis === undefined
      ? this.#memory
      : new RateLimiterRedis({
        storeClient: options.redis.client,
        keyPrefix: options.redis.key('login'),
        points,
        duration,
        // Straight to the insurance while disconnected, instead of a failed round trip per login.
        rejectIfRedisNotReady: true,
        insuranceLimiter: this.#memory
      })
  }

  static #key (username: string): string {
    // Case-folded so "Alice" and "alice" share one budget; hashed, so no username reaches Redis.
    return keyHash(username.toLowerCase())
  }

  get size (): number {
    return this.#tracked.size
  }

  get capacity (): number {
    return this.#maxUsers
  }

  /** Counts one attempt; answers 0 when it may go ahead, else the seconds until the name may try again. */
  async attempt (username: string): Promise<number> {
    const key = LoginLockout.#key(username)
    try {
      const result = await this.#limiter.consume(key)
      this.#track(key, result.msBeforeNext)
      return 0
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error
      this.#track(key, error.msBeforeNext)
      return Math.max(1, Math.ceil(error.msBeforeNext / 1000))
    }
  }

  async succeed (username: string): Promise<void> {
    const key = LoginLockout.#key(username)
    this.#tracked.delete(key)
    await Promise.all([this.#limiter, this.#memory].map((limiter) => limiter.delete(key).catch(() => false)))
  }

  #track (key: string, msLeft: number): void {
    const now = this.#now()
    this.#tracked.delete(key)
    this.#tracked.set(key, now + msLeft)
    if (this.#tracked.size <= this.#maxUsers) return
    for (const [name, until] of this.#tracked) {
      if (until <= now) this.#tracked.delete(name)
    }
    // Still over: the name tracked longest ago goes first, as in LoginLimiter.
    if (this.#tracked.size > this.#maxUsers) {
      const oldest = this.#tracked.keys().next().value as string
      this.#tracked.delete(oldest)
      this.#memory.delete(oldest).catch(() => false)
    }
  }
}
