// Prometheus metrics (§8): the series exist, move with traffic, use route templates, and can be
// moved to their own listener or switched off.
import t from 'tap'
import { request } from 'undici'
import { CONTACT, session, startStack, type Stack } from '../helpers/stack.ts'
import { PASSWORD, sample, usersFile } from './ops-helpers.ts'

const ROUTE = '/api/v1/organisation/:org_id/contact/:contact_id'
const JSON_TYPE = { 'content-type': 'application/json' }

async function scrape (stack: Stack): Promise<string> {
  const reply = await stack.call('GET', '/metrics')
  if (reply.status !== 200) throw new Error(`/metrics answered ${reply.status}`)
  return reply.text
}

const requests = (text: string, method: string, route: string, status: number) =>
  sample(text, 'http_request_duration_seconds_count', { method, route, status_code: String(status) }) ?? 0
const upstream = (text: string, operation: string, outcome: string) =>
  sample(text, 'emnify_bff_upstream_request_duration_seconds_count', { operation, outcome }) ?? 0
const sessions = (text: string, event: string) => sample(text, 'emnify_bff_sessions_total', { event })

t.test('/metrics needs no session, speaks the Prometheus text format and has every series from the start', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.call('GET', '/metrics')
  t.equal(reply.status, 200)
  t.match(reply.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  for (const name of [
    'http_request_duration_seconds',
    'emnify_bff_upstream_request_duration_seconds',
    'emnify_bff_upstream_authenticate_total',
    'emnify_bff_upstream_token_expires_in_seconds',
    'emnify_bff_sessions_total',
    'process_cpu_user_seconds_total',
    'process_resident_memory_bytes',
    'nodejs_eventloop_lag_seconds',
    'nodejs_heap_size_used_bytes'
  ]) t.match(reply.text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exposed`)
  for (const event of ['login_ok', 'login_failed', 'logout', 'rejected']) t.equal(sessions(reply.text, event), 0, `sessions_total{event="${event}"} starts at 0`)
  t.equal(sample(reply.text, 'emnify_bff_upstream_authenticate_total', { outcome: 'ok' }), 0)
  t.equal(sample(reply.text, 'emnify_bff_upstream_authenticate_total', { outcome: 'failed' }), 0)
  t.equal(sample(reply.text, 'emnify_bff_upstream_token_expires_in_seconds'), 0, 'no token yet')
  t.equal(stack.sim.state.counters.total, 0, 'scraping calls nothing upstream')
})

t.test('request durations are counted by method, route template and status; unknown routes share one label', async (t) => {
  const stack = await startStack(t)
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).status, 204)
  t.equal((await stack.patch('/api/v1/organisation/1/contact/2', { city: 'Hamburg' })).status, 204)
  t.equal((await stack.patch(CONTACT, { colour: 'red' })).status, 400)
  t.equal((await stack.call('GET', '/no/such/route-123')).status, 404)
  t.equal((await stack.call('DELETE', '/another-4711')).status, 404)
  await stack.call('GET', '/health/live')

  const text = await scrape(stack)
  t.equal(requests(text, 'PATCH', ROUTE, 204), 2, 'both PATCHes under the template')
  t.equal(requests(text, 'PATCH', ROUTE, 400), 1)
  t.equal(requests(text, 'GET', 'not_found', 404), 1)
  t.equal(requests(text, 'DELETE', 'not_found', 404), 1)
  t.equal(requests(text, 'GET', '/health/live', 200), 1)
  t.notMatch(text, /route="\/api\/v1\/organisation\/\d/, 'no raw contact URL as a label')
  t.notMatch(text, /route-123|another-4711/, 'no raw unknown URL as a label')
  const bucket = sample(text, 'http_request_duration_seconds_bucket', { method: 'PATCH', route: ROUTE, status_code: '204', le: '+Inf' })
  t.equal(bucket, 2, 'a histogram, with buckets')
})

t.test('upstream calls are timed by operation and outcome; authenticate and the token are tracked', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '1000' } })
  await stack.patch(CONTACT, { city: 'Berlin' }, { prefer: 'return=representation' })
  let text = await scrape(stack)
  t.equal(upstream(text, 'authenticate', '2xx'), 1)
  t.equal(upstream(text, 'patch_contact', '2xx'), 1)
  t.equal(upstream(text, 'get_contact', '2xx'), 1)
  t.equal(sample(text, 'emnify_bff_upstream_authenticate_total', { outcome: 'ok' }), 1)
  const expiresIn = sample(text, 'emnify_bff_upstream_token_expires_in_seconds') ?? 0
  t.ok(expiresIn > 60 && expiresIn <= 14_400, `the token expires in ${expiresIn} s`)

  stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 500, times: 1 })
  t.equal((await stack.patch(CONTACT, { city: 'Köln' })).status, 502)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 409, times: 1 })
  t.equal((await stack.patch(CONTACT, { city: 'Köln' })).status, 409)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'delay', ms: 1_000, times: 1 })
  t.equal((await stack.patch(CONTACT, { city: 'Köln' })).status, 504)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'reset_before_headers', times: 1 })
  t.equal((await stack.patch(CONTACT, { city: 'Köln' })).status, 502)
  text = await scrape(stack)
  t.equal(upstream(text, 'patch_contact', '5xx'), 1)
  t.equal(upstream(text, 'patch_contact', '4xx'), 1)
  t.equal(upstream(text, 'patch_contact', 'timeout'), 1)
  t.equal(upstream(text, 'patch_contact', 'reset'), 1)
  t.equal(sample(text, 'emnify_bff_upstream_authenticate_total', { outcome: 'ok' }), 1, 'one token served every call')
})

t.test('a failing authenticate and an unreachable upstream are counted', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'authenticate', kind: 'status', status: 401, times: 1 })
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).status, 502)
  let text = await scrape(stack)
  t.equal(sample(text, 'emnify_bff_upstream_authenticate_total', { outcome: 'failed' }), 1)
  t.equal(upstream(text, 'authenticate', '4xx'), 1)
  t.equal(sample(text, 'emnify_bff_upstream_token_expires_in_seconds'), 0)

  const down = await startStack(t, { env: { EMNIFY_API_URL: 'http://127.0.0.1:9' } })
  t.equal((await down.patch(CONTACT, { city: 'Berlin' })).status, 503)
  text = await scrape(down)
  t.ok(upstream(text, 'authenticate', 'unreachable') >= 1, 'unreachable')
})

t.test('session events: login_ok, login_failed, logout and rejected', async (t) => {
  const stack = await startStack(t, { env: { USERS_FILE: await usersFile(t) } })
  const login = (password: string) => stack.call('POST', '/auth/login', { headers: JSON_TYPE, body: { username: 'alice', password } })
  t.equal((await login(PASSWORD)).status, 200)
  t.equal((await login('wrong')).status, 401)
  t.equal((await login('wrong again')).status, 401)
  t.equal((await stack.call('POST', '/auth/logout', { headers: { authorization: `Bearer ${session('bob')}` } })).status, 204)
  t.equal((await stack.call('GET', '/auth/session')).status, 401)
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' }, { authorization: 'Bearer not-a-jwt' })).status, 401)
  t.equal((await stack.patch('/api/v1/organisation/9/contact/1', { city: 'Berlin' })).status, 403, 'forbidden organisation: not a session rejection')

  const text = await scrape(stack)
  t.equal(sessions(text, 'login_ok'), 1)
  t.equal(sessions(text, 'login_failed'), 2)
  t.equal(sessions(text, 'logout'), 1)
  t.equal(sessions(text, 'rejected'), 2)
})

t.test('each app has its own registry: two apps in one process count separately', async (t) => {
  const one = await startStack(t)
  const two = await startStack(t)
  await one.patch(CONTACT, { city: 'Berlin' })
  await one.patch(CONTACT, { city: 'Berlin' })
  await two.patch(CONTACT, { city: 'Berlin' })
  t.equal(requests(await scrape(one), 'PATCH', ROUTE, 204), 2)
  t.equal(requests(await scrape(two), 'PATCH', ROUTE, 204), 1)
})

t.test('METRICS_PORT: metrics on their own listener, not on the main port', async (t) => {
  const stack = await startStack(t, { env: { METRICS_PORT: '0' } })
  const listener = stack.app.metricsListener
  if (listener === null) throw new Error('no metrics listener')
  const address = listener.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  t.not(port, 0)
  t.not(`http://127.0.0.1:${port}`, stack.url, 'another port')

  const main = await stack.call('GET', '/metrics')
  t.equal(main.status, 404, 'not on the main port')
  t.equal(main.json().code, 'NOT_FOUND')
  await stack.patch(CONTACT, { city: 'Berlin' })

  const reply = await request(`http://127.0.0.1:${port}/metrics`)
  const text = await reply.body.text()
  t.equal(reply.statusCode, 200)
  t.match(reply.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.equal(requests(text, 'PATCH', ROUTE, 204), 1, 'the main port\'s traffic is counted')
  t.equal(requests(text, 'GET', 'not_found', 404), 1, 'the refused /metrics on the main port is counted too')

  const other = await request(`http://127.0.0.1:${port}${CONTACT}`, { method: 'PATCH', headers: JSON_TYPE, body: '{"city":"x"}' })
  t.equal(other.statusCode, 404, 'the metrics listener serves nothing else')
  await other.body.dump()

  await stack.app.close()
  await t.rejects(request(`http://127.0.0.1:${port}/metrics`), 'closed with the app')
})

t.test('METRICS_ENABLED=false: no /metrics, everything else works', async (t) => {
  const stack = await startStack(t, { env: { METRICS_ENABLED: 'false' } })
  t.equal(stack.app.metrics, null)
  t.equal((await stack.call('GET', '/metrics')).status, 404)
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).status, 204)
  t.equal((await stack.call('GET', '/health/ready')).status, 200)
})

t.test('every in-memory store reports its size and its bound', async (t) => {
  const stack = await startStack(t)
  const store = (text: string, name: string, kind: 'entries' | 'capacity') => sample(text, `emnify_bff_store_${kind}`, { store: name })
  let text = await scrape(stack)
  t.same(
    ['revocations', 'session_rate_limit', 'login_lockout', 'upstream_token'].map((name) => [store(text, name, 'entries'), store(text, name, 'capacity')]),
    [[0, 100_000], [0, 10_000], [0, 50_000], [0, 1]]
  )

  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).status, 204)
  const other = session('bob', [1])
  t.equal((await stack.call('POST', '/auth/logout', { headers: { authorization: `Bearer ${other}` } })).status, 204)
  text = await scrape(stack)
  t.equal(store(text, 'revocations', 'entries'), 1, 'the logged-out session')
  t.equal(store(text, 'session_rate_limit', 'entries'), 1, 'one window, for alice')
  t.equal(store(text, 'upstream_token', 'entries'), 1, 'the auth_token is cached')
  t.equal(store(text, 'login_lockout', 'entries'), 0)
})
