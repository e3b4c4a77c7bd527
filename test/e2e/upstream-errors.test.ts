// End to end over real HTTP: how every upstream answer and failure of the PATCH is translated (§6).
import t, { type Test } from 'tap'
import type { Fault, FaultKind } from '../../simulator/simulator.ts'
import { CONTACT, startStack, type Stack } from '../helpers/stack.ts'
import {
  assertLogsClean, assertProblem, assertUpstreamCalls, auditRecords, closedPort, countingServer, failOnStrayErrors,
  movableClock, presentedTokens, upstreamAttempts
} from './upstream-helpers.ts'

failOnStrayErrors(t)

type PatchFault = FaultKind

/** Sends one PATCH against a simulator that answers it with `fault`. */
async function patchWith (stack: Stack, fault: PatchFault, body: unknown = { name: 'Changed' }) {
  stack.sim.setFault({ ...fault, operation: 'patch_contact' } as Fault)
  return stack.patch(CONTACT, body)
}

/** Gives a wrongly retried PATCH time to show up before counting. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 50))

t.test('upstream 404 becomes CONTACT_NOT_FOUND', async (t) => {
  const stack = await startStack(t)
  const path = '/api/v1/organisation/1/contact/424242'
  const reply = await stack.patch(path, { name: 'Nobody' })
  const body = assertProblem(t, stack, reply, { status: 404, code: 'CONTACT_NOT_FOUND', path })
  t.notMatch(body.detail, /NotFound|1201/, 'the upstream body is not passed through')
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('upstream 404 with emnify\'s InvalidReference body also becomes CONTACT_NOT_FOUND', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, {
    kind: 'status', status: 404, body: { error_code: 1401, error_token: 'InvalidReference', message: 'Invalid reference at db-7.internal' }
  })
  const body = assertProblem(t, stack, reply, { status: 404, code: 'CONTACT_NOT_FOUND' }, ['db-7.internal', 'InvalidReference'])
  t.notOk(body.errors)
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('an upstream error names the request path without its query as instance', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch('/api/v1/organisation/1/contact/424242?secret=1&next=http://127.0.0.1', { name: 'Nobody' })
  assertProblem(t, stack, reply, { status: 404, code: 'CONTACT_NOT_FOUND', path: '/api/v1/organisation/1/contact/424242' }, ['secret=1'])
  t.equal(stack.sim.state.callsFor('patch_contact')[0]?.query, '', 'the query was not forwarded')
})

t.test('upstream 409 becomes UPSTREAM_CONFLICT', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'status', status: 409 })
  assertProblem(t, stack, reply, { status: 409, code: 'UPSTREAM_CONFLICT' }, ['1405'])
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('upstream 409 with a hostile message is sanitised', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, {
    kind: 'status', status: 409, body: { error_code: 1405, error_token: 'Duplicated', message: 'Duplicate of row on 10.20.30.40:5432 (see https://internal.example.com/x)' }
  })
  const body = assertProblem(t, stack, reply, { status: 409, code: 'UPSTREAM_CONFLICT' }, ['10.20.30.40', 'https://', 'internal.example.com', 'Duplicate of row'])
  t.equal(body.detail, 'emnify reported a conflict', 'upstream text that is no known summary or field message is not shown')
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('a real emnify 422 becomes UPSTREAM_VALIDATION_FAILED with the messages as errors', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { country: { id: 99_999 } })
  const body = assertProblem(t, stack, reply, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' })
  t.equal(body.detail, 'Validation failed')
  t.same(body.errors, [{ pointer: '/country', detail: 'country: unknown country id 99999', in: 'upstream' }], 'shown at the form field')
  for (const item of body.errors as Array<Record<string, unknown>>) {
    t.equal(typeof item.pointer, 'string', 'each error has a pointer')
    t.equal(typeof item.detail, 'string', 'each error has a detail')
    t.notOk('error_code' in item || 'error_token' in item || 'message' in item, 'no raw upstream fields')
  }
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('upstream 422 without errors becomes UPSTREAM_VALIDATION_FAILED with its message', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, {
    kind: 'status', status: 422, body: { error_code: 1400, error_token: 'InputValidationFailed', message: 'type cannot be changed' }
  }, { type: { id: 2 } })
  const body = assertProblem(t, stack, reply, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' })
  t.equal(body.detail, 'type cannot be changed')
  t.same(body.errors, [{ pointer: '/type', detail: 'type cannot be changed', in: 'upstream' }], 'a message naming a field is shown at that field')
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('upstream 400 becomes UPSTREAM_VALIDATION_FAILED', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'status', status: 400 })
  const body = assertProblem(t, stack, reply, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' })
  t.equal(body.detail, 'Bad request')
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('upstream 400 with an empty or non-JSON body still becomes UPSTREAM_VALIDATION_FAILED', async (t) => {
  const stack = await startStack(t)
  const empty = await patchWith(stack, { kind: 'status', status: 400, body: '' })
  assertProblem(t, stack, empty, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' })
  const html = await patchWith(stack, { kind: 'status', status: 400, body: '<html><body>400 Bad Request from nginx at 10.0.0.1</body></html>' })
  assertProblem(t, stack, html, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' }, ['nginx', '10.0.0.1'])
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 2 })
})

t.test('upstream validation messages reach the frontend only as known field messages, never infrastructure details or secrets', async (t) => {
  const stack = await startStack(t)
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJl'
  const hostile = [
    'Connection to db-primary.emnify.de:5432',
    'NullPointerException at com.emnify.contact.ContactService.update(ContactService.java:123)',
    'dbuser:s3cr3t@mysql-prod/contacts',
    '/var/lib/app/config/application-prod.yml',
    'Bearer abcdef0123456789',
    stack.config.EMNIFY_APPLICATION_TOKEN,
    stack.config.SESSION_SECRET
  ]
  const reply = await patchWith(stack, {
    kind: 'status',
    status: 422,
    body: {
      error_code: 1400,
      error_token: 'InputValidationFailed',
      message: `Rejected by http://10.1.2.3:8080/validate with ${jwt}`,
      errors: [
        ...hostile.map((message) => ({ error_code: 1400, error_token: 'InputValidationFailed', message })),
        { error_code: 1400, error_token: 'InputValidationFailed', message: 'name: too long\u0000\nat api-7.eu-west-1.amazonaws.com' },
        { error_code: 1400, error_token: 'InputValidationFailed', message: 'email: must be a well-formed email address' },
        { message: `city: ${stack.config.EMNIFY_APPLICATION_TOKEN}` },
        { message: 'x'.repeat(5000) }
      ]
    }
  })
  const body = assertProblem(t, stack, reply, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' },
    ['10.1.2.3', 'http://', jwt, 'amazonaws.com', '\u0000', 'x'.repeat(1000), 'db-primary', '5432', 'ContactService', 's3cr3t', '/var/lib', 'abcdef0123',
      stack.config.EMNIFY_APPLICATION_TOKEN, stack.config.SESSION_SECRET])
  t.equal(body.detail, 'email: must be a well-formed email address', 'the first message that can be shown')
  t.same(body.errors, [
    { pointer: '/name', detail: 'emnify rejected this value', in: 'upstream' },
    { pointer: '/email', detail: 'email: must be a well-formed email address', in: 'upstream' },
    { pointer: '/city', detail: 'emnify rejected this value', in: 'upstream' }
  ], 'field messages at their fields; unsafe text replaced, the rest dropped')
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('an upstream message is never shown when it holds a configured secret, even one made of plain words', async (t) => {
  const token = 'correct horse battery staple'
  const stack = await startStack(t, { env: { EMNIFY_APPLICATION_TOKEN: token }, simulator: { applicationTokens: [token] } })
  const reply = await patchWith(stack, { kind: 'status', status: 422, body: { message: 'Validation failed', errors: [{ message: `name: ${token}` }, { message: `city: ${stack.config.SESSION_SECRET}` }] } })
  const body = assertProblem(t, stack, reply, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' }, [token, stack.config.SESSION_SECRET])
  t.same(body.errors, [
    { pointer: '/name', detail: 'emnify rejected this value', in: 'upstream' },
    { pointer: '/city', detail: 'emnify rejected this value', in: 'upstream' }
  ])
})

for (const status of [500, 502, 504, 501]) {
  t.test(`upstream ${status} becomes UPSTREAM_ERROR and the PATCH is not re-sent`, async (t) => {
    const stack = await startStack(t)
    const reply = await patchWith(stack, { kind: 'status', status, body: { message: 'java.lang.NullPointerException at com.emnify.Foo(Foo.java:42) host ip-10-0-0-1' } })
    assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR' }, ['NullPointer', 'Foo.java', 'ip-10-0-0-1'])
    await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
  })
}

t.test('a garbage 5xx body becomes UPSTREAM_ERROR without echoing it', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'garbage', status: 500 })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR' }, ['Bad Gateway', 'auth_token'])
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('a connection cut after the response headers becomes UPSTREAM_ERROR and is not retried', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'reset_after_headers' })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR' }, ['{"id":1,"organisation"'])
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
  t.equal(auditRecords(stack).length, 0)
})

t.test('a connection reset after the request was sent becomes UPSTREAM_ERROR and is not retried', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'reset_before_headers' })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR' })
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('a response body over the cap becomes UPSTREAM_ERROR', async (t) => {
  for (const chunked of [false, true]) {
    for (const status of [200, 422]) {
      const stack = await startStack(t)
      const reply = await patchWith(stack, { kind: 'huge_body', bytes: 4 * 1024 * 1024, status, chunked })
      assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR' }, ['padding', 'xxxxxxxx'])
      t.comment(`status ${status}, chunked ${String(chunked)}`)
      await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
    }
  }
})

for (const status of [301, 302, 303, 307, 308] as const) {
  t.test(`an upstream ${status} redirect becomes UPSTREAM_ERROR and is not followed`, async (t) => {
    const target = await countingServer(t)
    const stack = await startStack(t)
    const reply = await patchWith(stack, { kind: 'redirect', status, location: `${target.url}/api/v1/organisation/1/contact/1` })
    assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR' }, [target.url, 'Location'])
    await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
    t.equal(target.hits(), 0, 'the Location target received nothing')
  })
}

t.test('a same-origin redirect is not followed either', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'redirect', status: 307, location: '/api/v1/organisation/1/contact/2' })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR' }, ['/contact/2'])
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
  t.same(stack.sim.state.callsFor('patch_contact').map((call) => call.path), [CONTACT])
  t.equal(stack.sim.state.getContact('1', '2')?.name, 'Grace Hopper', 'the redirect target was not changed')
})

/** A stack whose cached token is older than the cache's guard against re-auth loops. */
async function warmStack (t: Test) {
  const clock = movableClock()
  const stack = await startStack(t, { app: { tokenCache: { now: clock.now } } })
  const warm = await stack.patch(CONTACT, { title: 'warm-up' })
  t.equal(warm.status, 204, 'warm-up')
  clock.advance(60_000)
  stack.sim.reset()
  stack.logs.lines.length = 0
  return stack
}

