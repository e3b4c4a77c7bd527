import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Gauge } from 'prom-client'
import type { Config } from '../config/config.ts'
import { SharedWindowCounter, WindowCounter, type HitCounter } from '../protection/rate-limit.ts'
import { LoginLockout } from '../session/login-limiter.ts'
import { Revocations } from '../session/revocations.ts'
import { MemoryIdempotencyStore } from './idempotency-memory.ts'
import { RedisIdempotencyStore } from './idempotency-redis.ts'
import { LocalInvalidationBus } from './invalidation-memory.ts'
import { RedisInvalidationBus } from './invalidation-redis.ts'
import { SharedRedis, type SharedRedisOptions } from './redis.ts'
import { shareRevocations, type SharedRevocations } from './revocations.ts'
import { RedisTokenStore } from './token-store.ts'
import type { IdempotencyStore, InvalidationBus, SharedTokenStore } from './types.ts'

/** Every store an instance keeps, in memory (one instance) or shared through Redis (a fleet). */
export interface Stores {
  /** The shared connection, or null without REDIS_URL (the upstream budget's Redis backend takes its `client`). */
  redis: SharedRedis | null
  revocations: Revocations
  /** Revocations this instance made that Redis has not stored yet (0 without Redis). */
  readonly pendingRevocations: number
  loginLockout: LoginLockout
  /** The per-session rate limit's counts, for `sessionRateLimit(app, max, counter)`. */
  sessionCounter: HitCounter
  invalidation: InvalidationBus
  idempotency: IdempotencyStore
  /** For TokenCacheOptions.shared: the fleet's token and refresh lock, or undefined without Redis. */
  upstreamToken: { store: SharedTokenStore, lockTtlMs: number } | undefined
  /** False until Redis has answered once (always true without Redis); an outage later does not reset it. */
  readonly ready: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    stores: Stores
  }
}

export interface StatePluginOptions {
  config: Pick<Config, 'REDIS_URL' | 'REDIS_KEY_PREFIX' | 'UPSTREAM_TIMEOUT_MS'>
  /** Connection tuning; tests shorten the timeouts. */
  redis?: Partial<Pick<SharedRedisOptions, 'commandTimeoutMs' | 'connectTimeoutMs' | 'maxReconnectDelayMs'>>
  /** How long start-up waits for Redis before serving (unready) without it. */
  connectWaitMs?: number
  /** How often the per-session counts are added up across the fleet. */
  rateLimitSyncMs?: number
}

const WINDOW_MS = 60_000

async function statePlugin (app: FastifyInstance, options: StatePluginOptions) {
  const { config } = options
  const revocations = new Revocations()
  if (config.REDIS_URL === undefined) {
    app.decorate('stores', {
      redis: null,
      revocations,
      pendingRevocations: 0,
      loginLockout: new LoginLockout(),
      sessionCounter: new WindowCounter(WINDOW_MS),
      invalidation: new LocalInvalidationBus(),
      idempotency: new MemoryIdempotencyStore(),
      upstreamToken: undefined,
      ready: true
    } satisfies Stores)
    return
  }

  const redis = new SharedRedis({ url: config.REDIS_URL, prefix: config.REDIS_KEY_PREFIX, log: app.log, ...options.redis })
  const shared: SharedRevocations = shareRevocations(revocations, redis)
  const sessionCounter = new SharedWindowCounter(redis, { windowMs: WINDOW_MS, syncMs: options.rateLimitSyncMs })
  const invalidation = new RedisInvalidationBus(redis)
  const stores: Stores = {
    redis,
    revocations,
    get pendingRevocations () { return shared.pending },
    loginLockout: new LoginLockout({ redis }),
    sessionCounter,
    invalidation,
    idempotency: new RedisIdempotencyStore(redis),
    // The lock outlives one authenticate call (its budget is UPSTREAM_TIMEOUT_MS) with a margin.
    upstreamToken: { store: new RedisTokenStore(redis), lockTtlMs: config.UPSTREAM_TIMEOUT_MS + 2000 },
    get ready () { return redis.everUp }
  }
  app.decorate('stores', stores)

  const registry = app.hasDecorator('metrics') ? app.metrics?.registry : undefined
  if (registry !== undefined) {
    const gauge = new Gauge({ name: 'emnify_bff_redis_up', help: '1 while the shared store (Redis) answers, else 0', registers: [registry] })
    gauge.set(0)
    redis.onUp(() => gauge.set(1))
    redis.onDown(() => gauge.set(0))
  }
  app.addHook('onClose', async () => {
    sessionCounter.close()
    // What the last window gathered goes out before QUIT, which Redis reads after it.
    invalidation.close()
    await redis.close()
  })

  await redis.connect(options.connectWaitMs ?? 2000)
  // Revocations made before a restart hold from the first request on.
  if (redis.up) await shared.sync()
}

export default fp(statePlugin, { name: 'state', fastify: '5.x' })
