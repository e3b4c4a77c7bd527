// `npm run demo`: the emnify simulator and the BFF in one process, no configuration needed.
// Prints a ready-to-paste curl command with a freshly minted session. Ctrl-C stops both.
// `npm run dev` runs it with `--dev` under `node --watch`: it restarts on every source change,
// logs are pretty-printed on a terminal, and sessions survive restarts (a fixed dev-only secret).
import { randomBytes } from 'node:crypto'
import type { DestinationStream } from 'pino'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { mintSession } from '../src/session/mint.ts'
import { DEFAULT_APPLICATION_TOKEN, startSimulator } from '../simulator/simulator.ts'

const dev = process.argv.includes('--dev')
const port = process.env.PORT ?? '3000'
const sim = await startSimulator({ host: '127.0.0.1', port: Number(process.env.SIM_PORT ?? 0) })

const config = loadConfig({
  env: {
    HOST: '127.0.0.1',
    PORT: port,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    EMNIFY_API_URL: sim.url,
    EMNIFY_APPLICATION_TOKEN: DEFAULT_APPLICATION_TOKEN,
    // A fresh secret per run: demo sessions die with the demo. In dev they outlive a restart.
    SESSION_SECRET: dev ? 'dev-only-session-secret-never-use-in-production' : randomBytes(32).toString('base64url'),
    SESSION_COOKIE_SECURE: 'false'
  }
})
// pino-pretty is a dev dependency: loaded only when asked for, and only for a human at a terminal.
let logStream: DestinationStream | undefined
if (dev && process.stdout.isTTY) {
  const { default: pretty } = await import('pino-pretty')
  logStream = pretty({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,service' })
}
const app = await buildApp(config, { logStream })

let stopping = false
async function stop (signal: string) {
  if (stopping) process.exit(1) // second Ctrl-C: leave at once
  stopping = true
  app.log.info({ signal }, 'demo stopping')
  app.lifecycle.draining = true
  await app.close()
  await sim.close()
  process.exit(0)
}
process.on('SIGINT', () => { stop('SIGINT').catch(() => process.exit(1)) })
process.on('SIGTERM', () => { stop('SIGTERM').catch(() => process.exit(1)) })

try {
  await app.listen({ host: config.HOST, port: config.PORT })
} catch (error) {
  process.stderr.write(`demo: could not listen on ${config.HOST}:${config.PORT} (${(error as Error).message}); try PORT=3001 npm run demo\n`)
  await sim.close()
  process.exit(1)
}

const { token } = mintSession(config, { sub: 'demo-user', orgs: [1, 2], ttlS: 3600 })
const base = `http://${config.HOST}:${config.PORT}`
const body = JSON.stringify({ name: 'Ada Lovelace', email: 'ada@example.com', country: { id: 74 } })
process.stdout.write(`
  emnify simulator  ${sim.url}
  emnify BFF        ${base}   (session valid 1 h, organisations 1 and 2)

  Update contact 1 of organisation 1 (answers 204 No Content):

curl -i -X PATCH ${base}/api/v1/organisation/1/contact/1 \\
  -H 'Authorization: Bearer ${token}' \\
  -H 'Content-Type: application/json' \\
  -d '${body}'

  Add  -H 'Prefer: return=representation'  to get the updated contact back (200).
  Press Ctrl-C to stop.

`)
