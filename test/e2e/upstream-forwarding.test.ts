// End to end over real HTTP: what a successful contact PATCH sends to emnify and answers (§4, §6, §7 audit).
import t from 'tap'
import { decodeTokenClaims } from '../../simulator/simulator.ts'
import { CONTACT, startStack } from '../helpers/stack.ts'
import {
  assertLogsClean, assertNoLeaks, assertProblem, assertUpstreamCalls, auditRecords, failOnStrayErrors, presentedTokens,
  TRANSPORT_HEADERS
} from './upstream-helpers.ts'

failOnStrayErrors(t)

const ALLOWED = ['authorization', 'content-type', 'accept', 'x-request-id', 'user-agent']

t.test('upstream 204 becomes 204 with an empty body', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { name: 'Ada King' })
  t.equal(reply.status, 204)
  t.equal(reply.text, '')
  t.equal(stack.sim.state.counters.patch_contact, 1)
  t.equal(stack.sim.state.getContact('1', '1')?.name, 'Ada King', 'the change reached emnify')
})

t.test('exactly the validated body, re-serialised, is forwarded', async (t) => {
  const stack = await startStack(t)
  const raw = '{\n  "name" : "Zoë Ünicode",\t"country": { "id": 74 },\n "email":"zoe@example.com" }'
  const reply = await stack.call('PATCH', CONTACT, {
    headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json' },
    body: raw
  })
  t.equal(reply.status, 204)
  const [call] = stack.sim.state.callsFor('patch_contact')
  t.equal(call?.body, JSON.stringify({ name: 'Zoë Ünicode', country: { id: 74 }, email: 'zoe@example.com' }))
  t.same(JSON.parse(call?.body ?? 'null'), JSON.parse(raw))
})

t.test('only the allow-listed headers are forwarded, none from the inbound request', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.call('PATCH', `${CONTACT}?debug=1&org_id=2`, {
    headers: {
      authorization: `Bearer ${stack.token}`,
      'content-type': 'application/merge-patch+json',
      accept: 'application/problem+json, */*',
      'x-request-id': 'trace-42.a_b',
      'user-agent': 'frontend/9.9',
      'x-csrf': '1',
      origin: 'https://frontend.example',
      referer: 'https://frontend.example/contacts',
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-host': 'evil.example',
      cookie: 'other=1',
      'x-custom-secret': 'do-not-forward',
      'accept-language': 'de-DE'
    },
    body: { city: 'Hamburg' }
  })
  t.equal(reply.status, 204)
  t.equal(reply.headers['x-request-id'], 'trace-42.a_b')

  const [call] = stack.sim.state.callsFor('patch_contact')
  if (call === undefined) throw new Error('no PATCH reached the simulator')
  const names = Object.keys(call.headers)
  for (const name of ALLOWED) t.ok(names.includes(name), `${name} is sent`)
  t.same(names.filter((name) => !ALLOWED.includes(name) && !TRANSPORT_HEADERS.includes(name)), [], 'nothing else is sent')
  for (const name of ['cookie', 'x-csrf', 'origin', 'referer', 'x-forwarded-for', 'x-forwarded-host', 'x-custom-secret', 'accept-language', 'prefer']) {
    t.notOk(name in call.headers, `${name} is not forwarded`)
  }
  t.equal(call.headers.host, new URL(stack.sim.url).host, 'Host names the upstream, not the BFF')
  t.equal(call.headers['content-type'], 'application/json', 'merge-patch+json is sent as application/json')
  t.equal(call.headers.accept, 'application/json')
  t.equal(call.headers['x-request-id'], 'trace-42.a_b', 'the request id travels upstream')
  t.match(call.headers['user-agent'], /emnify-bff/)
  t.not(call.headers['user-agent'], 'frontend/9.9')
  t.equal(call.query, '', 'the inbound query string is not forwarded')
  t.equal(call.path, CONTACT)

  const auth = call.headers.authorization ?? ''
  const upstreamToken = auth.replace(/^Bearer /, '')
  t.match(auth, /^Bearer \S+$/)
  t.not(upstreamToken, stack.token, 'the session is not forwarded')
  t.equal(stack.sim.state.checkToken(upstreamToken), 'valid', 'it is a token the simulator issued')
  t.equal(decodeTokenClaims(upstreamToken).iss, 'emnify-simulator')

  const [authenticate] = stack.sim.state.callsFor('authenticate')
  t.notOk(authenticate?.headers.authorization, 'authenticate carries no Authorization')
  t.notOk(authenticate?.headers.cookie, 'authenticate carries no cookie')
  t.same(JSON.parse(authenticate?.body ?? '{}'), { application_token: stack.config.EMNIFY_APPLICATION_TOKEN })
  assertLogsClean(t, stack)
})

