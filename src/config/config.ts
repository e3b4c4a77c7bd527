import { readFileSync } from 'node:fs'
import { parseEnv } from 'node:util'
import { envSchema } from 'env-schema'
import ajvFormats from 'ajv-formats'
import { Type, type Static, type TObject, type TProperties } from 'typebox'

// Origins only: a path or query here would silently change every upstream URL.
const ORIGIN = '^https?://[^/?#\\s@]+/?$'
const ORIGIN_LIST = '^\\s*$|^\\s*https?://[^/?#\\s,@]+\\s*(,\\s*https?://[^/?#\\s,@]+\\s*)*$'

export const SessionConfigProperties = {
  SESSION_SECRET: Type.String({ minLength: 32, description: 'HS256 key for session JWTs, at least 32 characters' }),
  SESSION_ISSUER: Type.String({ minLength: 1, default: 'emnify-bff', description: '`iss` the BFF writes and requires' }),
  SESSION_AUDIENCE: Type.String({ minLength: 1, default: 'emnify-bff', description: '`aud` the BFF writes and requires' }),
  SESSION_TTL_S: Type.Integer({ minimum: 60, maximum: 604800, default: 3600, description: 'lifetime of sessions the BFF issues' })
}

export const ConfigProperties = {
  HOST: Type.String({ minLength: 1, default: '127.0.0.1', description: 'listen address' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, description: 'listen port' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info', description: 'pino level' }
  ),
  EMNIFY_API_URL: Type.String({ pattern: ORIGIN, default: 'https://cdn.emnify.net', description: 'upstream origin (scheme + host [+ port]); no path, no query' }),
  EMNIFY_APPLICATION_TOKEN: Type.String({ minLength: 1, description: 'the service credential exchanged for auth_token' }),
  UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120000, default: 10000, description: 'budget for one upstream call, connect to last byte' }),
  ...SessionConfigProperties,
  SESSION_COOKIE_SECURE: Type.Boolean({ default: true, description: '`false` only for plain-http local development' }),
  USERS_FILE: Type.Optional(Type.String({ minLength: 1, description: 'path of the users file for POST /auth/login' })),
  CORS_ORIGINS: Type.String({ pattern: ORIGIN_LIST, default: '', description: 'comma-separated allowed origins; empty = no CORS headers' }),
  SHUTDOWN_DELAY_MS: Type.Integer({ minimum: 0, maximum: 120000, default: 0, description: 'after SIGTERM, keep accepting this long before draining' }),
  LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 100000, default: 30, description: 'login attempts allowed per client IP per minute' }),
  DOCS_ENABLED: Type.Boolean({ default: true, description: 'serve GET /docs (Swagger UI) and GET /docs/json, /docs/yaml (OpenAPI 3.1)' }),
  METRICS_ENABLED: Type.Boolean({ default: true, description: 'serve Prometheus metrics at GET /metrics' }),
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'serve metrics on their own listener at this port (on HOST) instead of the main port' })),
  RATE_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1000000, default: 60, description: 'contact requests per session sub per minute (per client IP without a valid session); the default keeps one session to at most half of the default upstream budget' }),
  MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, maximum: 60000, default: 1000, description: 'shed load (503 OVERLOADED) above this mean event-loop delay; 0 disables' }),
  MAX_EVENT_LOOP_UTILIZATION: Type.Number({ minimum: 0, maximum: 1, default: 0.98, description: 'shed load (503 OVERLOADED) above this event-loop utilisation (0–1); 0 disables' }),
  MAX_CONNECTIONS: Type.Integer({ minimum: 1, maximum: 1000000, default: 2048, description: 'concurrent inbound connections; further ones are refused at accept' }),
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1, description: 'unset = the TCP peer is the client; else the number of trusted proxy hops, or a comma-separated list of their addresses/CIDRs' })),
  // The contact resource
  CONTACT_CACHE_TTL_MS: Type.Integer({ minimum: 0, maximum: 3600000, default: 5000, description: 'how long contact reads are kept per organisation; 0 = coalescing only' }),
  COUNTRY_CACHE_TTL_S: Type.Integer({ minimum: 0, maximum: 604800, default: 3600, description: 'how long the country list is kept; 0 = coalescing only' }),
  IDEMPOTENCY_TTL_S: Type.Integer({ minimum: 60, maximum: 604800, default: 86400, description: 'how long an Idempotency-Key of a create is remembered' }),
  // The upstream budget
  UPSTREAM_BUDGET_PER_5MIN: Type.Integer({ minimum: 0, maximum: 10000000, default: 1800, description: 'upstream calls (authenticate excluded) per 5 minutes; 0 = unlimited' }),
  UPSTREAM_BUDGET_BURST: Type.Integer({ minimum: 1, maximum: 100000, default: 60, description: 'how many upstream calls may go out at once after a quiet period' }),
  UPSTREAM_QUEUE_TIMEOUT_MS: Type.Integer({ minimum: 0, maximum: 60000, default: 2000, description: 'how long a request may wait for upstream budget before 503 UPSTREAM_BUDGET_EXHAUSTED' }),
  // Many instances
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://\\S+$', description: 'redis:// or rediss:// URL shared by every instance; unset = every store in memory' })),
  REDIS_KEY_PREFIX: Type.String({ minLength: 1, maxLength: 64, default: 'emnify-bff:', description: 'namespace of every key and channel' }),
  // Single sign-on
  OIDC_ISSUER: Type.Optional(Type.String({ pattern: '^https?://\\S+$', description: 'OpenID Provider issuer URL; unset = no SSO' })),
  OIDC_CLIENT_ID: Type.Optional(Type.String({ minLength: 1, description: 'the BFF\'s client id at the provider' })),
  OIDC_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1, description: 'the BFF\'s client secret at the provider' })),
  PUBLIC_URL: Type.Optional(Type.String({ pattern: ORIGIN, description: 'the BFF\'s external origin; the redirect URI is {PUBLIC_URL}/auth/oidc/callback' })),
  OIDC_SCOPES: Type.String({ minLength: 1, default: 'openid profile email', description: 'scopes requested from the provider' }),
  OIDC_ORGS_CLAIM: Type.String({ minLength: 1, default: 'emnify_orgs', description: 'claim holding the organisation ids (array of positive integers, or "*")' }),
  OIDC_SCOPE_CLAIM: Type.Optional(Type.String({ minLength: 1, description: 'claim holding the contacts:read / contacts:write scope; unset = both' })),
  OIDC_RETURN_ORIGINS: Type.Optional(Type.String({ pattern: ORIGIN_LIST, description: 'origins a login may return to; default CORS_ORIGINS' }))
}

