import { Problem, PROBLEMS, type ProblemCode } from '../errors/problems.ts'
import type { SharedTokenStore } from '../state/types.ts'

export interface TokenCacheOptions {
  /** Performs one authenticate call; rejects with a Problem describing the failure. */
  fetchToken: () => Promise<string>
  now?: () => number
  random?: () => number
  /** How long to keep a token whose `exp` cannot be read. */
  fallbackLifetimeMs?: number
  /** First backoff window after a failed authenticate; doubles per failure up to maxBackoffMs. */
  minBackoffMs?: number
  maxBackoffMs?: number
  /**
   * A token fetched to replace a rejected one, and itself rejected within this time, points at
   * the credential rather than the token: do not re-authenticate again (protects emnify's
   * 100-authenticates-per-5-minutes allowance from a 401 storm).
   */
  minReauthAgeMs?: number
  onRefresh?: (event: { ok: boolean, expiresAt?: number }) => void
  /**
   * A fleet's shared token: one instance authenticates for all (it holds a lock for `lockTtlMs`,
   * which must outlive one authenticate call); the others wait for its token. When the store
   * fails, this instance authenticates on its own.
   */
  shared?: { store: SharedTokenStore, lockTtlMs: number }
}

export interface TokenTimes {
  /** When the token stops being usable (ms epoch). */
  expiresAt: number
  /** When to start fetching the next one (ms epoch). */
  refreshAt: number
}

const MAX_SKEW_MS = 60_000

/** Reads `exp` (and `iat`) from a JWT without verifying it: the BFF cannot, and only needs timing. */
export function tokenTimes (token: string, now: number, fallbackLifetimeMs: number): TokenTimes {
  const fallback = { expiresAt: now + fallbackLifetimeMs, refreshAt: now + fallbackLifetimeMs }
  const payload = token.split('.')[1]
  if (payload === undefined) return fallback
  let claims: { exp?: unknown, iat?: unknown }
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
  } catch {
    return fallback
  }
  if (claims === null || typeof claims !== 'object' || typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return fallback
  const expiresAt = claims.exp * 1000
  if (expiresAt <= now) return fallback
  // Lifetime from iat when present (independent of our clock), otherwise from now.
  const issuedAt = typeof claims.iat === 'number' && claims.iat * 1000 < expiresAt ? claims.iat * 1000 : now
  const skew = Math.min(MAX_SKEW_MS, (expiresAt - issuedAt) / 10)
  return { expiresAt, refreshAt: Math.max(now, expiresAt - skew) }
}

/**
 * The one upstream auth_token shared by all requests.
 *
 * - Cold or expired: exactly one authenticate call, however many requests wait for it.
 * - Inside the refresh skew: requests keep using the still-valid token while one background
 *   refresh runs, so refreshes never add latency.
 * - After a failed authenticate: exponential backoff with jitter; requests that need a token
 *   inside the window fail fast with the last failure and a Retry-After.
 */
export class TokenCache {
  #fetchToken: () => Promise<string>
  #now: () => number
  #random: () => number
  #fallbackLifetimeMs: number
  #minBackoffMs: number
  #maxBackoffMs: number
  #minReauthAgeMs: number
  #onRefresh: TokenCacheOptions['onRefresh']
  #shared: TokenCacheOptions['shared']

  #token: string | undefined
  #obtainedAt = 0
  /** The current token replaced one the upstream rejected. */
  #isReplacement = false
  #replacing = false
  /** The last token the upstream rejected: never taken back from the fleet. */
  #rejected: string | undefined
  #expiresAt = 0
  #refreshAt = 0
  #inflight: Promise<string> | undefined
  #failures = 0
  #blockedUntil = 0
  #lastFailure: Problem | undefined

  constructor (options: TokenCacheOptions) {
    this.#fetchToken = options.fetchToken
    this.#now = options.now ?? Date.now
    this.#random = options.random ?? Math.random
    this.#fallbackLifetimeMs = options.fallbackLifetimeMs ?? 5 * 60_000
    this.#minBackoffMs = options.minBackoffMs ?? 1000
    this.#maxBackoffMs = options.maxBackoffMs ?? 60_000
    this.#minReauthAgeMs = options.minReauthAgeMs ?? 5000
    this.#onRefresh = options.onRefresh
    this.#shared = options.shared
  }