t.test('an invalid inbound request id is replaced, and the replacement is what goes upstream', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { name: 'X' }, { 'x-request-id': 'bad id with spaces' })
  t.equal(reply.status, 204)
  const id = reply.headers['x-request-id']
  t.match(id, /^[A-Za-z0-9._-]{1,64}$/)
  t.not(id, 'bad id with spaces')
  t.equal(stack.sim.state.callsFor('patch_contact')[0]?.headers['x-request-id'], id)
})

t.test('Prefer: return=representation answers 200 with the contact read back', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { name: 'Ada Byron', city: 'London' }, { prefer: 'return=representation' })
  t.equal(reply.status, 200)
  t.equal(reply.headers['preference-applied'], 'return=representation')
  t.match(String(reply.headers.vary), /\bPrefer\b/i)
  t.match(String(reply.headers['content-type']), /^application\/json/)
  const contact = reply.json()
  t.equal(contact.id, 1)
  t.equal(contact.name, 'Ada Byron')
  t.equal(contact.city, 'London')
  t.equal(contact.email, 'ada.lovelace@demo-org.example', 'unchanged fields come from emnify')

  const calls = stack.sim.state.calls.filter((call) => call.operation !== 'authenticate')
  t.same(calls.map((call) => `${call.method} ${call.path}`), [`PATCH ${CONTACT}`, `GET ${CONTACT}`], 'PATCH, then GET of the same path')
  const get = stack.sim.state.callsFor('get_contact')[0]
  t.equal(get?.headers['x-request-id'], reply.headers['x-request-id'])
  t.match(get?.headers.authorization, /^Bearer /)
  t.notOk(get?.headers.prefer, 'Prefer is not forwarded')
  t.equal(stack.sim.state.counters.authenticate, 1, 'the read reuses the token')
  assertNoLeaks(t, stack, reply.text)
})

t.test('Prefer is read among several preferences', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { title: 'CTO' }, { prefer: 'handling=strict, return=representation' })
  t.equal(reply.status, 200)
  t.equal(reply.json().title, 'CTO')
})

t.test('without Prefer there is no read-back', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { title: 'CTO' }, { prefer: 'return=minimal' })
  t.equal(reply.status, 204)
  t.notOk(reply.headers['preference-applied'])
  t.equal(stack.sim.state.counters.get_contact, 0)
})

// A read is re-sent once after a reset or a 502/503 (it changes nothing); every other failure is final.
const readFailures = [
  { name: 'a 500', fault: { kind: 'status' as const, status: 500 }, reads: 1 },
  { name: 'a 503 twice', fault: { kind: 'status' as const, status: 503 }, reads: 2 },
  { name: 'a garbage body', fault: { kind: 'garbage' as const }, reads: 1 },
  { name: 'JSON cut short', fault: { kind: 'status' as const, status: 200, body: '{"id":1,"name":"Ada Byron","city":' }, reads: 1 },
  { name: 'a 404', fault: { kind: 'status' as const, status: 404 }, reads: 1 },
  { name: 'a cut connection twice', fault: { kind: 'reset_after_headers' as const }, reads: 2 },
  { name: 'an oversized body', fault: { kind: 'huge_body' as const, bytes: 2 * 1024 * 1024 }, reads: 1 },
  { name: 'a JSON array', fault: { kind: 'status' as const, status: 200, body: [{ id: 1 }] }, reads: 1 },
  { name: 'a contact of the wrong shape', fault: { kind: 'status' as const, status: 200, body: { id: 2, name: { a: 1 } } }, reads: 1 },
  { name: 'a type id that is not a number', fault: { kind: 'status' as const, status: 200, body: { id: 2, type: { id: 'x' } } }, reads: 1 },
  { name: 'a country that is a number', fault: { kind: 'status' as const, status: 200, body: { id: 2, country: 5 } }, reads: 1 }
]

