// End to end over real HTTP: creating, updating and deleting contacts — create rules, the BFF's own
// Location, read-back, scopes, If-Match, the representation's ETag, `null` clears, 405 and audit.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { Fault } from '../../simulator/simulator.ts'
import { hashPassword } from '../../src/users/password.ts'
import { session, startStack } from '../helpers/stack.ts'
import { assertProblem, auditRecords, failOnStrayErrors } from './upstream-helpers.ts'
import {
  assertCalls, assertNothingSent, assertOwnShape, expectedContact, LIST, ONE, scoped, send, STRONG_ETAG
} from './contacts-helpers.ts'

failOnStrayErrors(t)

const NEW = { type: { id: 2 }, name: 'Margaret Hamilton', email: 'margaret@demo-org.example', country: { id: 74 } }

t.test('create answers 201 with the BFF\'s own Location and the contact read back', async (t) => {
  const stack = await startStack(t, { simulator: { extraFields: true } })
  const reply = await send(stack, 'POST', `${LIST}?dry_run=1`, { body: NEW })
  t.equal(reply.status, 201)
  const created = reply.json() as Record<string, unknown>
  const id = created.id as number
  t.type(id, 'number')
  t.equal(reply.headers.location, `${LIST}/${id}`, 'Location is the BFF\'s path of the new contact, not emnify\'s URL')
  assertOwnShape(t, created)
  stack.sim.configure({ extraFields: false })
  t.same(created, expectedContact(stack, 1, id), 'the created contact as emnify now holds it')
  t.match(created, { name: NEW.name, email: NEW.email, type: { id: 2 }, country: { id: 74 }, organisation: { id: 1 } })
  const call = stack.sim.state.callsFor('create_contact')[0]
  t.equal(call?.body, JSON.stringify(NEW), 'exactly the validated body is forwarded')
  t.equal(call?.query, '', 'the inbound query is not forwarded')
  t.equal(call?.headers['content-type'], 'application/json')
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1, get_contact: 1 })
  const read = await send(stack, 'GET', String(reply.headers.location))
  t.equal(read.status, 200, 'the Location can be read')
  t.same(read.json(), created)
})

for (const createdLocation of ['relative', 'absolute'] as const) {
  t.test(`emnify's ${createdLocation} Location is translated into the BFF's own`, async (t) => {
    const stack = await startStack(t, { simulator: { createdLocation } })
    const reply = await send(stack, 'POST', LIST, { body: { type: { id: 1 } } })
    t.equal(reply.status, 201)
    const id = (reply.json() as { id: number }).id
    t.equal(reply.headers.location, `${LIST}/${id}`)
    t.notOk(String(reply.headers.location).includes(stack.sim.url), 'nothing of the upstream origin')
  })
}

t.test('without a Location from emnify the answer is still 201, with {} and no Location', async (t) => {
  const stack = await startStack(t, { simulator: { createdLocation: 'none' } })
  const reply = await send(stack, 'POST', LIST, { body: { type: { id: 3 }, name: 'No Location' } })
  t.equal(reply.status, 201, 'the contact exists')
  t.same(reply.json(), {})
  t.notOk('location' in reply.headers, 'no Location')
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1 })
  t.ok((await send(stack, 'GET', LIST)).json().some((c: { name: string }) => c.name === 'No Location'), 'it was created')
})

for (const location of ['/api/v1/organisation/2/contact/9', 'https://cdn.emnify.net/api/v1/organisation/1/contact/abc', '/somewhere/else', '::not a url::']) {
  t.test(`a Location that does not name this organisation's new contact (${location}) gives 201 {} without Location`, async (t) => {
    const stack = await startStack(t)
    stack.sim.setFault({ operation: 'create_contact', kind: 'location', location, times: 1 })
    const reply = await send(stack, 'POST', LIST, { body: { type: { id: 1 } } })
    t.equal(reply.status, 201)
    t.same(reply.json(), {})
    t.notOk('location' in reply.headers)
    t.notOk(reply.text.includes('cdn.emnify.net') || reply.text.includes('somewhere'))
  })
}

