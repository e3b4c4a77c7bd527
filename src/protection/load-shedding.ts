import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config } from '../config/config.ts'
import { Problem } from '../errors/problems.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `false`: answered even while the service sheds load (health probes, metrics). */
    shedding?: boolean
  }
}

export const OVERLOAD_RETRY_AFTER_S = 5

export interface LoadSheddingOptions {
  config: Pick<Config, 'MAX_EVENT_LOOP_DELAY_MS' | 'MAX_EVENT_LOOP_UTILIZATION'>
  /** How often the event loop is sampled (default 1000 ms); tests shorten it. */
  sampleIntervalMs?: number
}

/**
 * Refuses work with 503 OVERLOADED while the event loop is saturated, before the session is
 * verified or anything is sent upstream. Answering fast is cheaper than queueing requests
 * that would time out anyway.
 */
async function loadShedding (app: FastifyInstance, { config, sampleIntervalMs }: LoadSheddingOptions) {
  // One instance for every shed request: its body is built per request by the error handler.
  const overloaded = new Problem('OVERLOADED', { detail: 'The service is overloaded; try again shortly', retryAfter: OVERLOAD_RETRY_AFTER_S })

  await app.register(underPressure, {
    maxEventLoopDelay: config.MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: config.MAX_EVENT_LOOP_UTILIZATION,
    // The default, cumulative since start-up, would hardly move after a day of uptime.
    eventLoopUtilizationMode: 'interval',
    ...(sampleIntervalMs === undefined ? {} : { sampleInterval: sampleIntervalMs }),
    // Only called while under pressure; the rejection goes through the error handler.
    pressureHandler: async (request: FastifyRequest) => {
      if (request.routeOptions.config.shedding !== false) throw overloaded
    }
  })
}

export default fp(loadShedding, { name: 'load-shedding', fastify: '5.x', dependencies: ['errors'] })
