import { describeBudget } from '../upstream/budget.ts'
import type { FastifyInstance } from 'fastify'
import { corsOrigins, type Config } from '../config/config.ts'
import { failureSummary } from '../errors/handler.ts'
import { Problem } from '../errors/problems.ts'
import { VERSION } from '../version.ts'

/** `redis://user:password@host:6379/0` → `redis://host:6379`: where, never with what credentials. */
function withoutCredentials (url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}`
  } catch {
    return '(unparseable)'
  }
}

function portOf (app: FastifyInstance | null): number | undefined {
  const address = app?.server.address()
  return typeof address === 'object' && address !== null ? address.port : undefined
}

/**
 * What the service is configured to do, for the one start-up line an operator reads first.
 * Names and places only: no secret, token, password or hash is ever part of it.
 */
export function startupSummary (config: Config, app: FastifyInstance, pid = process.pid): Record<string, unknown> {
  const metrics = !config.METRICS_ENABLED ? 'off' : config.METRICS_PORT === undefined ? 'main port /metrics' : `port ${portOf(app.metricsListener) ?? config.METRICS_PORT} /metrics`
  return {
    event: 'startup',
    version: VERSION,
    pid,
    listen: `http://${config.HOST}:${portOf(app) ?? config.PORT}`,
    upstream: config.EMNIFY_API_URL,
    users: app.users === null ? 'no USERS_FILE: password login off' : `${app.users.size} in ${app.users.path}`,
    sso: config.OIDC_ISSUER === undefined ? 'off' : `${config.OIDC_ISSUER} (client ${config.OIDC_CLIENT_ID ?? '?'})`,
    cors_origins: corsOrigins(config),
    cookie: config.SESSION_COOKIE_SECURE ? '__Host-session (Secure)' : 'session (not Secure: plain-http development only)',
    session_ttl_s: config.SESSION_TTL_S,
    trust_proxy: config.TRUST_PROXY ?? 'off (the TCP peer is the client)',
    metrics,
    docs: config.DOCS_ENABLED ? '/docs' : 'off',
    upstream_budget: app.hasDecorator('upstreamBudget') ? describeBudget(app.upstreamBudget.snapshot()) : 'off',
    store: config.REDIS_URL === undefined ? 'memory (one instance)' : `${withoutCredentials(config.REDIS_URL) ?? ''} prefix ${config.REDIS_KEY_PREFIX}`,
    limits: {
      contact_requests_per_minute: config.RATE_LIMIT_PER_MINUTE,
      login_attempts_per_ip_per_minute: config.LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE,
      max_connections: config.MAX_CONNECTIONS,
      upstream_timeout_ms: config.UPSTREAM_TIMEOUT_MS,
      upstream_budget_per_5min: config.UPSTREAM_BUDGET_PER_5MIN,
      upstream_budget_burst: config.UPSTREAM_BUDGET_BURST,
      max_event_loop_delay_ms: config.MAX_EVENT_LOOP_DELAY_MS,
      max_event_loop_utilization: config.MAX_EVENT_LOOP_UTILIZATION,
      shutdown_delay_ms: config.SHUTDOWN_DELAY_MS
    }
  }
}

/** The start-up line's message: the few facts an operator looks for, the rest is in its fields. */
export function startupMessage (summary: Record<string, unknown>): string {
  return `emnify-bff ${String(summary.version)} started, pid ${String(summary.pid)} (signal this process: SIGTERM stops, SIGHUP reloads the users file), ` +
    `listening at ${String(summary.listen)}, upstream ${String(summary.upstream)}, metrics ${String(summary.metrics)}`
}

const ADVICE: Partial<Record<string, string>> = {
  UPSTREAM_AUTH_FAILED: 'emnify refused the application token: check EMNIFY_APPLICATION_TOKEN',
  UPSTREAM_UNAVAILABLE: 'emnify could not be reached: check EMNIFY_API_URL and the network (egress, DNS, proxy)',
  UPSTREAM_TIMEOUT: 'emnify did not answer in time: check EMNIFY_API_URL, the network and UPSTREAM_TIMEOUT_MS',
  UPSTREAM_RATE_LIMITED: 'emnify is rate limiting authenticate from this address; requests will retry after its backoff',
  UPSTREAM_ERROR: 'emnify answered authenticate with something unusable'
}

/**
 * One authenticate at start-up, so that a wrong application token or an unreachable emnify is in
 * the log before the first user meets it. It never stops the service: readiness does not depend
 * on emnify (a restart would not fix emnify, and every instance would go unready at once).
 */
export async function checkUpstream (app: FastifyInstance, origin: string): Promise<boolean> {
  try {
    await app.emnify.tokens.get()
    app.log.info({ event: 'upstream.check', outcome: 'ok', upstream: origin, token_expires_in_s: Math.round(app.emnify.tokens.expiresInSeconds()) },
      `emnify accepted the application token at ${origin}`)
    return true
  } catch (error) {
    const code = error instanceof Problem ? error.code : 'INTERNAL_ERROR'
    const advice = ADVICE[code] ?? 'authenticate with emnify failed'
    app.log.error({ event: 'upstream.check', outcome: 'failed', upstream: origin, code, ...failureSummary(error instanceof Problem ? error.cause : error) },
      `start-up check: ${advice} (${code}); the service keeps running and retries on the first request`)
    return false
  }
}
