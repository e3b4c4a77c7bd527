// End to end over real HTTP: listing and reading contacts — the BFF's own representation, garbled
// answers, scopes, the organisation check, conditional GETs, coalescing and the per-organisation cache.
import t from 'tap'
import { EXTRA_FIELD_MARKER, type Fault } from '../../simulator/simulator.ts'
import { session, startStack } from '../helpers/stack.ts'
import { assertProblem, failOnStrayErrors } from './upstream-helpers.ts'
import {
  assertCalls, assertNothingSent, assertOwnShape, expectedContact, LIST, metric, ONE, scoped, send, STRONG_ETAG
} from './contacts-helpers.ts'

failOnStrayErrors(t)

t.test('the list answers the BFF\'s own representation: a field emnify adds never reaches the frontend', async (t) => {
  const stack = await startStack(t, { simulator: { extraFields: true } })
  const reply = await send(stack, 'GET', `${LIST}?geographic=true&x=1`)
  t.equal(reply.status, 200)
  t.match(String(reply.headers['content-type']), /^application\/json/)
  t.notOk(reply.text.includes(EXTRA_FIELD_MARKER), 'no value of an added field')
  t.notOk(reply.text.includes('internal_ref') || reply.text.includes('created_at'), 'no name of an added field')
  const list = reply.json() as Array<Record<string, unknown>>
  t.equal(list.length, 3, 'every contact of the organisation')
  for (const contact of list) assertOwnShape(t, contact)
  stack.sim.configure({ extraFields: false })
  t.same(list, [1, 2, 3].map((id) => expectedContact(stack, 1, id)), 'exactly the documented fields, values unchanged')
  t.equal(stack.sim.state.callsFor('list_contacts')[0]?.query, '', 'the inbound query is not forwarded')
  await assertCalls(t, stack, { authenticate: 1, list_contacts: 1 })
})

t.test('reading one contact answers the BFF\'s own representation, nested references included', async (t) => {
  const stack = await startStack(t, { simulator: { extraFields: true } })
  const reply = await send(stack, 'GET', ONE)
  t.equal(reply.status, 200)
  t.notOk(reply.text.includes(EXTRA_FIELD_MARKER), 'no value of an added field, top level or nested')
  const contact = reply.json() as Record<string, unknown>
  assertOwnShape(t, contact)
  t.same(contact, expectedContact(stack, 1, 1))
  t.same(contact.organisation, { id: 1, name: 'Demo Org' })
  await assertCalls(t, stack, { authenticate: 1, get_contact: 1 })
})

t.test('a contact whose country emnify reports as null is answered without a country', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'get_contact', kind: 'bad_item', item: { country: null, title: null }, times: 1 })
  const reply = await send(stack, 'GET', ONE)
  t.equal(reply.status, 200)
  const contact = reply.json() as Record<string, unknown>
  t.notOk('country' in contact, 'a null reference is left out')
  t.equal(contact.title, null, 'a null string stays null')
})

const GARBLED: Array<{ what: string, fault: Record<string, unknown> }> = [
  { what: 'not a list', fault: { kind: 'not_a_list' } },
  { what: 'an id that is not a number', fault: { kind: 'bad_item' } },
  { what: 'a contact without an id', fault: { kind: 'bad_item', item: { id: null } } },
  { what: 'a string field of the wrong type', fault: { kind: 'bad_item', item: { name: 42 } } },
  { what: 'a reference without a numeric id', fault: { kind: 'bad_item', item: { country: { id: 'DE' } } } },
  { what: 'a reference label of the wrong type', fault: { kind: 'bad_item', item: { type: { id: 1, description: 7 } } } },
  { what: 'a body that is not JSON', fault: { kind: 'garbage' } },
  { what: 'an empty body', fault: { kind: 'status', status: 200, body: '' } },
  { what: 'JSON null', fault: { kind: 'status', status: 200, body: 'null' } }
]

for (const { what, fault } of GARBLED) {
  t.test(`a list answer of the wrong shape (${what}) becomes 502 UPSTREAM_ERROR, never 500`, async (t) => {
    const stack = await startStack(t)
    stack.sim.setFault({ ...fault, operation: 'list_contacts' } as Fault)
    const reply = await send(stack, 'GET', LIST)
    assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR', path: LIST }, [EXTRA_FIELD_MARKER, 'not-a-number'])
    await assertCalls(t, stack, { authenticate: 1, list_contacts: 1 })
  })
}

