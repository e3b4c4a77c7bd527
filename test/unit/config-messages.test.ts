// Configuration mistakes a first-time operator makes get a message that says what to do.
import { mkdirSync } from 'node:fs'
import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config/config.ts'

const BASE = { EMNIFY_APPLICATION_TOKEN: 'application-token-value', SESSION_SECRET: 's'.repeat(40) }

function messageFor (env: Record<string, string>, dotenv = false): string {
  try {
    loadConfig({ env: { ...BASE, ...env }, dotenv })
  } catch (error) {
    t.type(error, ConfigError)
    return (error as Error).message
  }
  throw new Error('expected a ConfigError')
}

t.test('a wrong LOG_LEVEL lists the valid levels', async (t) => {
  const message = messageFor({ LOG_LEVEL: 'verbose' })
  t.match(message, 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "verbose")')
  t.notMatch(message, /constant|anyOf/, 'no validator jargon')
})

t.test('an origin with a trailing slash in CORS_ORIGINS or OIDC_RETURN_ORIGINS says the slash is the problem', async (t) => {
  t.match(messageFor({ CORS_ORIGINS: 'http://localhost:5173/' }), 'CORS_ORIGINS must list origins without a trailing slash: write http://localhost:5173, not http://localhost:5173/')
  t.match(messageFor({ CORS_ORIGINS: 'https://a.example.com, https://b.example.com/' }), 'write https://b.example.com, not https://b.example.com/')
  t.match(messageFor({ OIDC_RETURN_ORIGINS: 'https://app.example.com/' }), 'OIDC_RETURN_ORIGINS must list origins without a trailing slash')
  t.match(messageFor({ CORS_ORIGINS: 'https://app.example.com/path' }), 'CORS_ORIGINS has the wrong format', 'other mistakes keep the general message')
})

t.test('a .env that is a directory is one readable configuration error, not an EISDIR stack trace', async (t) => {
  const dir = t.testdir()
  mkdirSync(`${dir}/.env`)
  const cwd = process.cwd()
  process.chdir(dir)
  t.teardown(() => process.chdir(cwd))
  let error: unknown
  try {
    loadConfig({ env: BASE, dotenv: true })
  } catch (caught) {
    error = caught
  }
  t.type(error, ConfigError)
  t.same((error as ConfigError).variables, ['.env'])
  t.match((error as Error).message, /\.env in .* is a directory, not a file/)
})
