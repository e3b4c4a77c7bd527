import { hash } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'

/** What the connection logs through: pino's shape, so the app logger fits. */
export interface StateLogger {
  info: (object: Record<string, unknown>, message: string) => void
  warn: (object: Record<string, unknown>, message: string) => void
}

export interface SharedRedisOptions {
  url: string
  /** REDIS_KEY_PREFIX: every key and channel starts with it. */
  prefix: string
  log: StateLogger
  /** A command not answered within this fails, so a hung Redis cannot hang a request. */
  commandTimeoutMs?: number
  connectTimeoutMs?: number
  /** Longest pause between reconnect attempts. */
  maxReconnectDelayMs?: number
  random?: () => number
}

/** Hash of a value that must not appear in a key name (sub, jti, idempotency key). */
export function keyHash (value: string): string {
  return hash('sha256', value, 'base64url')
}

/**
 * The one Redis client of an instance, plus the one subscriber connection pub/sub needs.
 * Commands fail at once while disconnected (no offline queue piling up) and within
 * `commandTimeoutMs` when Redis hangs; reconnects go on forever with capped, jittered backoff.
 * `up` follows the command connection; each transition is logged once.
 */
export class SharedRedis {
  readonly client: Redis
  readonly subscriber: Redis
  readonly prefix: string
  #up = false
  #everUp = false
  #closing = false
  readonly #log: StateLogger
  readonly #onUp: Array<() => void> = []
  readonly #onDown: Array<() => void> = []
  readonly #onSubscriberReady: Array<() => void> = []
  readonly #channels = new Map<string, Array<(message: string) => void>>()

  constructor (options: SharedRedisOptions) {
    this.prefix = options.prefix
    this.#log = options.log
    const random = options.random ?? Math.random
    const maxDelay = options.maxReconnectDelayMs ?? 2000
    const settings: RedisOptions = {
      commandTimeout: options.commandTimeoutMs ?? 500,
      connectTimeout: options.connectTimeoutMs ?? 2000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Never give up: an instance must rejoin the fleet whenever Redis comes back.
      retryStrategy: (times) => Math.round(Math.min(maxDelay, 50 * 2 ** Math.min(times, 10)) * (0.5 + random() / 2)),
      lazyConnect: true,
      // One command fewer for the ACL user to be granted (and unknown before Redis 7.2).
      disableClientInfo: true
    }
    this.client = new Redis(options.url, { ...settings, connectionName: 'emnify-bff' })
    // Channels are subscribed again by #resubscribe, which then tells listeners to catch up.
    this.subscriber = new Redis(options.url, { ...settings, connectionName: 'emnify-bff-sub', autoResubscribe: false })
    this.client.on('ready', () => this.#transition(true))
    this.client.on('close', () => this.#transition(false))
    // ioredis reports every failed attempt; the transitions above are the one line operators need.
    this.client.on('error', () => {})
    this.subscriber.on('error', () => {})
    this.subscriber.on('ready', () => { this.#resubscribe() })
    this.subscriber.on('message', (channel: string, message: string) => {
      for (const listener of this.#channels.get(channel) ?? []) listener(message)
    })
  }

  /**
   * Starts both connections; resolves once Redis answered and the channels subscribed so far
   * listen, or after `waitMs`, whichever is first.
   */
  async connect (waitMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const gaveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs)
      timer.unref()
    })
    const up = new Promise<void>((resolve) => { this.onUp(resolve) })
    const listening = new Promise<void>((resolve) => { this.onSubscriberReady(resolve) })
    // Failures are retried by ioredis itself; `up` tells whether it worked.
    this.client.connect().catch(() => {})
    this.subscriber.connect().catch(() => {})
    await Promise.race([Promise.all([up, listening]), gaveUp])
    clearTimeout(timer)
  }

  /** Whether commands can be sent right now. */
  get up (): boolean {
    return this.#up
  }

  /** Whether Redis has answered at least once since start (readiness). */
  get everUp (): boolean {
    return this.#everUp
  }

  key (name: string): string {
    return this.prefix + name
  }

  /** Called whenever the command connection becomes usable, the first time included. */
  onUp (listener: () => void): void {
    this.#onUp.push(listener)
    if (this.#up) listener()
  }

  onDown (listener: () => void): void {
    this.#onDown.push(listener)
  }

  /** Called whenever the subscriber (re)connects: messages may have been missed meanwhile. */
  onSubscriberReady (listener: () => void): void {
    this.#onSubscriberReady.push(listener)
  }

  /** Listens on `prefix + name`; ioredis re-subscribes by itself after a reconnect. */
  subscribe (name: string, listener: (message: string) => void): void {
    const channel = this.key(name)
    const listeners = this.#channels.get(channel)
    if (listeners !== undefined) {
      listeners.push(listener)
      return
    }
    this.#channels.set(channel, [listener])
    if (this.subscriber.status === 'ready') this.subscriber.subscribe(channel).catch(() => {})
  }

  async close (): Promise<void> {
    this.#closing = true
    await Promise.all([this.client, this.subscriber].map(async (connection) => {
      try {
        await connection.quit()
      } catch {
        connection.disconnect()
      }
    }))
  }

  #resubscribe (): void {
    const channels = [...this.#channels.keys()]
    const subscribed = channels.length === 0 ? Promise.resolve() : this.subscriber.subscribe(...channels)
    subscribed.then(() => { for (const listener of this.#onSubscriberReady) listener() }, () => {})
  }

  #transition (up: boolean): void {
    if (up === this.#up) return
    this.#up = up
    if (up) {
      this.#everUp = true
      this.#log.info({ event: 'redis.up' }, 'shared store reachable')
      for (const listener of this.#onUp) listener()
    } else {
      if (!this.#closing) this.#log.warn({ event: 'redis.down' }, 'shared store unreachable; carrying on alone')
      for (const listener of this.#onDown) listener()
    }
  }
}