t.test('when the read-back fails the answer is 201 with {id} and the Location', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'get_contact', kind: 'status', status: 500, times: 1 })
  const reply = await send(stack, 'POST', LIST, { body: NEW })
  t.equal(reply.status, 201, 'the contact exists; failing now would invite a second create')
  const body = reply.json() as { id: number }
  t.same(Object.keys(body), ['id'])
  t.equal(reply.headers.location, `${LIST}/${body.id}`)
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1, get_contact: 1 })
  t.notOk(stack.logs.lines.some((line) => line.includes(NEW.name) || line.includes(NEW.email)), 'no contact value in any log line')
})

t.test('a read-back answered in the wrong shape also gives 201 with {id}', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'get_contact', kind: 'bad_item', times: 1 })
  const reply = await send(stack, 'POST', LIST, { body: NEW })
  t.equal(reply.status, 201)
  t.same(Object.keys(reply.json()), ['id'])
})

t.test('create: type is required, purchase_order_number only with type 6, strict bodies; nothing is sent for a refused body', async (t) => {
  const stack = await startStack(t)
  const refused: Array<[unknown, string]> = [
    [{ name: 'No Type' }, '/type'],
    [{}, '/type'],
    [{ type: null }, '/type'],
    [{ type: { id: 0 } }, '/type/id'],
    [{ type: { id: '2' } }, '/type/id'],
    [{ type: { id: 2, description: 'Technical' } }, '/type'],
    [{ type: { id: 2 }, purchase_order_number: 'PO-1' }, '/purchase_order_number'],
    [{ type: { id: 1 }, purchase_order_number: 'PO-1' }, '/purchase_order_number'],
    [{ type: { id: 6 }, purchase_order_number: 'x'.repeat(51) }, '/purchase_order_number'],
    [{ type: { id: 2 }, id: 99 }, '/id'],
    [{ type: { id: 2 }, organisation_id: 1 }, '/organisation_id'],
    [{ type: { id: 2 }, country: null }, '/country'],
    [{ type: { id: 2 }, email: 'not-an-address' }, '/email'],
    [{ type: { id: 2 }, name: 7 }, '/name'],
    [[{ type: { id: 2 } }], '']
  ]
  for (const [body, pointer] of refused) {
    const reply = await send(stack, 'POST', LIST, { body })
    const problem = assertProblem(t, stack, reply, { status: 400, code: 'VALIDATION_FAILED', path: LIST })
    const pointers = (problem.errors as Array<{ pointer: string }> | undefined ?? []).map((error) => error.pointer)
    t.ok(pointers.some((p) => p === pointer || p.startsWith(`${pointer}/`) || pointer.startsWith(p)), `${JSON.stringify(body)}: an error at ${pointer} (got ${pointers.join(', ')})`)
  }
  await assertNothingSent(t, stack)
  const invoice = await send(stack, 'POST', LIST, { body: { type: { id: 6 }, name: 'Billing', purchase_order_number: 'PO-2026-7' } })
  t.equal(invoice.status, 201, 'an invoice contact may carry a purchase order number')
  t.equal(invoice.json().purchase_order_number, 'PO-2026-7')
})

t.test('create refuses other media types, oversized and malformed bodies before anything is sent', async (t) => {
  const stack = await startStack(t)
  assertProblem(t, stack, await send(stack, 'POST', LIST, { body: JSON.stringify(NEW), headers: { 'content-type': 'text/plain' } }),
    { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', path: LIST })
  assertProblem(t, stack, await send(stack, 'POST', LIST, { body: { ...NEW, street: 'x'.repeat(17_000) } }), { status: 413, code: 'PAYLOAD_TOO_LARGE', path: LIST })
  assertProblem(t, stack, await send(stack, 'POST', LIST, { body: '{"type":{"id":2},' }), { status: 400, code: 'MALFORMED_JSON', path: LIST })
  await assertNothingSent(t, stack)
  const merge = await send(stack, 'POST', LIST, { body: NEW, headers: { 'content-type': 'application/merge-patch+json' } })
  t.equal(merge.status, 201, 'application/merge-patch+json is read like application/json')
})

t.test('an emnify 422 on create becomes UPSTREAM_VALIDATION_FAILED at the field', async (t) => {
  const stack = await startStack(t)
  const reply = await send(stack, 'POST', LIST, { body: { type: { id: 2 }, country: { id: 99_999 } } })
  const problem = assertProblem(t, stack, reply, { status: 422, code: 'UPSTREAM_VALIDATION_FAILED', path: LIST })
  t.match(problem.errors, [{ pointer: '/country' }])
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1 })
  t.same(auditRecords(stack), [], 'no audit record for a write that did not happen')
})

