// The shared-state contracts. Each store has an in-memory implementation (one instance) and a
// Redis one (a fleet, chosen by REDIS_URL); routes and plugins see only these interfaces.

/** Size and bound of a store, for the store gauges and the soak benchmark. */
export interface Bounded {
  readonly size: number
  readonly capacity: number
}

/**
 * Drops an organisation's cached reads on every instance. Contact data itself never leaves the
 * process; only the organisation id travels.
 */
export interface InvalidationBus {
  /** Announces that `orgId`'s contacts changed; local listeners are called before this returns. */
  publish: (orgId: string) => void
  /** Called for every announcement, local or from another instance. */
  subscribe: (listener: (orgId: string) => void) => void
  /** Called when announcements from other instances may have been lost (Redis reconnected). */
  subscribeMissed: (listener: () => void) => void
}

/** What an idempotent create answered first; replayed for the same session `sub`, key and body. */
export interface IdempotentAnswer {
  status: number
  /** The BFF's own Location of the created contact, when there was one. */
  location?: string
  /** The new contact id, when known. Contact data is never stored: a replayed 201 answers `{ id }`. */
  contactId?: string
  /** A problem answer (ambiguous outcomes included), without contact data. */
  problem?: Record<string, unknown>
}

export type IdempotencyBegin =
  | { state: 'new' }
  | { state: 'in_flight' }
  | { state: 'mismatch' }
  | { state: 'done', answer: IdempotentAnswer }

export interface IdempotencyStore extends Bounded {
  /**
   * Atomically claims (`sub`, `key`) for a request whose body hashes to `fingerprint`, or reports
   * what the first request with that key is doing. Throws StoreUnavailableError when a shared
   * store cannot be reached (a create must then not proceed).
   */
  begin: (sub: string, key: string, fingerprint: string, ttlMs: number) => Promise<IdempotencyBegin>
  /** Records the final answer of a claimed key, kept until the key's TTL. */
  complete: (sub: string, key: string, fingerprint: string, answer: IdempotentAnswer, ttlMs: number) => Promise<void>
  /** Frees a claimed key whose request was not sent upstream at all, so a retry may try again. */
  release: (sub: string, key: string) => Promise<void>
}

/** The shared store could not be reached; only operations that must be fleet-wide fail with it. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError'
  constructor (cause?: unknown) {
    super('the shared store is unreachable', cause === undefined ? undefined : { cause })
  }
}

/** An authenticate failure as the fleet shares it: enough to fail fast alike, nothing secret. */
export interface TokenFailure {
  code: string
  detail: string
  retryAfterS: number
}

/**
 * The upstream auth_token shared by a fleet, with the lock that lets one instance authenticate
 * for all. Every method may throw when the store is unreachable; the caller then authenticates
 * on its own.
 */
export interface SharedTokenStore {
  /** The fleet's current token, if one is stored and not expired. */
  read: () => Promise<string | undefined>
  /** Claims the right to authenticate for `ttlMs`; true = this instance authenticates. */
  lock: (ttlMs: number) => Promise<boolean>
  /** Stores a fresh token until `expiresAt` (ms epoch), frees this instance's lock, wakes waiters. */
  publish: (token: string, expiresAt: number) => Promise<void>
  /** The authenticate failed: frees the lock and lets the fleet fail fast for `forMs`. */
  fail: (failure: TokenFailure, forMs: number) => Promise<void>
  /** The fleet's last failure still inside its window. */
  failure: () => Promise<TokenFailure | undefined>
  /** Resolves when a holder published or failed, or after `timeoutMs`. */
  wait: (timeoutMs: number) => Promise<void>
}
