import fp from 'fastify-plugin'
import fastifyCors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import { corsOrigins, type Config } from '../config/config.ts'

export interface CorsOptions { config: Pick<Config, 'CORS_ORIGINS'> }

/**
 * CORS for the configured frontend origins with credentials; no CORS headers at all when none are.
 * A refused origin gets no CORS header whatsoever (not even credentials, methods or headers), and a
 * refused preflight is logged with its origin: a frontend on a wrong origin is then visible.
 */
async function cors (app: FastifyInstance, { config }: CorsOptions) {
  const origins = corsOrigins(config)
  if (origins.length === 0) return
  const allowed = new Set(origins)
  app.addHook('onRequest', (request, _reply, done) => {
    const origin = request.headers.origin
    if (request.method === 'OPTIONS' && origin !== undefined && request.headers['access-control-request-method'] !== undefined && !allowed.has(origin)) {
      request.log.warn({ event: 'cors.refused', origin: origin.slice(0, 200), allowed: origins }, 'CORS preflight refused: the origin is not in CORS_ORIGINS')
    }
    done()
  })
  await app.register(fastifyCors, {
    // A function, so that a refused origin disables CORS for the request instead of getting the other headers.
    origin: (origin: string | undefined, callback: (error: Error | null, origin: string | false) => void) => {
      callback(null, origin !== undefined && allowed.has(origin) ? origin : false)
    },
    credentials: true,
    methods: ['GET', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: ['Content-Type', 'Authorization', 'X-CSRF', 'X-Request-Id', 'Prefer', 'traceparent', 'If-Match', 'If-None-Match', 'Idempotency-Key'],
    exposedHeaders: [
      'X-Request-Id', 'Retry-After', 'Preference-Applied', 'ETag', 'Location', 'Idempotency-Replayed',
      'RateLimit-Policy', 'RateLimit'
    ],
    maxAge: 600
  })
}

export default fp(cors, { name: 'cors', fastify: '5.x', dependencies: ['errors'] })
