import { createHash } from 'node:crypto'
import { CLOCK_TOLERANCE_MS, type SessionClaims } from './claims.ts'

/**
 * Sessions ended by logout, remembered until they would have expired anyway. Keyed by `jti`, or
 * by a hash of the token for externally minted sessions without one. Expired entries are pruned
 * as new ones arrive, and the map is capped: at the cap the entry closest to expiry goes first.
 */
export class Revocations {
  readonly #entries = new Map<string, number>()
  readonly #max: number
  readonly #now: () => number
  #byHash = 0
  #nextPrune = 0

  constructor (options: { max?: number, now?: () => number } = {}) {
    this.#max = options.max ?? 100_000
    this.#now = options.now ?? Date.now
  }

  static #key (claims: SessionClaims, token: string): string {
    return claims.jti !== undefined ? `j:${claims.jti}` : `h:${createHash('sha256').update(token).digest('base64url')}`
  }

  get size (): number {
    return this.#entries.size
  }

  get capacity (): number {
    return this.#max
  }

  revoke (claims: SessionClaims, token: string): void {
    const now = this.#now()
    // Verification accepts a token until exp plus the clock tolerance (inclusive); so must this.
    const expiresAt = claims.exp * 1000 + CLOCK_TOLERANCE_MS + 1
    if (expiresAt <= now) return
    this.#prune(now)
    if (this.#entries.size >= this.#max) this.#evictSoonest()
    const key = Revocations.#key(claims, token)
    if (!this.#entries.has(key) && key.startsWith('h:')) this.#byHash++
    this.#entries.set(key, expiresAt)
  }

  has (claims: SessionClaims, token: string): boolean {
    if (this.#entries.size === 0) return false
    // Hash only when some revoked session had no jti; most requests skip it.
    if (claims.jti === undefined && this.#byHash === 0) return false
    const expiresAt = this.#entries.get(Revocations.#key(claims, token))
    return expiresAt !== undefined && expiresAt > this.#now()
  }

  #prune (now: number): void {
    if (now < this.#nextPrune && this.#entries.size < this.#max) return
    this.#nextPrune = now + 60_000
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt <= now) this.#delete(key)
    }
  }

  #evictSoonest (): void {
    let soonestKey: string | undefined
    let soonest = Infinity
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt < soonest) {
        soonest = expiresAt
        soonestKey = key
      }
    }
    if (soonestKey !== undefined) this.#delete(soonestKey)
  }

  #delete (key: string): void {
    if (this.#entries.delete(key) && key.startsWith('h:')) this.#byHash--
  }
}
