import type { Bounded, InvalidationBus } from '../state/types.ts'
import type { Representation } from './representation.ts'

export type CacheResult = 'hit' | 'miss' | 'coalesced'

interface Entry { org: string, rep: Representation, expiresAt: number, bytes: number }

export interface ReadCacheOptions {
  /** How long an answer is kept; 0 = only concurrent identical reads share one call. */
  ttlMs: number
  maxEntries?: number
  maxBytes?: number
  now?: () => number
  onResult?: (result: CacheResult) => void
}

/**
 * Reads shared per path: concurrent identical reads wait for one upstream call, and answers are
 * kept `ttlMs`. Looked up only after authorisation, keyed by the path, which names the
 * organisation. A write drops the organisation's entries and any read still in flight for it, so
 * a read that started before the write can never refill the cache with what the write replaced.
 */
export class ReadCache implements Bounded {
  readonly #entries = new Map<string, Entry>()
  readonly #inFlight = new Map<string, { org: string, promise: Promise<Representation> }>()
  readonly #generation = new Map<string, number>()
  /** Bumped by `invalidateAll`, so no read in flight across it stores its answer. */
  #epoch = 0
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #maxBytes: number
  readonly #now: () => number
  readonly #onResult: (result: CacheResult) => void
  #bytes = 0

  constructor (options: ReadCacheOptions) {
    this.#ttlMs = options.ttlMs
    this.#maxEntries = options.maxEntries ?? 5_000
    this.#maxBytes = options.maxBytes ?? 32 * 1024 * 1024
    this.#now = options.now ?? Date.now
    this.#onResult = options.onResult ?? (() => {})
  }

  get size (): number {
    return this.#entries.size
  }

  get capacity (): number {
    return this.#maxEntries
  }

  get bytes (): number {
    return this.#bytes
  }

  /** The representation at `key` of organisation `org`: cached, joined, or loaded by `load`. */
  read (org: string, key: string, load: () => Promise<Representation>): Promise<Representation> {
    const entry = this.#entries.get(key)
    if (entry !== undefined) {
      if (entry.expiresAt > this.#now()) {
        this.#onResult('hit')
        return Promise.resolve(entry.rep)
      }
      this.#drop(key, entry)
    }
    const pending = this.#inFlight.get(key)
    if (pending !== undefined) {
      this.#onResult('coalesced')
      return pending.promise
    }
    this.#onResult('miss')
    const generation = this.#generation.get(org) ?? 0
    const epoch = this.#epoch
    const promise = load()
    const flight = { org, promise }
    this.#inFlight.set(key, flight)
    promise.then((rep) => {
      if (this.#inFlight.get(key) === flight) this.#inFlight.delete(key)
      if (this.#ttlMs > 0 && this.#epoch === epoch && (this.#generation.get(org) ?? 0) === generation) this.#store(org, key, rep)
    }, () => {
      if (this.#inFlight.get(key) === flight) this.#inFlight.delete(key)
    })
    return promise
  }

  /** Drops every cached and in-flight read of `org` (a write changed it). */
  invalidate (org: string): void {
    this.#generation.set(org, (this.#generation.get(org) ?? 0) + 1)
    // Bounded like the entries: a generation only matters while a read of that org is in flight.
    if (this.#generation.size > this.#maxEntries) {
      // Counting afresh would let a read in flight since before this write store its answer.
      this.#generation.clear()
      this.#epoch++
    }
    for (const [key, entry] of this.#entries) if (entry.org === org) this.#drop(key, entry)
    for (const [key, flight] of this.#inFlight) if (flight.org === org) this.#inFlight.delete(key)
  }

  /** Drops every cached and in-flight read: writes may have gone unheard. */
  invalidateAll (): void {
    this.#epoch++
    this.#entries.clear()
    this.#inFlight.clear()
    this.#bytes = 0
  }

  /**
   * Listens for writes announced on the bus (this instance's and, with Redis, every other's), and
   * forgets everything when the bus may have missed some.
   */
  follow (bus: InvalidationBus): void {
    bus.subscribe((org) => this.invalidate(org))
    bus.subscribeMissed(() => this.invalidateAll())
  }

  #store (org: string, key: string, rep: Representation): void {
    const bytes = rep.text.length + rep.etag.length + key.length
    if (bytes > this.#maxBytes) return
    const old = this.#entries.get(key)
    if (old !== undefined) this.#drop(key, old)
    this.#entries.set(key, { org, rep, expiresAt: this.#now() + this.#ttlMs, bytes })
    this.#bytes += bytes
    // Insertion order is expiry order, so the first entries are the nearest to their end anyway.
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && this.#bytes <= this.#maxBytes) break
      this.#drop(oldest, entry)
    }
  }

  #drop (key: string, entry: Entry): void {
    this.#entries.delete(key)
    this.#bytes -= entry.bytes
  }
}
