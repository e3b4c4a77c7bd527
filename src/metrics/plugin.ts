import fp from 'fastify-plugin'
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import { Type } from 'typebox'
import type { Config } from '../config/config.ts'
import errorsPlugin, { clientErrorResponse } from '../errors/handler.ts'
import { Problem } from '../errors/problems.ts'
import type { ServerTimeouts } from '../http/server-options.ts'
import { MAX_TRACKED_KEYS, WindowCounter } from '../protection/rate-limit.ts'
import { problemResponses } from '../schemas/responses.ts'
import { Metrics, NOT_FOUND_ROUTE, type SessionEvent } from './metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's metrics; null when METRICS_ENABLED=false, so callers wire them optionally. */
    metrics: Metrics | null
    /** The separate listener serving /metrics when METRICS_PORT is set. */
    metricsListener: FastifyInstance | null
    /** The rendered text both places serve; absent when METRICS_ENABLED=false. */
    metricsExposition?: CachedExposition
  }
}

export interface MetricsPluginOptions {
  config: Pick<Config, 'METRICS_ENABLED' | 'METRICS_PORT' | 'HOST' | 'MAX_CONNECTIONS'>
  /** The main port's connection bounds; the METRICS_PORT listener gets the same. */
  timeouts: ServerTimeouts
  /** The exposition is rendered at most once per this many ms and served from cache in between (default 1000). */
  renderIntervalMs?: number | undefined
  /** Scrapes per client IP per minute on the main port (default 60); the METRICS_PORT listener has no such limit. */
  scrapesPerMinute?: number
  /** Clock of the render cache and the scrape limit; tests move it. */
  now?: () => number
}

/**
 * The exposition text, rendered at most once per interval; concurrent scrapes share one render.
 * Rendering costs milliseconds of event loop, so a scrape flood must not cost one each.
 */
export class CachedExposition {
  readonly #render: () => Promise<string>
  readonly #intervalMs: number
  readonly #now: () => number
  #text: string | undefined
  #renderedAt = 0
  #pending: Promise<string> | undefined
  /** How many times the text was rendered (not served from cache). */
  renders = 0

  constructor (render: () => Promise<string>, intervalMs: number, now: () => number = Date.now) {
    this.#render = render
    this.#intervalMs = intervalMs
    this.#now = now
  }

  text (): Promise<string> {
    if (this.#text !== undefined && this.#now() - this.#renderedAt < this.#intervalMs) return Promise.resolve(this.#text)
    if (this.#pending !== undefined) return this.#pending
    this.renders++
    const pending = this.#render().then((text) => {
      this.#text = text
      this.#renderedAt = this.#now()
      return text
    }).finally(() => { this.#pending = undefined })
    this.#pending = pending
    return pending
  }
}

/** Connections the METRICS_PORT listener accepts at once. */
const MAX_METRICS_CONNECTIONS = 64

const LOGIN = '/auth/login'
const LOGOUT = '/auth/logout'
const OIDC_CALLBACK = '/auth/oidc/callback'

/**
 * Session events, read off the answers: login answers 200 or 401, logout 204, and any other 401
 * comes from session verification (the only other source of UNAUTHENTICATED).
 */
function sessionEvent (route: string, status: number): SessionEvent | undefined {
  // An SSO sign-in ends at the callback: 302 with a session, or refused (401, 403 without organisations).
  if (route === OIDC_CALLBACK) return status === 302 ? 'login_ok' : status === 401 || status === 403 ? 'login_failed' : undefined
  if (status === 401) return route === LOGIN ? 'login_failed' : 'rejected'
  if (route === LOGIN && status === 200) return 'login_ok'
  // 200 when the session came from SSO and the answer names the provider's logout page.
  if (route === LOGOUT && (status === 204 || status === 200)) return 'logout'
  return undefined
}

const SCRAPE_WINDOW_MS = 60_000

/**
 * GET /metrics. On the main port it is shed under load and limited per client IP like any
 * unauthenticated route; on the METRICS_PORT listener (reachable by the scraper only) it is neither.
 */
function metricsRoute (metrics: Metrics, exposition: CachedExposition, limit?: { counter: WindowCounter, max: number }): RouteOptions {
  const overLimit = limit === undefined
    ? undefined
    : (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) => {
        const window = limit.counter.hit(request.ip)
        if (window.count <= limit.max) return done()
        done(new Problem('RATE_LIMITED', { detail: 'Too many scrapes from this address; try again later', retryAfter: limit.counter.secondsLeft(window) }))
      }
  return {
    method: 'GET',
    url: '/metrics',
    config: limit === undefined ? { public: true, shedding: false } : { public: true },
    ...(overLimit === undefined ? {} : { onRequest: overLimit }),
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics (text exposition format)',
      description: 'Served here unless METRICS_PORT moves it to a listener of its own (the production setting). Needs no session. ' +
        'Rendered at most once a second; on the main port it is shed under load and limited per client IP.',
      response: {
        200: {
          description: 'Metrics in the Prometheus text format 0.0.4',
          content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: Type.String() } }
        },
        ...problemResponses(limit === undefined ? ['INTERNAL_ERROR'] : ['RATE_LIMITED', 'OVERLOADED', 'INTERNAL_ERROR'], { instance: '/metrics' })
      }
    },
    handler: async (_request: FastifyRequest, reply: FastifyReply) => {
      const text = await exposition.text()
      return reply.type(metrics.contentType).send(text)
    }
  }
}

