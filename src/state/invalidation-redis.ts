import { randomUUID } from 'node:crypto'
import type { InvalidationBus } from './types.ts'
import { LocalInvalidationBus } from './invalidation-memory.ts'
import type { SharedRedis } from './redis.ts'

/** The pub/sub channel, for a Redis that refuses tracking and for instances of earlier versions. */
const NAME = 'invalidate'
/**
 * The tracked keys, one per instance and organisation: `prefix + KEY + origin + ':' + orgId`.
 * Per instance, because Redis remembers one writer per key and event-loop turn: with a key
 * shared by the fleet, two instances announcing the same organisation in the same turn would
 * leave the last one, which NOLOOP spares its own writes, deaf to the other.
 */
const KEY = 'invalidate:'
/** How long an announcement key lives; its expiry is one more (harmless) announcement. */
const KEY_TTL_MS = 60_000

/**
 * Messages to the other instances go out at most once per window per organisation. The first
 * write after a quiet window is announced at the end of its event-loop turn; writes that follow
 * within the window are gathered and announced when it ends. A saturated instance writing to one
 * organisation thus sends 100 messages a second instead of one per turn, and another instance
 * drops what a write replaced at most this much later, far inside the contract's 1 s.
 */
export const INVALIDATION_WINDOW_MS = 10

/**
 * A fleet: local listeners first (read-your-writes on this instance), then one message to every
 * other instance. Only the organisation id travels. Announcements made while Redis is
 * unreachable are sent when it returns; other instances' caches meanwhile expire by their TTL.
 *
 * The message is a write of the organisation's key, which Redis's client-side tracking
 * (broadcast, `NOLOOP`) tells every other instance and not the writer: a pub/sub message would
 * come back to the writer's own subscriber, a wake-up and a parse per window for nothing. Where
 * Redis refuses tracking the bus publishes instead, and it always listens on the channel too, so
 * it hears instances in that mode and those of earlier versions.
 */
export class RedisInvalidationBus implements InvalidationBus {
  readonly #local = new LocalInvalidationBus()
  readonly #redis: SharedRedis
  /** Tells this instance's own messages apart when they come back. */
  readonly #origin = randomUUID()
  readonly #pending = new Set<string>()
  /** The send scheduled for the end of this turn or of the window, if any. */
  #timer: NodeJS.Timeout | undefined
  #immediate: NodeJS.Immediate | undefined
  /** When the last messages went out (performance.now()); -Infinity before the first. */
  #sentAt = Number.NEGATIVE_INFINITY
  readonly #send = () => {
    this.#timer = undefined
    this.#immediate = undefined
    this.#sentAt = performance.now()
    this.#flush()
  }

  /**
   * Node counts a timer from the event loop's cached clock, which lags real time in a long turn,
   * so the window's timer can fire a few milliseconds early: then it waits out the rest.
   */
  readonly #windowEnd = () => {
    const rest = this.#windowRest()
    if (rest > 0) this.#timer = setTimeout(this.#windowEnd, rest)
    else this.#send()
  }

  /** Milliseconds until the window that the last send opened ends; ≤ 0 once it has. */
  #windowRest (): number {
    return this.#sentAt + INVALIDATION_WINDOW_MS - performance.now()
  }

  constructor (redis: SharedRedis) {
    this.#redis = redis
    redis.subscribe(NAME, (message) => {
      const space = message.indexOf(' ')
      if (space === -1 || message.slice(0, space) === this.#origin) return
      this.#local.publish(message.slice(space + 1))
    })
    redis.track(KEY, (suffix) => {
      const colon = suffix.indexOf(':')
      if (colon !== -1) this.#local.publish(suffix.slice(colon + 1))
    })
    // Whatever was announced while a connection was down went unheard: nothing cached is trusted.
    redis.onTrackingReady(() => { this.#local.missed() })
    redis.onSubscriberReady(() => { this.#local.missed() })
    redis.onUp(() => { this.#flush() })
  }

  /** Announcements not yet sent: gathered in the current window, or waiting for Redis to return. */
  get pending (): number {
    return this.#pending.size
  }

  publish (orgId: string): void {
    this.#local.publish(orgId)
    this.#pending.add(orgId)
    if (this.#timer !== undefined || this.#immediate !== undefined) return
    const wait = this.#windowRest()
    if (wait > 0) this.#timer = setTimeout(this.#windowEnd, wait)
    else this.#immediate = setImmediate(this.#send)
  }

  subscribe (listener: (orgId: string) => void): void {
    this.#local.subscribe(listener)
  }

  subscribeMissed (listener: () => void): void {
    this.#local.subscribeMissed(listener)
  }

  /** Sends what the current window gathered now; called on shutdown, before Redis is closed. */
  close (): void {
    if (this.#timer === undefined && this.#immediate === undefined) return
    clearTimeout(this.#timer)
    clearImmediate(this.#immediate)
    this.#send()
  }

  #flush (): void {
    if (!this.#redis.up) return
    // Until Redis has answered whether it tracks, both: the others may already listen either way.
    const tracking = this.#redis.tracking
    for (const orgId of this.#pending) {
      this.#pending.delete(orgId)
      const retry = () => { this.#pending.add(orgId) }
      if (tracking !== false) this.#redis.client.set(this.#redis.key(`${KEY}${this.#origin}:${orgId}`), '', 'PX', KEY_TTL_MS).catch(retry)
      if (tracking !== true) this.#redis.client.publish(this.#redis.key(NAME), `${this.#origin} ${orgId}`).catch(retry)
    }
  }
}
