import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import fastifyCors from '@fastify/cors'
import fastifyRateLimit from '@fastify/rate-limit'
import ajvFormats from 'ajv-formats'
import type { DestinationStream } from 'pino'
import { corsOrigins, type Config } from './config/config.ts'
import errorsPlugin, { clientErrorResponse, sendProblem, toProblem } from './errors/handler.ts'
import { AccessLog, loggerOptions, requestId, unredacted } from './logging/logger.ts'
import authRoutes from './routes/auth.ts'
import contactRoutes from './routes/contacts.ts'
import healthRoutes from './routes/health.ts'
import docsPlugin from './docs/plugin.ts'
import metricsPlugin from './metrics/plugin.ts'
import loadShedding from './protection/load-shedding.ts'
import { sessionRateLimit } from './protection/rate-limit.ts'
import { securityHeaders } from './protection/security-headers.ts'
import sessionPlugin from './session/plugin.ts'
import { EmnifyClient, type EmnifyClientOptions } from './upstream/emnify-client.ts'
import { UserDirectory } from './users/users-file.ts'
import { Problem } from './errors/problems.ts'
import { LoginLimiter } from './session/login-limiter.ts'
import { USER_AGENT } from './version.ts'

// RFC 8259 §8.1: JSON text is UTF-8. A lenient decoder would turn bad bytes into U+FFFD and
// forward a change (or try a password) the client never sent.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

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
  tokenCache?: EmnifyClientOptions['tokenCache']
  /** Sees every route as it is registered (tests compare the OpenAPI document with what is served). */
  onRoute?: (route: RouteOptions) => void
  /** Event-loop sampling interval of load shedding, ms (default 1000); tests shorten it. */
  loadSheddingSampleIntervalMs?: number
  /** Server timeouts; tests shorten them instead of sleeping through the production values. */
  serverTimeouts?: Partial<ServerTimeouts>
}

/** Inbound connection bounds, ms. */
export interface ServerTimeouts {
  /** The whole request, headers and body, must arrive within this: stops slow-body clients. */
  requestMs: number
  /** Headers must be complete within this: stops slowloris-style clients. */
  headersMs: number
  /** Socket inactivity bound. */
  idleMs: number
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: number
  /**
   * How often Node enforces requestMs and headersMs. Its default, 30 s, would let a slow client
   * overstay them by up to that much.
   */
  checkIntervalMs: number
}

