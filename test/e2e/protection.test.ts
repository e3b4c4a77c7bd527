// Protection (§8): load shedding, the per-session rate limit and security headers. Neither a shed
// nor a rate-limited request may send anything upstream.
import t from 'tap'
import type { Test } from 'tap'
import { CONTACT, session, startStack, type Reply, type Stack } from '../helpers/stack.ts'
import { eventually, saturateEventLoop, usersFile } from './ops-helpers.ts'

function assertProblem (t: Test, reply: Reply, status: number, code: string) {
  t.equal(reply.status, status, `answers ${status}`)
  t.match(reply.headers['content-type'], /^application\/problem\+json/, 'as problem+json')
  const body = reply.json()
  t.match(body, { status, code, type: String, title: String, detail: String, instance: String, request_id: reply.headers['x-request-id'] }, `an RFC 9457 problem with code ${code}`)
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const JSON_TYPE = { 'content-type': 'application/json' }

/** A stack whose event loop is sampled every 250 ms (longer than one busy period of saturateEventLoop), so overload is noticed quickly and steadily. */
const sheddingStack = (t: Test, env: Record<string, string>) => startStack(t, { env, app: { loadSheddingSampleIntervalMs: 250 } })

async function untilOverloaded (stack: Stack) {
  await eventually(async () => (await stack.call('GET', '/health/ready')).status === 503, 10_000, 'readiness 503')
}

t.test('load shedding: an event loop over MAX_EVENT_LOOP_DELAY_MS answers 503 OVERLOADED and sends nothing upstream', async (t) => {
  const stack = await sheddingStack(t, { MAX_EVENT_LOOP_DELAY_MS: '20', MAX_EVENT_LOOP_UTILIZATION: '0' })
  // Start-up itself (loading, compiling) can exceed so tight a limit for a sample or two.
  await eventually(async () => (await stack.call('GET', '/health/ready')).status === 200, 10_000, 'ready after start-up')

  const release = saturateEventLoop()
  t.teardown(release)
  await untilOverloaded(stack)

  const ready = await stack.call('GET', '/health/ready')
  assertProblem(t, ready, 503, 'OVERLOADED')
  t.equal(ready.headers['retry-after'], '5', 'readiness says when to look again')

  const shed = await stack.patch(CONTACT, { city: 'Hamburg' })
  assertProblem(t, shed, 503, 'OVERLOADED')
  t.equal(shed.headers['retry-after'], '5', 'Retry-After')
  t.equal(shed.json().instance, CONTACT)
  const unauthenticated = await stack.call('PATCH', CONTACT, { headers: JSON_TYPE, body: { city: 'x' } })
  assertProblem(t, unauthenticated, 503, 'OVERLOADED')

  t.equal((await stack.call('GET', '/health/live')).status, 200, 'liveness always answers')
  assertProblem(t, await stack.call('GET', '/metrics'), 503, 'OVERLOADED') // unauthenticated, so shed too; METRICS_PORT is not
  t.equal(stack.sim.state.counters.total, 0, 'nothing reached emnify, not even authenticate')
  t.notOk(stack.logs.records().some((r) => r.level === 40 && r.code === 'OVERLOADED'), 'no warning per shed request')

  release()
  await eventually(async () => (await stack.call('GET', '/health/ready')).status === 200, 10_000, 'readiness 200 again')
  await eventually(async () => (await stack.patch(CONTACT, { city: 'Köln' })).status === 204, 10_000, 'served again once the loop recovers')
  t.equal(stack.sim.state.counters.patch_contact, 1, 'the first PATCH after recovery reached emnify')
})

t.test('load shedding: event-loop utilisation over MAX_EVENT_LOOP_UTILIZATION sheds too', async (t) => {
  const stack = await sheddingStack(t, { MAX_EVENT_LOOP_DELAY_MS: '0', MAX_EVENT_LOOP_UTILIZATION: '0.5' })
  const release = saturateEventLoop()
  t.teardown(release)
  await untilOverloaded(stack)
  assertProblem(t, await stack.patch(CONTACT, { city: 'Hamburg' }), 503, 'OVERLOADED')
  t.equal(stack.sim.state.counters.total, 0)
  release()
})

t.test('load shedding: 0 disables both limits', async (t) => {
  const stack = await sheddingStack(t, { MAX_EVENT_LOOP_DELAY_MS: '0', MAX_EVENT_LOOP_UTILIZATION: '0' })
  const release = saturateEventLoop()
  t.teardown(release)
  for (let i = 0; i < 10; i++) {
    const ready = await stack.call('GET', '/health/ready')
    t.equal(ready.status, 200, `ready under load (${i})`)
  }
  t.equal((await stack.patch(CONTACT, { city: 'Hamburg' })).status, 204, 'served under load')
  release()
})

t.test('rate limit: RATE_LIMIT_PER_MINUTE contact requests per session sub, then 429 RATE_LIMITED', async (t) => {
  const stack = await startStack(t, { env: { RATE_LIMIT_PER_MINUTE: '3' } })
  for (let i = 1; i <= 3; i++) {
    const reply = await stack.patch(CONTACT, { city: `City ${i}` })
    t.equal(reply.status, 204, `request ${i} served`)
    t.equal(reply.headers['ratelimit-policy'], '"session";q=3;w=60', 'the quota per 60 s window')
    const state = rateLimitState(reply)
    t.equal(state.remaining, 3 - i, `${3 - i} left`)
    t.ok(state.reset >= 1 && state.reset <= 60, `resets in ${state.reset} s`)
    t.notOk(Object.keys(reply.headers).some((name) => /^(x-)?ratelimit-(limit|remaining|reset)$/.test(name)), 'only the two fields of the current draft')
  }
  const limited = await stack.patch(CONTACT, { city: 'One too many' })
  assertProblem(t, limited, 429, 'RATE_LIMITED')
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
  t.equal(rateLimitState(limited).remaining, 0, 'none left')
  t.equal(rateLimitState(limited).reset, retryAfter, 'the window resets when Retry-After says')

  // Refused before anything is parsed or checked: an invalid body or a forbidden org is still 429.
  assertProblem(t, await stack.patch(CONTACT, '{"city":'), 429, 'RATE_LIMITED')
  assertProblem(t, await stack.patch('/api/v1/organisation/9/contact/1', { city: 'x' }), 429, 'RATE_LIMITED')
  t.equal(stack.sim.state.counters.patch_contact, 3, 'only the allowed requests reached emnify')

  // The key is the session's sub, not the token: another token of alice shares her budget.
  assertProblem(t, await stack.patch(CONTACT, { city: 'x' }, bearer(session('alice'))), 429, 'RATE_LIMITED')
  t.equal((await stack.patch(CONTACT, { city: 'Bob' }, bearer(session('bob')))).status, 204, 'another session has its own budget')
  t.equal((await stack.call('GET', '/auth/session', { headers: bearer(stack.token) })).status, 200, 'other routes are not limited')
  t.equal(stack.sim.state.counters.patch_contact, 4)
})

t.test('rate limit: requests without a valid session are limited per client IP', async (t) => {
  const stack = await startStack(t, { env: { RATE_LIMIT_PER_MINUTE: '3' } })
  const anonymous = () => stack.call('PATCH', CONTACT, { headers: JSON_TYPE, body: { city: 'x' } })
  assertProblem(t, await anonymous(), 401, 'UNAUTHENTICATED')
  assertProblem(t, await stack.patch(CONTACT, { city: 'x' }, bearer('garbage')), 401, 'UNAUTHENTICATED')
  assertProblem(t, await anonymous(), 401, 'UNAUTHENTICATED')
  const limited = await anonymous()
  assertProblem(t, limited, 429, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) >= 1, 'Retry-After')
  t.equal(limited.headers['ratelimit-policy'], '"session";q=3;w=60')
  t.equal(rateLimitState(limited).remaining, 0)
  t.equal(limited.headers['www-authenticate'], undefined, 'a rate-limit answer, not an auth challenge')
  t.equal((await stack.patch(CONTACT, { city: 'Valid' })).status, 204, 'a valid session from the same IP has its own budget')
  t.equal(stack.sim.state.counters.patch_contact, 1)
  t.equal(stack.sim.state.callsFor('authenticate').length, 1, 'the refused requests never reached emnify')
})

