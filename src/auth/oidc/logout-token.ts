import { errors, jwtVerify, type JWTVerifyGetKey } from 'jose'

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout'
// How old a logout token may be (by `iat`); jtis are remembered this long, so none replays.
const MAX_AGE_S = 300
const CLOCK_TOLERANCE_S = 30

/** Who a valid logout token logs out: a provider session, or every session of a subject. */
export type LogoutTarget = { kind: 'sid', value: string } | { kind: 'sub', value: string }

/** The logout token is not one this BFF may act on; the answer is 400. */
export class InvalidLogoutToken extends Error {
  override name = 'InvalidLogoutToken'
}

/** The provider's keys could not be fetched; the answer is 503 and the provider may retry. */
export class KeysUnavailable extends Error {
  override name = 'KeysUnavailable'
}

export interface LogoutTokenVerifierOptions {
  issuer: string
  clientId: string
  keys: JWTVerifyGetKey
  algorithms: string[]
  now: () => number
  maxJtis?: number
}

/**
 * Validates logout tokens as OpenID Connect Back-Channel Logout 1.0 §2.6 asks: signature by the
 * provider's keys, `iss`, `aud`, `iat`, the back-channel `events` member, `sub` or `sid`, no
 * `nonce` (so an ID token can never pass for one), and a `jti` not seen before.
 */
export class LogoutTokenVerifier {
  readonly #options: LogoutTokenVerifierOptions
  readonly #seen = new Map<string, number>()
  readonly #maxJtis: number

  constructor (options: LogoutTokenVerifierOptions) {
    this.#options = options
    this.#maxJtis = options.maxJtis ?? 10_000
  }

  get size (): number {
    return this.#seen.size
  }

  get capacity (): number {
    return this.#maxJtis
  }

  async verify (token: string): Promise<LogoutTarget> {
    const { issuer, clientId, keys, algorithms, now } = this.#options
    let payload: Record<string, unknown>
    let typ: string | undefined
    try {
      const result = await jwtVerify(token, keys, {
        issuer,
        audience: clientId,
        algorithms,
        requiredClaims: ['iat', 'jti', 'events'],
        maxTokenAge: MAX_AGE_S,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(now())
      })
      payload = result.payload as Record<string, unknown>
      typ = result.protectedHeader.typ
    } catch (error) {
      if (keysUnavailable(error)) throw new KeysUnavailable('the provider\'s keys could not be fetched', { cause: error })
      throw new InvalidLogoutToken(reason(error), { cause: error })
    }
    // The spec recommends typ logout+jwt; providers that predate it send none or JWT.
    if (typ !== undefined && !['logout+jwt', 'application/logout+jwt', 'JWT'].includes(typ)) throw new InvalidLogoutToken('unexpected typ')
    const events = payload.events
    if (events === null || typeof events !== 'object' || Array.isArray(events)) throw new InvalidLogoutToken('events is not an object')
    const event: unknown = (events as Record<string, unknown>)[BACKCHANNEL_EVENT]
    if (event === null || typeof event !== 'object' || Array.isArray(event)) throw new InvalidLogoutToken('events lacks the back-channel logout event')
    if ('nonce' in payload) throw new InvalidLogoutToken('a logout token must not carry a nonce')
    const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined
    const sid = typeof payload.sid === 'string' && payload.sid !== '' ? payload.sid : undefined
    if (sub === undefined && sid === undefined) throw new InvalidLogoutToken('neither sub nor sid')
    if (typeof payload.jti !== 'string' || payload.jti === '' || payload.jti.length > 256) throw new InvalidLogoutToken('jti is invalid')
    if (!this.#remember(`${issuer} ${payload.jti}`, now())) throw new InvalidLogoutToken('jti was already used')
    // One provider session ends with sid; a logout naming only the subject ends all of its sessions.
    return sid !== undefined ? { kind: 'sid', value: sid } : { kind: 'sub', value: sub as string }
  }

  #remember (jti: string, now: number): boolean {
    const known = this.#seen.get(jti)
    if (known !== undefined && known > now) return false
    for (const [key, until] of this.#seen) {
      // One lifetime for all, so insertion order is expiry order.
      if (until > now && this.#seen.size < this.#maxJtis) break
      this.#seen.delete(key)
    }
    this.#seen.delete(jti)
    this.#seen.set(jti, now + (MAX_AGE_S + CLOCK_TOLERANCE_S) * 1000)
    return true
  }
}

function keysUnavailable (error: unknown): boolean {
  if (error instanceof errors.JWKSTimeout) return true
  // A fetch that never reached the provider (refused, reset, DNS) or an answer that was no JWKS.
  if (error instanceof TypeError && error.message === 'fetch failed') return true
  return error instanceof errors.JOSEError && error.code === 'ERR_JOSE_GENERIC' && /JSON Web Key Set|JWKS/.test(error.message)
}

function reason (error: unknown): string {
  if (error instanceof errors.JOSEError) return error.code
  return 'not a JWT'
}
