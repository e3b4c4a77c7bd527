// Shared assertions for the upstream end-to-end tests (no tests of its own).
import { createServer as createNetServer } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import type { Test } from 'tap'
import { APPLICATION_TOKEN, type Reply, type Stack } from '../helpers/stack.ts'

/** What the BFF may add to a forwarded call besides the allow-list: HTTP/1.1 transport headers. */
export const TRANSPORT_HEADERS = ['host', 'connection', 'content-length', 'transfer-encoding']

/** Auth tokens the BFF presented to the simulator, taken from the recorded calls. */
export function presentedTokens (stack: Stack): string[] {
  const tokens = new Set<string>()
  for (const call of stack.sim.state.calls) {
    const header = call.headers.authorization
    if (header !== undefined) tokens.add(header.replace(/^Bearer /, ''))
  }
  return [...tokens]
}

/**
 * Things that must never reach a frontend: where the upstream lives, any credential, and the
 * recognisable parts of raw upstream bodies.
 */
export function forbiddenFragments (stack: Stack): string[] {
  return [
    stack.sim.url,
    '127.0.0.1',
    `:${stack.sim.port}`,
    APPLICATION_TOKEN,
    stack.token,
    'eyJ',
    ...presentedTokens(stack),
    'error_code',
    'error_token',
    '<html',
    'stack'
  ]
}

export function assertNoLeaks (t: Test, stack: Stack, text: string, extra: string[] = []): void {
  for (const fragment of [...forbiddenFragments(stack), ...extra]) {
    t.notOk(text.includes(fragment), `response does not contain ${JSON.stringify(fragment.slice(0, 40))}`)
  }
}

/** Credentials never reach the log lines either (§7). */
export function assertLogsClean (t: Test, stack: Stack): void {
  const all = stack.logs.lines.join('\n')
  for (const secret of [APPLICATION_TOKEN, stack.token, ...presentedTokens(stack)]) {
    t.notOk(all.includes(secret), 'logs carry no credential')
  }
}

export interface Expected {
  status: number
  code: string
  /** The request path (`instance`); defaults to the contact path. */
  path?: string
  /** Require a Retry-After of whole seconds; a number requires that exact value. */
  retryAfter?: boolean | number
}

/** A complete RFC 9457 problem with our extensions, and nothing in it that must not leak. */
export function assertProblem (t: Test, stack: Stack, reply: Reply, expected: Expected, extraLeaks: string[] = []): Record<string, unknown> {
  t.equal(reply.status, expected.status, `status ${expected.status}`)
  t.match(String(reply.headers['content-type']), /^application\/problem\+json/, 'problem+json')
  const body = reply.json() as Record<string, unknown>
  t.equal(body.code, expected.code, `code ${expected.code}`)
  t.equal(body.status, expected.status, 'status repeated in the body')
  t.match(body.type, /\S/, 'type')
  t.match(body.title, /\S/, 'title')
  t.match(body.detail, /\S/, 'detail')
  t.equal(body.instance, expected.path ?? '/api/v1/organisation/1/contact/1', 'instance is the request path')
  t.equal(body.request_id, reply.headers['x-request-id'], 'request_id echoes X-Request-Id')
  t.match(body.request_id, /\S/)
  if (expected.retryAfter === true) {
    t.match(String(reply.headers['retry-after']), /^[1-9]\d*$/, 'Retry-After in seconds')
  } else if (typeof expected.retryAfter === 'number') {
    t.equal(reply.headers['retry-after'], String(expected.retryAfter), `Retry-After ${expected.retryAfter}`)
  }
  assertNoLeaks(t, stack, reply.text, extraLeaks)
  return body
}

export function auditRecords (stack: Stack): Array<Record<string, unknown>> {
  return stack.logs.records().filter((record) => record.log_type === 'audit')
}

/** A port on 127.0.0.1 where nothing listens. */
export async function closedPort (): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** An HTTP server that only counts what reaches it, as a redirect target. */
export async function countingServer (t: Test): Promise<{ url: string, hits: () => number }> {
  let hits = 0
  const server = createHttpServer((_req, res) => {
    hits++
    res.writeHead(204).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  }))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { url: `http://127.0.0.1:${port}`, hits: () => hits }
}

/**
 * A clock that tests move forward instead of sleeping; shared by the simulator and the token
 * cache. By default real time runs on beneath the advances; `frozen`
 * stops it, for a test that puts the clock 1 ms before a boundary and must not see the few real
 * milliseconds its requests take push it across.
 */
export function movableClock (options: { frozen?: boolean } = {}): { now: () => number, advance: (ms: number) => void } {
  let offset = 0
  const base = Date.now()
  const real = options.frozen === true ? () => base : Date.now
  return { now: () => real() + offset, advance: (ms) => { offset += ms } }
}

/** Waits (briefly) until `condition` holds; for effects that finish after the response. */
export async function until (condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

/**
 * Fails the test during which an unhandled rejection or uncaught exception happens (the app runs
 * in this process, so one escaping a fault path lands here), and the file if one comes later.
 * Call once at the top of a test file with the root `t`.
 */
export function failOnStrayErrors (t: Test): void {
  const strays: string[] = []
  const record = (kind: string) => (error: unknown) => {
    strays.push(`${kind}: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  }
  // Never removed: a stray from the last teardown must still fail the file.
  process.on('unhandledRejection', record('unhandled rejection'))
  process.on('uncaughtException', record('uncaught exception'))
  const check = (): void => {
    const found = strays.splice(0)
    if (found.length > 0) throw new Error(found.join('\n'))
  }
  // Throwing is how a hook fails the test it ran after; assertions are closed by then.
  t.afterEach(check)
  t.teardown(check)
  process.once('exit', () => {
    if (strays.length === 0) return
    console.error(strays.join('\n'))
    process.exitCode = 1
  })
}

export interface UpstreamCalls {
  authenticate: number
  patch_contact: number
  get_contact?: number
}

/**
 * After a moment for anything wrongly re-sent to arrive: exactly these calls reached emnify,
 * each operation counted on its own, and nothing else (the total is their sum).
 */
export async function assertUpstreamCalls (t: Test, stack: Stack, expected: UpstreamCalls): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 50))
  const counters = stack.sim.state.counters
  const getContact = expected.get_contact ?? 0
  t.equal(counters.authenticate, expected.authenticate, `${expected.authenticate} authenticate call(s)`)
  t.equal(counters.patch_contact, expected.patch_contact, `${expected.patch_contact} PATCH call(s)`)
  t.equal(counters.get_contact, getContact, `${getContact} GET call(s)`)
  t.equal(counters.total, expected.authenticate + expected.patch_contact + getContact, 'no other call')
}

/**
 * How many upstream calls the BFF itself counted for an operation and outcome (its duration
 * histogram), including attempts that never reached a server, such as refused connections.
 */
export async function upstreamAttempts (stack: Stack, operation: string, outcome: string): Promise<number> {
  const reply = await stack.call('GET', '/metrics')
  if (reply.status !== 200) throw new Error(`/metrics answered ${reply.status}`)
  for (const line of reply.text.split('\n')) {
    if (!line.startsWith('emnify_bff_upstream_request_duration_seconds_count{')) continue
    if (line.includes(`operation="${operation}"`) && line.includes(`outcome="${outcome}"`)) return Number(line.split(' ').at(-1))
  }
  return 0
}