/** Builds the BFF from validated configuration. Does not listen and installs no signal handlers. */
export async function buildApp (config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  // Loaded first: a broken users file must stop start-up with a message naming the bad entry.
  const users = config.USERS_FILE === undefined ? null : await UserDirectory.load(config.USERS_FILE)
  const security = await securityHeaders()

  const timeouts: ServerTimeouts = {
    requestMs: 15_000,
    headersMs: 10_000,
    // Above the worst case of one request (authenticate, call, re-auth, retry, read back).
    idleMs: config.UPSTREAM_TIMEOUT_MS * 5 + 5_000,
    // Longer than common load-balancer idle timeouts (60 s), so the balancer closes first.
    keepAliveMs: 72_000,
    checkIntervalMs: 1_000,
    ...options.serverTimeouts
  }
  const accessLog = new AccessLog()
  // Every answer carries these; also called where hooks do not run (router-level errors).
  const stampHeaders = (request: FastifyRequest, reply: FastifyReply) => {
    reply.header('x-request-id', request.id).header('x-content-type-options', 'nosniff').headers(security)
  }
  const app = Fastify({
    logger: loggerOptions(config.LOG_LEVEL, options.logStream),
    logController: accessLog,
    genReqId: requestId,
    requestTimeout: timeouts.requestMs,
    connectionTimeout: timeouts.idleMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    http: { connectionsCheckingInterval: timeouts.checkIntervalMs },
    bodyLimit: 64 * 1024,
    routerOptions: { maxParamLength: 64 },
    // While closing, keep answering requests on open connections (each response then closes its
    // connection) instead of Fastify's own non-problem 503 body.
    return503OnClosing: false,
    ajv: {
      // Reject what the schema does not describe, never reshape it: a strict proxy forwards
      // exactly what it validated.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: true },
      // ajv-formats types its own copy of Ajv; the runtime objects are the same.
      plugins: [ajvFormats.default as never]
    },
    // Requests Node's parser refuses (bad bytes, headers too large) or times out never reach the
    // error handler; they still get problem+json with the security headers.
    clientErrorHandler (error, socket) {
      const response = clientErrorResponse(error, security)
      if (response !== undefined && socket.writable) socket.write(response)
      // As Node and Fastify do; the error stays on the socket, where the access line reads a timeout.
      socket.destroy(error)
    },
    frameworkErrors (error, request, reply) {
      // Router-level rejections (bad URL encoding, over-long param) bypass Fastify's response
      // listeners, so without this they would leave no access line.
      reply.raw.once('finish', () => accessLog.requestCompleted(null, request, reply))
      stampHeaders(request, reply)
      return sendProblem(reply, toProblem(error))
    }
  })
  // Headers must be complete well before the whole request is.
  app.server.headersTimeout = timeouts.headersMs
  accessLog.attach(app.log)

  app.decorate('lifecycle', { draining: false })
  app.decorate('users', users)
  app.decorateRequest('upstream', null)
  if (options.onRoute !== undefined) app.addHook('onRoute', options.onRoute)

  // First hook of all, so that every answer carries these, errors and 404s included.
  app.addHook('onRequest', (request, reply, done) => {
    stampHeaders(request, reply)
    done()
  })
  // While draining, every response ends its connection: keep-alive sockets would otherwise hold
  // the server open after the last in-flight request finished.
  app.addHook('onSend', (request, reply, payload, done) => {
    // The connection is gone (client left, or the request timed out): no 'finish' will come, so
    // Fastify would leave no access line.
    if (reply.raw.destroyed) accessLog.requestAborted(request, reply)
    else if (app.lifecycle.draining) reply.header('connection', 'close')
    done(null, payload)
  })

  // Only JSON bodies exist in this API; dropping the text/plain default turns anything else into 415.
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser(['application/json', 'application/merge-patch+json'], { parseAs: 'buffer' }, (request, body, done) => {
    let text: string
    try {
      text = strictUtf8.decode(body as Buffer)
    } catch {
      done(new Problem('MALFORMED_JSON', { detail: 'The request body is not valid UTF-8' }), undefined)
      return
    }
    parseJson(request, text, done)
  })

  await app.register(errorsPlugin)
  const origins = corsOrigins(config)
  if (origins.length > 0) {
    await app.register(fastifyCors, {
      origin: origins,
      credentials: true,
      methods: ['GET', 'POST', 'PATCH'],
      allowedHeaders: ['Content-Type', 'Authorization', 'X-CSRF', 'X-Request-Id', 'Prefer', 'traceparent'],
      exposedHeaders: ['X-Request-Id', 'Retry-After', 'Preference-Applied', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'],
      maxAge: 600
    })
  }
  // Before any route, so that the document and the metrics see them all.
  if (config.DOCS_ENABLED) await app.register(docsPlugin, { config })
  await app.register(metricsPlugin, { config })
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
  const contactLimit = sessionRateLimit(app, config.RATE_LIMIT_PER_MINUTE)
  await app.register(sessionPlugin, { config, onReject: contactLimit.onReject })

  const metrics = app.metrics
  const client = new EmnifyClient({
    origin: config.EMNIFY_API_URL,
    applicationToken: config.EMNIFY_APPLICATION_TOKEN,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    userAgent: USER_AGENT,
    tokenCache: options.tokenCache,
    observe: metrics?.upstreamCall,
    onTokenRefresh: metrics?.tokenRefresh
  })
  metrics?.watchToken(() => client.tokens.expiresInSeconds())
  const loginLimiter = new LoginLimiter()
  metrics?.watchStores({
    revocations: app.revocations,
    session_rate_limit: contactLimit.counter,
    login_lockout: loginLimiter,
    upstream_token: { get size () { return client.tokens.expiresInSeconds() > 0 ? 1 : 0 }, capacity: 1 }
  })
  app.addHook('onClose', () => client.close())

  await app.register(healthRoutes)
  await app.register(authRoutes, { config, users, limiter: loginLimiter })
  await app.register(contactRoutes, { client, audit: unredacted(app.log, { log_type: 'audit' }) })

  return app
}
