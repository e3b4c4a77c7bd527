import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { Problem } from '../errors/problems.ts'
import { problemResponses } from '../schemas/responses.ts'
import { OVERLOAD_RETRY_AFTER_S } from '../protection/load-shedding.ts'
import { budgetStatus, BudgetStatusSchema } from '../upstream/budget.ts'

const Status = Type.Object({ status: Type.String() })
// The budget is information for operators, not a verdict: an exhausted budget is still ready.
const ReadyStatus = Type.Object({ status: Type.String(), upstream_budget: Type.Optional(BudgetStatusSchema) })

export default async function healthRoutes (app: FastifyInstance) {
  // Probes must answer under load: liveness always, readiness with its own verdict (below).
  const config = { public: true, shedding: false }
  const overloaded = app.hasDecorator('isUnderPressure') ? () => app.isUnderPressure() : () => false
  // A fleet instance serves only once Redis has answered (it would otherwise miss others' logouts).
  const storesReady = app.hasDecorator('stores') ? () => app.stores.ready : () => true
  app.get('/health/live', {
    config,
    schema: { tags: ['health'], summary: 'Liveness: 200 while the process runs', response: { 200: Status } }
  }, async () => ({ status: 'ok' }))

  app.get('/health/ready', {
    config,
    schema: {
      tags: ['health'],
      summary: 'Readiness: 200 when serving; 503 once shutdown has begun, while the service sheds load, or until the shared store (REDIS_URL) has answered once',
      response: { 200: ReadyStatus, ...problemResponses(['SHUTTING_DOWN', 'OVERLOADED', 'STORE_UNAVAILABLE'], { instance: '/health/ready' }) }
    }
  }, async () => {
    if (app.lifecycle.draining) throw new Problem('SHUTTING_DOWN', { detail: 'The service is draining', retryAfter: 5 })
    if (overloaded()) throw new Problem('OVERLOADED', { detail: 'The service is shedding load', retryAfter: OVERLOAD_RETRY_AFTER_S })
    if (!storesReady()) throw new Problem('STORE_UNAVAILABLE', { detail: 'The shared store has not answered yet', retryAfter: 1 })
    return app.hasDecorator('upstreamBudget')
      ? { status: 'ready', upstream_budget: budgetStatus(app.upstreamBudget.snapshot()) }
      : { status: 'ready' }
  })
}
