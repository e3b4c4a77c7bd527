// End to end over real HTTP: the upstream auth_token — exchange, failures, backoff and caching (§5).
import t, { type Test } from 'tap'
import { decodeTokenClaims, type Fault, type FaultKind } from '../../simulator/simulator.ts'
import { CONTACT, startStack, type Stack, type StackOptions } from '../helpers/stack.ts'
import {
  assertLogsClean, assertProblem, closedPort, countingServer, failOnStrayErrors, movableClock, presentedTokens, until,
  upstreamAttempts
} from './upstream-helpers.ts'

failOnStrayErrors(t)

type AuthFault = FaultKind

function failAuthenticate (stack: Stack, fault: AuthFault, times?: number): void {
  stack.sim.setFault({ ...fault, operation: 'authenticate', ...(times === undefined ? {} : { times }) } as Fault)
}

/** Every PATCH the simulator saw carried a token that was valid (not expired) when it arrived. */
function assertNoExpiredTokenUsed (t: Test, stack: Stack): void {
  const patches = stack.sim.state.callsFor('patch_contact')
  t.ok(patches.length > 0)
  for (const call of patches) {
    const exp = decodeTokenClaims((call.headers.authorization ?? '').replace(/^Bearer /, '')).exp
    if (typeof exp === 'number') t.ok(exp * 1000 > call.at, 'the token was still valid when it arrived')
  }
}

const authFailures: Array<{ name: string, fault: AuthFault, status: number, code: string, env?: Record<string, string>, leaks?: string[] }> = [
  { name: '401 with an empty body', fault: { kind: 'unauthorized_empty' }, status: 502, code: 'UPSTREAM_AUTH_FAILED' },
  { name: 'a gateway 401', fault: { kind: 'gateway_unauthorized' }, status: 502, code: 'UPSTREAM_AUTH_FAILED', leaks: ['Unauthorized"'] },
  { name: '400', fault: { kind: 'status', status: 400 }, status: 502, code: 'UPSTREAM_AUTH_FAILED', leaks: ['BadRequest'] },
  { name: '403', fault: { kind: 'status', status: 403 }, status: 502, code: 'UPSTREAM_AUTH_FAILED' },
  { name: '500', fault: { kind: 'status', status: 500 }, status: 502, code: 'UPSTREAM_AUTH_FAILED', leaks: ['Internal server error'] },
  { name: 'garbage', fault: { kind: 'garbage' }, status: 502, code: 'UPSTREAM_AUTH_FAILED', leaks: ['{"auth_token": <', 'Bad Gateway'] },
  { name: '200 without auth_token', fault: { kind: 'status', status: 200, body: { token: 'eyJx.eyJy.z' } }, status: 502, code: 'UPSTREAM_AUTH_FAILED' },
  { name: '200 with a non-string auth_token', fault: { kind: 'status', status: 200, body: { auth_token: 42 } }, status: 502, code: 'UPSTREAM_AUTH_FAILED' },
  { name: '200 with an auth_token unfit for a header', fault: { kind: 'status', status: 200, body: { auth_token: 'abc\r\nx-injected: 1' } }, status: 502, code: 'UPSTREAM_AUTH_FAILED', leaks: ['x-injected'] },
  { name: '200 with a JSON null', fault: { kind: 'status', status: 200, body: 'null' }, status: 502, code: 'UPSTREAM_AUTH_FAILED' },
  { name: '429', fault: { kind: 'status', status: 429 }, status: 503, code: 'UPSTREAM_RATE_LIMITED', leaks: ['TooManyRequests'] },
  { name: '503', fault: { kind: 'status', status: 503 }, status: 503, code: 'UPSTREAM_UNAVAILABLE', leaks: ['Service Unavailable'] },
  { name: 'a slow answer', fault: { kind: 'delay', ms: 2000 }, status: 504, code: 'UPSTREAM_TIMEOUT', env: { UPSTREAM_TIMEOUT_MS: '300' } },
  { name: 'a hung connection', fault: { kind: 'hang' }, status: 504, code: 'UPSTREAM_TIMEOUT', env: { UPSTREAM_TIMEOUT_MS: '300' } },
  { name: 'a body trickling past the budget', fault: { kind: 'trickle', intervalMs: 50, chunks: 40 }, status: 504, code: 'UPSTREAM_TIMEOUT', env: { UPSTREAM_TIMEOUT_MS: '300' }, leaks: ['slow response'] },
  // A reset after the application token was sent: a transport failure, mapped as in §6.
  { name: 'a connection reset before the headers', fault: { kind: 'reset_before_headers' }, status: 502, code: 'UPSTREAM_ERROR' },
  { name: 'a connection cut after the headers', fault: { kind: 'reset_after_headers' }, status: 502, code: 'UPSTREAM_ERROR' }
]

