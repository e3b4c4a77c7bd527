import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

/** What the callback needs to finish one sign-in; kept only in the browser, sealed. */
export interface LoginTransaction {
  codeVerifier: string
  nonce: string
  returnTo: string
  /** ms epoch after which the callback refuses it. */
  expiresAt: number
}

// openid-client's randomState(): 32 random bytes in base64url.
const STATE = /^[A-Za-z0-9_-]{43}$/
const IV_BYTES = 12
const TAG_BYTES = 16

export function isState (value: unknown): value is string {
  return typeof value === 'string' && STATE.test(value)
}

/**
 * One cookie per sign-in, named after its `state`: several tabs signing in at once each find
 * their own, and a callback can only use the transaction its `state` names.
 */
export function transactionCookieName (state: string, secure: boolean): string {
  return `${secure ? '__Secure-' : ''}oidc-tx-${state}`
}

/**
 * Seals transactions with AES-256-GCM under a key derived from the session secret, with the
 * `state` as associated data: the browser can neither read the PKCE verifier nor move a
 * transaction to another state, and any instance of the fleet can open it.
 */
export class TransactionSealer {
  readonly #key: Buffer

  constructor (sessionSecret: string) {
    this.#key = Buffer.from(hkdfSync('sha256', sessionSecret, '', 'emnify-bff oidc login transaction', 32))
  }

  seal (state: string, transaction: LoginTransaction): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv).setAAD(Buffer.from(state))
    const plain = JSON.stringify({ v: transaction.codeVerifier, n: transaction.nonce, r: transaction.returnTo, x: transaction.expiresAt })
    const sealed = Buffer.concat([iv, cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()])
    return sealed.toString('base64url')
  }

  /** The transaction, or undefined when the value was not sealed by us for this state. */
  open (state: string, value: string): LoginTransaction | undefined {
    const sealed = Buffer.from(value, 'base64url')
    if (sealed.length <= IV_BYTES + TAG_BYTES) return undefined
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, sealed.subarray(0, IV_BYTES)).setAAD(Buffer.from(state))
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
      const plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]).toString('utf8')
      const p = JSON.parse(plain) as Record<string, unknown>
      if (typeof p.v !== 'string' || typeof p.n !== 'string' || typeof p.r !== 'string' || typeof p.x !== 'number') return undefined
      return { codeVerifier: p.v, nonce: p.n, returnTo: p.r, expiresAt: p.x }
    } catch {
      return undefined
    }
  }
}

/**
 * States whose callback already ran, until their transaction would have expired: a callback
 * replayed with the same cookie is refused before the provider is asked again. Bounded; at the
 * cap the oldest entry goes (its code is single-use at the provider anyway).
 */
export class UsedStates {
  readonly #entries = new Map<string, number>()
  readonly #max: number

  constructor (max = 10_000) {
    this.#max = max
  }

  get size (): number {
    return this.#entries.size
  }

  get capacity (): number {
    return this.#max
  }

  /** Records `state`; false when it was already used. */
  use (state: string, expiresAt: number, now: number): boolean {
    const known = this.#entries.get(state)
    if (known !== undefined && known > now) return false
    for (const [key, until] of this.#entries) {
      // Insertion order is expiry order (one TTL for all), so pruning stops at the first live one.
      if (until > now && this.#entries.size < this.#max) break
      this.#entries.delete(key)
    }
    this.#entries.delete(state)
    this.#entries.set(state, expiresAt)
    return true
  }
}