t.test('a revoked token is replaced: one re-authentication, one retry, 204', async (t) => {
  const stack = await warmStack(t)
  stack.sim.revokeAllTokens()
  const reply = await stack.patch(CONTACT, { name: 'After revoke' })
  t.equal(reply.status, 204)
  t.equal(stack.sim.state.counters.authenticate, 1, 'one re-authentication')
  t.equal(stack.sim.state.counters.patch_contact, 2, 'one retry')
  const [first, second] = stack.sim.state.callsFor('patch_contact')
  t.not(first?.headers.authorization, second?.headers.authorization, 'the retry carries the new token')
  t.equal(first?.body, second?.body, 'the same body is retried')
  t.equal(stack.sim.state.getContact('1', '1')?.name, 'After revoke')
  t.equal(auditRecords(stack).length, 1, 'audited once')
})

for (const kind of ['unauthorized_empty', 'gateway_unauthorized'] as const) {
  t.test(`upstream 401 (${kind}) then success: one re-authentication, one retry, 204`, async (t) => {
    const stack = await warmStack(t)
    stack.sim.setFault({ operation: 'patch_contact', kind, times: 1 })
    const reply = await stack.patch(CONTACT, { name: 'Retried' })
    t.equal(reply.status, 204)
    t.equal(stack.sim.state.counters.authenticate, 1)
    t.equal(stack.sim.state.counters.patch_contact, 2)
  })
}