for (const { name, fault, status, code, env, leaks = [] } of authFailures) {
  t.test(`authenticate answering ${name} becomes ${code}, then fails fast inside the backoff window`, async (t) => {
    const stack = await startStack(t, env === undefined ? {} : { env })
    failAuthenticate(stack, fault)
    const first = await stack.patch(CONTACT, { name: 'Never' })
    assertProblem(t, stack, first, { status, code, retryAfter: status === 503 ? true : undefined }, leaks)
    t.equal(stack.sim.state.counters.patch_contact, 0, 'nothing is forwarded without a token')

    const started = Date.now()
    const second = await stack.patch(CONTACT, { name: 'Never' })
    // That no new attempt was made is the counter below; the clock rules out waiting out the
    // 1–1.5 s backoff window instead, with room for a test machine that stalls for a moment.
    t.ok(Date.now() - started < 1000, 'the second request fails fast')
    assertProblem(t, stack, second, { status, code, retryAfter: true }, leaks)
    t.equal(stack.sim.state.counters.authenticate, 1, 'no further authenticate inside the window')
    t.equal(stack.sim.state.counters.patch_contact, 0)
    assertLogsClean(t, stack)
  })
}

t.test('a wrong application token becomes UPSTREAM_AUTH_FAILED', async (t) => {
  const stack = await startStack(t, { simulator: { applicationTokens: ['some-other-application-token'] } })
  const reply = await stack.patch(CONTACT, { name: 'Never' })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_AUTH_FAILED' })
  t.equal(stack.sim.state.counters.authenticate, 1)
  t.equal(stack.sim.state.counters.patch_contact, 0)
})

t.test('authenticate that redirects fails with 502 and the redirect is not followed', async (t) => {
  const target = await countingServer(t)
  const stack = await startStack(t)
  failAuthenticate(stack, { kind: 'redirect', status: 307, location: `${target.url}/api/v1/authenticate` })
  const reply = await stack.patch(CONTACT, { name: 'Never' })
  t.equal(reply.status, 502)
  assertProblem(t, stack, reply, { status: 502, code: String(reply.json().code) }, [target.url])
  t.match(reply.json().code, /^UPSTREAM_(AUTH_FAILED|ERROR)$/)
  t.equal(target.hits(), 0, 'the application token was not sent anywhere else')
})

t.test('authenticate with an oversized answer fails with 502', async (t) => {
  const stack = await startStack(t)
  failAuthenticate(stack, { kind: 'huge_body', bytes: 4 * 1024 * 1024, chunked: true })
  const reply = await stack.patch(CONTACT, { name: 'Never' })
  t.equal(reply.status, 502)
  assertProblem(t, stack, reply, { status: 502, code: String(reply.json().code) }, ['padding'])
  t.equal(stack.sim.state.counters.patch_contact, 0)
})

