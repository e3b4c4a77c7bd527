import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import type { DestinationStream } from 'pino'
import oidc, { type OidcPluginOptions } from './auth/oidc/plugin.ts'
import type { Config } from './config/config.ts'
import contacts, { CONTACTS_PREFIX } from './contacts/plugin.ts'
import countries from './countries/plugin.ts'
import docsPlugin from './docs/plugin.ts'
import errorsPlugin from './errors/handler.ts'
import { Problem } from './errors/problems.ts'
import cors from './http/cors.ts'
import jsonBody from './http/json-body.ts'
import methodNotAllowed from './http/method-not-allowed.ts'
import pipelining from './http/pipelining.ts'
import responseHeaders, { headerStamp } from './http/response-headers.ts'
import { serverOptions, serverTimeouts, type ServerTimeouts } from './http/server-options.ts'
import { AccessLog } from './logging/logger.ts'
import metricsPlugin from './metrics/plugin.ts'
import loadShedding from './protection/load-shedding.ts'
import { sessionRateLimit } from './protection/rate-limit.ts'
import { securityHeaders } from './protection/security-headers.ts'
import authRoutes from './routes/auth.ts'
import healthRoutes from './routes/health.ts'
import sessionPlugin from './session/plugin.ts'
import statePlugin from './state/plugin.ts'
import { createRedisBudgetStore } from './upstream/budget-redis.ts'
import upstream, { type UpstreamPluginOptions } from './upstream/plugin.ts'
import { UserDirectory } from './users/users-file.ts'

export type { ServerTimeouts } from './http/server-options.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The users file behind POST /auth/login, or null when login is not offered. */
    users: UserDirectory | null
  }
}

export interface AppOptions {
  /** Where log lines go (tests capture them); stdout by default. */
  logStream?: DestinationStream
  /** Test hooks for the token cache (clock, jitter, backoff). */
  tokenCache?: UpstreamPluginOptions['tokenCache']
  /** Sees every route as it is registered (tests compare the OpenAPI document with what is served). */
  onRoute?: (route: RouteOptions) => void
  /** Event-loop sampling interval of load shedding, ms (default 1000); tests shorten it. */
  loadSheddingSampleIntervalMs?: number
  /** Server timeouts; tests shorten them instead of sleeping through the production values. */
  serverTimeouts?: Partial<ServerTimeouts>
  /** How long a rendered /metrics text is served before it is rendered again, ms (default 1000); 0 renders every scrape. */
  metricsRenderIntervalMs?: number
  /** Test hooks for single sign-on (calls to the provider, clock, sign-in lifetime). */
  oidc?: Omit<OidcPluginOptions, 'config'>
}

/** Builds the BFF from validated configuration. Does not listen and installs no signal handlers. */
export async function buildApp (config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  // Loaded first: a broken users file must stop start-up with a message naming the bad entry.
  const users = config.USERS_FILE === undefined ? null : await UserDirectory.load(config.USERS_FILE)
  const security = await securityHeaders()
  const timeouts = serverTimeouts(config, options.serverTimeouts)
  const accessLog = new AccessLog()
  const stamp = headerStamp(security)
  const app = Fastify(serverOptions({ config, timeouts, accessLog, security, stamp, logStream: options.logStream }))
  // Headers must be complete well before the whole request is.
  app.server.headersTimeout = timeouts.headersMs
  // Idle keep-alive sockets cost memory; beyond this many, new connections are closed at accept.
  app.server.maxConnections = config.MAX_CONNECTIONS
  accessLog.attach(app.log)
  app.decorate('users', users)
  if (options.onRoute !== undefined) app.addHook('onRoute', options.onRoute)

  await app.register(responseHeaders, { stamp, accessLog })
  // Before every other hook: a pipelined request runs only once it can still be answered.
  await app.register(pipelining)
  await app.register(jsonBody)
  await app.register(errorsPlugin)
  await app.register(methodNotAllowed)
  await app.register(cors, { config })
  // Before any route, so that the document and the metrics see them all.
  if (config.DOCS_ENABLED) await app.register(docsPlugin, { config })
  await app.register(metricsPlugin, { config, timeouts, renderIntervalMs: options.metricsRenderIntervalMs })
  // After CORS (a browser must be able to read the 503), before the session is verified.
  await app.register(loadShedding, { config, sampleIntervalMs: options.loadSheddingSampleIntervalMs })
  // Limits are declared per route (login); the in-memory store is an LRU, so it stays bounded.
  await app.register(fastifyRateLimit, {
    global: false,
    cache: 10_000,
    errorResponseBuilder: (_request, context) => new Problem('RATE_LIMITED', {
      detail: 'Too many requests; try again later',
      retryAfter: Math.max(1, Math.ceil(context.ttl / 1000))
    })
  })
  // Contact routes: per session `sub`, and per IP for the requests the session hook refuses.
  // Every store, in memory or shared through REDIS_URL; before everything that keeps state.
  await app.register(statePlugin, { config })
  const { stores } = app
  const contactLimit = sessionRateLimit(app, config.RATE_LIMIT_PER_MINUTE, stores.sessionCounter)
  await app.register(sessionPlugin, { config, onReject: contactLimit.onReject, revocations: stores.revocations })
  await app.register(upstream, {
    config,
    tokenCache: { ...options.tokenCache, shared: stores.upstreamToken },
    budgetStore: stores.redis === null ? undefined : createRedisBudgetStore(stores.redis.client, { prefix: config.REDIS_KEY_PREFIX })
  })
  // Discovers the provider when OIDC_ISSUER is set (start-up fails if it cannot); a no-op otherwise.
  await app.register(oidc, { config, ...options.oidc })

  app.metrics?.watchStores({ revocations: app.revocations, session_rate_limit: contactLimit.counter, login_lockout: stores.loginLockout })

  await app.register(healthRoutes)
  await app.register(authRoutes, { config, users, limiter: stores.loginLockout })
  await app.register(contacts, { config, prefix: CONTACTS_PREFIX, bus: stores.invalidation, idempotency: stores.idempotency })
  await app.register(countries, { config })
  return app
}
