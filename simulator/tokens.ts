// Auth tokens as emnify issues them: HS384 JWTs carrying iat/exp, checked on every API call.
import { createHmac, randomBytes, randomUUID } from 'node:crypto'

export interface TokenClaims {
  iss: string
  aud: string
  sub: string
  'esc.app': number
  'esc.org': number
  'esc.orgName': string
  iat: number
  exp?: number
  jti: string
}

export interface IssueOptions {
  /** Seconds; overrides the simulator's configured lifetime. */
  lifetimeS?: number
  withoutExp?: boolean
  /** Issue time in ms; defaults to the simulator clock (lets tests mint already-expired tokens). */
  issuedAtMs?: number
  /** Which application token (index into the configured list) the auth token stands for. */
  application?: number
}

export type TokenCheck = 'valid' | 'invalid' | 'expired'

const HEADER = base64url(JSON.stringify({ alg: 'HS384', typ: 'JWT' }))

function base64url (text: string): string {
  return Buffer.from(text).toString('base64url')
}

export class TokenIssuer {
  readonly #secret = randomBytes(48)
  readonly #clock: () => number
  readonly #lifetimeS: number
  readonly #withoutExp: boolean
  // Bounds memory in long benchmark runs; the oldest tokens are forgotten (and so become invalid) first.
  readonly #maxTokens: number
  // Only tokens issued here are valid, so this lookup stands in for signature and revocation checks.
  readonly #issued = new Map<string, number | undefined>()

  constructor (clock: () => number, lifetimeS: number, withoutExp: boolean, maxTokens: number) {
    this.#clock = clock
    this.#lifetimeS = lifetimeS
    this.#withoutExp = withoutExp
    this.#maxTokens = maxTokens
  }

  issue (options: IssueOptions = {}): string {
    const iat = Math.floor((options.issuedAtMs ?? this.#clock()) / 1000)
    const withoutExp = options.withoutExp ?? this.#withoutExp
    const exp = withoutExp ? undefined : iat + (options.lifetimeS ?? this.#lifetimeS)
    const application = options.application ?? 0
    const claims: TokenClaims = {
      iss: 'emnify-simulator',
      aud: '/api/v1/authenticate',
      sub: `application-token-${application + 1}@simulator.invalid`,
      'esc.app': application + 1,
      'esc.org': 1,
      'esc.orgName': 'Demo Org',
      iat,
      ...(exp === undefined ? {} : { exp }),
      jti: randomUUID()
    }
    const unsigned = `${HEADER}.${base64url(JSON.stringify(claims))}`
    const signature = createHmac('sha384', this.#secret).update(unsigned).digest('base64url')
    const token = `${unsigned}.${signature}`

    if (this.#issued.size >= this.#maxTokens) {
      // Maps iterate in insertion order, so the first key is the oldest token (the map is not empty here).
      const [oldest] = this.#issued.keys()
      this.#issued.delete(oldest as string)
    }
    this.#issued.set(token, exp)
    return token
  }

  check (token: string): TokenCheck {
    if (!this.#issued.has(token)) return 'invalid'
    const exp = this.#issued.get(token)
    if (exp !== undefined && exp * 1000 <= this.#clock()) return 'expired'
    return 'valid'
  }

  revokeAll (): void {
    this.#issued.clear()
  }
}

/** Decodes a JWT's payload without verifying it (for tests and assertions). */
export function decodeTokenClaims (token: string): Record<string, unknown> {
  const payload = token.split('.')[1]
  if (payload === undefined) throw new Error('not a JWT')
  const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
  if (typeof claims !== 'object' || claims === null) throw new Error('JWT payload is not an object')
  return claims as Record<string, unknown>
}
