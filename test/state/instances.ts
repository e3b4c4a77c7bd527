// Builds BFF state layers the way the app does (the state plugin on a bare Fastify), one per
// "instance", in memory or against one Redis, for the contract suite and the fleet tests.
import Fastify, { type FastifyInstance } from 'fastify'
import { Writable } from 'node:stream'
import statePlugin from '../../src/state/plugin.ts'

export interface Instance {
  app: FastifyInstance
  logs: Array<Record<string, unknown>>
}

export async function instance (redisUrl: string | undefined, options: { prefix?: string, commandTimeoutMs?: number, connectWaitMs?: number, rateLimitSyncMs?: number } = {}): Promise<Instance> {
  const logs: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      done()
    }
  })
  const app = Fastify({ logger: { level: 'info', stream } })
  await app.register(statePlugin, {
    config: { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: options.prefix ?? 'emnify-bff:', UPSTREAM_TIMEOUT_MS: 1000 },
    redis: { commandTimeoutMs: options.commandTimeoutMs ?? 300, connectTimeoutMs: 300, maxReconnectDelayMs: 100 },
    connectWaitMs: options.connectWaitMs ?? 2000,
    rateLimitSyncMs: options.rateLimitSyncMs ?? 20
  })
  await app.ready()
  return { app, logs }
}

/** Polls `check` every 10 ms until it holds or `ms` pass; answers whether it held. */
export async function eventually (check: () => boolean | Promise<boolean>, ms = 1000): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
