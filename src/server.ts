import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig, type Config } from './config/config.ts'
import { checkUpstream, startupMessage, startupSummary } from './logging/startup.ts'

function configOrExit (): Config {
  try {
    return loadConfig({ dotenv: true })
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    // One readable line naming every offending variable; no stack, no values of secrets.
    process.stderr.write(`${JSON.stringify({ level: 60, service: 'emnify-bff', variables: error.variables, msg: error.message })}\n`)
    process.exit(78) // EX_CONFIG
  }
}

const config = configOrExit()
const app = await buildApp(config).catch((error: unknown) => {
  // e.g. an invalid users file: one readable line, no stack.
  process.stderr.write(`${JSON.stringify({ level: 60, service: 'emnify-bff', msg: (error as Error).message })}\n`)
  process.exit(78)
})

// Bounded grace: the drain delay, then at most the longest a request can take upstream.
const graceMs = config.SHUTDOWN_DELAY_MS + config.UPSTREAM_TIMEOUT_MS * 4 + 5_000

// SIGHUP re-reads the users file instead of stopping the process.
process.on('SIGHUP', () => {
  app.users?.reload().then(
    (count) => app.log.info({ users: count }, 'users file reloaded'),
    (error: unknown) => app.log.error({ err: error }, 'users file reload failed; keeping the previous users')
  )
})

closeWithGrace({
  skip: ['SIGHUP'],
  delay: graceMs,
  logger: { error: (message: string) => app.log.error(message) }
}, async ({ signal, err }) => {
  app.lifecycle.draining = true
  if (err !== undefined) app.log.error({ err }, 'fatal error; shutting down')
  else app.log.info({ signal, drain_delay_ms: config.SHUTDOWN_DELAY_MS }, 'shutdown started; readiness now fails')
  // Behind a load balancer, keep serving until it has noticed the failing readiness probe.
  if (signal !== undefined && config.SHUTDOWN_DELAY_MS > 0) await sleep(config.SHUTDOWN_DELAY_MS)
  await app.close()
  app.log.info('shutdown complete')
})

try {
  await app.listen({ host: config.HOST, port: config.PORT })
} catch (error) {
  app.log.fatal({ err: error }, 'could not listen')
  process.exit(1)
}

// One line with what this process is configured to do (never a secret), then one authenticate so
// that a wrong token or an unreachable emnify shows before the first user meets it.
const summary = startupSummary(config, app)
app.log.info(summary, startupMessage(summary))
checkUpstream(app, config.EMNIFY_API_URL).catch((error: unknown) => app.log.error({ err: error }, 'start-up check failed unexpectedly'))
