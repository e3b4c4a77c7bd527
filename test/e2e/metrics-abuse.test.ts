// /metrics needs no session, so it must cost less to serve than to abuse: one render per interval,
// a per-IP limit and load shedding on the main port, and the main port's bounds on METRICS_PORT.
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { CachedExposition } from '../../src/metrics/plugin.ts'
import { startStack, type Stack } from '../helpers/stack.ts'
import { eventually, saturateEventLoop } from './ops-helpers.ts'

function metricsPort (stack: Stack): number {
  const address = stack.app.metricsListener?.server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no metrics listener')
  return address.port
}

t.test('a rendered text is served until the interval passes; concurrent scrapes share one render', async (t) => {
  let clock = 0
  let renders = 0
  const cache = new CachedExposition(async () => `render ${++renders}`, 1000, () => clock)
  t.same(await Promise.all([cache.text(), cache.text(), cache.text()]), ['render 1', 'render 1', 'render 1'], 'one render for three concurrent scrapes')
  clock = 999
  t.equal(await cache.text(), 'render 1', 'served from cache within the interval')
  clock = 1000
  t.equal(await cache.text(), 'render 2', 'rendered again once the interval passed')
  t.equal(cache.renders, 2)
})

t.test('a failed render is not cached: the next scrape renders again', async (t) => {
  let fail = true
  const cache = new CachedExposition(async () => { if (fail) throw new Error('collect failed'); return 'ok' }, 1000, () => 0)
  await t.rejects(cache.text(), /collect failed/)
  fail = false
  t.equal(await cache.text(), 'ok')
})

t.test('a scrape flood on the main port costs one render per interval', async (t) => {
  const stack = await startStack(t, { app: { metricsRenderIntervalMs: 60_000 } })
  const first = await Promise.all(Array.from({ length: 20 }, () => stack.call('GET', '/metrics')))
  t.ok(first.every((reply) => reply.status === 200), 'all scrapes answered')
  await stack.call('GET', '/no/such/route')
  const later = await stack.call('GET', '/metrics')
  t.equal(later.text, first[0]?.text, 'the same text, not rendered again')
  t.equal(stack.app.metricsExposition?.renders, 1, 'rendered once for 21 scrapes')
})

t.test('the main port allows 60 scrapes a minute per client IP, then 429 RATE_LIMITED with Retry-After', async (t) => {
  const stack = await startStack(t)
  for (let i = 1; i <= 60; i++) {
    const reply = await stack.call('GET', '/metrics')
    if (reply.status !== 200) t.fail(`scrape ${i} answered ${reply.status}`)
  }
  const limited = await stack.call('GET', '/metrics')
  t.equal(limited.status, 429)
  t.equal(limited.json().code, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) >= 1 && Number(limited.headers['retry-after']) <= 60, 'Retry-After within the minute')
  t.equal((await stack.call('GET', '/health/live')).status, 200, 'other routes are not affected')
})

t.test('under load the main port sheds /metrics like everything else; the METRICS_PORT listener keeps answering', async (t) => {
  const env = { MAX_EVENT_LOOP_DELAY_MS: '20', MAX_EVENT_LOOP_UTILIZATION: '0' }
  const main = await startStack(t, { env, app: { loadSheddingSampleIntervalMs: 250 } })
  const separate = await startStack(t, { env: { ...env, METRICS_PORT: '0' }, app: { loadSheddingSampleIntervalMs: 250 } })
  for (const stack of [main, separate]) await eventually(async () => (await stack.call('GET', '/health/ready')).status === 200, 10_000, 'ready after start-up')
  const release = saturateEventLoop()
  t.teardown(release)
  await eventually(async () => (await main.call('GET', '/health/ready')).status === 503 && (await separate.call('GET', '/health/ready')).status === 503, 10_000, 'both overloaded')
  const shed = await main.call('GET', '/metrics')
  t.equal(shed.status, 503)
  t.equal(shed.json().code, 'OVERLOADED')
  const scraped = await request(`http://127.0.0.1:${metricsPort(separate)}/metrics`)
  t.equal(scraped.statusCode, 200, 'the dedicated listener is not shed')
  await scraped.body.dump()
  release()
})

interface Watched { socket: Socket, closed: Promise<void>, received: () => string }

function open (port: number): Promise<Watched> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
    socket.once('connect', () => resolve({ socket, closed, received: () => text }))
    socket.once('error', reject)
  })
}

/** Whether the socket closed within `ms`. */
async function closesWithin (client: Watched, ms: number): Promise<boolean> {
  return Promise.race([client.closed.then(() => true), sleep(ms).then(() => false)])
}

const SHORT = { headersMs: 500, requestMs: 800, keepAliveMs: 400, idleMs: 2_000, checkIntervalMs: 25 }

async function listenerStack (t: Test) {
  const stack = await startStack(t, { env: { METRICS_PORT: '0' }, app: { serverTimeouts: SHORT } })
  return metricsPort(stack)
}

t.test('the METRICS_PORT listener closes a connection that sends nothing, within the main port\'s header timeout', async (t) => {
  const client = await open(await listenerStack(t))
  t.teardown(() => client.socket.destroy())
  t.ok(await closesWithin(client, SHORT.headersMs + 2_000), 'closed by the server')
})

t.test('the METRICS_PORT listener cuts off a body dripped one byte at a time, within the main port\'s request timeout', async (t) => {
  const client = await open(await listenerStack(t))
  t.teardown(() => client.socket.destroy())
  client.socket.write('POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n')
  const drip = setInterval(() => { if (client.socket.writable) client.socket.write('x') }, 100)
  t.teardown(() => clearInterval(drip))
  t.ok(await closesWithin(client, SHORT.requestMs + 2_000), 'closed by the server')
  clearInterval(drip)
  t.notMatch(client.received(), /^HTTP\/1\.1 200/, 'never answered as a scrape')
})

t.test('the METRICS_PORT listener closes an idle keep-alive connection after the main port\'s keep-alive timeout', async (t) => {
  const client = await open(await listenerStack(t))
  t.teardown(() => client.socket.destroy())
  client.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
  await eventually(async () => /\r\n\r\n/.test(client.received()), 5_000, 'answered')
  t.match(client.received(), /^HTTP\/1\.1 200/)
  t.ok(await closesWithin(client, SHORT.keepAliveMs + 2_000), 'closed by the server')
})
