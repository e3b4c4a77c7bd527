import { CLOCK_TOLERANCE_MS, type SessionClaims } from './claims.ts'

/** Tokens remembered at once; beyond it the one verified first is dropped. */
export const VERIFIED_SESSIONS_MAX = 10_000
/** Longer tokens are verified every time: with the entry bound this caps the cache near 10 MiB. */
export const VERIFIED_TOKEN_MAX_LENGTH = 1024
/**
 * The key: the signature's last characters, 96 bits of a MAC and so in practice distinct for
 * every verified token; two that shared them would only take turns being verified again.
 */
const KEY_LENGTH = 16

/**
 * Sessions whose signature, issuer, audience and claim shapes were proven, found by the end of
 * the token's signature and then compared whole: a hit is one map lookup of a 16-character key
 * and one string comparison, no SHA-256 of the token (fast-jwt's own cache hashes every token to
 * find it) and no hash of all of it either. Only what cannot change is remembered; the time
 * claims are checked again on every hit exactly as fast-jwt checks them, and revocation is the
 * caller's, on every request.
 * Bounded in entries and token length; expired entries go when next met or when the bound is hit.
 */
export class VerifiedSessions {
  // V8 hashes every character of a string the first time it keys a map, and each request's
  // token is a new string: the 16-character key is what makes a hit cheap.
  readonly #entries = new Map<string, { token: string, claims: SessionClaims }>()
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
    const key = token.slice(-KEY_LENGTH)
    const entry = this.#entries.get(key)
    if (entry === undefined || entry.token !== token) return undefined
    if (current(entry.claims, nowMs)) return entry.claims
    this.#entries.delete(key)
    return undefined
  }

  /** Whether the token is remembered (its time claims not yet checked: get does that). */
  has (token: string): boolean {
    return this.#entries.get(token.slice(-KEY_LENGTH))?.token === token
  }

  /** Remembers claims that have just passed full verification. */
  set (token: string, claims: SessionClaims): void {
    if (token.length > VERIFIED_TOKEN_MAX_LENGTH) return
    const key = token.slice(-KEY_LENGTH)
    if (!this.#entries.has(key) && this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string)
    this.#entries.set(key, { token, claims })
  }
}

/** fast-jwt's rule: valid while now ≤ exp + tolerance and now ≥ nbf − tolerance. */
function current (claims: SessionClaims & { nbf?: unknown }, nowMs: number): boolean {
  if (nowMs > claims.exp * 1000 + CLOCK_TOLERANCE_MS) return false
  return typeof claims.nbf !== 'number' || nowMs >= claims.nbf * 1000 - CLOCK_TOLERANCE_MS
}