t.test('an unreachable authenticate fails fast again inside the backoff window', async (t) => {
  const port = await closedPort()
  const stack = await startStack(t, { env: { EMNIFY_API_URL: `http://127.0.0.1:${port}` } })
  const first = await stack.patch(CONTACT, { name: 'Never' })
  assertProblem(t, stack, first, { status: 503, code: 'UPSTREAM_UNAVAILABLE', retryAfter: true }, [`:${port}`])
  const second = await stack.patch(CONTACT, { name: 'Never' })
  assertProblem(t, stack, second, { status: 503, code: 'UPSTREAM_UNAVAILABLE', retryAfter: true }, [`:${port}`])
  // Nothing is sent on a refused connection, so one retry is allowed; inside the window none at all.
  t.equal(await upstreamAttempts(stack, 'authenticate', 'unreachable'), 2, 'one attempt and its one retry, then nothing')
  t.equal(await upstreamAttempts(stack, 'patch_contact', 'unreachable'), 0, 'no PATCH was attempted')
})

t.test('after the backoff window one new authenticate happens and succeeds', async (t) => {
  const stack = await startStack(t, { app: { tokenCache: { minBackoffMs: 50, maxBackoffMs: 200 } } })
  failAuthenticate(stack, { kind: 'status', status: 500 }, 1)
  const failed = await stack.patch(CONTACT, { name: 'First' })
  assertProblem(t, stack, failed, { status: 502, code: 'UPSTREAM_AUTH_FAILED' })
  await new Promise((resolve) => setTimeout(resolve, 150))
  const ok = await stack.patch(CONTACT, { name: 'Second' })
  t.equal(ok.status, 204)
  t.equal(stack.sim.state.counters.authenticate, 2, 'exactly one new attempt')
  t.equal(stack.sim.state.counters.patch_contact, 1)
})

t.test('the backoff window starts at 1 s or more and grows after each failure', async (t) => {
  // No jitter and a frozen clock, so the window's edge is exact: 1000 ms, with 999 inside it and
  // no real milliseconds of the requests themselves pushing the clock across.
  const clock = movableClock({ frozen: true })
  const stack = await startStack(t, { app: { tokenCache: { now: clock.now, random: () => 0 } } })
  failAuthenticate(stack, { kind: 'status', status: 500 }, 2)

  const first = await stack.patch(CONTACT, { name: 'x' })
  assertProblem(t, stack, first, { status: 502, code: 'UPSTREAM_AUTH_FAILED' })
  clock.advance(999)
  const blocked = await stack.patch(CONTACT, { name: 'x' })
  assertProblem(t, stack, blocked, { status: 502, code: 'UPSTREAM_AUTH_FAILED', retryAfter: true })
  t.equal(stack.sim.state.counters.authenticate, 1, 'still inside the first window after 999 ms')

  clock.advance(1) // the first window's end
  const second = await stack.patch(CONTACT, { name: 'x' })
  assertProblem(t, stack, second, { status: 502, code: 'UPSTREAM_AUTH_FAILED', retryAfter: true })
  t.equal(stack.sim.state.counters.authenticate, 2, 'one attempt after the first window')
  t.ok(Number(second.headers['retry-after']) >= 2, `the second window is longer (${String(second.headers['retry-after'])} s)`)

  clock.advance(1600)
  const stillBlocked = await stack.patch(CONTACT, { name: 'x' })
  assertProblem(t, stack, stillBlocked, { status: 502, code: 'UPSTREAM_AUTH_FAILED', retryAfter: true })
  t.equal(stack.sim.state.counters.authenticate, 2, 'inside the doubled window')

  clock.advance(1500)
  const ok = await stack.patch(CONTACT, { name: 'recovered' })
  t.equal(ok.status, 204)
  t.equal(stack.sim.state.counters.authenticate, 3)
})

