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
