import { Writable } from 'node:stream'
import { createHmac } from 'node:crypto'
import { request as httpRequest } from 'undici'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppOptions } from '../../src/app.ts'
import { loadConfig, type Config } from '../../src/config/config.ts'
import { mintSession } from '../../src/session/mint.ts'
import { startSimulator, type RunningSimulator, type SimulatorOptions } from '../../src/simulator/simulator.ts'

export const SECRET = 'test-session-secret-0123456789-abcdef'
export const APPLICATION_TOKEN = 'test-application-token-5f2c'

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
      ...env
    }
  })
}

/** A valid session token as an operator would mint it. */
export function session (sub = 'alice', orgs: number[] | '*' = [1, 2], ttlS = 600): string {
  return mintSession(testConfig(), { sub, orgs, ttlS }).token
}

/** Signs arbitrary header/payload with HMAC, for tokens no well-behaved issuer would produce. */
export function forge (header: Record<string, unknown>, payload: unknown, options: { key?: string, hash?: 'sha256' | 'sha384' | 'sha512' } = {}): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const input = `${encode(header)}.${encode(payload)}`
  const signature = createHmac(options.hash ?? 'sha256', options.key ?? SECRET).update(input).digest('base64url')
  return `${input}.${signature}`
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

export function captureLogs (): LogCapture {
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

/** The BFF over real HTTP on 127.0.0.1 in front of a fresh simulator. */
export async function startStack (t: Teardown, options: StackOptions = {}): Promise<Stack> {
  const sim = await startSimulator({ applicationTokens: [APPLICATION_TOKEN], ...options.simulator })
  t.teardown(() => sim.close())
  const config = testConfig({ EMNIFY_API_URL: sim.url, ...options.env })
  const logs = captureLogs()
  const app = await buildApp(config, { logStream: logs.stream, ...options.app })
  t.teardown(() => app.close())
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