t.test('a rate-limited authenticate waits at least the upstream Retry-After', async (t) => {
  const clock = movableClock()
  const stack = await startStack(t, { app: { tokenCache: { now: clock.now } } })
  failAuthenticate(stack, { kind: 'status', status: 429, headers: { 'retry-after': '30' } }, 1)
  const first = await stack.patch(CONTACT, { name: 'x' })
  assertProblem(t, stack, first, { status: 503, code: 'UPSTREAM_RATE_LIMITED', retryAfter: true })
  t.ok(Number(first.headers['retry-after']) >= 30)
  clock.advance(20_000)
  const blocked = await stack.patch(CONTACT, { name: 'x' })
  assertProblem(t, stack, blocked, { status: 503, code: 'UPSTREAM_RATE_LIMITED', retryAfter: true })
  t.ok(Number(blocked.headers['retry-after']) <= 11, 'Retry-After counts down')
  t.equal(stack.sim.state.counters.authenticate, 1)
  clock.advance(11_000)
  const ok = await stack.patch(CONTACT, { name: 'x' })
  t.equal(ok.status, 204)
  t.equal(stack.sim.state.counters.authenticate, 2)
})

t.test('concurrent requests during a failing authenticate cause one attempt', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '400' } })
  failAuthenticate(stack, { kind: 'hang' }, 1)
  const replies = await Promise.all(Array.from({ length: 20 }, () => stack.patch(CONTACT, { name: 'x' })))
  for (const reply of replies) t.equal(reply.status, 504)
  t.same(new Set(replies.map((reply) => reply.json().code)), new Set(['UPSTREAM_TIMEOUT']))
  t.equal(stack.sim.state.counters.authenticate, 1, 'one authenticate for all of them')
  t.equal(stack.sim.state.counters.patch_contact, 0)
})

t.test('50 concurrent PATCHes on a cold cache cause exactly one authenticate', async (t) => {
  const stack = await startStack(t)
  const replies = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    stack.patch(`/api/v1/organisation/1/contact/${(i % 3) + 1}`, { title: `Title ${i}` })))
  t.same(replies.map((reply) => reply.status), Array(50).fill(204))
  t.equal(stack.sim.state.counters.authenticate, 1, 'exactly one authenticate')
  t.equal(stack.sim.state.counters.patch_contact, 50)
  t.equal(presentedTokens(stack).length, 1, 'all share one token')
})

t.test('concurrent 401s after a revocation cause one re-authentication', async (t) => {
  const clock = movableClock()
  const stack = await startStack(t, { app: { tokenCache: { now: clock.now } } })
  t.equal((await stack.patch(CONTACT, { title: 'warm' })).status, 204)
  clock.advance(60_000)
  stack.sim.revokeAllTokens()
  stack.sim.reset()
  const replies = await Promise.all(Array.from({ length: 20 }, () => stack.patch(CONTACT, { title: 'again' })))
  t.same(replies.map((reply) => reply.status), Array(20).fill(204))
  t.equal(stack.sim.state.counters.authenticate, 1, 'one re-authentication for all of them')
})

t.test('a token is refreshed before it expires, so no expired token ever reaches emnify', async (t) => {
  const clock = movableClock()
  const options: StackOptions = { simulator: { clock: clock.now, tokenLifetimeS: 3600 }, app: { tokenCache: { now: clock.now } } }
  const stack = await startStack(t, options)
  t.equal((await stack.patch(CONTACT, { title: 'one' })).status, 204)
  const firstToken = presentedTokens(stack)[0] ?? ''
  const firstExpMs = Number(decodeTokenClaims(firstToken).exp) * 1000

  clock.advance(firstExpMs - clock.now() - 30_000) // inside the 60 s refresh skew
  const started = Date.now()
  t.equal((await stack.patch(CONTACT, { title: 'two' })).status, 204, 'served with the still-valid token')
  t.ok(Date.now() - started < 1000)
  t.ok(await until(() => stack.sim.state.counters.authenticate === 2), 'a refresh started in the background')
  const refresh = stack.sim.state.callsFor('authenticate')[1]
  t.ok((refresh?.at ?? Infinity) < firstExpMs, 'the refresh happened before the old token expired')
  await until(() => false, 50) // let the refreshed token land in the cache

  clock.advance(60_000) // the first token has now expired
  t.equal((await stack.patch(CONTACT, { title: 'three' })).status, 204)
  t.equal(stack.sim.state.counters.authenticate, 2, 'no further authenticate')
  const tokens = stack.sim.state.callsFor('patch_contact').map((call) => call.headers.authorization)
  t.equal(tokens[1], tokens[0], 'the old token served inside the skew')
  t.not(tokens[2], tokens[0], 'the new token is used after expiry')
  assertNoExpiredTokenUsed(t, stack)
})

