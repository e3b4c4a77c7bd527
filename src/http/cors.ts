import fp from 'fastify-plugin'
import fastifyCors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import { corsOrigins, type Config } from '../config/config.ts'

export interface CorsOptions { config: Pick<Config, 'CORS_ORIGINS'> }

/** CORS for the configured frontend origins with credentials; no CORS headers at all when none are. */
async function cors (app: FastifyInstance, { config }: CorsOptions) {
  const origins = corsOrigins(config)
  if (origins.length === 0) return
  await app.register(fastifyCors, {
    origin: origins,
    credentials: true,
    methods: ['GET', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: ['Content-Type', 'Authorization', 'X-CSRF', 'X-Request-Id', 'Prefer', 'traceparent', 'If-Match', 'If-None-Match', 'Idempotency-Key'],
    exposedHeaders: [
      'X-Request-Id', 'Retry-After', 'Preference-Applied', 'ETag', 'Location', 'Idempotency-Replayed',
      'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'
    ],
    maxAge: 600
  })
}

export default fp(cors, { name: 'cors', fastify: '5.x', dependencies: ['errors'] })
