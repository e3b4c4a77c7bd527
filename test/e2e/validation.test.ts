// Validation of the contact PATCH (§4): what is refused is refused before anything reaches
// emnify, and what is accepted is forwarded exactly as validated.
import { Readable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { CONTACT, session, startStack, type Stack } from '../helpers/stack.ts'

interface Answer {
  status: number
  headers: Record<string, unknown>
  json: () => any
}

const BODY_LIMIT = 16 * 1024
const ID_FIELDS = ['org_id', 'contact_id'] as const
const TEXT_FIELDS = ['name', 'title', 'department', 'street', 'zipcode', 'city', 'phone', 'mobile', 'state', 'secondary_address'] as const

// "*" so that only validation, never the organisation check, can stop a request.
const TOKEN = session('alice', '*')
const AUTH = { authorization: `Bearer ${TOKEN}` }

/** A raw body through the whole app; real HTTP adds nothing to body validation. */
async function send (stack: Stack, payload: string): Promise<Answer> {
  const headers = { ...AUTH, 'content-type': 'application/json' }
  const response = await stack.app.inject({ method: 'PATCH', url: CONTACT, headers, payload })
  return { status: response.statusCode, headers: response.headers, json: () => parse(response.body) }
}

const sendJson = (stack: Stack, body: unknown) => send(stack, JSON.stringify(body))

/** Real HTTP, for what the URL parser and the socket decide (paths, sizes, chunking). */
async function http (stack: Stack, path: string, body: string | Readable, headers: Record<string, string | undefined> = {}): Promise<Answer> {
  const all: Record<string, string | undefined> = { ...AUTH, 'content-type': 'application/json', ...headers }
  const response = await request(stack.url + path, {
    method: 'PATCH',
    headers: Object.fromEntries(Object.entries(all).filter(([, value]) => value !== undefined)) as Record<string, string>,
    body
  })
  const text = await response.body.text()
  return { status: response.statusCode, headers: response.headers, json: () => parse(text) }
}

/** A non-JSON answer reads as null, so the assertions on it fail instead of throwing. */
function parse (text: string): any {
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

function assertNothingUpstream (t: Test, stack: Stack) {
  const counters = stack.sim.state.counters
  t.equal(counters.patch_contact, 0, 'no PATCH reached emnify')
  t.equal(counters.total, 0, 'no call of any kind reached emnify')
  stack.sim.reset()
}

/** A problem answer with the given code; returns its body for further checks. */
function assertProblem (t: Test, stack: Stack, answer: Answer, status: number, code: string): any {
  t.equal(answer.status, status, `answers ${status}`)
  t.match(answer.headers['content-type'], /^application\/problem\+json/, 'as problem+json')
  const body = answer.json()
  t.equal(body?.code, code, `with code ${code}`)
  t.equal(body?.status, status)
  t.equal(body?.request_id, answer.headers['x-request-id'])
  assertNothingUpstream(t, stack)
  return body
}

/** 400 VALIDATION_FAILED whose errors name `pointer`, each entry a {pointer, detail} pair. */
function assertInvalid (t: Test, stack: Stack, answer: Answer, pointer?: string) {
  const body = assertProblem(t, stack, answer, 400, 'VALIDATION_FAILED')
  if (pointer === undefined) return
  t.ok(Array.isArray(body.errors) && body.errors.length > 0, 'lists the errors')
  for (const error of body.errors ?? []) {
    t.type(error.pointer, 'string')
    t.type(error.detail, 'string')
  }
  t.ok(body.errors?.some((error: { pointer: string }) => error.pointer === pointer), `an error points at "${pointer}"`)
}

/** 204, and emnify received exactly this body on exactly the canonical path. */
function assertForwarded (t: Test, stack: Stack, answer: Answer, body: unknown, path = CONTACT) {
  t.equal(answer.status, 204, 'answers 204')
  const calls = stack.sim.state.callsFor('patch_contact')
  t.equal(calls.length, 1, 'one PATCH reached emnify')
  t.equal(calls[0]?.path, path, 'on the canonical path')
  t.equal(calls[0]?.query, '', 'without a query string')
  t.same(JSON.parse(calls[0]?.body ?? 'null'), body, 'with exactly the validated body')
  t.equal(calls[0]?.headers['content-type'], 'application/json')
  stack.sim.reset()
}

// Refusals run against a BFF that never forwarded anything; accepted requests use their own stack.
const reject = await startStack(t)
const accept = await startStack(t)

t.test('path ids that are not positive decimal integers are 400 VALIDATION_FAILED', async (t) => {
  const bad = ['0', '01', '00', '-1', '+1', '%2B1', '1.5', '1e3', '0x1', 'abc', '1%20', '%201', '1%2F2', '%EF%BC%91',
    '1234567890123456789', '9223372036854775808']
  for (const [i, field] of ID_FIELDS.entries()) {
    for (const value of bad) {
      t.test(`${field} = ${value}`, async (t) => {
        const ids = ['1', '1']
        ids[i] = value
        const answer = await http(reject, `/api/v1/organisation/${ids[0]}/contact/${ids[1]}`, '{"name":"Ada"}')
        assertInvalid(t, reject, answer, `/${field}`)
      })
    }
  }
})

t.test('a path id longer than the router allows is 400, not 404', async (t) => {
  const long = '1'.repeat(200)
  assertInvalid(t, reject, await http(reject, `/api/v1/organisation/${long}/contact/1`, '{"name":"Ada"}'))
  assertInvalid(t, reject, await http(reject, `/api/v1/organisation/1/contact/${long}`, '{"name":"Ada"}'))
})

t.test('a path with broken percent-encoding is 400', async (t) => {
  assertInvalid(t, reject, await http(reject, '/api/v1/organisation/%zz/contact/1', '{"name":"Ada"}'))
  assertInvalid(t, reject, await http(reject, '/api/v1/organisation/1/contact/%E0%A4%A', '{"name":"Ada"}'))
})

t.test('18-digit ids are valid and forwarded; percent-encoded digits reach emnify only in canonical form', async (t) => {
  const answer = await http(accept, '/api/v1/organisation/1/contact/999999999999999999', '{"name":"Ada"}')
  t.equal(answer.json()?.code, 'CONTACT_NOT_FOUND', 'emnify was asked and does not know the contact')
  t.equal(accept.sim.state.callsFor('patch_contact')[0]?.path, '/api/v1/organisation/1/contact/999999999999999999')
  accept.sim.reset()

  assertForwarded(t, accept, await http(accept, '/api/v1/organisation/%31/contact/%31', '{"name":"Ada"}'), { name: 'Ada' })
})

t.test('the inbound query string is never forwarded', async (t) => {
  assertForwarded(t, accept, await http(accept, `${CONTACT}?name=Eve&debug=1`, '{"name":"Ada"}'), { name: 'Ada' })
})

t.test('a body that is not JSON by content type is 415 UNSUPPORTED_MEDIA_TYPE', async (t) => {
  const cases: Array<[string | undefined, string]> = [
    [undefined, '{"name":"Ada"}'],
    ['text/plain', '{"name":"Ada"}'],
    ['application/x-www-form-urlencoded', 'name=Ada'],
    ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nAda\r\n--x--\r\n'],
    ['application/jsonx', '{"name":"Ada"}'],
    ['application/json-patch+json', '[{"op":"replace","path":"/name","value":"Ada"}]'],
    ['text/json', '{"name":"Ada"}']
  ]
  for (const [contentType, payload] of cases) {
    t.test(contentType ?? 'no content type', async (t) => {
      const answer = await http(reject, CONTACT, payload, { 'content-type': contentType })
      assertProblem(t, reject, answer, 415, 'UNSUPPORTED_MEDIA_TYPE')
    })
  }
  t.test('no content type and no body', async (t) => {
    assertProblem(t, reject, await http(reject, CONTACT, '', { 'content-type': undefined }), 415, 'UNSUPPORTED_MEDIA_TYPE')
  })
})

t.test('application/json with parameters and application/merge-patch+json are accepted', async (t) => {
  for (const contentType of ['application/json; charset=utf-8', 'application/merge-patch+json', 'application/merge-patch+json; charset=utf-8', 'Application/JSON']) {
    assertForwarded(t, accept, await http(accept, CONTACT, '{"city":"Berlin"}', { 'content-type': contentType }), { city: 'Berlin' })
  }
})

t.test('a body over 16 KiB is 413 PAYLOAD_TOO_LARGE; exactly 16 KiB is accepted', async (t) => {
  const padded = (size: number) => {
    const json = '{"name":"Ada"}'
    return json + ' '.repeat(size - json.length)
  }
  t.equal(Buffer.byteLength(padded(BODY_LIMIT)), BODY_LIMIT)
  assertProblem(t, reject, await http(reject, CONTACT, padded(BODY_LIMIT + 1)), 413, 'PAYLOAD_TOO_LARGE')
  assertProblem(t, reject, await http(reject, CONTACT, padded(1024 * 1024)), 413, 'PAYLOAD_TOO_LARGE')
  assertForwarded(t, accept, await http(accept, CONTACT, padded(BODY_LIMIT)), { name: 'Ada' })
})

t.test('a chunked body (no Content-Length) over 16 KiB is 413 too', async (t) => {
  const chunks = ['{"name":"', ...Array.from({ length: 20 }, () => 'x'.repeat(1024)), '"}']
  const answer = await http(reject, CONTACT, Readable.from(chunks))
  assertProblem(t, reject, answer, 413, 'PAYLOAD_TOO_LARGE')
})

t.test('a body that is not parseable JSON is 400 MALFORMED_JSON', async (t) => {
  for (const payload of ['not json', '{"name":', '{"name":"Ada"', "{'name':'Ada'}", '{"name":"Ada",}', '{"name":"Ada"}garbage', '{name:"Ada"}']) {
    assertProblem(t, reject, await send(reject, payload), 400, 'MALFORMED_JSON')
  }
})

t.test('an empty body with a JSON content type is 400 MALFORMED_JSON', async (t) => {
  assertProblem(t, reject, await http(reject, CONTACT, ''), 400, 'MALFORMED_JSON')
  assertProblem(t, reject, await http(reject, CONTACT, '', { 'content-type': 'application/merge-patch+json' }), 400, 'MALFORMED_JSON')
})

t.test('a JSON body that is not an object is 400 VALIDATION_FAILED', async (t) => {
  for (const payload of ['[]', '[{"name":"Ada"}]', '"Ada"', '42', 'true', 'null']) {
    assertInvalid(t, reject, await send(reject, payload), '')
  }
})

t.test('an empty object is 400: at least one property is required', async (t) => {
  assertInvalid(t, reject, await sendJson(reject, {}), '')
})

t.test('an unknown property is 400 with a pointer naming it, never stripped', async (t) => {
  assertInvalid(t, reject, await sendJson(reject, { nickname: 'Ada' }), '/nickname')
  assertInvalid(t, reject, await sendJson(reject, { name: 'Ada', nickname: 'Countess' }), '/nickname')
  assertInvalid(t, reject, await sendJson(reject, { name: 'Ada', id: 2 }), '/id')
  assertInvalid(t, reject, await sendJson(reject, { name: 'Ada', organisation: { id: 2 } }), '/organisation')
  // Pointers are RFC 6901: "/" and "~" inside a key are escaped.
  assertInvalid(t, reject, await sendJson(reject, { name: 'Ada', 'a/b~c': 1 }), '/a~1b~0c')
})

t.test('an unknown key inside country or type is 400', async (t) => {
  assertInvalid(t, reject, await sendJson(reject, { country: { id: 74, name: 'Germany' } }), '/country/name')
  assertInvalid(t, reject, await sendJson(reject, { type: { id: 1, description: 'Commercial' } }), '/type/description')
})

t.test('values of the wrong type are 400: nothing is coerced', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{ type: { id: '1' } }, '/type/id'],
    [{ type: { id: 0 } }, '/type/id'],
    [{ type: { id: -1 } }, '/type/id'],
    [{ type: { id: 1.5 } }, '/type/id'],
    [{ type: 1 }, '/type'],
    [{ type: {} }, '/type/id'],
    [{ country: { id: 1.5 } }, '/country/id'],
    [{ country: { id: '74' } }, '/country/id'],
    [{ country: { id: 2 ** 53 } }, '/country/id'],
    [{ country: [74] }, '/country'],
    [{ name: 5 }, '/name'],
    [{ name: true }, '/name'],
    [{ name: ['Ada'] }, '/name'],
    [{ name: { first: 'Ada' } }, '/name'],
    [{ email: 42 }, '/email'],
    [{ purchase_order_number: 12345 }, '/purchase_order_number']
  ]
  // `null` clears a string field (RFC 7396), but the references cannot be cleared.
  for (const field of ['country', 'type']) cases.push([{ [field]: null }, `/${field}`])
  for (const [body, pointer] of cases) {
    t.test(JSON.stringify(body), async (t) => {
      assertInvalid(t, reject, await sendJson(reject, body), pointer)
    })
  }
})