t.test('a cookie session must send X-CSRF: 1 to create or delete', async (t) => {
  const stack = await startStack(t)
  const cookie = { cookie: `__Host-session=${stack.token}`, 'content-type': 'application/json' }
  const create = await stack.call('POST', LIST, { headers: cookie, body: NEW })
  assertProblem(t, stack, create, { status: 403, code: 'CSRF_HEADER_REQUIRED', path: LIST })
  const remove = await stack.call('DELETE', `${LIST}/2`, { headers: { cookie: `__Host-session=${stack.token}` } })
  assertProblem(t, stack, remove, { status: 403, code: 'CSRF_HEADER_REQUIRED', path: `${LIST}/2` })
  await assertNothingSent(t, stack)
  t.equal((await stack.call('POST', LIST, { headers: { ...cookie, 'x-csrf': '1' }, body: NEW })).status, 201)
})

t.test('delete answers 204 without a body; the contact is gone', async (t) => {
  const stack = await startStack(t)
  const reply = await send(stack, 'DELETE', `${LIST}/2?cascade=true`)
  t.equal(reply.status, 204)
  t.equal(reply.text, '')
  t.notOk(stack.sim.state.hasContact(1, 2), 'emnify deleted it')
  t.equal(stack.sim.state.callsFor('delete_contact')[0]?.query, '', 'the inbound query is not forwarded')
  await assertCalls(t, stack, { authenticate: 1, delete_contact: 1 })
  assertProblem(t, stack, await send(stack, 'GET', `${LIST}/2`), { status: 404, code: 'CONTACT_NOT_FOUND', path: `${LIST}/2` })
  assertProblem(t, stack, await send(stack, 'DELETE', `${LIST}/2`), { status: 404, code: 'CONTACT_NOT_FOUND', path: `${LIST}/2` })
})

t.test('contacts:read only: every write is 403 INSUFFICIENT_SCOPE before its body is read, and nothing is sent', async (t) => {
  const stack = await startStack(t)
  const reader = scoped('contacts:read')
  assertProblem(t, stack, await send(stack, 'POST', LIST, { token: reader, body: NEW }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: LIST })
  assertProblem(t, stack, await send(stack, 'POST', LIST, { token: reader, body: '{broken' }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: LIST })
  assertProblem(t, stack, await send(stack, 'POST', LIST, { token: reader, body: NEW, headers: { 'content-type': 'text/plain' } }),
    { status: 403, code: 'INSUFFICIENT_SCOPE', path: LIST })
  assertProblem(t, stack, await send(stack, 'PATCH', ONE, { token: reader, body: { city: 'X' } }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: ONE })
  assertProblem(t, stack, await send(stack, 'DELETE', ONE, { token: reader }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: ONE })
  assertProblem(t, stack, await send(stack, 'DELETE', ONE, { token: reader, headers: { 'if-match': '*' } }), { status: 403, code: 'INSUFFICIENT_SCOPE', path: ONE })
  await assertNothingSent(t, stack)
})

t.test('contacts:write (or no scope claim) may write; contacts:write alone may not read', async (t) => {
  const stack = await startStack(t)
  for (const scope of ['contacts:write', undefined, 'contacts:read contacts:write']) {
    const token = scoped(scope)
    t.equal((await send(stack, 'PATCH', ONE, { token, body: { city: 'Bonn' } })).status, 204, `scope ${String(scope)} may patch`)
    const created = await send(stack, 'POST', LIST, { token, body: { type: { id: 1 } } })
    t.equal(created.status, 201, `scope ${String(scope)} may create`)
    t.equal((await send(stack, 'DELETE', String(created.headers.location), { token })).status, 204, `scope ${String(scope)} may delete`)
  }
  const writer = scoped('contacts:write')
  const prefer = await send(stack, 'PATCH', ONE, { token: writer, body: { city: 'Köln' }, headers: { prefer: 'return=representation' } })
  t.equal(prefer.status, 200, 'a writer asking for the representation gets the contact it changed')
})