t.test('a token that expired while idle is replaced before use', async (t) => {
  const clock = movableClock()
  const stack = await startStack(t, { simulator: { clock: clock.now, tokenLifetimeS: 600 }, app: { tokenCache: { now: clock.now } } })
  t.equal((await stack.patch(CONTACT, { title: 'one' })).status, 204)
  clock.advance(700_000)
  t.equal((await stack.patch(CONTACT, { title: 'two' })).status, 204)
  t.equal(stack.sim.state.counters.authenticate, 2)
  t.equal(stack.sim.state.counters.patch_contact, 2, 'no 401 and retry')
  assertNoExpiredTokenUsed(t, stack)
})

t.test('a 5-second token lifetime is refreshed proactively in real time', async (t) => {
  // Refreshed 500 ms (a tenth) ahead of expiry: room for a test machine that stalls for a moment.
  const stack = await startStack(t, { simulator: { tokenLifetimeS: 5 } })
  const deadline = Date.now() + 6000
  const statuses: number[] = []
  while (Date.now() < deadline) {
    statuses.push((await stack.patch(CONTACT, { title: `t${statuses.length}` })).status)
    await new Promise((resolve) => setTimeout(resolve, 40))
  }
  t.ok(statuses.every((status) => status === 204), 'every request succeeded')
  t.ok(stack.sim.state.counters.authenticate >= 2, `refreshed (${stack.sim.state.counters.authenticate} authenticates)`)
  t.equal(stack.sim.state.counters.patch_contact, statuses.length, 'no PATCH was answered 401 and retried')
  assertNoExpiredTokenUsed(t, stack)
})

t.test('tokens without exp are used and replaced after a conservative time', async (t) => {
  const clock = movableClock()
  const stack = await startStack(t, { simulator: { clock: clock.now, tokenWithoutExp: true }, app: { tokenCache: { now: clock.now } } })
  t.equal((await stack.patch(CONTACT, { title: 'one' })).status, 204)
  const token = presentedTokens(stack)[0] ?? ''
  t.notOk('exp' in decodeTokenClaims(token), 'the simulator issued a token without exp')
  clock.advance(30_000)
  t.equal((await stack.patch(CONTACT, { title: 'two' })).status, 204)
  t.equal(stack.sim.state.counters.authenticate, 1, 'reused')
  clock.advance(24 * 3600_000)
  t.equal((await stack.patch(CONTACT, { title: 'three' })).status, 204)
  t.equal(stack.sim.state.counters.authenticate, 2, 'replaced after the fallback time')
  t.equal(stack.sim.state.counters.patch_contact, 3)
})

t.test('a successful authenticate after failures resets the backoff', async (t) => {
  const clock = movableClock()
  const stack = await startStack(t, { app: { tokenCache: { now: clock.now } } })
  failAuthenticate(stack, { kind: 'status', status: 500 }, 1)
  t.equal((await stack.patch(CONTACT, { title: 'x' })).status, 502)
  clock.advance(2000)
  t.equal((await stack.patch(CONTACT, { title: 'y' })).status, 204)
  // The next failure starts again from the first window, not a doubled one.
  clock.advance(60_000)
  stack.sim.revokeAllTokens()
  failAuthenticate(stack, { kind: 'status', status: 500 }, 1)
  const failed = await stack.patch(CONTACT, { title: 'z' })
  assertProblem(t, stack, failed, { status: 502, code: 'UPSTREAM_AUTH_FAILED', retryAfter: true })
  t.ok(Number(failed.headers['retry-after']) <= 2, `the window restarts small (${String(failed.headers['retry-after'])} s)`)
})
