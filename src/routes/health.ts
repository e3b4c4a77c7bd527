import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { Problem } from '../errors/problems.ts'
import { problemResponses } from '../schemas/responses.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Set when shutdown begins, so readiness fails and load balancers stop sending traffic. */
    lifecycle: { draining: boolean }
  }
}

const Status = Type.Object({ status: Type.String() })

export default async function healthRoutes (app: FastifyInstance) {
  const config = { public: true }
  app.get('/health/live', {
    config,
    schema: { tags: ['health'], summary: 'Liveness: 200 while the process runs', response: { 200: Status } }
  }, async () => ({ status: 'ok' }))

  app.get('/health/ready', {
    config,
    schema: {
      tags: ['health'],
      summary: 'Readiness: 200 when serving, 503 once shutdown has begun',
      response: { 200: Status, ...problemResponses(['SHUTTING_DOWN']) }
    }
  }, async () => {
    if (app.lifecycle.draining) throw new Problem('SHUTTING_DOWN', { detail: 'The service is draining', retryAfter: 5 })
    return { status: 'ready' }
  })
}