t.test('writes check the organisation before the scope and before the body', async (t) => {
  const stack = await startStack(t)
  const other = '/api/v1/organisation/3/contact'
  assertProblem(t, stack, await send(stack, 'POST', other, { body: '{broken' }), { status: 403, code: 'ORGANISATION_FORBIDDEN', path: other })
  assertProblem(t, stack, await send(stack, 'POST', other, { token: scoped('contacts:read'), body: NEW }), { status: 403, code: 'ORGANISATION_FORBIDDEN', path: other })
  assertProblem(t, stack, await send(stack, 'DELETE', `${other}/1`), { status: 403, code: 'ORGANISATION_FORBIDDEN', path: `${other}/1` })
  assertProblem(t, stack, await send(stack, 'POST', '/api/v1/organisation/x/contact', { body: NEW }), { status: 400, code: 'VALIDATION_FAILED', path: '/api/v1/organisation/x/contact' })
  assertProblem(t, stack, await send(stack, 'DELETE', `${LIST}/0`), { status: 400, code: 'VALIDATION_FAILED', path: `${LIST}/0` })
  await assertNothingSent(t, stack)
})

t.test('If-Match on PATCH: the current tag lets the change through after a fresh read', async (t) => {
  const stack = await startStack(t)
  const etag = String((await send(stack, 'GET', ONE)).headers.etag)
  const reply = await stack.patch(ONE, { city: 'Mainz' }, { 'if-match': etag })
  t.equal(reply.status, 204)
  t.equal(stack.sim.state.getContact(1, 1)?.city, 'Mainz')
  await assertCalls(t, stack, { authenticate: 1, get_contact: 2, patch_contact: 1 })
})

t.test('If-Match on PATCH: a tag that no longer matches is 412 PRECONDITION_FAILED and the change is not sent', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '600000' } })
  const etag = String((await send(stack, 'GET', ONE)).headers.etag)
  // Another editor changes the contact behind the BFF's back; the cache still holds the old one.
  stack.sim.state.updateContact(1, 1, { city: 'Changed Elsewhere' })
  for (const header of [etag, `W/${etag}`, '"something-else"', '"a", "b"']) {
    const reply = await stack.patch(ONE, { city: 'Mine' }, { 'if-match': header })
    assertProblem(t, stack, reply, { status: 412, code: 'PRECONDITION_FAILED', path: ONE })
  }
  t.equal(stack.sim.state.getContact(1, 1)?.city, 'Changed Elsewhere', 'the other editor\'s change stands')
  await assertCalls(t, stack, { authenticate: 1, get_contact: 5 })
  t.same(auditRecords(stack), [], 'no audit record')
})

t.test('If-Match: a list of tags naming the current one matches; a weak tag never does', async (t) => {
  const stack = await startStack(t)
  const etag = String((await send(stack, 'GET', ONE)).headers.etag)
  t.equal((await stack.patch(ONE, { title: 'CTO' }, { 'if-match': `"old", ${etag}` })).status, 204)
  const now = String((await send(stack, 'GET', ONE)).headers.etag)
  t.equal((await stack.patch(ONE, { title: 'CEO' }, { 'if-match': `W/${now}` })).status, 412, 'strong comparison')
})

t.test('If-Match: * lets a change through while the contact exists, and is 412 once it does not', async (t) => {
  const stack = await startStack(t)
  t.equal((await stack.patch(ONE, { city: 'Trier' }, { 'if-match': '*' })).status, 204)
  const missing = `${LIST}/424242`
  assertProblem(t, stack, await stack.patch(missing, { city: 'Nowhere' }, { 'if-match': '*' }), { status: 412, code: 'PRECONDITION_FAILED', path: missing })
  assertProblem(t, stack, await stack.patch(missing, { city: 'Nowhere' }, { 'if-match': '"x"' }), { status: 412, code: 'PRECONDITION_FAILED', path: missing })
  assertProblem(t, stack, await send(stack, 'DELETE', missing, { headers: { 'if-match': '*' } }), { status: 412, code: 'PRECONDITION_FAILED', path: missing })
  await assertCalls(t, stack, { authenticate: 1, get_contact: 4, patch_contact: 1 })
})