t.test('null clears a string field: forwarded as null under both media types', async (t) => {
  for (const field of ['name', 'email', 'purchase_order_number', 'secondary_address']) {
    const body = { [field]: null }
    assertForwarded(t, accept, await sendJson(accept, body), body)
  }
})

t.test('text fields accept 255 characters and refuse 256', async (t) => {
  const body = Object.fromEntries(TEXT_FIELDS.map((field) => [field, 'x'.repeat(255)]))
  assertForwarded(t, accept, await sendJson(accept, body), body)
  for (const field of TEXT_FIELDS) {
    assertInvalid(t, reject, await sendJson(reject, { [field]: 'x'.repeat(256) }), `/${field}`)
  }
})

t.test('email accepts 254 characters and refuses 255', async (t) => {
  const email = (length: number) => `${'a'.repeat(64)}@${'b'.repeat(length - 64 - 1 - 4)}.com`
  t.equal(email(254).length, 254)
  assertForwarded(t, accept, await sendJson(accept, { email: email(254) }), { email: email(254) })
  assertInvalid(t, reject, await sendJson(reject, { email: email(255) }), '/email')
})

t.test('purchase_order_number accepts 50 characters and refuses 51', async (t) => {
  assertForwarded(t, accept, await sendJson(accept, { purchase_order_number: 'P'.repeat(50) }), { purchase_order_number: 'P'.repeat(50) })
  assertInvalid(t, reject, await sendJson(reject, { purchase_order_number: 'P'.repeat(51) }), '/purchase_order_number')
})

