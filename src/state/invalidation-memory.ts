import type { InvalidationBus } from './types.ts'

/** One instance: an announcement reaches this process's listeners only. */
export class LocalInvalidationBus implements InvalidationBus {
  readonly #listeners: Array<(orgId: string) => void> = []

  publish (orgId: string): void {
    for (const listener of this.#listeners) listener(orgId)
  }

  subscribe (listener: (orgId: string) => void): void {
    this.#listeners.push(listener)
  }
}