for (const { what, fault } of [...GARBLED.filter(({ fault }) => fault.kind !== 'not_a_list'), { what: 'a list', fault: { kind: 'status', status: 200, body: '[]' } }]) {
  t.test(`a contact answer of the wrong shape (${what}) becomes 502 UPSTREAM_ERROR, never 500`, async (t) => {
    const stack = await startStack(t)
    stack.sim.setFault({ ...fault, operation: 'get_contact' } as Fault)
    const reply = await send(stack, 'GET', ONE)
    assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR', path: ONE }, ['not-a-number'])
    await assertCalls(t, stack, { authenticate: 1, get_contact: 1 })
  })
}

t.test('a garbled answer is not cached: the next read asks emnify again', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'get_contact', kind: 'bad_item', times: 1 })
  t.equal((await send(stack, 'GET', ONE)).status, 502)
  t.equal((await send(stack, 'GET', ONE)).status, 200)
  await assertCalls(t, stack, { authenticate: 1, get_contact: 2 })
})

t.test('upstream 404 on a read becomes CONTACT_NOT_FOUND, for one contact and for the list of an unknown organisation', async (t) => {
  const stack = await startStack(t)
  const missing = '/api/v1/organisation/1/contact/424242'
  assertProblem(t, stack, await send(stack, 'GET', missing), { status: 404, code: 'CONTACT_NOT_FOUND', path: missing })
  const unknownOrg = '/api/v1/organisation/77/contact'
  assertProblem(t, stack, await send(stack, 'GET', unknownOrg, { token: session('ops', '*') }), { status: 404, code: 'CONTACT_NOT_FOUND', path: unknownOrg })
  await assertCalls(t, stack, { authenticate: 1, get_contact: 1, list_contacts: 1 })
})

t.test('invalid path ids are refused with 400 before anything is sent', async (t) => {
  const stack = await startStack(t)
  for (const path of ['/api/v1/organisation/0/contact', '/api/v1/organisation/01/contact/1', '/api/v1/organisation/1/contact/-1',
    '/api/v1/organisation/1/contact/1e3', `/api/v1/organisation/1/contact/${'9'.repeat(19)}`]) {
    const reply = await send(stack, 'GET', path)
    assertProblem(t, stack, reply, { status: 400, code: 'VALIDATION_FAILED', path })
  }
  await assertNothingSent(t, stack)
})

t.test('an organisation outside the session is refused before the scope, the cache or emnify is consulted', async (t) => {
  const stack = await startStack(t)
  const other = '/api/v1/organisation/3/contact'
  assertProblem(t, stack, await send(stack, 'GET', other), { status: 403, code: 'ORGANISATION_FORBIDDEN', path: other })
  // A session lacking the scope too learns only that the organisation is not its own.
  assertProblem(t, stack, await send(stack, 'GET', `${other}/1`, { token: scoped('contacts:write') }),
    { status: 403, code: 'ORGANISATION_FORBIDDEN', path: `${other}/1` })
  await assertNothingSent(t, stack)
  // Cached for a session that may see organisation 3, still refused for one that may not.
  t.equal((await send(stack, 'GET', '/api/v1/organisation/2/contact', { token: session('ops', '*') })).status, 200)
  assertProblem(t, stack, await send(stack, 'GET', '/api/v1/organisation/2/contact', { token: session('bob', [1]) }),
    { status: 403, code: 'ORGANISATION_FORBIDDEN', path: '/api/v1/organisation/2/contact' })
  await assertCalls(t, stack, { authenticate: 1, list_contacts: 1 })
})

t.test('scopes: no claim grants both, contacts:read suffices for reads, a session without it gets 403 INSUFFICIENT_SCOPE and sends nothing', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '0' } })
  for (const scope of [undefined, 'contacts:read', 'contacts:write contacts:read', 'profile contacts:read']) {
    t.equal((await send(stack, 'GET', LIST, { token: scoped(scope) })).status, 200, `scope ${String(scope)} may list`)
    t.equal((await send(stack, 'GET', ONE, { token: scoped(scope) })).status, 200, `scope ${String(scope)} may read`)
  }
  stack.sim.reset()
  for (const scope of ['contacts:write', '', 'profile', 'contacts:reader', 'contacts:*']) {
    assertProblem(t, stack, await send(stack, 'GET', LIST, { token: scoped(scope) }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: LIST })
    assertProblem(t, stack, await send(stack, 'GET', ONE, { token: scoped(scope) }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: ONE })
  }
  await assertNothingSent(t, stack)
})

