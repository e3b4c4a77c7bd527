import type { IdempotencyBegin, IdempotencyStore, IdempotentAnswer } from './types.ts'

interface Entry { fingerprint: string, answer: IdempotentAnswer | undefined, expiresAt: number }

/** Keys remembered at once; beyond it the oldest goes (it is the nearest to its expiry anyway). */
export const MAX_IDEMPOTENCY_KEYS = 20_000

/** Idempotency records of one instance, bounded in count and time. */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #entries = new Map<string, Entry>()
  readonly #capacity: number
  readonly #now: () => number

  constructor (capacity = MAX_IDEMPOTENCY_KEYS, now: () => number = Date.now) {
    this.#capacity = capacity
    this.#now = now
  }

  get size (): number {
    return this.#entries.size
  }

  get capacity (): number {
    return this.#capacity
  }

  async begin (sub: string, key: string, fingerprint: string, ttlMs: number): Promise<IdempotencyBegin> {
    const id = `${sub}\u0000${key}`
    const now = this.#now()
    const entry = this.#entries.get(id)
    if (entry !== undefined && entry.expiresAt > now) return verdict(entry, fingerprint)
    if (entry !== undefined) this.#entries.delete(id)
    this.#evict(now)
    this.#entries.set(id, { fingerprint, answer: undefined, expiresAt: now + ttlMs })
    return { state: 'new' }
  }

  async complete (sub: string, key: string, fingerprint: string, answer: IdempotentAnswer, ttlMs: number): Promise<void> {
    const id = `${sub}\u0000${key}`
    const claimed = this.#entries.get(id)
    // Only the claim's own body may settle it.
    if (claimed !== undefined && claimed.fingerprint !== fingerprint) return
    this.#entries.delete(id)
    this.#evict(this.#now())
    this.#entries.set(id, { fingerprint, answer, expiresAt: this.#now() + ttlMs })
  }

  /** Frees a claim still in flight; a settled answer stays to be replayed. */
  async release (sub: string, key: string): Promise<void> {
    const id = `${sub}\u0000${key}`
    if (this.#entries.get(id)?.answer === undefined) this.#entries.delete(id)
  }

  #evict (now: number): void {
    // Insertion order is expiry order (one TTL for all), so expired entries are at the front.
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt > now && this.#entries.size < this.#capacity) break
      this.#entries.delete(id)
    }
  }
}

/** What a claim attempt meets: the same verdict from every backend. */
export function verdict (entry: { fingerprint: string, answer?: IdempotentAnswer | undefined }, fingerprint: string): IdempotencyBegin {
  if (entry.fingerprint !== fingerprint) return { state: 'mismatch' }
  if (entry.answer === undefined) return { state: 'in_flight' }
  return { state: 'done', answer: entry.answer }
}
