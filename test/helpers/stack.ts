import { Writable } from 'node:stream'
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import tap from 'tap'
import { request as httpRequest } from 'undici'
import type { FastifyInstance, LightMyRequestResponse as InjectResponse } from 'fastify'
import { buildApp, type AppOptions } from '../../src/app.ts'
import { loadConfig, type Config } from '../../src/config/config.ts'
import { mintSession } from '../../src/session/mint.ts'
import { startSimulator, type RunningSimulator, type SimulatorOptions } from '../../simulator/simulator.ts'
import { LeakWatch, secrets, type WireCapture } from './leak-scan.ts'

export { registerSecret } from './leak-scan.ts'

export const SECRET = 'test-session-secret-0123456789-abcdef'
export const APPLICATION_TOKEN = 'test-application-token-5f2c'
secrets.add('the session secret', SECRET)
secrets.add('the emnify application token', APPLICATION_TOKEN)

interface Teardown { teardown: (fn: () => unknown) => void }

/** A complete, valid configuration for tests; values as strings, like the environment. */
export function testConfig (env: Record<string, string | undefined> = {}): Config {
  return loadConfig({
    env: {
      EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
      SESSION_SECRET: SECRET,
      EMNIFY_API_URL: 'http://127.0.0.1:9',
      LOG_LEVEL: 'info',
      UPSTREAM_TIMEOUT_MS: '2000',
      // The suite runs many files at once on two cores; load shedding would turn that into
      // random 503s. The protection tests switch it on explicitly.
      MAX_EVENT_LOOP_DELAY_MS: '0',
      MAX_EVENT_LOOP_UTILIZATION: '0',
      // The suite fires far more than emnify's allowance; the budget's own tests switch it on.
      UPSTREAM_BUDGET_PER_5MIN: '0',
      // Attack matrices send hundreds of refused requests from one IP; the limit's own tests set theirs.
      RATE_LIMIT_PER_MINUTE: '600',
      ...env
    }
  })
}

/** A valid session token as an operator would mint it. */
export function session (sub = 'alice', orgs: number[] | '*' = [1, 2], ttlS = 600): string {
  const token = mintSession(testConfig(), { sub, orgs, ttlS }).token
  secrets.add('a session token minted by session()', token)
  return token
}

/** Signs arbitrary header/payload with HMAC, for tokens no well-behaved issuer would produce. */
export function forge (header: Record<string, unknown>, payload: unknown, options: { key?: string, hash?: 'sha256' | 'sha384' | 'sha512' } = {}): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const input = `${encode(header)}.${encode(payload)}`
  const signature = createHmac(options.hash ?? 'sha256', options.key ?? SECRET).update(input).digest('base64url')
  const token = `${input}.${signature}`
  secrets.add('a token made by forge()', token)
  return token
}

/** Standard claims of a valid session, for tests that tweak one of them. */
export function claims (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return { sub: 'alice', orgs: [1, 2], iat: now, exp: now + 600, iss: 'emnify-bff', aud: 'emnify-bff', ...overrides }
}

export interface LogCapture {
  lines: string[]
  records: () => Array<Record<string, unknown>>
  stream: Writable
}

let looseLogs: LeakWatch | undefined

/**
 * Log lines of an app a test builds itself. They are scanned for credentials when the test file
 * ends (startStack scans its own at each test's end).
 */
export function captureLogs (): LogCapture {
  const capture = newCapture()
  if (looseLogs === undefined) {
    const watch = new LeakWatch(secrets)
    looseLogs = watch
    tap.teardown(() => watch.assertClean())
  }
  looseLogs.watchLines('log line of an app built with captureLogs()', capture.lines)
  return capture
}

function newCapture (): LogCapture {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(line)
      done()
    }
  })
  return { lines, stream, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) }
}

export interface Stack {
  app: FastifyInstance
  url: string
  sim: RunningSimulator
  config: Config
  logs: LogCapture
  token: string
  /** Sends a request to the BFF over real HTTP. */
  call: (method: string, path: string, options?: { headers?: Record<string, string>, body?: string | object }) => Promise<Reply>
  patch: (path: string, body: unknown, headers?: Record<string, string>) => Promise<Reply>
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: () => any
}