t.test('a cached read is not served to a session that lacks the scope', async (t) => {
  const stack = await startStack(t)
  t.equal((await send(stack, 'GET', ONE)).status, 200)
  assertProblem(t, stack, await send(stack, 'GET', ONE, { token: scoped('contacts:write') }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: ONE })
})

t.test('reads carry a strong ETag and Cache-Control: private, no-cache', async (t) => {
  const stack = await startStack(t)
  for (const path of [LIST, ONE]) {
    const reply = await send(stack, 'GET', path)
    t.match(String(reply.headers.etag), STRONG_ETAG, `${path}: a strong validator`)
    t.equal(reply.headers['cache-control'], 'private, no-cache', `${path}: private, revalidated on every use`)
    const again = await send(stack, 'GET', path)
    t.equal(again.headers.etag, reply.headers.etag, `${path}: the same representation has the same tag`)
  }
  const list = await send(stack, 'GET', LIST)
  const one = await send(stack, 'GET', ONE)
  t.not(list.headers.etag, one.headers.etag, 'different representations have different tags')
})

t.test('If-None-Match with a current tag answers 304 without a body; with any other tag the full answer', async (t) => {
  const stack = await startStack(t)
  const first = await send(stack, 'GET', ONE)
  const etag = String(first.headers.etag)
  for (const header of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const reply = await send(stack, 'GET', ONE, { headers: { 'if-none-match': header } })
    t.equal(reply.status, 304, `If-None-Match: ${header} → 304`)
    t.equal(reply.text, '', 'no body')
    t.equal(reply.headers.etag, etag, 'the tag is repeated')
    t.equal(reply.headers['cache-control'], 'private, no-cache')
  }
  for (const header of ['"other"', etag.slice(0, -2) + '"', etag.slice(1, -1)]) {
    const reply = await send(stack, 'GET', ONE, { headers: { 'if-none-match': header } })
    t.equal(reply.status, 200, `If-None-Match: ${header} → 200`)
    t.same(reply.json(), first.json())
  }
  const list = await send(stack, 'GET', LIST)
  t.equal((await send(stack, 'GET', LIST, { headers: { 'if-none-match': String(list.headers.etag) } })).status, 304, 'the list too')
})

t.test('after a change the old tag no longer matches', async (t) => {
  const stack = await startStack(t)
  const before = await send(stack, 'GET', ONE)
  t.equal((await stack.patch(ONE, { city: 'Potsdam' })).status, 204)
  const after = await send(stack, 'GET', ONE, { headers: { 'if-none-match': String(before.headers.etag) } })
  t.equal(after.status, 200, 'the full, changed contact')
  t.equal((after.json() as { city: string }).city, 'Potsdam')
  t.not(after.headers.etag, before.headers.etag)
})

t.test('concurrent identical reads share one upstream call', async (t) => {
  const stack = await startStack(t)
  await send(stack, 'GET', '/api/v1/organisation/2/contact') // the token, so only the reads are timed
  stack.sim.reset()
  stack.sim.setFault({ operation: 'get_contact', kind: 'delay', ms: 1000, times: 1 })
  const replies = await Promise.all(Array.from({ length: 10 }, () => send(stack, 'GET', ONE)))
  t.same(replies.map((reply) => reply.status), Array(10).fill(200))
  t.equal(new Set(replies.map((reply) => reply.text)).size, 1, 'all got the same contact')
  t.equal(new Set(replies.map((reply) => reply.headers.etag)).size, 1, 'and the same tag')
  await assertCalls(t, stack, { get_contact: 1 })
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'miss' }), 2, 'one miss for the list, one for the contact')
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'coalesced' }), 9, 'nine joined the call in flight')
})

