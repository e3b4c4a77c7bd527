// CLI entry: `node src/simulator/main.ts` runs the emnify simulator for the demo and benchmarks.
import { DEFAULT_APPLICATION_TOKEN, DEFAULT_TOKEN_LIFETIME_S, startSimulator } from './simulator.ts'

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

const host = stringEnv('SIM_HOST', '127.0.0.1')
const port = integerEnv('SIM_PORT', 4010, 0, 65_535)
const lean = flagEnv('SIM_LEAN')

const simulator = await startSimulator({
  host,
  port,
  applicationTokens: [stringEnv('SIM_APPLICATION_TOKEN', DEFAULT_APPLICATION_TOKEN)],
  tokenLifetimeS: integerEnv('SIM_TOKEN_LIFETIME_S', DEFAULT_TOKEN_LIFETIME_S, 1, 365 * 24 * 3600),
  tokenWithoutExp: flagEnv('SIM_TOKEN_WITHOUT_EXP'),
  lean
}).catch((error: unknown) => fail(`cannot listen on ${host}:${port}: ${String(error)}`))

process.stdout.write(`${JSON.stringify({ msg: `emnify simulator listening on ${simulator.url}`, url: simulator.url, lean })}\n`)

function stop (): void {
  // close() drops every connection, hung ones included, so there is nothing to wait for.
  simulator.close().then(() => process.exit(0))
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