  /** A usable token right now, or undefined when the caller has to wait (use `get`). */
  peek (): string | undefined {
    const now = this.#now()
    if (this.#token === undefined || now >= this.#expiresAt) return undefined
    if (now >= this.#refreshAt) this.#refreshInBackground(now)
    return this.#token
  }

  async get (): Promise<string> {
    return this.peek() ?? this.#waitForToken()
  }

  /** Seconds until the cached token expires (0 when there is none), for the metrics gauge. */
  expiresInSeconds (): number {
    if (this.#token === undefined) return 0
    return Math.max(0, (this.#expiresAt - this.#now()) / 1000)
  }

  /**
   * The upstream rejected `token` with 401. Drops it so the next `get` re-authenticates, and
   * answers whether a retry with a new token is worthwhile: no, when the token was itself a
   * fresh replacement for a rejected one.
   */
  reject (token: string): boolean {
    if (token !== this.#token) return true // already replaced by a concurrent request
    if (this.#isReplacement && this.#now() - this.#obtainedAt < this.#minReauthAgeMs) return false
    this.#token = undefined
    this.#rejected = token
    this.#replacing = true
    return true
  }

  /**
   * The upstream accepted `token` (a 2xx answer): it has proved itself, so a later 401 is a
   * revocation that deserves one re-authentication, however young the token is.
   */
  confirm (token: string): void {
    if (token === this.#token) this.#isReplacement = false
  }

  #waitForToken (): Promise<string> {
    if (this.#inflight !== undefined) return this.#inflight
    const now = this.#now()
    if (now < this.#blockedUntil && this.#lastFailure !== undefined) {
      return Promise.reject(this.#lastFailure.withRetryAfter(Math.max(1, Math.ceil((this.#blockedUntil - now) / 1000))))
    }
    return this.#refresh()
  }

  #refreshInBackground (now: number): void {
    if (this.#inflight !== undefined || now < this.#blockedUntil) return
    // Failures are recorded by #refresh; the current token stays usable until it expires.
    this.#refresh().catch(() => {})
  }

  #refresh (): Promise<string> {
    const inflight = this.#obtain().then(
      (token) => {
        const now = this.#now()
        const times = tokenTimes(token, now, this.#fallbackLifetimeMs)
        this.#token = token
        this.#obtainedAt = now
        this.#isReplacement = this.#replacing
        this.#replacing = false
        this.#expiresAt = times.expiresAt
        this.#refreshAt = times.refreshAt
        this.#failures = 0
        this.#blockedUntil = 0
        this.#lastFailure = undefined
        this.#inflight = undefined
        this.#onRefresh?.({ ok: true, expiresAt: times.expiresAt })
        return token
      },
      (error: unknown) => {
        const problem = error instanceof Problem ? error : new Problem('UPSTREAM_AUTH_FAILED', { cause: error })
        this.#failures++
        const base = Math.min(this.#maxBackoffMs, this.#minBackoffMs * 2 ** (this.#failures - 1))
        // Jitter only lengthens the window, so it never drops below the documented minimum.
        // An upstream Retry-After (429) lengthens the window: asking earlier would only be refused.
        const window = Math.max(Math.round(base * (1 + this.#random() * 0.5)), (problem.retryAfter ?? 0) * 1000)
        this.#blockedUntil = this.#now() + window
        this.#lastFailure = problem
        this.#inflight = undefined
        this.#onRefresh?.({ ok: false })
        throw problem.withRetryAfter(Math.ceil(window / 1000))
      }
    )
    this.#inflight = inflight
    return inflight
  }

  /** A new token: from the fleet when there is one, else by authenticating (for the fleet). */
  async #obtain (): Promise<string> {
    const shared = this.#shared
    if (shared === undefined) return await this.#fetchToken()
    // Two rounds: a holder that died frees its lock after lockTtlMs; then this instance may take it.
    for (let round = 0; round < 2; round++) {
      let next: { token: string } | { failure: Problem } | 'lock' | 'timeout'
      try {
        next = await this.#fromFleet(shared.store, shared.lockTtlMs)
      } catch {
        break // the store is unreachable: authenticate alone
      }
      if (next === 'lock') return await this.#authenticateForFleet(shared.store)
      if (next === 'timeout') continue
      if ('token' in next) return next.token
      throw next.failure
    }
    return await this.#fetchToken()
  }

  async #fromFleet (store: SharedTokenStore, lockTtlMs: number): Promise<{ token: string } | { failure: Problem } | 'lock' | 'timeout'> {
    const known = await this.#settled(store)
    if (known !== undefined) return known
    if (await store.lock(lockTtlMs)) return 'lock'
    const woken = store.wait(lockTtlMs)
    // The holder may have finished between the lock attempt and the wait.
    const meanwhile = await this.#settled(store)
    if (meanwhile !== undefined) return meanwhile
    await woken
    return (await this.#settled(store)) ?? 'timeout'
  }

  /** A fresh fleet token (not one being refreshed or rejected), or the fleet's current failure. */
  async #settled (store: SharedTokenStore): Promise<{ token: string } | { failure: Problem } | undefined> {
    const token = await store.read()
    if (token !== undefined && token !== this.#rejected && token !== this.#token) {
      const now = this.#now()
      if (tokenTimes(token, now, this.#fallbackLifetimeMs).refreshAt > now) return { token }
    }
    const failure = await store.failure()
    if (failure === undefined) return undefined
    const code = (Object.hasOwn(PROBLEMS, failure.code) ? failure.code : 'UPSTREAM_AUTH_FAILED') as ProblemCode
    return { failure: new Problem(code, { detail: failure.detail, retryAfter: failure.retryAfterS }) }
  }

  async #authenticateForFleet (store: SharedTokenStore): Promise<string> {
    let token: string
    try {
      token = await this.#fetchToken()
    } catch (error) {
      const problem = error instanceof Problem ? error : new Problem('UPSTREAM_AUTH_FAILED', { cause: error })
      // The fleet backs off at least as long as this instance's first window.
      const forMs = Math.max(this.#minBackoffMs, (problem.retryAfter ?? 0) * 1000)
      const failure = { code: problem.code, detail: problem.detail, retryAfterS: Math.ceil(forMs / 1000) }
      await store.fail(failure, forMs).catch(() => {})
      throw error
    }
    const expiresAt = tokenTimes(token, this.#now(), this.#fallbackLifetimeMs).expiresAt
    // Unpublished (store gone), the others take over once the lock's TTL has passed.
    await store.publish(token, expiresAt).catch(() => {})
    return token
  }
}