t.test('CONTACT_CACHE_TTL_MS=0 still coalesces concurrent reads but keeps nothing', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '0' } })
  stack.sim.setFault({ operation: 'list_contacts', kind: 'delay', ms: 1000, times: 1 })
  const replies = await Promise.all(Array.from({ length: 5 }, () => send(stack, 'GET', LIST)))
  t.same(replies.map((reply) => reply.status), Array(5).fill(200))
  await assertCalls(t, stack, { authenticate: 1, list_contacts: 1 })
  t.equal((await send(stack, 'GET', LIST)).status, 200)
  await assertCalls(t, stack, { authenticate: 1, list_contacts: 2 })
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'hit' }), 0, 'never a hit')
})

t.test('a failed shared read fails every caller that joined it, and is not kept', async (t) => {
  const stack = await startStack(t)
  await send(stack, 'GET', LIST) // the token
  stack.sim.reset()
  stack.sim.setFault({ operation: 'get_contact', kind: 'trickle', intervalMs: 250, chunks: 4, status: 500, times: 1 })
  const replies = await Promise.all(Array.from({ length: 4 }, () => send(stack, 'GET', ONE)))
  for (const reply of replies) assertProblem(t, stack, reply, { status: 502, code: 'UPSTREAM_ERROR', path: ONE })
  await assertCalls(t, stack, { get_contact: 1 })
  t.equal((await send(stack, 'GET', ONE)).status, 200, 'the next read asks again')
  await assertCalls(t, stack, { get_contact: 2 })
})

t.test('answers are kept per organisation: a second read is a hit, another organisation is never served from it', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '600000' } })
  const ops = session('ops', '*')
  const one = await send(stack, 'GET', LIST, { token: ops })
  const again = await send(stack, 'GET', LIST, { token: ops })
  t.equal(again.text, one.text)
  const two = await send(stack, 'GET', '/api/v1/organisation/2/contact', { token: ops })
  t.not(two.text, one.text, 'organisation 2 gets its own contacts')
  t.same((two.json() as Array<{ id: number }>).map((contact) => contact.id), [10])
  await assertCalls(t, stack, { authenticate: 1, list_contacts: 2 })
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'hit' }), 1)
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'miss' }), 2)
})

t.test('a kept answer expires after CONTACT_CACHE_TTL_MS', async (t) => {
  // Long enough that a stalled test machine still reads twice inside it.
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '500' } })
  await send(stack, 'GET', ONE)
  await send(stack, 'GET', ONE)
  await assertCalls(t, stack, { authenticate: 1, get_contact: 1 })
  await new Promise((resolve) => setTimeout(resolve, 600))
  await send(stack, 'GET', ONE)
  await assertCalls(t, stack, { authenticate: 1, get_contact: 2 })
})

t.test('read-your-writes: a write drops the organisation\'s kept reads before it answers', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '600000' } })
  const ops = session('ops', '*')
  await send(stack, 'GET', LIST)
  await send(stack, 'GET', ONE)
  await send(stack, 'GET', '/api/v1/organisation/2/contact', { token: ops })

  t.equal((await stack.patch(ONE, { city: 'Leipzig' })).status, 204)
  t.equal((await send(stack, 'GET', ONE)).json().city, 'Leipzig', 'the read after a PATCH shows it')
  t.equal((await send(stack, 'GET', LIST)).json()[0].city, 'Leipzig', 'so does the list')

  const created = await send(stack, 'POST', LIST, { body: { type: { id: 2 }, name: 'Fresh Contact' } })
  t.equal(created.status, 201)
  t.ok((await send(stack, 'GET', LIST)).json().some((c: { name: string }) => c.name === 'Fresh Contact'), 'the list after a create holds it')

  t.equal((await send(stack, 'DELETE', `${LIST}/2`)).status, 204)
  t.notOk((await send(stack, 'GET', LIST)).json().some((c: { id: number }) => c.id === 2), 'the list after a delete lacks it')

  await send(stack, 'GET', '/api/v1/organisation/2/contact', { token: ops })
  t.equal(stack.sim.state.counters.list_contacts, 5, 'organisation 2\'s kept list survived organisation 1\'s writes')
})

