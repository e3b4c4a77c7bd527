import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { keyHash, type SharedRedis } from '../state/redis.ts'

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
    // Still over: the name tracked longest ago goes first.
    if (this.#tracked.size > this.#maxUsers) {
      const oldest = this.#tracked.keys().next().value as string
      this.#tracked.delete(oldest)
      this.#memory.delete(oldest).catch(() => false)
    }
  }
}
