import { CLOCK_TOLERANCE_MS, type SessionClaims } from './claims.ts'

/** Tokens remembered at once; beyond it the one verified first is dropped. */
export const VERIFIED_SESSIONS_MAX = 10_000
/** Longer tokens are verified every time: with the entry bound this caps the cache near 10 MiB. */
export const VERIFIED_TOKEN_MAX_LENGTH = 1024

/**
 * Sessions whose signature, issuer, audience and claim shapes were proven, keyed by the token
 * itself: a hit is one map lookup, no SHA-256 of the token (fast-jwt's own cache hashes every
 * token to find it). Only what cannot change is remembered; the time claims are checked again
 * on every hit exactly as fast-jwt checks them, and revocation is the caller's, on every request.
 * Bounded in entries and token length; expired entries go when next met or when the bound is hit.
 */
export class VerifiedSessions {
  readonly #entries = new Map<string, SessionClaims>()
  readonly #max: number

  constructor (max = VERIFIED_SESSIONS_MAX) {
    this.#max = max
  }

  get size (): number {
    return this.#entries.size
  }

  get capacity (): number {
    return this.#max
  }

  /** The claims of a verified, still current token, or undefined (unknown, or its time has passed). */
  get (token: string, nowMs: number): SessionClaims | undefined {
    const claims = this.#entries.get(token)
    if (claims === undefined) return undefined
    if (current(claims, nowMs)) return claims
    this.#entries.delete(token)
    return undefined
  }

  /** Whether the token is remembered (its time claims not yet checked: get does that). */
  has (token: string): boolean {
    return this.#entries.has(token)
  }

  /** Remembers claims that have just passed full verification. */
  set (token: string, claims: SessionClaims): void {
    if (token.length > VERIFIED_TOKEN_MAX_LENGTH) return
    if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string)
    this.#entries.set(token, claims)
  }
}

/** fast-jwt's rule: valid while now ≤ exp + tolerance and now ≥ nbf − tolerance. */
function current (claims: SessionClaims & { nbf?: unknown }, nowMs: number): boolean {
  if (nowMs > claims.exp * 1000 + CLOCK_TOLERANCE_MS) return false
  return typeof claims.nbf !== 'number' || nowMs >= claims.nbf * 1000 - CLOCK_TOLERANCE_MS
}
