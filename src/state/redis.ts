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

/** Where Redis sends the invalidations that client-side tracking redirects to a connection. */
const INVALIDATE_CHANNEL = '__redis__:invalidate'
const INVALIDATE_CHANNEL_BYTES = Buffer.from(INVALIDATE_CHANNEL, 'latin1')

/**
 * Whether the command connection tracks the keys under `track()`'s prefixes: `true` once Redis
 * accepted, `false` once it refused (an ACL without `client|tracking`, `client|id` or
 * `&__redis__:invalidate`; a Redis without it), `undefined` before the first answer and while
 * a set-up that failed for another reason is retried.
 */
export type Tracking = boolean | undefined

/** How soon a tracking set-up that failed for a reason other than a refusal is tried again: doubling up to the cap. */
const TRACKING_RETRY_MS = 500
const TRACKING_RETRY_MAX_MS = 30_000

/**
 * Whether Redis refused client-side tracking for good: an ACL without `client|id`,
 * `client|tracking` or the channel (NOPERM), or a server without the command or one of its
 * options. Timeouts, closed connections and a redirect to a subscriber that just disconnected
 * are not refusals.
 */
export function isTrackingRefusal (error: unknown): boolean {
  return /^(NOPERM|ERR unknown (sub)?command|ERR syntax error)/i.test(reasonOf(error))
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
  readonly #onTrackingReady: Array<() => void> = []
  readonly #channels = new Map<string, Array<(message: string) => void>>()
  /** Tracked key prefixes (full names) and who hears their keys' suffixes. */
  readonly #tracked = new Map<string, Array<(suffix: string) => void>>()
  /** The subscriber connection's CLIENT ID, where the command connection redirects invalidations. */
  #subscriberId: number | undefined
  #tracking: Tracking
  /** Counts attempts to switch tracking on, so a late answer cannot undo a newer one. */
  #trackingAttempt = 0
  /** Counts the subscriber's set-ups, so a retry does not cut one that is newer than its failure. */
  #subscriberSetup = 0
  /** The one pending retry after a failure that was not a refusal, and the wait before the next. */
  #trackingRetry: NodeJS.Timeout | undefined
  #trackingRetryMs = TRACKING_RETRY_MS
  /** Whether the last set-up failed (not refused): logged once per change. */
  #trackingFailing = false

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
    // RESP2: a redirected invalidation then arrives as a message on INVALIDATE_CHANNEL; under
    // RESP3 it would be an `invalidate` push, which ioredis drops.
    this.subscriber = new Redis(options.url, { ...settings, connectionName: 'emnify-bff-sub', autoResubscribe: false, protocol: 2 })
    this.client.on('ready', () => {
      this.#transition(true)
      this.#startTracking()
    })
    this.client.on('close', () => this.#transition(false))
    // ioredis reports every failed attempt; the transitions above are the one line operators need.
    this.client.on('error', () => {})
    this.subscriber.on('error', () => {})
    this.subscriber.on('ready', () => { this.#resubscribe() })
    // Its id dies with it: the command connection must not be pointed at it again.
    this.subscriber.on('close', () => { this.#subscriberId = undefined })
    this.subscriber.on('message', (channel: string, message: string) => {
      for (const listener of this.#channels.get(channel) ?? []) listener(message)
    })
    // An invalidation's payload is an array of key names (null when Redis was flushed, which
    // says nothing about contacts): read from the Buffers, since 'message' joins them with commas.
    this.subscriber.on('messageBuffer', (channel: Buffer, keys: Buffer[] | Buffer | null) => {
      if (!Array.isArray(keys) || !INVALIDATE_CHANNEL_BYTES.equals(channel)) return
      for (const key of keys) this.#invalidated(key.toString('utf8'))
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

  /**
   * Client-side tracking in broadcast mode: `listener` hears the suffix of every key under
   * `prefix + name` that another connection writes, and never this instance's own writes
   * (`NOLOOP`), so announcing something costs the writer no echo. Register before `connect()`.
   */
  track (name: string, listener: (suffix: string) => void): void {
    const prefix = this.key(name)
    const listeners = this.#tracked.get(prefix)
    if (listeners !== undefined) listeners.push(listener)
    else this.#tracked.set(prefix, [listener])
  }

  /** Called whenever tracking is (re)established: what was written meanwhile went unheard. */
  onTrackingReady (listener: () => void): void {
    this.#onTrackingReady.push(listener)
  }

  /** Whether this Redis lets the instance hear tracked keys; see `Tracking`. */
  get tracking (): Tracking {
    return this.#tracking
  }

  async close (): Promise<void> {
    this.#closing = true
    clearTimeout(this.#trackingRetry)
    await Promise.all([this.client, this.subscriber].map(async (connection) => {
      try {
        await connection.quit()
      } catch {
        connection.disconnect()
      }
    }))
  }

  #resubscribe (): void {
    this.#subscribeAll().then(() => {
      this.#startTracking()
      for (const listener of this.#onSubscriberReady) listener()
    }, (error: unknown) => {
      // The channels may not listen: the set-up is done again, catch-up included.
      this.#trackingFailed(error)
    })
  }

  /** Leaves `#subscriberId` unset (as the subscriber's 'close' left it) unless all of it worked. */
  async #subscribeAll (): Promise<void> {
    this.#subscriberSetup++
    // The id is asked first: once subscribed, a RESP2 connection answers nothing else.
    const id = this.#tracked.size === 0 ? undefined : await this.#askSubscriberId()
    const channels = [...this.#channels.keys()]
    if (channels.length > 0) await this.subscriber.subscribe(...channels)
    if (id === undefined) return
    // Apart from the others, so that an ACL refusing this channel cannot cost them.
    try {
      await this.subscriber.subscribe(INVALIDATE_CHANNEL)
      this.#subscriberId = id
    } catch (error) {
      this.#trackingFailed(error)
    }
  }

  async #askSubscriberId (): Promise<number | undefined> {
    try {
      return Number(await this.subscriber.client('ID'))
    } catch (error) {
      this.#trackingFailed(error)
      return undefined
    }
  }

  /**
   * Points the command connection's tracking at the subscriber. Runs whenever either connection
   * (re)connects: Redis forgets a connection's tracking when it closes, and a redirect to a
   * closed subscriber is dropped silently. OFF first, since ON refuses an overlapping prefix.
   * Once on, listeners hear that announcements may have been missed meanwhile.
   */
  #startTracking (): void {
    const id = this.#subscriberId
    if (id === undefined || !this.#up || this.subscriber.status !== 'ready') return
    const attempt = ++this.#trackingAttempt
    const prefixes = [...this.#tracked.keys()].flatMap((prefix) => ['PREFIX', prefix])
    this.client.pipeline()
      .client('TRACKING', 'OFF')
      .client('TRACKING', 'ON', 'REDIRECT', id, 'BCAST', ...prefixes, 'NOLOOP')
      .exec()
      .then((results) => {
        if (attempt !== this.#trackingAttempt) return
        const failed = results?.find(([error]) => error !== null)?.[0]
        if (failed != null) {
          this.#trackingFailed(failed)
          return
        }
        this.#tracking = true
        clearTimeout(this.#trackingRetry)
        this.#trackingRetry = undefined
        this.#trackingRetryMs = TRACKING_RETRY_MS
        if (this.#trackingFailing) this.#log.info({ event: 'redis.tracking_on' }, 'client-side tracking on again')
        this.#trackingFailing = false
        for (const listener of this.#onTrackingReady) listener()
      }, (error: unknown) => {
        if (attempt === this.#trackingAttempt) this.#trackingFailed(error)
      })
  }

  /**
   * A refusal (see `isTrackingRefusal`) holds until a reconnect shows otherwise: the bus then
   * announces by pub/sub. Anything else (a timeout, a connection cut, a reply it did not expect)
   * is retried with a doubling wait, one retry pending at a time, and meanwhile whether Redis
   * tracks is not known, so the bus announces both ways.
   */
  #trackingFailed (error: unknown): void {
    if (isTrackingRefusal(error)) {
      if (this.#tracking !== false) {
        this.#log.warn({ event: 'redis.tracking_refused', reason: reasonOf(error) },
          'shared store refused client-side tracking; cached-read invalidations go by pub/sub, echo included (README, "Protect Redis")')
      }
      this.#tracking = false
      return
    }
    this.#tracking = undefined
    if (!this.#trackingFailing) this.#log.warn({ event: 'redis.tracking_failed', reason: reasonOf(error) }, 'could not switch client-side tracking on; retrying')
    this.#trackingFailing = true
    if (this.#trackingRetry !== undefined || this.#closing) return
    const setup = this.#subscriberSetup
    const wait = this.#trackingRetryMs
    this.#trackingRetryMs = Math.min(wait * 2, TRACKING_RETRY_MAX_MS)
    this.#trackingRetry = setTimeout(() => {
      this.#trackingRetry = undefined
      if (this.#closing || this.#tracking === true) return
      if (this.#subscriberId !== undefined) {
        this.#startTracking()
      } else if (this.#subscriberSetup === setup && this.subscriber.status === 'ready') {
        // The subscriber's set-up failed and none has started since: only a fresh connection
        // can still be asked its id.
        this.subscriber.disconnect(true)
      }
    }, wait)
    this.#trackingRetry.unref()
  }

  #invalidated (key: string): void {
    for (const [prefix, listeners] of this.#tracked) {
      if (!key.startsWith(prefix)) continue
      const suffix = key.slice(prefix.length)
      for (const listener of listeners) listener(suffix)
    }
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

function reasonOf (error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