/**
 * Prometheus metrics: request durations by route template, upstream calls, token state and
 * session events, on GET /metrics or, with METRICS_PORT, on a listener of its own (started
 * when the app is ready, closed with it).
 */
async function metricsPlugin (app: FastifyInstance, { config, timeouts, renderIntervalMs = 1000, scrapesPerMinute = 60, now = Date.now }: MetricsPluginOptions) {
  if (!config.METRICS_ENABLED) {
    app.decorate('metrics', null)
    app.decorate('metricsListener', null)
    return
  }
  const metrics = new Metrics()
  app.decorate('metrics', metrics)
  const exposition = new CachedExposition(() => metrics.exposition(), renderIntervalMs, now)
  app.decorate('metricsExposition', exposition)

  app.addHook('onResponse', function recordRequest (request, reply, done) {
    const route = request.is404 ? NOT_FOUND_ROUTE : (request.routeOptions.url ?? NOT_FOUND_ROUTE)
    const status = reply.statusCode
    metrics.request(request.method, route, status, reply.elapsedTime / 1000)
    if (status === 401 || route === LOGIN || route === LOGOUT || route === OIDC_CALLBACK) {
      const event = sessionEvent(route, status)
      if (event !== undefined) metrics.session(event)
    }
    done()
  })

  if (config.METRICS_PORT === undefined) {
    app.decorate('metricsListener', null)
    app.route(metricsRoute(metrics, exposition, { counter: new WindowCounter(SCRAPE_WINDOW_MS, MAX_TRACKED_KEYS, now), max: scrapesPerMinute }))
    return
  }

  const port = config.METRICS_PORT
  // Scrapes every few seconds would drown the access log.
  const listener = Fastify({
    loggerInstance: app.log.child({ listener: 'metrics' }),
    logController: new LogController({ disableRequestLogging: true }),
    // The main port's bounds: an idle, slow or dripping client must not hold this port open either.
    requestTimeout: timeouts.requestMs,
    connectionTimeout: timeouts.idleMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    http: { connectionsCheckingInterval: timeouts.checkIntervalMs },
    // GET only: no request here needs a body.
    bodyLimit: 1024,
    return503OnClosing: false,
    clientErrorHandler (error, socket) {
      const response = clientErrorResponse(error, {})
      if (response !== undefined && socket.writable) socket.write(response)
      socket.destroy(error)
    }
  })
  listener.server.headersTimeout = timeouts.headersMs
  // A scraper needs a few connections; a flood of them must not cost the process memory.
  listener.server.maxConnections = Math.min(config.MAX_CONNECTIONS, MAX_METRICS_CONNECTIONS)
  await listener.register(errorsPlugin)
  listener.route(metricsRoute(metrics, exposition))
  app.decorate('metricsListener', listener)
  // onReady rather than onListen: a port that cannot be bound must stop start-up, not be logged and ignored.
  app.addHook('onReady', async () => {
    await listener.listen({ host: config.HOST, port, listenTextResolver: (address) => `Metrics listening at ${address}` })
  })
  app.addHook('onClose', async () => {
    await listener.close()
  })
}

export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x' })
