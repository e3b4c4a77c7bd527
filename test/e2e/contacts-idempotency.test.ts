// End to end over real HTTP: Idempotency-Key on create — replay, reuse with another body, a first
// request still in flight, ambiguous outcomes replayed, keys per session sub, invalid keys.
import t from 'tap'
import { session, startStack, type Stack } from '../helpers/stack.ts'
import { assertProblem, failOnStrayErrors, until } from './upstream-helpers.ts'
import { assertCalls, assertNothingSent, LIST, metric, send } from './contacts-helpers.ts'

failOnStrayErrors(t)

const BODY = { type: { id: 2 }, name: 'Idempotent Ida', city: 'Kiel' }

const create = (stack: Stack, key: string | undefined, body: unknown = BODY, token = stack.token) =>
  send(stack, 'POST', LIST, { token, body, headers: key === undefined ? {} : { 'idempotency-key': key } })

const contactsNamed = (stack: Stack, name: string) => (stack.sim.state.listContacts(1) ?? []).filter((contact) => contact.name === name).length

t.test('the same key and body replays the first answer with Idempotency-Replayed: true, without calling emnify', async (t) => {
  const stack = await startStack(t)
  const first = await create(stack, 'create-1')
  t.equal(first.status, 201)
  t.notOk('idempotency-replayed' in first.headers, 'the first answer is not a replay')
  const id = first.json().id as number
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1, get_contact: 1 })
  stack.sim.reset()
  for (const body of [BODY, { city: 'Kiel', name: 'Idempotent Ida', type: { id: 2 } }]) {
    const again = await create(stack, 'create-1', body)
    t.equal(again.status, 201, 'the first final answer')
    t.equal(again.headers['idempotency-replayed'], 'true')
    t.equal(again.headers.location, first.headers.location, 'the same Location')
    t.same(again.json(), { id }, 'the new contact\'s id (contact data is never stored)')
  }
  await assertNothingSent(t, stack)
  t.equal(contactsNamed(stack, BODY.name), 1, 'one contact')
})

t.test('the same key with another body is 422 IDEMPOTENCY_KEY_REUSED and nothing is sent', async (t) => {
  const stack = await startStack(t)
  t.equal((await create(stack, 'create-2')).status, 201)
  stack.sim.reset()
  const reply = await create(stack, 'create-2', { ...BODY, city: 'Lübeck' })
  assertProblem(t, stack, reply, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', path: LIST })
  await assertNothingSent(t, stack)
})

t.test('a retry while the first request is in flight is 409 IDEMPOTENCY_KEY_IN_USE; afterwards it replays', async (t) => {
  const stack = await startStack(t)
  await send(stack, 'GET', LIST) // the token
  // The first create held at emnify long enough that a stalled machine still sends the others meanwhile.
  stack.sim.setFault({ operation: 'create_contact', kind: 'delay', ms: 1500, times: 1 })
  const first = create(stack, 'create-3')
  t.ok(await until(() => stack.sim.state.counters.create_contact === 1), 'the first create is at emnify')
  const during = await create(stack, 'create-3')
  assertProblem(t, stack, during, { status: 409, code: 'IDEMPOTENCY_KEY_IN_USE', path: LIST, retryAfter: true })
  const other = await create(stack, 'create-3', { ...BODY, name: 'Other' })
  assertProblem(t, stack, other, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', path: LIST })
  t.equal((await first).status, 201)
  const after = await create(stack, 'create-3')
  t.equal(after.status, 201)
  t.equal(after.headers['idempotency-replayed'], 'true')
  t.equal(stack.sim.state.counters.create_contact, 1, 'emnify saw one create')
  t.equal(contactsNamed(stack, BODY.name), 1)
})

t.test('a timeout after emnify created the contact is replayed, so a retry never creates a second one', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '1000' } })
  stack.sim.setFault({ operation: 'create_contact', kind: 'hang', afterCommit: true, times: 1 })
  const first = await create(stack, 'create-4')
  assertProblem(t, stack, first, { status: 504, code: 'UPSTREAM_TIMEOUT', path: LIST })
  const retry = await create(stack, 'create-4')
  assertProblem(t, stack, retry, { status: 504, code: 'UPSTREAM_TIMEOUT', path: LIST })
  t.equal(retry.headers['idempotency-replayed'], 'true', 'the ambiguous answer, replayed')
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1 })
  t.equal(contactsNamed(stack, BODY.name), 1, 'exactly one contact, created by the first request')
})

t.test('a reset after the create was sent is replayed too', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'create_contact', kind: 'reset_before_headers', afterCommit: true, times: 1 })
  const first = await create(stack, 'create-5')
  assertProblem(t, stack, first, { status: 502, code: 'UPSTREAM_ERROR', path: LIST })
  const retry = await create(stack, 'create-5')
  assertProblem(t, stack, retry, { status: 502, code: 'UPSTREAM_ERROR', path: LIST })
  t.equal(retry.headers['idempotency-replayed'], 'true')
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1 })
  t.equal(contactsNamed(stack, BODY.name), 1)
})

t.test('a final refusal by emnify is replayed without asking again', async (t) => {
  const stack = await startStack(t)
  const body = { type: { id: 2 }, country: { id: 99_999 } }
  const first = await create(stack, 'create-6', body)
  assertProblem(t, stack, first, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED', path: LIST })
  const retry = await create(stack, 'create-6', body)
  const problem = assertProblem(t, stack, retry, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED', path: LIST })
  t.equal(retry.headers['idempotency-replayed'], 'true')
  t.same(problem.errors, first.json().errors, 'the same field errors')
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1 })
})

