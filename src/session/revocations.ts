import { hash } from 'node:crypto'
import { CLOCK_TOLERANCE_MS, MAX_SESSION_LIFETIME_S, type SessionClaims } from './claims.ts'

/**
 * One revocation as it travels between instances: `key` names what is revoked by a hash only
 * (`j:` jti, `h:` token, `s:` every session of a sub, `i:` every session of an IdP sid), never
 * the raw value; `until` (ms epoch) is when the record can go; `before` (epoch s) is the
 * "issued at or before" cut-off of an `s:`/`i:` record.
 */
export interface RevocationRecord {
  key: string
  until: number
  before?: number
}

export type RevokeAllKind = 'sub' | 'sid'

export interface RevocationsOptions {
  max?: number
  now?: () => number
  /** The longest lifetime a session may have; a revokeAll record is kept this long past its cut-off. */
  maxSessionLifetimeMs?: number
}

// sha256 in base64url: what travels to a shared store names no session, user or IdP session.
function digest (value: string): string {
  return hash('sha256', value, 'base64url')
}

/**
 * Sessions ended by logout, remembered until they would have expired anyway. Keyed by a hash of
 * `jti`, or of the token for externally minted sessions without one; `revokeAll` ends every
 * session of a sub or sid issued up to a moment, as one record. Expired entries are pruned as
 * new ones arrive, and the map is capped: at the cap the entry closest to expiry goes first.
 * Verification (`has`) is synchronous and local; a shared store keeps instances in step through
 * `onRecord` (what this instance revoked) and `apply` (what another one did).
 */
export class Revocations {
  /** `j:`/`h:` key → ms epoch after which the token can never be accepted. */
  readonly #entries = new Map<string, number>()
  /** `s:`/`i:` key → cut-off and lifetime of a revokeAll record. */
  readonly #cutoffs = new Map<string, { before: number, until: number }>()
  readonly #max: number
  readonly #now: () => number
  readonly #maxLifetimeMs: number
  readonly #listeners: Array<(record: RevocationRecord) => void> = []
  #byHash = 0
  #nextPrune = 0

  constructor (options: RevocationsOptions = {}) {
    this.#max = options.max ?? 100_000
    this.#now = options.now ?? Date.now
    this.#maxLifetimeMs = options.maxSessionLifetimeMs ?? MAX_SESSION_LIFETIME_S * 1000
  }

  static #key (claims: SessionClaims, token: string): string {
    return claims.jti !== undefined ? `j:${digest(claims.jti)}` : `h:${digest(token)}`
  }

  get size (): number {
    return this.#entries.size + this.#cutoffs.size
  }

  get capacity (): number {
    return this.#max
  }

  /** Sees every record this instance creates (not those it `apply`s), e.g. to share it. */
  onRecord (listener: (record: RevocationRecord) => void): void {
    this.#listeners.push(listener)
  }

  revoke (claims: SessionClaims, token: string): void {
    // Verification accepts a token until exp plus the clock tolerance (inclusive); so must this.
    this.#record({ key: Revocations.#key(claims, token), until: claims.exp * 1000 + CLOCK_TOLERANCE_MS + 1 })
  }

  /** Ends every session of this `sub` or IdP `sid` issued at or before `beforeEpochS`. */
  revokeAll (kind: RevokeAllKind, value: string, beforeEpochS: number): void {
    const until = beforeEpochS * 1000 + this.#maxLifetimeMs + CLOCK_TOLERANCE_MS + 1
    this.#record({ key: `${kind === 'sub' ? 's' : 'i'}:${digest(value)}`, until, before: beforeEpochS })
  }

  has (claims: SessionClaims, token: string): boolean {
    if (this.#cutoffs.size > 0 && this.#cutOff(claims)) return true
    if (this.#entries.size === 0) return false
    // Hash only when some revoked session had no jti; most requests skip it.
    if (claims.jti === undefined && this.#byHash === 0) return false
    const expiresAt = this.#entries.get(Revocations.#key(claims, token))
    return expiresAt !== undefined && expiresAt > this.#now()
  }

  /** Takes in a record made elsewhere (another instance, or the shared store at start-up). */
  apply (record: RevocationRecord): boolean {
    const now = this.#now()
    if (record.until <= now) return false
    this.#prune(now)
    if (record.before !== undefined) {
      const known = this.#cutoffs.get(record.key)
      // A later cut-off covers an earlier one; keep the widest.
      if (known !== undefined && known.before >= record.before && known.until >= record.until) return false
      if (known === undefined && this.size >= this.#max) this.#evictSoonest()
      this.#cutoffs.set(record.key, {
        before: Math.max(record.before, known?.before ?? -Infinity),
        until: Math.max(record.until, known?.until ?? 0)
      })
      return true
    }
    const known = this.#entries.get(record.key)
    if (known !== undefined && known >= record.until) return false
    if (known === undefined) {
      if (this.size >= this.#max) this.#evictSoonest()
      if (record.key.startsWith('h:')) this.#byHash++
    }
    this.#entries.set(record.key, record.until)
    return true
  }

  /** Every record still in force, e.g. to write them to a shared store that came back. */
  * records (): IterableIterator<RevocationRecord> {
    const now = this.#now()
    for (const [key, until] of this.#entries) if (until > now) yield { key, until }
    for (const [key, { before, until }] of this.#cutoffs) if (until > now) yield { key, until, before }
  }

  #record (record: RevocationRecord): void {
    if (!this.apply(record)) return
    for (const listener of this.#listeners) listener(record)
  }

  #cutOff (claims: SessionClaims): boolean {
    const now = this.#now()
    const bySub = this.#cutoffs.get(`s:${digest(claims.sub)}`)
    if (bySub !== undefined && bySub.until > now && claims.iat <= bySub.before) return true
    if (claims.sid === undefined) return false
    const bySid = this.#cutoffs.get(`i:${digest(claims.sid)}`)
    return bySid !== undefined && bySid.until > now && claims.iat <= bySid.before
  }

  #prune (now: number): void {
    if (now < this.#nextPrune && this.size < this.#max) return
    this.#nextPrune = now + 60_000
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt <= now) this.#delete(key)
    }
    for (const [key, { until }] of this.#cutoffs) {
      if (until <= now) this.#cutoffs.delete(key)
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
    for (const [key, { until }] of this.#cutoffs) {
      if (until < soonest) {
        soonest = until
        soonestKey = key
      }
    }
    if (soonestKey === undefined) return
    if (this.#cutoffs.delete(soonestKey)) return
    this.#delete(soonestKey)
  }

  #delete (key: string): void {
    if (this.#entries.delete(key) && key.startsWith('h:')) this.#byHash--
  }
}