t.test('If-Match on DELETE: match deletes, mismatch is 412 and the contact stays', async (t) => {
  const stack = await startStack(t)
  const two = `${LIST}/2`
  const etag = String((await send(stack, 'GET', two)).headers.etag)
  assertProblem(t, stack, await send(stack, 'DELETE', two, { headers: { 'if-match': '"stale"' } }), { status: 412, code: 'PRECONDITION_FAILED', path: two })
  t.ok(stack.sim.state.hasContact(1, 2), 'not deleted')
  await assertCalls(t, stack, { authenticate: 1, get_contact: 2 })
  t.equal((await send(stack, 'DELETE', two, { headers: { 'if-match': etag } })).status, 204)
  t.notOk(stack.sim.state.hasContact(1, 2), 'deleted')
  t.equal((await send(stack, 'DELETE', `${LIST}/3`, { headers: { 'if-match': '*' } })).status, 204)
  await assertCalls(t, stack, { authenticate: 1, get_contact: 4, delete_contact: 2 })
})

t.test('a PATCH answered with the representation carries its new ETag; Vary keeps CORS\'s Origin', async (t) => {
  const stack = await startStack(t, { env: { CORS_ORIGINS: 'https://app.example' } })
  const before = String((await send(stack, 'GET', ONE)).headers.etag)
  const reply = await stack.patch(ONE, { city: 'Erfurt' }, { prefer: 'return=representation', origin: 'https://app.example' })
  t.equal(reply.status, 200)
  t.equal(reply.headers['preference-applied'], 'return=representation')
  t.match(String(reply.headers.etag), STRONG_ETAG)
  t.not(reply.headers.etag, before, 'a new tag for the changed contact')
  const read = await send(stack, 'GET', ONE)
  t.equal(reply.headers.etag, read.headers.etag, 'the tag a later read answers')
  t.equal(reply.text, read.text, 'and the same representation')
  const vary = String(reply.headers.vary).split(',').map((name) => name.trim().toLowerCase())
  t.ok(vary.includes('origin'), `Vary keeps Origin (${String(reply.headers.vary)})`)
  t.ok(vary.includes('prefer'), 'and adds Prefer')
  t.equal(reply.headers['access-control-allow-origin'], 'https://app.example')
  const plain = await stack.patch(ONE, { city: 'Gera' }, { origin: 'https://app.example' })
  t.equal(plain.status, 204)
  t.ok(String(plain.headers.vary).toLowerCase().includes('origin') && String(plain.headers.vary).toLowerCase().includes('prefer'), 'on a 204 as well')
})

for (const contentType of ['application/json', 'application/merge-patch+json']) {
  t.test(`null clears a string field under ${contentType} and is forwarded as null; type and country may not be null`, async (t) => {
    const stack = await startStack(t)
    const reply = await stack.patch(ONE, { title: null, mobile: null, city: 'Halle' }, { 'content-type': contentType })
    t.equal(reply.status, 204)
    t.equal(stack.sim.state.callsFor('patch_contact')[0]?.body, '{"title":null,"mobile":null,"city":"Halle"}', 'forwarded as null')
    const contact = (await send(stack, 'GET', ONE)).json()
    t.equal(contact.title, null, 'cleared')
    t.equal(contact.mobile, null, 'cleared')
    for (const field of ['type', 'country']) {
      const refused = await stack.patch(ONE, { [field]: null }, { 'content-type': contentType })
      const problem = assertProblem(t, stack, refused, { status: 400, code: 'VALIDATION_FAILED' })
      t.match(problem.errors, [{ pointer: `/${field}` }], `${field}: null is refused at its pointer`)
    }
    t.equal(stack.sim.state.counters.patch_contact, 1, 'the refused ones were not sent')
  })
}

