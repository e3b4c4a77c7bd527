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