t.test('rate limit: the default allows RATE_LIMIT_PER_MINUTE=60, a fair share of the default upstream budget', async (t) => {
  const stack = await startStack(t, { env: { RATE_LIMIT_PER_MINUTE: '' } })
  const reply = await stack.patch(CONTACT, { city: 'Berlin' })
  t.equal(reply.headers['ratelimit-policy'], '"session";q=60;w=60')
  t.equal(rateLimitState(reply).remaining, 59)
})

/** The IETF draft's `RateLimit` field, `"session";r=<remaining>;t=<seconds>`, read strictly. */
function rateLimitState (reply: Reply): { remaining: number, reset: number } {
  const match = /^"session";r=(\d+);t=(\d+)$/.exec(String(reply.headers.ratelimit))
  if (match === null) throw new Error(`RateLimit field not in the draft's form: ${String(reply.headers.ratelimit)}`)
  return { remaining: Number(match[1]), reset: Number(match[2]) }
}

const API_CSP = /^default-src 'none';.*frame-ancestors 'none'/

function assertSecurityHeaders (t: Test, reply: Reply, label: string) {
  t.match(reply.headers['content-security-policy'], API_CSP, `${label}: CSP default-src 'none', frame-ancestors 'none'`)
  t.equal(reply.headers['x-content-type-options'], 'nosniff', `${label}: nosniff`)
  t.equal(reply.headers['x-frame-options'], 'DENY', `${label}: X-Frame-Options`)
  t.equal(reply.headers['referrer-policy'], 'no-referrer', `${label}: Referrer-Policy`)
  t.match(reply.headers['strict-transport-security'], /^max-age=\d+/, `${label}: HSTS`)
  t.equal(reply.headers['cross-origin-resource-policy'], 'same-origin', `${label}: CORP`)
  t.equal(reply.headers['x-powered-by'], undefined, `${label}: no X-Powered-By`)
}