t.test('a read in flight while a write happens does not refill the cache with what the write replaced', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '600000' } })
  await send(stack, 'GET', `${LIST}/3`) // the token
  stack.sim.setFault({ operation: 'get_contact', kind: 'delay', ms: 1000, times: 1 })
  const early = send(stack, 'GET', ONE)
  await new Promise((resolve) => setTimeout(resolve, 100))
  stack.sim.state.updateContact(1, 1, { city: 'Dresden' })
  t.equal((await stack.patch(ONE, { city: 'Dresden' })).status, 204)
  const late = await send(stack, 'GET', ONE)
  t.equal(late.json().city, 'Dresden', 'a read after the write does not join the read from before it')
  await early
  t.equal((await send(stack, 'GET', ONE)).json().city, 'Dresden', 'nor does the earlier read land in the cache')
})

t.test('read-cache metrics count hits, misses and coalesced reads from the first scrape', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '600000' } })
  for (const result of ['hit', 'miss', 'coalesced']) {
    t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result }), 0, `${result} starts at 0`)
  }
  const scrape = (await stack.call('GET', '/metrics')).text
  t.match(scrape, /emnify_bff_store_entries\{[^}]*contact_read_cache/, 'the cache\'s size is a store gauge')
  t.equal((await send(stack, 'GET', ONE)).status, 200)
  t.equal((await send(stack, 'GET', ONE)).status, 200)
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'miss' }), 1)
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'hit' }), 1)
  t.equal(await metric(stack, 'emnify_bff_store_entries', { store: 'contact_read_cache' }), 1, 'one contact kept')
})

t.test('reads forward only the allow-listed headers and never the session', async (t) => {
  const stack = await startStack(t)
  await send(stack, 'GET', ONE, { headers: { cookie: 'a=1', origin: 'https://evil.example', 'x-csrf': '1', 'if-none-match': '"x"', 'x-request-id': 'read-1' } })
  const call = stack.sim.state.callsFor('get_contact')[0]
  const allowed = ['authorization', 'accept', 'user-agent', 'x-request-id', 'host', 'connection']
  t.same(Object.keys(call?.headers ?? {}).filter((name) => !allowed.includes(name)), [], 'nothing else forwarded')
  t.equal(call?.headers['x-request-id'], 'read-1')
  t.notOk(call?.headers.authorization?.includes(stack.token), 'the session stays with the BFF')
})

t.test('upstream calls of the new operations are measured under their own operation names', async (t) => {
  const stack = await startStack(t)
  await send(stack, 'GET', LIST)
  await send(stack, 'GET', ONE)
  await send(stack, 'GET', '/api/v1/country')
  await send(stack, 'POST', LIST, { body: { type: { id: 1 } } })
  await send(stack, 'DELETE', `${LIST}/3`)
  for (const [operation, count] of [['list_contacts', 1], ['get_contact', 2], ['list_countries', 1], ['create_contact', 1], ['delete_contact', 1]] as const) {
    t.equal(await metric(stack, 'emnify_bff_upstream_request_duration_seconds_count', { operation, outcome: '2xx' }), count, `${operation}: ${count}`)
  }
})

t.test('a write whose outcome is unknown (timeout, reset after send) also drops the kept reads, so a re-read shows what emnify did', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '600000', UPSTREAM_TIMEOUT_MS: '500' } })
  await send(stack, 'GET', LIST)
  await send(stack, 'GET', ONE)

  stack.sim.setFault({ operation: 'create_contact', kind: 'hang', afterCommit: true, times: 1 })
  t.equal((await send(stack, 'POST', LIST, { body: { type: { id: 2 }, name: 'Maybe Created' } })).status, 504)
  t.ok((await send(stack, 'GET', LIST)).json().some((c: { name: string }) => c.name === 'Maybe Created'), 'the list shows the contact emnify created')

  stack.sim.setFault({ operation: 'patch_contact', kind: 'reset_before_headers', afterCommit: true, times: 1 })
  t.equal((await stack.patch(ONE, { city: 'Maybe Patched' })).status, 502)
  t.equal((await send(stack, 'GET', ONE)).json().city, 'Maybe Patched', 'the read shows the change emnify applied')

  stack.sim.setFault({ operation: 'delete_contact', kind: 'status', status: 502, afterCommit: true, times: 1 })
  t.equal((await send(stack, 'DELETE', ONE)).status, 502)
  t.equal((await send(stack, 'GET', ONE)).status, 404, 'the read shows the contact is gone')
})
