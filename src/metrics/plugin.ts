import fp from 'fastify-plugin'
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import { Type } from 'typebox'
import type { Config } from '../config/config.ts'
import errorsPlugin from '../errors/handler.ts'
import { problemResponses } from '../schemas/responses.ts'
import { Metrics, NOT_FOUND_ROUTE, type SessionEvent } from './metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's metrics; null when METRICS_ENABLED=false, so callers wire them optionally. */
    metrics: Metrics | null
    /** The separate listener serving /metrics when METRICS_PORT is set. */
    metricsListener: FastifyInstance | null
  }
}

export interface MetricsPluginOptions {
  config: Pick<Config, 'METRICS_ENABLED' | 'METRICS_PORT' | 'HOST'>
}

const LOGIN = '/auth/login'
const LOGOUT = '/auth/logout'

/**
 * Session events, read off the answers: login answers 200 or 401, logout 204, and any other 401
 * comes from session verification (the only other source of UNAUTHENTICATED).
 */
function sessionEvent (route: string, status: number): SessionEvent | undefined {
  if (status === 401) return route === LOGIN ? 'login_failed' : 'rejected'
  if (route === LOGIN && status === 200) return 'login_ok'
  if (route === LOGOUT && status === 204) return 'logout'
  return undefined
}

function metricsRoute (metrics: Metrics): RouteOptions {
  return {
    method: 'GET',
    url: '/metrics',
    // Scrapes must keep working while the service sheds load: that is when they matter.
    config: { public: true, shedding: false },
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics (text exposition format)',
      description: 'Served here unless METRICS_PORT moves it to a listener of its own. Needs no session.',
      response: {
        200: {
          description: 'Metrics in the Prometheus text format 0.0.4',
          content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: Type.String() } }
        },
        ...problemResponses(['INTERNAL_ERROR'], { instance: '/metrics' })
      }
    },
    handler: async (_request: FastifyRequest, reply: FastifyReply) => {
      const text = await metrics.exposition()
      return reply.type(metrics.contentType).send(text)
    }
  }
}

/**
 * Prometheus metrics: request durations by route template, upstream calls, token state and
 * session events, on GET /metrics or, with METRICS_PORT, on a listener of its own (started
 * when the app is ready, closed with it).
 */
async function metricsPlugin (app: FastifyInstance, { config }: MetricsPluginOptions) {
  if (!config.METRICS_ENABLED) {
    app.decorate('metrics', null)
    app.decorate('metricsListener', null)
    return
  }
  const metrics = new Metrics()
  app.decorate('metrics', metrics)

  app.addHook('onResponse', function recordRequest (request, reply, done) {
    const route = request.is404 ? NOT_FOUND_ROUTE : (request.routeOptions.url ?? NOT_FOUND_ROUTE)
    const status = reply.statusCode
    metrics.request(request.method, route, status, reply.elapsedTime / 1000)
    if (status === 401 || route === LOGIN || route === LOGOUT) {
      const event = sessionEvent(route, status)
      if (event !== undefined) metrics.session(event)
    }
    done()
  })

  if (config.METRICS_PORT === undefined) {
    app.decorate('metricsListener', null)
    app.route(metricsRoute(metrics))
    return
  }

  const port = config.METRICS_PORT
  // Scrapes every few seconds would drown the access log.
  const listener = Fastify({ loggerInstance: app.log.child({ listener: 'metrics' }), logController: new LogController({ disableRequestLogging: true }) })
  await listener.register(errorsPlugin)
  listener.route(metricsRoute(metrics))
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