t.test('an answer emnify gave before acting (429, 503) frees the key, so the retry creates the contact', async (t) => {
  const stack = await startStack(t)
  for (const [status, code] of [[429, 'UPSTREAM_RATE_LIMITED'], [503, 'UPSTREAM_UNAVAILABLE']] as const) {
    stack.sim.setFault({ operation: 'create_contact', kind: 'status', status, times: 1 })
    const key = `create-7-${status}`
    assertProblem(t, stack, await create(stack, key), { status: 503, code, path: LIST, retryAfter: true })
    const retry = await create(stack, key)
    t.equal(retry.status, 201, `after ${status} the retry is a new attempt`)
    t.notOk('idempotency-replayed' in retry.headers)
  }
  t.equal(stack.sim.state.counters.create_contact, 4)
  t.equal(contactsNamed(stack, BODY.name), 2, 'one contact per key')
})

t.test('keys belong to the session sub: another user\'s same key is a different create', async (t) => {
  const stack = await startStack(t)
  const bob = session('bob', [1])
  t.equal((await create(stack, 'shared-key')).status, 201)
  const bobs = await create(stack, 'shared-key', BODY, bob)
  t.equal(bobs.status, 201, 'not a replay of alice\'s answer')
  t.notOk('idempotency-replayed' in bobs.headers)
  t.not(bobs.headers.location, undefined)
  const bobOther = await create(stack, 'shared-key', { ...BODY, name: 'Bob Body' }, session('bob', [1, 2]))
  assertProblem(t, stack, bobOther, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', path: LIST }, [])
  const aliceAgain = await create(stack, 'shared-key', BODY, session('alice', [1]))
  t.equal(aliceAgain.headers['idempotency-replayed'], 'true', 'another session of the same sub replays')
  t.equal(stack.sim.state.counters.create_contact, 2)
})

t.test('an invalid Idempotency-Key is 400 VALIDATION_FAILED and nothing is sent', async (t) => {
  const stack = await startStack(t)
  for (const key of ['', 'has space', 'x'.repeat(256), 'tab\there', 'ümlaut']) {
    const reply = await send(stack, 'POST', LIST, { body: BODY, headers: { 'idempotency-key': key } })
    assertProblem(t, stack, reply, { status: 400, code: 'VALIDATION_FAILED', path: LIST })
  }
  await assertNothingSent(t, stack)
  t.equal((await create(stack, 'x'.repeat(255))).status, 201, '255 visible characters are a valid key')
  t.equal((await create(stack, '!~"#')).status, 201)
})

t.test('without a key every create is a new contact', async (t) => {
  const stack = await startStack(t)
  t.equal((await create(stack, undefined)).status, 201)
  t.equal((await create(stack, undefined)).status, 201)
  t.equal(contactsNamed(stack, BODY.name), 2)
})

t.test('a replayed create whose read-back had failed replays {id} and the Location', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'get_contact', kind: 'status', status: 500, times: 1 })
  const first = await create(stack, 'create-8')
  t.equal(first.status, 201)
  const again = await create(stack, 'create-8')
  t.equal(again.headers['idempotency-replayed'], 'true')
  t.same(again.json(), first.json())
  t.equal(again.headers.location, first.headers.location)
})

t.test('a replay carries no contact data and a refused body does not claim the key', async (t) => {
  const stack = await startStack(t)
  const invalid = await create(stack, 'create-9', { name: 'No type' })
  assertProblem(t, stack, invalid, { status: 400, code: 'VALIDATION_FAILED', path: LIST })
  const valid = await create(stack, 'create-9')
  t.equal(valid.status, 201, 'the key was not used by the refused body')
  const replay = await create(stack, 'create-9')
  t.notOk(replay.text.includes(BODY.name) || replay.text.includes(BODY.city), 'no stored values')
})

t.test('idempotency records are bounded and shown by the store gauges', async (t) => {
  const stack = await startStack(t)
  t.equal(await metric(stack, 'emnify_bff_store_entries', { store: 'idempotency' }), 0)
  t.ok(await metric(stack, 'emnify_bff_store_capacity', { store: 'idempotency' }) > 0, 'a capacity')
  await create(stack, 'gauge-1')
  await create(stack, 'gauge-2')
  await create(stack, 'gauge-1')
  t.equal(await metric(stack, 'emnify_bff_store_entries', { store: 'idempotency' }), 2, 'one record per key')
})

t.test('a key used for one organisation is not replayed for another: 422 IDEMPOTENCY_KEY_REUSED, nothing sent', async (t) => {
  const stack = await startStack(t)
  const first = await create(stack, 'per-org-1')
  t.equal(first.status, 201)
  stack.sim.reset()
  const other = '/api/v1/organisation/2/contact'
  const reply = await send(stack, 'POST', other, { body: BODY, headers: { 'idempotency-key': 'per-org-1' } })
  assertProblem(t, stack, reply, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', path: other })
  t.notOk(String(reply.headers.location ?? '').includes('/organisation/1/'), 'never the other organisation\'s Location')
  await assertNothingSent(t, stack)
})