for (const { name, fault, reads } of readFailures) {
  t.test(`when the read-back gets ${name}, the PATCH still answers 204`, async (t) => {
    const stack = await startStack(t)
    stack.sim.setFault({ operation: 'get_contact', ...fault })
    const reply = await stack.patch(CONTACT, { name: 'Changed' }, { prefer: 'return=representation' })
    t.equal(reply.status, 204, 'the update did happen')
    t.equal(reply.text, '')
    t.notOk(reply.headers['preference-applied'], 'the preference was not applied')
    await assertUpstreamCalls(t, stack, { authenticate: 1, patch_contact: 1, get_contact: reads })
    t.equal(stack.sim.state.getContact('1', '1')?.name, 'Changed')
    t.equal(auditRecords(stack).length, 1, 'the change is audited')
    t.notOk(stack.logs.lines.some((line) => line.includes('"level":50')), 'no error line: a bad read-back is not a bug')
  })
}

t.test('the read-back is bounded by the time budget and still answers 204', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '1000' } })
  stack.sim.setFault({ operation: 'get_contact', kind: 'hang' })
  const started = Date.now()
  const reply = await stack.patch(CONTACT, { name: 'Slow read' }, { prefer: 'return=representation' })
  t.equal(reply.status, 204)
  t.ok(Date.now() - started < 3000, 'not held beyond the budget')
})

t.test('a successful change writes one audit record with field names, never values', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch('/api/v1/organisation/1/contact/2', {
    name: 'Secret Name Value',
    email: 'secret.value@example.com',
    country: { id: 74 }
  })
  t.equal(reply.status, 204)
  const records = auditRecords(stack)
  t.equal(records.length, 1, 'exactly one audit record')
  const [record] = records
  t.equal(record?.sub, 'alice')
  t.equal(String(record?.org_id), '1')
  t.equal(String(record?.contact_id), '2')
  t.same([...(record?.fields as string[])].sort(), ['country', 'email', 'name'])
  t.equal(record?.request_id, reply.headers['x-request-id'])
  const line = JSON.stringify(record)
  for (const value of ['Secret Name Value', 'secret.value@example.com', '"id":74']) {
    t.notOk(line.includes(value), `the audit record does not contain ${value}`)
  }
  t.notOk(stack.logs.lines.join('\n').includes('Secret Name Value'), 'no log line carries a value')
})

t.test('a change read back with Prefer is still audited once', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { department: 'R&D' }, { prefer: 'return=representation' })
  t.equal(reply.status, 200)
  t.equal(auditRecords(stack).length, 1)
})

t.test('failed changes write no audit record', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '1000' } })
  const missing = await stack.patch('/api/v1/organisation/1/contact/999', { name: 'Nobody' })
  assertProblem(t, stack, missing, { status: 404, code: 'CONTACT_NOT_FOUND', path: '/api/v1/organisation/1/contact/999' })
  const rejected = await stack.patch(CONTACT, { country: { id: 99_999 } })
  assertProblem(t, stack, rejected, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED' })
  stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 500, times: 1 })
  const failed = await stack.patch(CONTACT, { name: 'Nope' })
  assertProblem(t, stack, failed, { status: 502, code: 'UPSTREAM_ERROR' })
  stack.sim.setFault({ operation: 'patch_contact', kind: 'hang', times: 1 })
  const slow = await stack.patch(CONTACT, { name: 'Nope' })
  assertProblem(t, stack, slow, { status: 504, code: 'UPSTREAM_TIMEOUT' })
  const forbidden = await stack.patch('/api/v1/organisation/3/contact/1', { name: 'Nope' })
  t.equal(forbidden.status, 403)
  t.equal(auditRecords(stack).length, 0, 'no audit record for any failure')
  t.equal(presentedTokens(stack).length, 1)
})