export interface StackOptions {
  env?: Record<string, string>
  simulator?: SimulatorOptions
  app?: AppOptions
}

/** The password hashes of a users file, which must never leave it; nothing when it is unreadable. */
function registerUsersFile (path: string | undefined): void {
  if (path === undefined) return
  try {
    const users = (JSON.parse(readFileSync(path, 'utf8')) as { users?: Array<{ password_hash?: unknown }> }).users
    for (const user of Array.isArray(users) ? users : []) secrets.add('a password hash from the users file', user?.password_hash)
  } catch {
    // A test about a broken users file; the BFF refuses it and serves nothing from it.
  }
}

/** Records what tests get through `app.inject`, which bypasses the sockets the scanner taps. */
function watchInject (app: FastifyInstance, wire: WireCapture): void {
  const inject = app.inject.bind(app) as (...args: unknown[]) => unknown
  app.inject = ((options?: unknown, callback?: unknown) => {
    // The chain API and callbacks are left alone; the suites await a promise.
    if (options === undefined || callback !== undefined) return inject(...(callback === undefined ? [options] : [options, callback]))
    const sent = typeof options === 'object' && options !== null ? options as { payload?: unknown, body?: unknown } : {}
    return (inject(options) as Promise<InjectResponse>).then((response) => {
      const req = response.raw.req
      wire.recordInjected({ method: req.method ?? 'GET', url: req.url ?? '', payload: sent.payload ?? sent.body }, response)
      return response
    })
  }) as FastifyInstance['inject']
}

/**
 * The BFF over real HTTP on 127.0.0.1 in front of a fresh simulator. When the test ends, every log
 * line and every response of this stack is scanned for credentials (test/helpers/leak-scan.ts).
 */
export async function startStack (t: Teardown, options: StackOptions = {}): Promise<Stack> {
  const watch = new LeakWatch(secrets)
  const watched: { usersFile?: string } = {}
  // Registered first, so it runs last: after the app has closed and written its final lines.
  t.teardown(() => {
    // Tests rewrite users files; what they hold at the end counts too.
    registerUsersFile(watched.usersFile)
    watch.assertClean()
  })
  const simulatorOptions = options.simulator ?? {}
  for (const applicationToken of simulatorOptions.applicationTokens ?? []) secrets.add('an emnify application token', applicationToken)
  const sim = await startSimulator({
    applicationTokens: [APPLICATION_TOKEN],
    ...simulatorOptions,
    onTokenIssued: (token) => {
      secrets.add('an auth_token issued by the simulator', token)
      simulatorOptions.onTokenIssued?.(token)
    }
  })
  t.teardown(() => sim.close())
  const config = testConfig({ EMNIFY_API_URL: sim.url, ...options.env })
  secrets.add('the session secret', config.SESSION_SECRET)
  secrets.add('the emnify application token', config.EMNIFY_APPLICATION_TOKEN)
  watched.usersFile = config.USERS_FILE
  registerUsersFile(config.USERS_FILE)
  const logs = newCapture()
  watch.watchLines('log line', logs.lines)
  // Tests scrape right after the traffic they count; the render cache has a test of its own.
  const app = await buildApp(config, { logStream: logs.stream, metricsRenderIntervalMs: 0, ...options.app })
  t.teardown(() => app.close())
  watch.watchServer(app.server)
  if (app.metricsListener !== null) watch.watchServer(app.metricsListener.server)
  watchInject(app, watch.wire)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const token = session()

  const call: Stack['call'] = async (method, path, { headers = {}, body } = {}) => {
    const response = await httpRequest(url + path, {
      method: method as 'GET',
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
    })
    const text = await response.body.text()
    return { status: response.statusCode, headers: response.headers, text, json: () => JSON.parse(text) }
  }
  const patch: Stack['patch'] = (path, body, headers = {}) => call('PATCH', path, {
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: body as object
  })
  return { app, url, sim, config, logs, token, call, patch }
}

export const CONTACT = '/api/v1/organisation/1/contact/1'