t.test('upstream 401 twice becomes UPSTREAM_AUTH_FAILED with no third PATCH', async (t) => {
  const stack = await warmStack(t)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 401, times: 2 })
  const reply = await stack.patch(CONTACT, { name: 'Never' })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_AUTH_FAILED' }, ['InvalidToken', '1102'])
  await settle()
  t.equal(stack.sim.state.counters.authenticate, 1, 'one re-authentication')
  t.equal(stack.sim.state.counters.patch_contact, 2, 'no third PATCH')
  t.equal(auditRecords(stack).length, 0)
})

t.test('a 401 on the first use of a fresh token is retried once after re-authentication (§5)', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'unauthorized_empty', times: 1 })
  const reply = await stack.patch(CONTACT, { name: 'Cold retry' })
  t.equal(reply.status, 204)
  t.equal(stack.sim.state.counters.authenticate, 2)
  t.equal(stack.sim.state.counters.patch_contact, 2)
})

t.test('a 401 storm costs one re-authentication, not one per request', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'unauthorized_empty' })
  for (let i = 0; i < 5; i++) {
    const reply = await stack.patch(CONTACT, { name: `Storm ${i}` })
    assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_AUTH_FAILED' })
  }
  await settle()
  t.equal(stack.sim.state.counters.authenticate, 2, 'the first token and one replacement; the replacement rejected at once is not replaced again')
  t.equal(stack.sim.state.counters.patch_contact, 6, 'first request: call + retry; later ones: one call each, no retry')
})

