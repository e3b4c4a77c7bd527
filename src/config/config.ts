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
  LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 100000, default: 30, description: 'login attempts allowed per client IP per minute' })
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

/** Turns Ajv's issues into one line per variable, so an operator fixes everything in one go. */
function describe (issues: AjvIssue[], data: Record<string, unknown>): ConfigError {
  const byVariable = new Map<string, string>()
  for (const issue of issues) {
    const variable = issue.keyword === 'required'
      ? String(issue.params.missingProperty)
      : issue.instancePath.replace(/^\//, '').split('/')[0] ?? ''
    if (byVariable.has(variable)) continue
    // Never echo the value of a secret-looking variable back into logs.
    const secret = /SECRET|TOKEN|PASSWORD/.test(variable)
    const value = data[variable]
    const shown = issue.keyword === 'required' || secret || value === undefined ? '' : ` (got ${JSON.stringify(String(value).slice(0, 80))})`
    const reason = issue.keyword === 'required'
      ? 'is required'
      : issue.keyword === 'pattern' ? 'has the wrong format' : (issue.message ?? 'is invalid')
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

/** Validates configuration once; every other module receives the typed result. */
export function loadConfigFor<P extends TProperties> (schema: TObject<P>, options: LoadOptions = {}): Static<TObject<P>> {
  // env-schema mutates the schema (additionalProperties) – hand it a copy.
  const copy = structuredClone(schema) as unknown as Record<string, unknown>
  const data = { ...(options.env ?? process.env) }
  // An empty variable means "use the default", as in most twelve-factor tooling.
  for (const key of Object.keys(data)) if (data[key] === '') delete data[key]
  try {
    return envSchema({
      schema: copy,
      data,
      dotenv: options.dotenv ?? false,
      ajv: {
        customOptions (ajv) {
          ajvFormats.default(ajv)
          return ajv
        }
      }
    }) as Static<TObject<P>>
  } catch (error) {
    const issues = (error as { errors?: AjvIssue[] }).errors
    if (issues === undefined) throw error
    throw describe(issues, data)
  }
}

export function loadConfig (options: LoadOptions = {}): Config {
  return loadConfigFor(ConfigSchema, options)
}

/** Parsed list form of CORS_ORIGINS. */
export function corsOrigins (config: Pick<Config, 'CORS_ORIGINS'>): string[] {
  return config.CORS_ORIGINS.split(',').map((o) => o.trim().replace(/\/$/, '')).filter((o) => o !== '')
}
