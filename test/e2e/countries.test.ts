// End to end over real HTTP: the country picker — emnify's list projected to {id, name, iso_code?,
// country_code?}, open to any valid session, kept COUNTRY_CACHE_TTL_S, garbled answers as 502.
import t from 'tap'
import { COUNTRIES, EXTRA_FIELD_MARKER, type Fault } from '../../simulator/simulator.ts'
import { claims, forge, startStack } from '../helpers/stack.ts'
import { assertProblem, failOnStrayErrors } from './upstream-helpers.ts'
import { assertCalls, assertNothingSent, metric, scoped, send, STRONG_ETAG } from './contacts-helpers.ts'

failOnStrayErrors(t)

const PATH = '/api/v1/country'

t.test('countries answer {id, name, iso_code, country_code} for every country emnify knows, nothing it adds', async (t) => {
  const stack = await startStack(t, { simulator: { extraFields: true } })
  const reply = await send(stack, 'GET', `${PATH}?geographic=true`)
  t.equal(reply.status, 200)
  t.match(String(reply.headers['content-type']), /^application\/json/)
  t.notOk(reply.text.includes(EXTRA_FIELD_MARKER) || reply.text.includes('currency') || reply.text.includes('mcc'), 'no field beyond the picker\'s')
  const expected = [...COUNTRIES.values()].map(({ id, name, iso_code: iso, country_code: code }) => ({ id, name, iso_code: iso, country_code: code }))
  t.same(reply.json(), expected, 'all of them, the non-geographic too: the inbound query is not forwarded')
  t.equal(stack.sim.state.callsFor('list_countries')[0]?.query, '')
  t.match(String(reply.headers.etag), STRONG_ETAG)
  t.equal(reply.headers['cache-control'], 'private, no-cache')
  await assertCalls(t, stack, { authenticate: 1, list_countries: 1 })
})

t.test('a country without the optional codes is answered with id and name', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'list_countries', kind: 'status', status: 200, body: [{ id: 5, name: 'Atlantis', iso_code: null, mcc: '999' }] })
  t.same((await send(stack, 'GET', PATH)).json(), [{ id: 5, name: 'Atlantis' }])
})

t.test('any valid session may read countries, whatever its scope or organisations', async (t) => {
  const stack = await startStack(t)
  for (const token of [scoped('contacts:write'), scoped(''), scoped('profile'), scoped('contacts:read'), scoped(undefined, { orgs: [] }), scoped(undefined, { orgs: '*' })]) {
    t.equal((await send(stack, 'GET', PATH, { token })).status, 200)
  }
  t.equal(stack.sim.state.counters.list_countries, 1, 'one upstream call for all of them')
})

t.test('countries need a valid session: none, an expired or a forged one is 401 and nothing is sent', async (t) => {
  const stack = await startStack(t)
  assertProblem(t, stack, await stack.call('GET', PATH), { status: 401, code: 'UNAUTHENTICATED', path: PATH })
  const now = Math.floor(Date.now() / 1000)
  const expired = forge({ alg: 'HS256', typ: 'JWT' }, claims({ iat: now - 7200, exp: now - 3600 }))
  assertProblem(t, stack, await send(stack, 'GET', PATH, { token: expired }), { status: 401, code: 'UNAUTHENTICATED', path: PATH })
  const forged = forge({ alg: 'HS256', typ: 'JWT' }, claims(), { key: 'another-secret-another-secret-0123' })
  assertProblem(t, stack, await send(stack, 'GET', PATH, { token: forged }), { status: 401, code: 'UNAUTHENTICATED', path: PATH })
  await assertNothingSent(t, stack)
})

t.test('countries are kept COUNTRY_CACHE_TTL_S: later reads are hits, and If-None-Match gives 304', async (t) => {
  const stack = await startStack(t)
  const first = await send(stack, 'GET', PATH)
  const second = await send(stack, 'GET', PATH)
  t.equal(second.text, first.text)
  const revalidated = await send(stack, 'GET', PATH, { headers: { 'if-none-match': String(first.headers.etag) } })
  t.equal(revalidated.status, 304)
  t.equal(revalidated.text, '')
  await assertCalls(t, stack, { authenticate: 1, list_countries: 1 })
  t.equal(await metric(stack, 'emnify_bff_read_cache_total', { result: 'hit' }), 2)
})

t.test('COUNTRY_CACHE_TTL_S=0 keeps nothing but still coalesces concurrent reads', async (t) => {
  const stack = await startStack(t, { env: { COUNTRY_CACHE_TTL_S: '0' } })
  stack.sim.setFault({ operation: 'list_countries', kind: 'delay', ms: 1000, times: 1 })
  const replies = await Promise.all(Array.from({ length: 5 }, () => send(stack, 'GET', PATH)))
  t.same(replies.map((reply) => reply.status), Array(5).fill(200))
  await assertCalls(t, stack, { authenticate: 1, list_countries: 1 })
  await send(stack, 'GET', PATH)
  await assertCalls(t, stack, { authenticate: 1, list_countries: 2 })
})

t.test('a contact write does not drop the kept countries', async (t) => {
  const stack = await startStack(t)
  await send(stack, 'GET', PATH)
  t.equal((await stack.patch('/api/v1/organisation/1/contact/1', { city: 'Ulm' })).status, 204)
  await send(stack, 'GET', PATH)
  t.equal(stack.sim.state.counters.list_countries, 1)
})

for (const [what, fault] of [
  ['not a list', { kind: 'not_a_list' }],
  ['a country without a name', { kind: 'bad_item', item: { name: null } }],
  ['an id that is not a number', { kind: 'bad_item' }],
  ['a body that is not JSON', { kind: 'garbage' }],
  ['an upstream 404 (the list always exists)', { kind: 'status', status: 404 }]
] as const) {
  t.test(`a country answer that is ${what} becomes 502 UPSTREAM_ERROR and is not kept`, async (t) => {
    const stack = await startStack(t)
    stack.sim.setFault({ ...fault, operation: 'list_countries', times: 1 } as Fault)
    assertProblem(t, stack, await send(stack, 'GET', PATH), { status: 502, code: 'UPSTREAM_ERROR', path: PATH }, ['not-a-number'])
    t.equal((await send(stack, 'GET', PATH)).status, 200, 'the next read asks again')
    await assertCalls(t, stack, { authenticate: 1, list_countries: 2 })
  })
}

t.test('countries forward only the allow-listed headers', async (t) => {
  const stack = await startStack(t)
  await send(stack, 'GET', PATH, { headers: { cookie: 'a=1', origin: 'https://evil.example', 'accept-language': 'de', 'x-request-id': 'countries-1' } })
  const call = stack.sim.state.callsFor('list_countries')[0]
  const allowed = ['authorization', 'accept', 'user-agent', 'x-request-id', 'host', 'connection']
  t.same(Object.keys(call?.headers ?? {}).filter((name) => !allowed.includes(name)), [])
  t.equal(call?.headers['x-request-id'], 'countries-1')
})