t.test('a known path with another method is 405 METHOD_NOT_ALLOWED with Allow, and nothing is sent', async (t) => {
  const stack = await startStack(t)
  const cases: Array<[string, string, RegExp]> = [
    ['PUT', ONE, /^(?=.*\bDELETE\b)(?=.*\bGET\b)(?=.*\bPATCH\b)(?!.*\bPOST\b)(?!.*\bPUT\b)/],
    ['POST', ONE, /^(?=.*\bDELETE\b)(?=.*\bGET\b)(?=.*\bPATCH\b)(?!.*\bPOST\b)/],
    ['DELETE', LIST, /^(?=.*\bGET\b)(?=.*\bPOST\b)(?!.*\bDELETE\b)(?!.*\bPATCH\b)/],
    ['PATCH', LIST, /^(?=.*\bGET\b)(?=.*\bPOST\b)(?!.*\bPATCH\b)/],
    ['PUT', '/api/v1/country', /^(?=.*\bGET\b)(?!.*\bPOST\b)(?!.*\bPUT\b)/],
    ['DELETE', '/api/v1/country', /^(?=.*\bGET\b)(?!.*\bDELETE\b)/]
  ]
  for (const [method, path, allow] of cases) {
    const reply = await send(stack, method, path, { body: method === 'DELETE' ? undefined : { city: 'X' } })
    assertProblem(t, stack, reply, { status: 405, code: 'METHOD_NOT_ALLOWED', path })
    t.match(String(reply.headers.allow), allow, `${method} ${path}: Allow ${String(reply.headers.allow)}`)
  }
  const unknown = await send(stack, 'GET', `${ONE}/sims`)
  assertProblem(t, stack, unknown, { status: 404, code: 'NOT_FOUND', path: `${ONE}/sims` })
  await assertNothingSent(t, stack)
})

t.test('every successful write writes one audit record with sub, org_id, contact_id and field names, never values', async (t) => {
  const stack = await startStack(t)
  const secretish = { type: { id: 2 }, name: 'Audit Value Name', email: 'audit-value@example.org', city: 'Audit-City-Value' }
  const created = await send(stack, 'POST', LIST, { body: secretish })
  const id = String(created.json().id)
  t.equal((await stack.patch(`${LIST}/${id}`, { city: 'Second-City-Value', title: null })).status, 204)
  t.equal((await send(stack, 'DELETE', `${LIST}/${id}`)).status, 204)
  const records = auditRecords(stack)
  t.equal(records.length, 3, 'one record per write')
  t.match(records[0], { event: 'contact.created', sub: 'alice', org_id: '1', contact_id: id })
  t.same([...(records[0]?.fields as string[])].sort(), ['city', 'email', 'name', 'type'])
  t.match(records[1], { event: 'contact.updated', sub: 'alice', org_id: '1', contact_id: id })
  t.same([...(records[1]?.fields as string[])].sort(), ['city', 'title'])
  t.match(records[2], { event: 'contact.deleted', sub: 'alice', org_id: '1', contact_id: id, fields: [] })
  const all = stack.logs.lines.join('\n')
  for (const value of ['Audit Value Name', 'audit-value@example.org', 'Audit-City-Value', 'Second-City-Value']) {
    t.notOk(all.includes(value), `no log line carries ${value}`)
  }
  // Refused and failed writes leave no record.
  await send(stack, 'DELETE', `${LIST}/${id}`)
  await send(stack, 'POST', LIST, { body: { name: 'no type' } })
  await send(stack, 'PATCH', `${LIST}/1`, { token: session('bob', [1]), body: { city: 'Y' }, headers: { 'if-match': '"stale"' } })
  t.equal(auditRecords(stack).length, 3, 'no record for a 404, a 400 or a 412')
})

t.test('a create without Location is audited without a contact id', async (t) => {
  const stack = await startStack(t, { simulator: { createdLocation: 'none' } })
  t.equal((await send(stack, 'POST', LIST, { body: { type: { id: 1 }, name: 'Anon' } })).status, 201)
  t.match(auditRecords(stack), [{ event: 'contact.created', sub: 'alice', org_id: '1', contact_id: null, fields: ['type', 'name'] }])
})

t.test('writes forward only the allow-listed headers', async (t) => {
  const stack = await startStack(t)
  const inbound = { cookie: 'a=1', origin: 'https://evil.example', 'x-csrf': '1', 'idempotency-key': 'k-1', 'if-match': '*', 'x-forwarded-for': '203.0.113.1' }
  await send(stack, 'POST', LIST, { body: NEW, headers: inbound })
  await send(stack, 'DELETE', `${LIST}/2`, { headers: inbound })
  const allowed = ['authorization', 'accept', 'user-agent', 'x-request-id', 'content-type', 'host', 'connection', 'content-length']
  for (const operation of ['create_contact', 'delete_contact', 'get_contact'] as const) {
    for (const call of stack.sim.state.callsFor(operation)) {
      t.same(Object.keys(call.headers).filter((name) => !allowed.includes(name)), [], `${operation}: nothing else forwarded`)
    }
  }
  t.equal(stack.sim.state.callsFor('delete_contact')[0]?.headers['content-type'], undefined, 'a DELETE has no body and says none')
})

