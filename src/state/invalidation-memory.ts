import type { InvalidationBus } from './types.ts'

/** One instance: an announcement reaches this process's listeners only. */
export class LocalInvalidationBus implements InvalidationBus {
  readonly #listeners: Array<(orgId: string) => void> = []
  readonly #missed: Array<() => void> = []

  publish (orgId: string): void {
    for (const listener of this.#listeners) listener(orgId)
  }

  subscribe (listener: (orgId: string) => void): void {
    this.#listeners.push(listener)
  }

  /** Tells every `subscribeMissed` listener that announcements may have been lost. */
  missed (): void {
    for (const listener of this.#missed) listener()
  }

  /** Alone, an instance misses nothing; a fleet's bus calls these after a reconnect. */
  subscribeMissed (listener: () => void): void {
    this.#missed.push(listener)
  }
}