t.test('email must be an email address', async (t) => {
  for (const email of ['not-an-email', 'ada@', '@example.com', 'ada lovelace@example.com', 'ada@@example.com', 'ada@example .com', '']) {
    assertInvalid(t, reject, await sendJson(reject, { email }), '/email')
  }
  for (const email of ['ada@example.com', 'ada.lovelace+bff@sub.example.co.uk']) {
    assertForwarded(t, accept, await sendJson(accept, { email }), { email })
  }
})

t.test('__proto__ and constructor.prototype keys are refused with 400', async (t) => {
  for (const payload of [
    '{"__proto__":{"name":"Ada"}}',
    '{"name":"Ada","__proto__":{"isAdmin":true}}',
    '{"country":{"id":74,"__proto__":{"id":1}}}',
    '{"name":"Ada","constructor":{"prototype":{"isAdmin":true}}}'
  ]) {
    const answer = await send(reject, payload)
    t.equal(answer.status, 400, payload)
    t.ok(['MALFORMED_JSON', 'VALIDATION_FAILED'].includes(answer.json()?.code), 'as a client error')
    assertNothingUpstream(t, reject)
  }
})

t.test('every field is accepted on its own when valid and forwarded unchanged', async (t) => {
  const valid: Record<string, unknown> = {
    type: { id: 6 },
    name: 'Ada Lovelace',
    title: 'Countess',
    department: 'Analytical Engines',
    street: 'St James\'s Square 12',
    zipcode: 'SW1Y 4JH',
    city: 'London',
    country: { id: 205 },
    email: 'ada@example.com',
    phone: '+44 20 7946 0000',
    mobile: '+44 7700 900000',
    state: 'Greater London',
    secondary_address: 'Floor 2',
    purchase_order_number: 'PO-1843'
  }
  for (const [field, value] of Object.entries(valid)) {
    t.test(field, async (t) => {
      assertForwarded(t, accept, await sendJson(accept, { [field]: value }), { [field]: value })
    })
  }
  t.test('all together', async (t) => {
    assertForwarded(t, accept, await sendJson(accept, valid), valid)
    const contact = accept.sim.state.getContact(1, 1)
    t.equal(contact?.name, 'Ada Lovelace')
    t.same(contact?.country, { id: 205, name: 'United Kingdom' })
    t.equal(contact?.purchase_order_number, 'PO-1843')
  })
})
