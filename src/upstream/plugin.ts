import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config/config.ts'
import { USER_AGENT } from '../version.ts'
import { EmnifyClient, type CallBudget, type EmnifyClientOptions } from './emnify-client.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The one emnify client: shared token, pool and budget for every route. */
    emnify: EmnifyClient
  }
}

export interface UpstreamPluginOptions {
  config: Config
  budget?: CallBudget
  tokenCache?: EmnifyClientOptions['tokenCache']
}

async function upstream (app: FastifyInstance, { config, budget, tokenCache }: UpstreamPluginOptions) {
  const metrics = app.metrics
  const client = new EmnifyClient({
    origin: config.EMNIFY_API_URL,
    applicationToken: config.EMNIFY_APPLICATION_TOKEN,
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
  app.decorateRequest('upstream', null)
  app.addHook('onClose', () => client.close())
}

export default fp(upstream, { name: 'upstream', fastify: '5.x', dependencies: ['metrics'] })