t.test('concurrent requests in a 401 storm share one re-authentication and retry at most once each', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'unauthorized_empty' })
  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => stack.patch(CONTACT, { name: `Storm ${i}` })))
  t.same(replies.map((reply) => `${reply.status} ${String(reply.json().code)}`), Array(20).fill('502 UPSTREAM_AUTH_FAILED'))
  assertProblem(t, stack, replies[0] as (typeof replies)[number], { status: 502, code: 'UPSTREAM_AUTH_FAILED' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  // The cold token and one shared replacement. A request that started with the cold token is
  // retried once with the replacement; one that started with the replacement is not retried.
  const tokensByRequest = new Map<string, string[]>()
  for (const call of stack.sim.state.callsFor('patch_contact')) {
    const id = call.headers['x-request-id'] ?? ''
    tokensByRequest.set(id, [...(tokensByRequest.get(id) ?? []), call.headers.authorization ?? ''])
  }
  t.same([...tokensByRequest.keys()].sort(), replies.map((reply) => reply.headers['x-request-id']).sort(), 'every request reached emnify')
  for (const [id, tokens] of tokensByRequest) {
    t.ok(tokens.length <= 2, `request ${id}: at most one retry`)
    if (tokens.length === 2) t.not(tokens[1], tokens[0], `request ${id}: the retry carries the new token`)
  }
  const patches = stack.sim.state.counters.patch_contact
  t.ok(patches >= 20 && patches <= 40, `${patches} PATCH calls for 20 requests`)
  await assertUpstreamCalls(t, stack, { authenticate: 2, patch_contact: patches })
})