t.test('security headers fit for a JSON API are on every response: success, errors, 404s, router rejections', async (t) => {
  const stack = await startStack(t, { env: { USERS_FILE: await usersFile(t), RATE_LIMIT_PER_MINUTE: '2' } })
  const cases: Array<[string, Promise<Reply>, number]> = [
    ['PATCH 204', stack.patch(CONTACT, { city: 'Berlin' }), 204],
    ['401', stack.call('PATCH', CONTACT, { headers: JSON_TYPE, body: { city: 'x' } }), 401],
    ['403 CSRF', stack.call('PATCH', CONTACT, { headers: { ...JSON_TYPE, cookie: `__Host-session=${stack.token}` }, body: { city: 'x' } }), 403],
    ['400 validation', stack.patch(CONTACT, { colour: 'red' }), 400],
    ['404 unknown route', stack.call('GET', '/nope'), 404],
    ['400 bad URL encoding', stack.call('PATCH', '/api/v1/organisation/%zz/contact/1', { headers: { ...JSON_TYPE, ...bearer(stack.token) }, body: { city: 'x' } }), 400],
    ['401 login', stack.call('POST', '/auth/login', { headers: JSON_TYPE, body: { username: 'alice', password: 'wrong' } }), 401],
    ['health', stack.call('GET', '/health/live'), 200],
    ['metrics', stack.call('GET', '/metrics'), 200],
    ['OpenAPI JSON', stack.call('GET', '/docs/json'), 200]
  ]
  for (const [label, pending, status] of cases) {
    const reply = await pending
    t.equal(reply.status, status, `${label}: ${status}`)
    if (label === 'OpenAPI JSON') {
      t.match(reply.headers['content-security-policy'], /frame-ancestors 'none'/, `${label}: the docs CSP`)
      continue
    }
    assertSecurityHeaders(t, reply, label)
  }
  const limited = await stack.patch(CONTACT, { city: 'x' })
  t.equal(limited.status, 429)
  assertSecurityHeaders(t, limited, '429')
})

t.test('security headers are on shed responses too', async (t) => {
  const stack = await sheddingStack(t, { MAX_EVENT_LOOP_DELAY_MS: '20' })
  const release = saturateEventLoop()
  t.teardown(release)
  await untilOverloaded(stack)
  const shed = await stack.patch(CONTACT, { city: 'x' })
  t.equal(shed.status, 503)
  assertSecurityHeaders(t, shed, '503')
  release()
})
