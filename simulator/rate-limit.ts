// emnify's per-IP limits: a sliding window over every request, refused ones included, per client address.
import type { Operation } from './faults.ts'

export interface RateLimit {
  /** Requests per client IP per window, across all paths (emnify: 2,000). */
  requests: number
  /** `POST /api/v1/authenticate` calls per client IP per window (emnify: 100). */
  authenticate: number
  /** Window length in ms (emnify: 5 minutes); shrink it to fast-forward time in tests and benches. */
  windowMs: number
}

export const EMNIFY_RATE_LIMIT: Readonly<RateLimit> = { requests: 2000, authenticate: 100, windowMs: 300_000 }

// The window is counted in this many slots, so a request leaves it between windowMs − windowMs/60 and windowMs later.
export const RATE_LIMIT_SLOTS = 60
// Bounds memory if many addresses turn up; the least recently seen client is forgotten first.
const MAX_CLIENTS = 10_000

function ringIndex (slot: number): number {
  return ((slot % RATE_LIMIT_SLOTS) + RATE_LIMIT_SLOTS) % RATE_LIMIT_SLOTS
}

/** Requests in the last RATE_LIMIT_SLOTS slots, kept as a ring of per-slot counts and their running total. */
class SlidingCount {
  readonly #counts = new Float64Array(RATE_LIMIT_SLOTS)
  #newest = Number.NEGATIVE_INFINITY
  #total = 0

  /** Counts one request in `slot` and returns how many the window now holds. */
  add (slot: number): number {
    this.#advance(slot)
    const index = ringIndex(this.#newest)
    this.#counts[index] = (this.#counts[index] as number) + 1
    return ++this.#total
  }

  #advance (slot: number): void {
    // A clock that steps back counts into the newest slot rather than reviving expired ones.
    if (slot <= this.#newest) return
    if (slot - this.#newest >= RATE_LIMIT_SLOTS) {
      this.#counts.fill(0)
      this.#total = 0
    } else {
      for (let s = this.#newest + 1; s <= slot; s++) {
        const index = ringIndex(s)
        this.#total -= this.#counts[index] as number
        this.#counts[index] = 0
      }
    }
    this.#newest = slot
  }
}

interface Client {
  all: SlidingCount
  authenticate: SlidingCount
}

export class RateLimiter {
  readonly limit: Readonly<RateLimit>
  readonly #clients = new Map<string, Client>()

  constructor (limit: RateLimit) {
    this.limit = { ...limit }
  }

  /**
   * Counts a request from `client` at `now` and says whether it must be refused. Refused requests
   * count too, so a client that keeps its rate up stays refused "until the average request rate is
   * within the limit", as emnify words it.
   */
  refuse (client: string, operation: Operation, now: number): boolean {
    // Multiplying first keeps whole-millisecond clocks exact (no float division drifting across a slot edge).
    const slot = Math.floor((now * RATE_LIMIT_SLOTS) / this.limit.windowMs)
    const counts = this.#client(client)
    const overall = counts.all.add(slot) > this.limit.requests
    const auth = operation === 'authenticate' && counts.authenticate.add(slot) > this.limit.authenticate
    return overall || auth
  }

  get clients (): number {
    return this.#clients.size
  }

  #client (key: string): Client {
    let client = this.#clients.get(key)
    if (client !== undefined) {
      // Re-inserting keeps the map in least-recently-seen order for eviction.
      this.#clients.delete(key)
    } else {
      client = { all: new SlidingCount(), authenticate: new SlidingCount() }
      if (this.#clients.size >= MAX_CLIENTS) {
        const [oldest] = this.#clients.keys()
        this.#clients.delete(oldest as string)
      }
    }
    this.#clients.set(key, client)
    return client
  }
}