t.test('a 401 storm lasting five minutes stays inside emnify\'s 100 authenticates per 5 minutes', async (t) => {
  const clock = movableClock()
  const stack = await startStack(t, { app: { tokenCache: { now: clock.now } } })
  stack.sim.setFault({ operation: 'patch_contact', kind: 'unauthorized_empty' })
  const answers = new Map<string, number>()
  for (let second = 0; second < 300; second++) {
    const reply = await stack.patch(CONTACT, { name: `Storm ${second}` })
    const answer = `${reply.status} ${String(reply.json().code)}`
    answers.set(answer, (answers.get(answer) ?? 0) + 1)
    clock.advance(1000)
  }
  t.same([...answers], [['502 UPSTREAM_AUTH_FAILED', 300]], 'every request failed the same way')
  await new Promise((resolve) => setTimeout(resolve, 50))
  const { authenticate, patch_contact: patches } = stack.sim.state.counters
  t.ok(authenticate <= 100, `${authenticate} authenticate calls in five minutes`)
  // Every PATCH beyond one per request is the retry after a re-authentication, and nothing else.
  t.equal(patches, 300 + (authenticate - 1), `${patches} PATCH calls: one per request plus one per re-authentication`)
})

t.test('a 401 on a fresh token, retried or not, never loops', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'patch_contact', kind: 'unauthorized_empty' })
  const reply = await stack.patch(CONTACT, { name: 'Never' })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_AUTH_FAILED' })
  await settle()
  t.ok(stack.sim.state.counters.authenticate <= 2, 'at most one re-authentication')
  t.ok(stack.sim.state.counters.patch_contact <= 2, 'at most one retry')
})

t.test('upstream 403 becomes UPSTREAM_FORBIDDEN without re-authentication', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'status', status: 403 })
  assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_FORBIDDEN' }, ['Forbidden"', '1104'])
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('an unreachable upstream becomes UPSTREAM_UNAVAILABLE with Retry-After', async (t) => {
  const port = await closedPort()
  const stack = await startStack(t, { env: { EMNIFY_API_URL: `http://127.0.0.1:${port}` } })
  const started = Date.now()
  const reply = await stack.patch(CONTACT, { name: 'Nowhere' })
  t.ok(Date.now() - started < 1500, 'fails fast')
  assertProblem(t, stack, reply, { status: 503, code: 'UPSTREAM_UNAVAILABLE', retryAfter: true }, [`:${port}`, 'ECONNREFUSED'])
  t.equal(stack.sim.state.counters.total, 0)
  assertLogsClean(t, stack)
})

t.test('a refused connection for the PATCH itself is retried once, then becomes UPSTREAM_UNAVAILABLE', async (t) => {
  const stack = await startStack(t)
  t.equal((await stack.patch(CONTACT, { title: 'warm-up' })).status, 204, 'warm-up: a token is cached')
  await stack.sim.close()
  await settle() // the pool notices its keep-alive connection is gone
  const started = Date.now()
  const reply = await stack.patch(CONTACT, { name: 'Nowhere' })
  t.ok(Date.now() - started < 1500, 'fails fast')
  assertProblem(t, stack, reply, { status: 503, code: 'UPSTREAM_UNAVAILABLE', retryAfter: true }, ['ECONNREFUSED'])
  // Nothing was sent on a refused connection, so the one retry is the only safe re-send (§6).
  t.equal(await upstreamAttempts(stack, 'patch_contact', 'unreachable'), 2, 'one attempt and one retry, both refused')
  t.equal(await upstreamAttempts(stack, 'authenticate', 'unreachable'), 0, 'the cached token is kept: no re-authentication')
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 }) // the warm-up alone
  assertLogsClean(t, stack)
})

t.test('upstream 503 becomes UPSTREAM_UNAVAILABLE with a default Retry-After, and is not re-sent', async (t) => {
  const stack = await startStack(t)
  const reply = await patchWith(stack, { kind: 'status', status: 503 })
  assertProblem(t, stack, reply, { status: 503, code: 'UPSTREAM_UNAVAILABLE', retryAfter: true })
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1 })
})

