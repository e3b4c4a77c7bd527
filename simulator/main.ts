// CLI entry: `node simulator/main.ts` runs the emnify simulator for the demo and benchmarks.
import { CREATED_LOCATIONS, DEFAULT_APPLICATION_TOKEN, DEFAULT_TOKEN_LIFETIME_S, EMNIFY_RATE_LIMIT, startSimulator } from './simulator.ts'
import type { CreatedLocation, RateLimit } from './simulator.ts'

function fail (message: string): never {
  process.stderr.write(`emnify simulator: ${message}\n`)
  process.exit(1)
}

function stringEnv (name: string, fallback: string): string {
  const raw = process.env[name]
  return raw === undefined || raw === '' ? fallback : raw
}

function integerEnv (name: string, fallback: number, min: number, max: number): number {
  const raw = stringEnv(name, String(fallback))
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    fail(`${name} must be an integer between ${min} and ${max}, got ${JSON.stringify(raw)}`)
  }
  return value
}

function flagEnv (name: string): boolean {
  const raw = stringEnv(name, '0')
  if (raw !== '0' && raw !== '1') fail(`${name} must be 1 or 0, got ${JSON.stringify(raw)}`)
  return raw === '1'
}

function choiceEnv<T extends string> (name: string, fallback: T, choices: readonly T[]): T {
  const raw = stringEnv(name, fallback)
  if (!choices.includes(raw as T)) fail(`${name} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`)
  return raw as T
}

function rateLimitEnv (): RateLimit | false {
  if (!flagEnv('SIM_RATE_LIMIT')) return false
  return {
    requests: integerEnv('SIM_RATE_LIMIT_REQUESTS', EMNIFY_RATE_LIMIT.requests, 1, 1_000_000_000),
    authenticate: integerEnv('SIM_RATE_LIMIT_AUTHENTICATE', EMNIFY_RATE_LIMIT.authenticate, 1, 1_000_000_000),
    windowMs: integerEnv('SIM_RATE_LIMIT_WINDOW_MS', EMNIFY_RATE_LIMIT.windowMs, 1, 24 * 3600 * 1000)
  }
}

const host = stringEnv('SIM_HOST', '127.0.0.1')
const port = integerEnv('SIM_PORT', 4010, 0, 65_535)
const lean = flagEnv('SIM_LEAN')
const rateLimit = rateLimitEnv()

const simulator = await startSimulator({
  host,
  port,
  applicationTokens: [stringEnv('SIM_APPLICATION_TOKEN', DEFAULT_APPLICATION_TOKEN)],
  tokenLifetimeS: integerEnv('SIM_TOKEN_LIFETIME_S', DEFAULT_TOKEN_LIFETIME_S, 1, 365 * 24 * 3600),
  tokenWithoutExp: flagEnv('SIM_TOKEN_WITHOUT_EXP'),
  lean,
  rateLimit,
  createdLocation: choiceEnv<CreatedLocation>('SIM_CREATED_LOCATION', 'absolute', CREATED_LOCATIONS),
  extraFields: flagEnv('SIM_EXTRA_FIELDS')
}).catch((error: unknown) => fail(`cannot listen on ${host}:${port}: ${String(error)}`))

process.stdout.write(`${JSON.stringify({ msg: `emnify simulator listening on ${simulator.url}`, url: simulator.url, lean, settings: simulator.state.settings })}\n`)

function stop (): void {
  // close() drops every connection, hung ones included, so there is nothing to wait for.
  simulator.close().then(() => process.exit(0))
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