export const ConfigSchema = Type.Object(ConfigProperties)
export type Config = Static<typeof ConfigSchema>

export const SessionConfigSchema = Type.Object(SessionConfigProperties)
export type SessionConfig = Static<typeof SessionConfigSchema>

export class ConfigError extends Error {
  readonly variables: string[]
  constructor (variables: string[], message: string) {
    super(message)
    this.name = 'ConfigError'
    this.variables = variables
  }
}

interface AjvIssue {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

/** The allowed values of a variable whose schema is a union of literals (LOG_LEVEL). */
function literals (schema: Record<string, unknown>, variable: string): string[] | undefined {
  const property = ((schema.properties ?? {}) as Record<string, { anyOf?: Array<{ const?: unknown }> }>)[variable]
  const values = property?.anyOf?.map((option) => option.const)
  return values !== undefined && values.length > 0 && values.every((value) => typeof value === 'string') ? values as string[] : undefined
}

/** Why a list of origins (CORS_ORIGINS, OIDC_RETURN_ORIGINS) has the wrong format, when it is a common slip. */
function originListReason (value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  const slashed = value.split(',').map((origin) => origin.trim()).find((origin) => /^https?:\/\/[^/?#\s,@]+\/+$/.test(origin))
  if (slashed !== undefined) return `must list origins without a trailing slash: write ${slashed.replace(/\/+$/, '')}, not ${slashed}`
  return undefined
}

/** Turns Ajv's issues into one line per variable, so an operator fixes everything in one go. */
function describe (issues: AjvIssue[], data: Record<string, unknown>, schema: Record<string, unknown> = {}): ConfigError {
  const byVariable = new Map<string, string>()
  for (const issue of issues) {
    const variable = issue.keyword === 'required'
      ? String(issue.params.missingProperty)
      : issue.instancePath.replace(/^\//, '').split('/')[0] ?? ''
    if (byVariable.has(variable)) continue
    // Never echo the value of a secret-looking variable back into logs.
    const secret = /SECRET|TOKEN|PASSWORD/.test(variable)
    const value = data[variable]
    // Nor credentials inside a URL (`https://user:password@host`).
    const text = String(value).replace(/\/\/\S*@/g, '//…@').slice(0, 80)
    const shown = issue.keyword === 'required' || secret || value === undefined ? '' : ` (got ${JSON.stringify(text)})`
    const allowed = literals(schema, variable)
    const reason = issue.keyword === 'required'
      ? 'is required'
      : allowed !== undefined
        ? `must be one of ${allowed.join(', ')}`
        : issue.keyword === 'pattern' ? (originListReason(value) ?? 'has the wrong format') : (issue.message ?? 'is invalid')
    byVariable.set(variable, `${variable} ${reason}${shown}`)
  }
  const variables = [...byVariable.keys()].sort()
  const lines = variables.map((v) => byVariable.get(v))
  return new ConfigError(variables, `Invalid configuration: ${lines.join('; ')}`)
}

export interface LoadOptions {
  /** Variables to read; defaults to process.env. */
  env?: Record<string, string | undefined>
  /** Read `.env` from the working directory (values in `env` win). */
  dotenv?: boolean
}

/** An empty variable means "use the default", as in most twelve-factor tooling. */
function withoutEmpty (env: Record<string, string | undefined>): Record<string, string> {
  const result: Record<string, string> = {}
  for (const [key, value] of Object.entries(env)) if (value !== undefined && value !== '') result[key] = value
  return result
}

/** `.env` in the working directory, if there is one. */
function readDotenv (): Record<string, string | undefined> {
  let text: string
  try {
    text = readFileSync('.env', 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return {}
    // One readable line like every other configuration problem, not a stack trace.
    const why = code === 'EISDIR' ? 'is a directory, not a file of VARIABLE=value lines' : `cannot be read (${code ?? 'error'})`
    throw new ConfigError(['.env'], `Invalid configuration: .env in ${process.cwd()} ${why}`)
  }
  return parseEnv(text)
}

/** Validates configuration once; every other module receives the typed result. */
export function loadConfigFor<P extends TProperties> (schema: TObject<P>, options: LoadOptions = {}): Static<TObject<P>> {
  // env-schema mutates the schema (additionalProperties) – hand it a copy.
  const copy = structuredClone(schema) as unknown as Record<string, unknown>
  // Merged here, not by env-schema: it would add process.env to an explicit `env`, and keep empty values.
  const data = { ...withoutEmpty(options.dotenv === true ? readDotenv() : {}), ...withoutEmpty(options.env ?? process.env) }
  let issues = [...infiniteNumbers(copy, data), ...ssoRequirements(copy, data)]
  let config: Static<TObject<P>> | undefined
  try {
    config = envSchema({
      schema: copy,
      data,
      env: false,
      dotenv: false,
      ajv: {
        customOptions (ajv) {
          ajvFormats.default(ajv)
          return ajv
        }
      }
    }) as Static<TObject<P>>
  } catch (error) {
    const ajvIssues = (error as { errors?: AjvIssue[] }).errors
    if (ajvIssues === undefined) throw error
    issues = [...ajvIssues, ...issues]
  }
  if (issues.length > 0 || config === undefined) throw describe(issues, data, copy)
  return config
}

/**
 * SSO needs the client credentials and the BFF's public origin (the redirect URI), and somewhere
 * a login may return to; the schema alone cannot say "required when OIDC_ISSUER is set".
 */
function ssoRequirements (schema: Record<string, unknown>, data: Record<string, string>): AjvIssue[] {
  const properties = (schema.properties ?? {}) as Record<string, unknown>
  if (!('OIDC_ISSUER' in properties) || data.OIDC_ISSUER === undefined) return []
  const issues: AjvIssue[] = ['OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'PUBLIC_URL']
    .filter((key) => data[key] === undefined)
    .map((key) => ({ instancePath: `/${key}`, keyword: 'requiredWith', message: 'is required when OIDC_ISSUER is set', params: {} }))
  if (data.OIDC_RETURN_ORIGINS === undefined && (data.CORS_ORIGINS ?? '').trim() === '') {
    issues.push({ instancePath: '/OIDC_RETURN_ORIGINS', keyword: 'requiredWith', message: 'is required when OIDC_ISSUER is set and CORS_ORIGINS is empty (where may a login return to?)', params: {} })
  }
  return issues
}

/** Ajv coerces "1e999" to Infinity and then skips minimum/maximum, so such values are caught here. */
function infiniteNumbers (schema: Record<string, unknown>, data: Record<string, string>): AjvIssue[] {
  const properties = (schema.properties ?? {}) as Record<string, { type?: unknown }>
  return Object.keys(data)
    .filter((key) => ['integer', 'number'].includes(String(properties[key]?.type)) && Math.abs(Number(data[key])) === Infinity)
    .map((key) => ({ instancePath: `/${key}`, keyword: 'maximum', message: 'must be a finite number', params: {} }))
}

export function loadConfig (options: LoadOptions = {}): Config {
  return loadConfigFor(ConfigSchema, options)
}

/** Parsed list form of CORS_ORIGINS. */
export function corsOrigins (config: Pick<Config, 'CORS_ORIGINS'>): string[] {
  return config.CORS_ORIGINS.split(',').map((o) => o.trim().replace(/\/$/, '')).filter((o) => o !== '')
}