t.test('an upstream Retry-After on 503 is honoured and clamped', async (t) => {
  const stack = await startStack(t)
  const cases: Array<{ header: string, check: (value: number) => boolean, what: string }> = [
    { header: '7', check: (value) => value === 7, what: 'seconds are passed on' },
    { header: '100000', check: (value) => value === 300, what: 'a huge value is clamped to 300' },
    { header: '0', check: (value) => value === 1, what: 'zero becomes 1' },
    { header: new Date(Date.now() + 30_000).toUTCString(), check: (value) => value >= 28 && value <= 31, what: 'an HTTP date becomes seconds' },
    { header: 'soon', check: (value) => value >= 1 && value <= 300, what: 'garbage falls back to a sane default' }
  ]
  for (const { header, check, what } of cases) {
    const reply = await patchWith(stack, { kind: 'status', status: 503, headers: { 'retry-after': header } })
    assertProblem(t, stack, reply, { status: 503, code: 'UPSTREAM_UNAVAILABLE', retryAfter: true })
    t.ok(check(Number(reply.headers['retry-after'])), `${what} (${String(reply.headers['retry-after'])})`)
  }
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: cases.length })
})

t.test('upstream 429 becomes UPSTREAM_RATE_LIMITED with Retry-After', async (t) => {
  const stack = await startStack(t)
  const plain = await patchWith(stack, { kind: 'status', status: 429 })
  assertProblem(t, stack, plain, { status: 503, code: 'UPSTREAM_RATE_LIMITED', retryAfter: true }, ['TooManyRequests', '1105'])
  const hinted = await patchWith(stack, { kind: 'status', status: 429, headers: { 'retry-after': '12' } })
  assertProblem(t, stack, hinted, { status: 503, code: 'UPSTREAM_RATE_LIMITED', retryAfter: 12 })
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 2 })
})

const slow: Array<{ name: string, fault: PatchFault }> = [
  { name: 'a slow answer', fault: { kind: 'delay', ms: 3000 } },
  { name: 'a hung connection', fault: { kind: 'hang' } },
  { name: 'a trickling body', fault: { kind: 'trickle', intervalMs: 50, chunks: 60 } },
  { name: 'a trickling error body', fault: { kind: 'trickle', intervalMs: 50, chunks: 60, status: 422 } }
]

for (const { name, fault } of slow) {
  t.test(`${name} past the budget becomes UPSTREAM_TIMEOUT and is not re-sent`, async (t) => {
    const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '1000' } })
    const warm = await stack.patch(CONTACT, { title: 'warm-up' })
    t.equal(warm.status, 204)
    stack.sim.reset()
    const started = Date.now()
    const reply = await patchWith(stack, fault)
    const elapsed = Date.now() - started
    assertProblem(t, stack, reply, { status: 504, code: 'UPSTREAM_TIMEOUT' }, ['slow response'])
    t.ok(elapsed >= 950, `waited for the budget (${elapsed} ms)`)
    t.ok(elapsed < 2500, `answered soon after the budget (${elapsed} ms)`)
    await settle()
    t.equal(stack.sim.state.counters.patch_contact, 1, 'sent exactly once')
    t.equal(stack.sim.state.counters.authenticate, 0, 'no re-authentication')
    t.equal(auditRecords(stack).filter((record) => record.request_id === reply.headers['x-request-id']).length, 0)
  })
}

t.test('an upstream that recovers serves the next request normally', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '1000' } })
  const faults: Array<{ fault: PatchFault, status: number, code: string }> = [
    { fault: { kind: 'reset_before_headers' }, status: 502, code: 'UPSTREAM_ERROR' },
    { fault: { kind: 'hang' }, status: 504, code: 'UPSTREAM_TIMEOUT' },
    { fault: { kind: 'status', status: 500 }, status: 502, code: 'UPSTREAM_ERROR' }
  ]
  for (const { fault, status, code } of faults) {
    stack.sim.setFault({ ...fault, operation: 'patch_contact', times: 1 } as Fault)
    const failed = await stack.patch(CONTACT, { name: 'x' })
    assertProblem(t, stack, failed, { status, code })
    const ok = await stack.patch(CONTACT, { name: 'y' })
    t.equal(ok.status, 204, `after ${fault.kind} the next request succeeds`)
  }
  t.equal(presentedTokens(stack).length, 1)
  await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 2 * faults.length }) // transport failures do not drop the token
})
