import type { IdempotencyBegin, IdempotencyStore, IdempotentAnswer } from './types.ts'
import { StoreUnavailableError } from './types.ts'
import { verdict } from './idempotency-memory.ts'
import { keyHash, type SharedRedis } from './redis.ts'

// Claims the key or returns what holds it, in one step: two instances cannot both see 'new'.
const BEGIN = `
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`

// Settles only the claim made with the same body.
const COMPLETE = `
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).f ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`

// Frees only a claim still in flight; a settled answer stays to be replayed.
const RELEASE = `
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).a == nil then redis.call('DEL', KEYS[1]) end
return 1`

/**
 * A fleet: one key per (sub, key), named by a hash of both, holding the body fingerprint and
 * the final answer (status, Location, id, problem; never contact data). Unreachable Redis →
 * StoreUnavailableError, so a create is refused rather than risking a second contact.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  readonly #redis: SharedRedis

  constructor (redis: SharedRedis) {
    this.#redis = redis
  }

  // Redis bounds it by TTL; nothing is held in this process.
  get size (): number {
    return 0
  }

  get capacity (): number {
    return 0
  }

  #key (sub: string, key: string): string {
    return this.#redis.key(`idem:${keyHash(`${sub}\0${key}`)}`)
  }

  async #run (script: string, keys: string[], args: Array<string | number>): Promise<unknown> {
    if (!this.#redis.up) throw new StoreUnavailableError()
    try {
      return await this.#redis.client.eval(script, keys.length, ...keys, ...args)
    } catch (error) {
      throw new StoreUnavailableError(error)
    }
  }

  async begin (sub: string, key: string, fingerprint: string, ttlMs: number): Promise<IdempotencyBegin> {
    const current = await this.#run(BEGIN, [this.#key(sub, key)], [JSON.stringify({ f: fingerprint }), ttlMs])
    if (typeof current !== 'string') return { state: 'new' }
    const entry = JSON.parse(current) as { f: string, a?: IdempotentAnswer }
    return verdict({ fingerprint: entry.f, ...(entry.a === undefined ? {} : { answer: entry.a }) }, fingerprint)
  }

  async complete (sub: string, key: string, fingerprint: string, answer: IdempotentAnswer, ttlMs: number): Promise<void> {
    await this.#run(COMPLETE, [this.#key(sub, key)], [JSON.stringify({ f: fingerprint, a: answer }), fingerprint, ttlMs])
  }

  async release (sub: string, key: string): Promise<void> {
    await this.#run(RELEASE, [this.#key(sub, key)], [])
  }
}
