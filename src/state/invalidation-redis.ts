import { randomUUID } from 'node:crypto'
import type { InvalidationBus } from './types.ts'
import { LocalInvalidationBus } from './invalidation-memory.ts'
import type { SharedRedis } from './redis.ts'

const NAME = 'invalidate'

/**
 * A fleet: local listeners first (read-your-writes on this instance), then one message to every
 * other instance. Only the organisation id travels. Announcements made while Redis is
 * unreachable are sent when it returns; other instances' caches meanwhile expire by their TTL.
 */
export class RedisInvalidationBus implements InvalidationBus {
  readonly #local = new LocalInvalidationBus()
  readonly #redis: SharedRedis
  /** Tells this instance's own messages apart when they come back. */
  readonly #origin = randomUUID()
  readonly #pending = new Set<string>()
  #scheduled = false

  constructor (redis: SharedRedis) {
    this.#redis = redis
    redis.subscribe(NAME, (message) => {
      const space = message.indexOf(' ')
      if (space === -1 || message.slice(0, space) === this.#origin) return
      this.#local.publish(message.slice(space + 1))
    })
    redis.onUp(() => { this.#flush() })
  }

  /** Announcements waiting for Redis to return. */
  get pending (): number {
    return this.#pending.size
  }

  publish (orgId: string): void {
    this.#local.publish(orgId)
    this.#pending.add(orgId)
    // One message per organisation per event-loop turn, however many writes that turn made.
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.#flush()
    })
  }

  subscribe (listener: (orgId: string) => void): void {
    this.#local.subscribe(listener)
  }

  #flush (): void {
    if (!this.#redis.up) return
    for (const orgId of this.#pending) {
      this.#pending.delete(orgId)
      this.#redis.client.publish(this.#redis.key(NAME), `${this.#origin} ${orgId}`).catch(() => {
        this.#pending.add(orgId)
      })
    }
  }
}
