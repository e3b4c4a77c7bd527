import { randomUUID } from 'node:crypto'
import type { SharedTokenStore, TokenFailure } from './types.ts'
import type { SharedRedis } from './redis.ts'

interface MemoryTokenState {
  token?: { value: string, expiresAt: number }
  lock?: { owner: string, until: number }
  failure?: { value: TokenFailure, until: number }
  waiters: Set<() => void>
}

/**
 * One process: each handle (`instance()`) acts as one instance sharing the token, lock and
 * failure with the others, for tests of the fleet logic and as the reference the Redis store
 * must match.
 */
export class MemoryTokenStore implements SharedTokenStore {
  readonly #state: MemoryTokenState
  readonly #now: () => number
  readonly #owner = randomUUID()

  constructor (options: { now?: () => number } = {}, state: MemoryTokenState = { waiters: new Set() }) {
    this.#now = options.now ?? Date.now
    this.#state = state
  }

  /** Another instance's handle on the same token, lock and failure. */
  instance (): MemoryTokenStore {
    return new MemoryTokenStore({ now: this.#now }, this.#state)
  }

  async read (): Promise<string | undefined> {
    const token = this.#state.token
    return token !== undefined && token.expiresAt > this.#now() ? token.value : undefined
  }

  async lock (ttlMs: number): Promise<boolean> {
    const now = this.#now()
    const lock = this.#state.lock
    if (lock !== undefined && lock.until > now) return false
    this.#state.lock = { owner: this.#owner, until: now + ttlMs }
    return true
  }

  async publish (token: string, expiresAt: number): Promise<void> {
    this.#state.token = { value: token, expiresAt }
    delete this.#state.failure
    this.#settle()
  }

  async fail (failure: TokenFailure, forMs: number): Promise<void> {
    this.#state.failure = { value: failure, until: this.#now() + forMs }
    this.#settle()
  }

  async failure (): Promise<TokenFailure | undefined> {
    const failure = this.#state.failure
    return failure !== undefined && failure.until > this.#now() ? failure.value : undefined
  }

  wait (timeoutMs: number): Promise<void> {
    return waitOn(this.#state.waiters, timeoutMs)
  }

  #settle (): void {
    // Frees the lock only for its holder: a holder that overran its TTL must not free a successor's.
    if (this.#state.lock?.owner === this.#owner) delete this.#state.lock
    for (const waiter of [...this.#state.waiters]) waiter()
  }
}

function waitOn (waiters: Set<() => void>, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      waiters.delete(done)
      resolve()
    }
    const timer = setTimeout(done, timeoutMs)
    waiters.add(done)
  })
}

// Frees the lock only for its holder: a holder that overran its TTL must not free a successor's.
const UNLOCK_AND_SET = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if ARGV[4] ~= '' then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', KEYS[4], 'changed')
return 1`

const NAME = 'token'

/**
 * A fleet: `token` holds the auth_token until its expiry, `token:lock` (SET NX PX) names the
 * one instance authenticating, `token:failure` makes the fleet back off together, and a message
 * on the `token` channel wakes the waiters. Key names carry no secret; the token value does,
 * which is why the README asks for an ACL user, a password and TLS.
 */
export class RedisTokenStore implements SharedTokenStore {
  readonly #redis: SharedRedis
  readonly #owner = randomUUID()
  readonly #waiters = new Set<() => void>()
  readonly #now: () => number

  constructor (redis: SharedRedis, now: () => number = Date.now) {
    this.#redis = redis
    this.#now = now
    redis.subscribe(NAME, () => { for (const waiter of [...this.#waiters]) waiter() })
  }

  #keys (): string[] {
    const r = this.#redis
    return [r.key('token:lock'), r.key('token'), r.key('token:failure'), r.key(NAME)]
  }

  async read (): Promise<string | undefined> {
    return (await this.#redis.client.get(this.#redis.key('token'))) ?? undefined
  }

  async lock (ttlMs: number): Promise<boolean> {
    return (await this.#redis.client.set(this.#redis.key('token:lock'), this.#owner, 'PX', Math.max(1, Math.round(ttlMs)), 'NX')) === 'OK'
  }

  async publish (token: string, expiresAt: number): Promise<void> {
    const ttl = Math.max(1, Math.round(expiresAt - this.#now()))
    const keys = this.#keys()
    // The token key and, in the same step, the failure record goes.
    await this.#redis.client.eval(UNLOCK_AND_SET, 4, keys[0] as string, keys[1] as string, keys[2] as string, keys[3] as string, this.#owner, token, ttl, 'clear')
  }

  async fail (failure: TokenFailure, forMs: number): Promise<void> {
    const keys = this.#keys()
    await this.#redis.client.eval(UNLOCK_AND_SET, 4, keys[0] as string, keys[2] as string, keys[2] as string, keys[3] as string, this.#owner, JSON.stringify(failure), Math.max(1, Math.round(forMs)), '')
  }

  async failure (): Promise<TokenFailure | undefined> {
    const text = await this.#redis.client.get(this.#redis.key('token:failure'))
    if (text === null) return undefined
    try {
      const value = JSON.parse(text) as TokenFailure
      return typeof value.code === 'string' && typeof value.detail === 'string' && typeof value.retryAfterS === 'number' ? value : undefined
    } catch {
      return undefined
    }
  }

  wait (timeoutMs: number): Promise<void> {
    return waitOn(this.#waiters, timeoutMs)
  }
}
