import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config/config.ts'
import { USER_AGENT } from '../version.ts'
import { createUpstreamBudget, type BudgetStore, type UpstreamBudget } from './budget.ts'
import { EmnifyClient, type EmnifyClientOptions } from './emnify-client.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The one emnify client: shared token, pool and budget for every route. */
    emnify: EmnifyClient
    /** What every upstream call spends (authenticate excluded), fairly across session subs. */
    upstreamBudget: UpstreamBudget
  }
}

export interface UpstreamPluginOptions {
  config: Config
  /** The fleet's shared bucket (Redis); without it the budget is this instance's own. */
  budgetStore?: BudgetStore
  tokenCache?: EmnifyClientOptions['tokenCache']
}

async function upstream (app: FastifyInstance, { config, budgetStore, tokenCache }: UpstreamPluginOptions) {
  const metrics = app.metrics
  const budget = createUpstreamBudget({
    perFiveMinutes: config.UPSTREAM_BUDGET_PER_5MIN,
    burst: config.UPSTREAM_BUDGET_BURST,
    queueTimeoutMs: config.UPSTREAM_QUEUE_TIMEOUT_MS,
    observer: metrics?.budgetObserver,
    store: budgetStore
  })
  metrics?.watchBudget(budget)
  const client = new EmnifyClient({
    origin: config.EMNIFY_API_URL,
    applicationToken: config.EMNIFY_APPLICATION_TOKEN,
    secrets: [config.SESSION_SECRET, ...(config.OIDC_CLIENT_SECRET === undefined ? [] : [config.OIDC_CLIENT_SECRET])],
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    userAgent: USER_AGENT,
    tokenCache,
    budget,
    observe: metrics?.upstreamCall,
    onTokenRefresh: metrics?.tokenRefresh
  })
  metrics?.watchToken(() => client.tokens.expiresInSeconds())
  metrics?.watchStores({
    upstream_token: { get size () { return client.tokens.expiresInSeconds() > 0 ? 1 : 0 }, capacity: 1 }
  })
  app.decorate('emnify', client)
  app.decorate('upstreamBudget', budget)
  app.decorateRequest('upstream', null)
  app.addHook('onClose', async () => {
    budget.close()
    await client.close()
  })
}

export default fp(upstream, { name: 'upstream', fastify: '5.x', dependencies: ['metrics'] })