t.test('a faulted create is refused without being sent again (sanity for the fault matrix)', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'create_contact', kind: 'status', status: 500, times: 1 } as Fault)
  assertProblem(t, stack, await send(stack, 'POST', LIST, { body: NEW }), { status: 502, code: 'UPSTREAM_ERROR', path: LIST })
  await assertCalls(t, stack, { authenticate: 1, create_contact: 1 })
})

t.test('a users-file scope travels through login: reported, and the cookie session may read but not write', async (t) => {
  const password = 'reader password for the scope test'
  const usersFile = join(t.testdir(), 'users.json')
  await writeFile(usersFile, JSON.stringify({ users: [{ username: 'rita', password_hash: await hashPassword(password, { ln: 10, r: 8, p: 1 }), orgs: [1], scope: 'contacts:read' }] }))
  const stack = await startStack(t, { env: { USERS_FILE: usersFile, SESSION_COOKIE_SECURE: 'false' } })
  const login = await stack.call('POST', '/auth/login', { headers: { 'content-type': 'application/json' }, body: { username: 'rita', password } })
  t.equal(login.status, 200)
  t.equal(login.json().user.scope, 'contacts:read', 'the login answer reports the scope')
  const cookie = String([login.headers['set-cookie']].flat()[0]).split(';')[0] as string
  const me = await stack.call('GET', '/auth/session', { headers: { cookie } })
  t.equal(me.json().scope, 'contacts:read', 'so does GET /auth/session')
  t.equal((await stack.call('GET', LIST, { headers: { cookie } })).status, 200, 'it may list')
  const create = await stack.call('POST', LIST, { headers: { cookie, 'x-csrf': '1', 'content-type': 'application/json' }, body: NEW })
  assertProblem(t, stack, create, { status: 403, code: 'INSUFFICIENT_SCOPE', path: LIST })
  const remove = await stack.call('DELETE', ONE, { headers: { cookie, 'x-csrf': '1' } })
  assertProblem(t, stack, remove, { status: 403, code: 'INSUFFICIENT_SCOPE', path: ONE })
  t.equal(stack.sim.state.counters.create_contact + stack.sim.state.counters.delete_contact, 0, 'no write was sent')
})

t.test('the per-session limit covers every contact and country route, and a limited request sends nothing', async (t) => {
  const stack = await startStack(t, { env: { RATE_LIMIT_PER_MINUTE: '4' } })
  for (const [method, path] of [['GET', LIST], ['GET', ONE], ['GET', '/api/v1/country'], ['DELETE', `${LIST}/3`]]) {
    t.not((await send(stack, method as string, path as string)).status, 429, `${method} ${path} within the limit`)
  }
  stack.sim.reset()
  for (const [method, path, body] of [['GET', LIST], ['POST', LIST, NEW], ['DELETE', `${LIST}/2`], ['GET', '/api/v1/country']] as const) {
    assertProblem(t, stack, await send(stack, method, path, { body }), { status: 429, code: 'RATE_LIMITED', path, retryAfter: true })
  }
  await assertNothingSent(t, stack)
})

t.test('after a 412 the editor\'s re-read shows the current contact and tag, not the kept one, so the retry can succeed', async (t) => {
  const stack = await startStack(t, { env: { CONTACT_CACHE_TTL_MS: '600000' } })
  const before = String((await send(stack, 'GET', ONE)).headers.etag)
  await send(stack, 'GET', LIST)
  stack.sim.state.updateContact(1, 1, { city: 'Changed In The Console' })
  assertProblem(t, stack, await stack.patch(ONE, { title: 'Mine' }, { 'if-match': before }), { status: 412, code: 'PRECONDITION_FAILED', path: ONE })
  const reread = await send(stack, 'GET', ONE)
  t.equal(reread.json().city, 'Changed In The Console', 'the re-read shows what changed')
  t.not(reread.headers.etag, before, 'with its current tag')
  t.equal((await send(stack, 'GET', LIST)).json()[0].city, 'Changed In The Console', 'the list too')
  t.equal((await stack.patch(ONE, { title: 'Mine' }, { 'if-match': String(reread.headers.etag) })).status, 204, 'the retry with the current tag goes through')
})
