import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { request } from 'undici'
import {
  decodeTokenClaims,
  FaultError,
  startSimulator
} from '../../simulator/simulator.ts'
import type { Fault, RecordedCall } from '../../simulator/simulator.ts'
import { internalError } from '../../simulator/responses.ts'
import { APP_TOKEN, CONTACT_1, CONTACT_KEYS, setup } from './harness.ts'

function decodeSegment (token: string, index: number): unknown {
  return JSON.parse(Buffer.from(token.split('.')[index] ?? '', 'base64url').toString('utf8'))
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function waitFor (condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(5)
  }
}

t.test('authenticate', async (t) => {
  t.test('a valid application token yields an HS384 JWT with iat and exp 240 minutes apart', async (t) => {
    const now = Date.UTC(2025, 0, 1, 12, 0, 0, 500)
    const { call } = await setup(t, { clock: () => now })
    const reply = await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })
    t.equal(reply.status, 200)
    t.match(reply.headers['content-type'], /^application\/json/)
    const body = reply.json() as Record<string, unknown>
    t.same(Object.keys(body), ['auth_token'], 'no expires_in or refresh_token, like emnify')
    const token = body.auth_token as string
    t.match(token, /^[\w-]+\.[\w-]+\.[\w-]{64}$/, 'three base64url parts, 48-byte signature')
    t.same(decodeSegment(token, 0), { alg: 'HS384', typ: 'JWT' })
    const claims = decodeTokenClaims(token)
    t.equal(claims.iat, Math.floor(now / 1000))
    t.equal(claims.exp, Math.floor(now / 1000) + 14_400)
    t.type(claims.sub, 'string')
    t.type(claims.jti, 'string')
    t.equal(claims['esc.org'], 1)
  })

  t.test('decodeTokenClaims refuses what is not a JWT with an object payload', async (t) => {
    t.throws(() => decodeTokenClaims('no-dots'), /not a JWT/)
    t.throws(() => decodeTokenClaims(`a.${Buffer.from('null').toString('base64url')}.c`), /not an object/)
    t.same(decodeTokenClaims(`a.${Buffer.from('{"x":1}').toString('base64url')}.c`), { x: 1 })
  })

  t.test('every auth token has its own jti', async (t) => {
    const { authenticate } = await setup(t)
    const first = decodeTokenClaims(await authenticate())
    const second = decodeTokenClaims(await authenticate())
    t.not(first.jti, second.jti)
  })

  t.test('tokenLifetimeS sets the exp written into tokens', async (t) => {
    const { authenticate } = await setup(t, { tokenLifetimeS: 7 * 24 * 3600 })
    const claims = decodeTokenClaims(await authenticate())
    t.equal(Number(claims.exp) - Number(claims.iat), 7 * 24 * 3600)
  })

  t.test('tokenWithoutExp issues tokens without exp that never expire', async (t) => {
    let now = Date.now()
    const { call, authenticate } = await setup(t, { tokenWithoutExp: true, clock: () => now })
    const token = await authenticate()
    t.notOk('exp' in decodeTokenClaims(token))
    now += 365 * 24 * 3600 * 1000
    t.equal((await call('GET', CONTACT_1, { token })).status, 200)
  })

  t.test('any configured application token is accepted', async (t) => {
    const { call } = await setup(t, { applicationTokens: ['first', 'second'] })
    const reply = await call('POST', '/api/v1/authenticate', { body: { application_token: 'second' } })
    t.equal(reply.status, 200)
    const claims = decodeTokenClaims((reply.json() as { auth_token: string }).auth_token)
    t.equal(claims['esc.app'], 2)
  })

  t.test('an unknown application token gets 401 with an empty body', async (t) => {
    const { call } = await setup(t)
    const reply = await call('POST', '/api/v1/authenticate', { body: { application_token: 'nope' } })
    t.equal(reply.status, 401)
    t.equal(reply.text, '')
    t.equal(reply.headers['content-type'], undefined)
  })

  t.test('username/password and refresh_token logins fail like bad credentials', async (t) => {
    const { call } = await setup(t)
    for (const body of [{ username: 'a', password: 'b' }, { refresh_token: 'r' }]) {
      const reply = await call('POST', '/api/v1/authenticate', { body })
      t.equal(reply.status, 401)
      t.equal(reply.text, '')
    }
  })

  t.test('a malformed body gets 400 BadRequest', async (t) => {
    const { call } = await setup(t)
    for (const body of ['{"application_token":', '', '[]', '"x"', { application_token: 42 }, { other: 1 }]) {
      const reply = await call('POST', '/api/v1/authenticate', { body })
      t.equal(reply.status, 400, JSON.stringify(body))
      t.match(reply.json(), { error_code: 1000, error_token: 'BadRequest', message: String })
    }
  })

  t.test('authenticate only accepts POST', async (t) => {
    const { call } = await setup(t)
    const reply = await call('GET', '/api/v1/authenticate')
    t.equal(reply.status, 405)
    t.equal(reply.headers.allow, 'POST')
  })
})

t.test('auth token on API calls', async (t) => {
  t.test('a missing or malformed bearer token gets the gateway 401 shape', async (t) => {
    const { call } = await setup(t)
    const variants: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer not-a-jwt' },
      { authorization: 'Bearer a.b' },
      { authorization: 'Basic dXNlcjpwYXNz' },
      { authorization: 'Bearer a.b.c d' }
    ]
    for (const headers of variants) {
      const reply = await call('GET', CONTACT_1, { headers })
      t.equal(reply.status, 401, JSON.stringify(headers))
      t.same(reply.json(), { message: 'Unauthorized' })
    }
  })

  t.test('a well-formed but unknown or tampered token gets 401 InvalidToken', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const tampered = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`
    for (const bad of [tampered, 'eyJhbGciOiJIUzM4NCJ9.eyJzdWIiOiJ4In0.c2ln']) {
      const reply = await call('GET', CONTACT_1, { token: bad })
      t.equal(reply.status, 401)
      t.same(reply.json(), { error_code: 1102, error_token: 'InvalidToken', message: 'Invalid token' })
    }
  })

  t.test('the bearer scheme is case-insensitive', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const reply = await call('GET', CONTACT_1, { headers: { authorization: `bearer ${token}` } })
    t.equal(reply.status, 200)
  })

  t.test('a token expires at exp according to the simulator clock', async (t) => {
    let now = Date.UTC(2025, 5, 1)
    const { call, authenticate } = await setup(t, { clock: () => now, tokenLifetimeS: 60 })
    const token = await authenticate()
    now += 59_999
    t.equal((await call('GET', CONTACT_1, { token })).status, 200, 'valid until exp')
    now += 1
    const reply = await call('GET', CONTACT_1, { token })
    t.equal(reply.status, 401)
    t.same(reply.json(), { error_code: 1103, error_token: 'TokenExpired', message: 'Token expired' })
  })

  t.test('issueToken can mint an already expired token', async (t) => {
    const { sim, call } = await setup(t)
    const token = sim.state.issueToken({ issuedAtMs: Date.now() - 120_000, lifetimeS: 60 })
    t.equal((await call('GET', CONTACT_1, { token })).status, 401)
  })

  t.test('beyond maxTokens the oldest tokens are forgotten and become invalid', async (t) => {
    const { call, authenticate } = await setup(t, { maxTokens: 2 })
    const tokens = [await authenticate(), await authenticate(), await authenticate()]
    const statuses = []
    for (const token of tokens) statuses.push((await call('GET', CONTACT_1, { token })).status)
    t.same(statuses, [401, 200, 200])
  })

  t.test('revoking makes every issued token invalid while new ones work', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const old = await authenticate()
    sim.revokeAllTokens()
    const reply = await call('GET', CONTACT_1, { token: old })
    t.equal(reply.status, 401)
    t.match(reply.json(), { error_code: 1102 })
    t.equal((await call('GET', CONTACT_1, { token: await authenticate() })).status, 200)
  })
})

t.test('contacts', async (t) => {
  t.test('the seeded organisations list their contacts as bare arrays', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const first = await call('GET', '/api/v1/organisation/1/contact', { token })
    t.equal(first.status, 200)
    const contacts = first.json() as Array<{ id: number, type: { id: number } }>
    t.same(contacts.map((c) => [c.id, c.type.id]), [[1, 1], [2, 2], [3, 6]])
    const second = await call('GET', '/api/v1/organisation/2/contact', { token })
    t.same((second.json() as Array<{ id: number }>).map((c) => c.id), [10])
    const missing = await call('GET', '/api/v1/organisation/99/contact', { token })
    t.equal(missing.status, 404)
    t.match(missing.json(), { error_code: 1201, error_token: 'NotFound' })
  })

  t.test('a contact has the full emnify GET shape with resolved type and country', async (t) => {
    const { call, authenticate } = await setup(t)
    const reply = await call('GET', '/api/v1/organisation/1/contact/3', { token: await authenticate() })
    t.equal(reply.status, 200)
    t.match(reply.headers['content-type'], /^application\/json/)
    const contact = reply.json() as Record<string, unknown>
    t.same(Object.keys(contact), CONTACT_KEYS)
    t.match(contact, {
      id: 3,
      organisation: { id: 1, name: 'Demo Org' },
      type: { id: 6, description: 'Invoice address' },
      country: { id: 74, name: 'Germany' },
      purchase_order_number: 'PO-2024-0001'
    })
  })

  t.test('unknown contacts and organisations get 404 NotFound', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    for (const path of [
      '/api/v1/organisation/1/contact/999',
      '/api/v1/organisation/1/contact/10',
      '/api/v1/organisation/42/contact/1',
      '/api/v1/organisation/-1/contact/1'
    ]) {
      const reply = await call('GET', path, { token })
      t.equal(reply.status, 404, path)
      t.same(reply.json(), { error_code: 1201, error_token: 'NotFound', message: 'Contact not found' })
    }
  })

  t.test('ids that do not parse as a Long get 400', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const cases: Array<[string, string]> = [
      ['/api/v1/organisation/1/contact/abc', 'Cannot parse parameter id as Long'],
      ['/api/v1/organisation/1/contact/9223372036854775808', 'Cannot parse parameter id as Long'],
      ['/api/v1/organisation/my/contact/1', 'Cannot parse parameter org_id as Long'],
      ['/api/v1/organisation/1.5/contact', 'Cannot parse parameter org_id as Long']
    ]
    for (const [path, message] of cases) {
      const reply = await call('GET', path, { token })
      t.equal(reply.status, 400, path)
      t.same(reply.json(), { error_code: 1000, error_token: 'BadRequest', message })
    }
    const longest = await call('GET', '/api/v1/organisation/1/contact/9223372036854775807', { token })
    t.equal(longest.status, 404, 'the largest Long parses')
  })

  t.test('PATCH answers 204 and changes what GET returns', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    const reply = await call('PATCH', CONTACT_1, {
      token,
      body: { name: 'Ada King', email: 'ada.king@demo-org.example', country: { id: 205 }, mobile: null, unknown: 'ignored' }
    })
    t.equal(reply.status, 204)
    t.equal(reply.text, '')
    t.equal(reply.headers['content-type'], undefined)
    const contact = (await call('GET', CONTACT_1, { token })).json()
    t.match(contact, {
      name: 'Ada King',
      email: 'ada.king@demo-org.example',
      country: { id: 205, name: 'United Kingdom' },
      mobile: null,
      title: 'Head of Partnerships'
    })
    t.notOk('unknown' in (contact as object))
    t.same(sim.state.getContact(1, 1), contact)
  })

  t.test('PATCH may change the contact type', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const reply = await call('PATCH', CONTACT_1, { token: await authenticate(), body: { type: { id: 3 } } })
    t.equal(reply.status, 204)
    t.same(sim.state.getContact(1, 1)?.type, { id: 3, description: 'Finance' })
  })

  t.test('PATCH with invalid fields gets 422 listing every problem and changes nothing', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    const before = sim.state.getContact(1, 3)
    const reply = await call('PATCH', '/api/v1/organisation/1/contact/3', {
      token,
      body: {
        email: 'not-an-email',
        country: { id: 9999 },
        type: { id: 7 },
        purchase_order_number: 'x'.repeat(51),
        name: 42
      }
    })
    t.equal(reply.status, 422)
    const body = reply.json() as { errors: Array<{ message: string }> }
    t.match(body, { error_code: 1400, error_token: 'InputValidationFailed', message: 'Validation failed' })
    t.equal(body.errors.length, 5)
    for (const error of body.errors) t.match(error, { error_code: 1400, error_token: 'InputValidationFailed' })
    t.match(body.errors.map((e) => e.message).join('\n'), /email[\s\S]*purchase_order_number[\s\S]*type[\s\S]*country/)
    t.same(sim.state.getContact(1, 3), before)
  })

  t.test('PATCH rejects references that are not {id: number}', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    for (const body of [{ type: null }, { country: 'DE' }, { country: { id: '74' } }]) {
      const reply = await call('PATCH', CONTACT_1, { token, body })
      t.equal(reply.status, 422, JSON.stringify(body))
    }
  })

  t.test('a purchase order number of exactly 50 characters is accepted', async (t) => {
    const { call, authenticate } = await setup(t)
    const reply = await call('PATCH', '/api/v1/organisation/1/contact/3', {
      token: await authenticate(),
      body: { purchase_order_number: 'x'.repeat(50) }
    })
    t.equal(reply.status, 204)
  })

  t.test('PATCH on an unknown contact gets 404 and a non-JSON body gets 400', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const missing = await call('PATCH', '/api/v1/organisation/1/contact/999', { token, body: { name: 'x' } })
    t.equal(missing.status, 404)
    t.match(missing.json(), { error_code: 1201 })
    for (const body of ['{"name":', '[]', 'null', '']) {
      const reply = await call('PATCH', CONTACT_1, { token, body, headers: { 'content-type': 'application/json' } })
      t.equal(reply.status, 400, body)
      t.match(reply.json(), { error_code: 1000, error_token: 'BadRequest' })
    }
  })

  t.test('POST creates a contact (201 + Location) and requires a type', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    const created = await call('POST', '/api/v1/organisation/2/contact', {
      token,
      body: { type: { id: 4 }, name: 'Warehouse', country: { id: 222 } }
    })
    t.equal(created.status, 201)
    const location = created.headers.location as string
    t.equal(location, `${sim.url}/api/v1/organisation/2/contact/11`, 'an absolute URL, the next id after the seed')
    const contact = (await call('GET', new URL(location).pathname, { token })).json()
    t.match(contact, { type: { id: 4, description: 'Shipping address' }, name: 'Warehouse', email: null })

    const untyped = await call('POST', '/api/v1/organisation/2/contact', { token, body: { name: 'x', email: 'bad' } })
    t.equal(untyped.status, 422)
    t.equal((untyped.json() as { errors: unknown[] }).errors.length, 2)
    t.equal((await call('POST', '/api/v1/organisation/77/contact', { token, body: { type: { id: 1 } } })).status, 404)
    t.equal((await call('POST', '/api/v1/organisation/2/contact', { token, body: 'nope' })).status, 400)
  })

  t.test('DELETE removes a contact', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    t.equal((await call('DELETE', '/api/v1/organisation/1/contact/2', { token })).status, 204)
    t.equal((await call('GET', '/api/v1/organisation/1/contact/2', { token })).status, 404)
    t.equal((await call('DELETE', '/api/v1/organisation/1/contact/2', { token })).status, 404)
  })

  t.test('unsupported methods and unknown routes are refused', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const put = await call('PUT', CONTACT_1, { token, body: {} })
    t.equal(put.status, 405)
    t.equal(put.headers.allow, 'GET, PATCH, DELETE')
    const del = await call('DELETE', '/api/v1/organisation/1/contact', { token })
    t.equal(del.status, 405)
    t.equal(del.headers.allow, 'GET, POST')
    for (const path of ['/api/v1/organisation/1', '/api/v1/organisation/1/contact/1/x', '/api/v1/organisation/1/contact/', '/api/v2/organisation/1/contact']) {
      const reply = await call('GET', path, { token })
      t.equal(reply.status, 404, path)
      t.match(reply.json(), { error_code: 1201 })
    }
    t.equal((await call('GET', '/api/v1/organisation/1/contact/1/x')).status, 401, 'auth comes before routing')
    const outside = await call('GET', '/favicon.ico')
    t.equal(outside.status, 404)
    t.same(outside.json(), { message: 'Not Found' })
  })

  t.test('seed: false starts without organisations', async (t) => {
    const { sim, call, authenticate } = await setup(t, { seed: false })
    const token = await authenticate()
    t.equal((await call('GET', CONTACT_1, { token })).status, 404)
    sim.state.addOrganisation(5, 'Empty Org')
    const list = await call('GET', '/api/v1/organisation/5/contact', { token })
    t.same(list.json(), [])
    const created = await call('POST', '/api/v1/organisation/5/contact', { token, body: { type: { id: 1 } } })
    t.equal(created.headers.location, `${sim.url}/api/v1/organisation/5/contact/1`, 'ids start at 1 without seed')
    t.match((await call('GET', '/api/v1/organisation/5/contact/1', { token })).json(), { country: null, name: null })
  })

  t.test('state helpers report missing organisations and contacts', async (t) => {
    const { sim } = await setup(t)
    const { state } = sim
    t.equal(state.getContact(9, 1), undefined)
    t.equal(state.listContacts(9), undefined)
    t.equal(state.updateContact(9, 1, { name: 'x' }), false)
    t.equal(state.updateContact(1, 99, { name: 'x' }), false)
    t.equal(state.createContact(9, { type: { id: 1, description: 'Commercial' } }), undefined)
    t.equal(state.deleteContact(9, 1), false)
    t.equal(state.hasContact(9, 1), false)
    t.ok(state.updateContact(1, 1, { name: 'Direct' }))
    t.equal(state.getContact(1, 1)?.name, 'Direct')
    state.restoreData()
    t.equal(state.getContact(1, 1)?.name, 'Ada Lovelace')
  })
})

t.test('call log', async (t) => {
  t.test('records method, path, query, lower-cased headers, raw body and time of every request', async (t) => {
    const now = 1_700_000_000_000
    const { sim, call, authenticate } = await setup(t, { clock: () => now })
    const token = await authenticate()
    const raw = '{"name":"Logged"}'
    await call('PATCH', `${CONTACT_1}?foo=bar&x=1`, {
      token,
      body: raw,
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'abc-123' }
    })
    const calls = sim.state.calls
    t.equal(calls.length, 2)
    const patch = calls[1] as RecordedCall
    t.match(patch, {
      method: 'PATCH',
      path: CONTACT_1,
      query: 'foo=bar&x=1',
      body: raw,
      at: now,
      operation: 'patch_contact'
    })
    t.equal(patch.headers.authorization, `Bearer ${token}`)
    t.equal(patch.headers['content-type'], 'application/json')
    t.equal(patch.headers['x-request-id'], 'abc-123')
    t.equal(sim.state.callsFor('authenticate').length, 1)
    t.equal(JSON.parse(sim.state.callsFor('authenticate')[0]?.body ?? '').application_token, APP_TOKEN)
  })

  t.test('counts requests per operation', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    await call('GET', CONTACT_1, { token })
    await call('GET', CONTACT_1, { token })
    await call('PATCH', CONTACT_1, { token, body: {} })
    await call('GET', '/api/v1/organisation/1/contact', { token })
    await call('POST', '/api/v1/organisation/1/contact', { token, body: { type: { id: 1 } } })
    await call('DELETE', '/api/v1/organisation/1/contact/2', { token })
    await call('GET', '/api/v1/country', { token })
    await call('GET', '/elsewhere')
    t.same(sim.state.counters, {
      total: 9,
      authenticate: 1,
      get_contact: 2,
      patch_contact: 1,
      list_contacts: 1,
      create_contact: 1,
      delete_contact: 1,
      list_countries: 1,
      other: 1,
      unauthorized: 0,
      rate_limited: 0
    })
  })

  t.test('counts API calls refused with 401, so a client re-authenticating on 401 shows up', async (t) => {
    const { sim, call } = await setup(t)
    t.equal((await call('PATCH', CONTACT_1, { token: 'not-a-token', body: {} })).status, 401)
    t.equal((await call('GET', CONTACT_1)).status, 401)
    t.equal(sim.state.counters.unauthorized, 2)
    sim.reset()
    t.equal(sim.state.counters.unauthorized, 0)
  })

  t.test('repeated headers are joined', async (t) => {
    const { sim } = await setup(t)
    const socket = connect(sim.port, '127.0.0.1')
    socket.end('GET /x HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\nConnection: close\r\n\r\n')
    socket.resume()
    await once(socket, 'close')
    t.equal(sim.state.calls[0]?.headers.accept, 'a, b')
  })

  t.test('the log keeps only the newest maxCalls entries', async (t) => {
    const { sim, call } = await setup(t, { maxCalls: 2 })
    for (const path of ['/a', '/b', '/c']) await call('GET', path)
    t.same(sim.state.calls.map((c) => c.path), ['/b', '/c'])
    t.equal(sim.state.counters.total, 3)
  })

  t.test('reset clears calls, counters and faults but keeps data and tokens', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    await call('PATCH', CONTACT_1, { token, body: { name: 'Kept' } })
    sim.addFault({ operation: 'any', kind: 'status', status: 500 })
    sim.reset()
    t.same(sim.state.calls, [])
    t.equal(sim.state.counters.total, 0)
    t.same(sim.state.faults, [])
    const reply = await call('GET', CONTACT_1, { token })
    t.equal(reply.status, 200)
    t.match(reply.json(), { name: 'Kept' })
  })

  t.test('bodies over 1 MiB get 413 and are logged truncated', async (t) => {
    const { sim, call } = await setup(t)
    const reply = await call('POST', '/api/v1/authenticate', { body: 'x'.repeat(1024 * 1024 + 10) })
    t.equal(reply.status, 413)
    t.equal(sim.state.calls[0]?.body.length, 1024 * 1024)
  })
})

t.test('lean mode', async (t) => {
  t.test('PATCH answers 204 for any ids, GET still serves seed data, only counters are kept', async (t) => {
    const { sim, call, authenticate } = await setup(t, { lean: true })
    const token = await authenticate()
    const reply = await call('PATCH', '/api/v1/organisation/123/contact/456', { token, body: '{"not json' })
    t.equal(reply.status, 204)
    t.equal((await call('PATCH', CONTACT_1, { body: {} })).status, 401, 'auth is still checked')
    const contact = await call('GET', CONTACT_1, { token })
    t.match(contact.json(), { id: 1, name: 'Ada Lovelace' })
    t.same(sim.state.calls, [])
    t.equal(sim.state.counters.patch_contact, 2)
    t.equal(sim.state.counters.total, 4)
  })
})

t.test('faults', async (t) => {
  t.test('a status fault answers with an emnify-shaped default body per status', async (t) => {
    const { sim, call } = await setup(t)
    const expected: Array<[number, unknown]> = [
      [400, { error_code: 1000, error_token: 'BadRequest' }],
      [401, { error_code: 1102, error_token: 'InvalidToken' }],
      [403, { error_code: 1104, error_token: 'Forbidden' }],
      [404, { error_code: 1201, error_token: 'NotFound' }],
      [409, { error_code: 1405, error_token: 'Duplicated' }],
      [422, { error_code: 1400, error_token: 'InputValidationFailed', errors: [{ error_code: 1400 }] }],
      [429, { error_code: 1105, error_token: 'TooManyRequests' }],
      [500, { message: 'Internal server error' }],
      [502, { message: 'Bad Gateway' }],
      [503, { message: 'Service Unavailable' }],
      [504, { message: 'Endpoint request timed out' }],
      [418, { message: "I'm a Teapot" }],
      [599, { message: 'Error' }],
      [200, {}]
    ]
    for (const [status, body] of expected) {
      sim.setFault({ operation: 'any', kind: 'status', status })
      const reply = await call('GET', CONTACT_1)
      t.equal(reply.status, status)
      t.match(reply.headers['content-type'], /^application\/json/)
      t.match(reply.json(), body, String(status))
    }
    for (const status of [204, 302]) {
      sim.setFault({ operation: 'any', kind: 'status', status })
      const reply = await call('GET', CONTACT_1)
      t.equal(reply.status, status)
      t.equal(reply.text, '')
    }
  })

  t.test('a status fault can carry a custom, raw or empty body and extra headers', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'any', kind: 'status', status: 503, body: { message: 'down' }, headers: { 'retry-after': '7' } })
    let reply = await call('GET', CONTACT_1)
    t.same(reply.json(), { message: 'down' })
    t.equal(reply.headers['retry-after'], '7')
    sim.setFault({ operation: 'any', kind: 'status', status: 500, body: '<html>oops</html>', headers: { 'content-type': 'text/html' } })
    reply = await call('GET', CONTACT_1)
    t.equal(reply.text, '<html>oops</html>')
    t.equal(reply.headers['content-type'], 'text/html')
    sim.setFault({ operation: 'any', kind: 'status', status: 429, body: '' })
    reply = await call('GET', CONTACT_1)
    t.equal(reply.status, 429)
    t.equal(reply.text, '')
  })

  t.test('faults only hit their operation', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    sim.setFault({ operation: 'patch_contact', kind: 'status', status: 500 })
    const token = await authenticate()
    t.equal((await call('GET', CONTACT_1, { token })).status, 200)
    t.equal((await call('PATCH', CONTACT_1, { token, body: { name: 'x' } })).status, 500)
    t.equal(sim.state.getContact(1, 1)?.name, 'Ada Lovelace', 'a faulted PATCH changes nothing')
  })

  t.test('times limits a fault to that many requests, then it disappears', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    sim.setFault({ operation: 'authenticate', times: 2, kind: 'status', status: 503 })
    t.same(sim.state.faults, [{ operation: 'authenticate', times: 2, kind: 'status', status: 503 }])
    t.equal((await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })).status, 503)
    t.equal(sim.state.faults[0]?.times, 1)
    t.equal((await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })).status, 503)
    t.same(sim.state.faults, [])
    t.type(await authenticate(), 'string')
  })

  t.test('the first matching fault wins', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault([
      { operation: 'get_contact', times: 1, kind: 'status', status: 404 },
      { operation: 'any', kind: 'status', status: 500 }
    ])
    t.equal((await call('GET', CONTACT_1)).status, 404)
    t.equal((await call('GET', CONTACT_1)).status, 500)
    sim.clearFaults()
    t.equal((await call('GET', CONTACT_1)).status, 401)
  })

  t.test('a request answered by a fault is still logged and counted', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'any', kind: 'gateway_unauthorized' })
    await call('PATCH', CONTACT_1, { body: { name: 'x' } })
    t.equal(sim.state.counters.patch_contact, 1)
    t.equal(sim.state.calls[0]?.body, '{"name":"x"}')
  })

  t.test('delay answers normally after the delay', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    sim.setFault({ operation: 'get_contact', kind: 'delay', ms: 150 })
    const started = performance.now()
    const reply = await call('GET', CONTACT_1, { token })
    t.ok(performance.now() - started >= 140, 'took at least the delay')
    t.equal(reply.status, 200)
  })

  t.test('a delayed request the client abandons is never processed', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    // The abort and the end of the delay far apart, so that a stalled machine cannot run both
    // timers in one turn, before the simulator has seen the connection close.
    sim.setFault({ operation: 'patch_contact', kind: 'delay', ms: 1500 })
    await t.rejects(call('PATCH', CONTACT_1, { token, body: { name: 'Late' }, signal: AbortSignal.timeout(150) }))
    await sleep(1600)
    t.equal(sim.state.getContact(1, 1)?.name, 'Ada Lovelace')
    t.equal(sim.state.counters.patch_contact, 1)
  })

  t.test('hang never sends headers until the client gives up', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'authenticate', kind: 'hang' })
    await t.rejects(
      call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN }, headersTimeout: 100 }),
      { code: 'UND_ERR_HEADERS_TIMEOUT' }
    )
    sim.clearFaults()
    t.equal((await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })).status, 200)
  })

  t.test('close does not wait for hung requests', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'any', kind: 'hang' })
    const pending = call('GET', CONTACT_1)
    await sleep(50)
    await sim.close()
    await t.rejects(pending)
  })

  t.test('reset_before_headers drops the connection without a response', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'patch_contact', kind: 'reset_before_headers' })
    await t.rejects(call('PATCH', CONTACT_1, { body: { name: 'x' } }), { code: 'UND_ERR_SOCKET' })
    t.equal(sim.state.counters.patch_contact, 1)
  })

  t.test('reset_after_headers sends 200 and part of the body, then drops the connection', async (t) => {
    const { sim, open } = await setup(t)
    sim.setFault({ operation: 'get_contact', kind: 'reset_after_headers' })
    const response = await open('GET', CONTACT_1)
    t.equal(response.statusCode, 200)
    t.ok(Number(response.headers['content-length']) > 0)
    await t.rejects(response.body.text())
  })

  t.test('trickle sends the body one chunk per interval', async (t) => {
    const { sim, call, open } = await setup(t)
    sim.setFault({ operation: 'get_contact', kind: 'trickle', intervalMs: 40, chunks: 4 })
    const started = performance.now()
    const reply = await call('GET', CONTACT_1)
    t.ok(performance.now() - started >= 150, 'took about chunks × interval')
    t.equal(reply.status, 200)
    t.type(reply.json(), 'object')

    sim.setFault({ operation: 'get_contact', kind: 'trickle', intervalMs: 1000, chunks: 3, status: 503, body: '{"message":"slowly down"}' })
    // The whole body takes 3 s, so getting headers before the abort shows they are sent at once.
    const slow = await open('GET', CONTACT_1, { signal: AbortSignal.timeout(1500) })
    t.equal(slow.statusCode, 503)
    await t.rejects(slow.body.text(), 'the body is still incomplete when the client gives up')

    sim.setFault({ operation: 'get_contact', kind: 'trickle', intervalMs: 5, chunks: 200 })
    const many = await call('GET', CONTACT_1)
    t.type(many.json(), 'object', 'a body is padded to give every chunk a byte')
  })

  t.test('huge_body sends exactly the requested number of bytes of valid JSON', async (t) => {
    const { sim, open, call } = await setup(t)
    const bytes = 3 * 1024 * 1024 + 7
    sim.setFault({ operation: 'get_contact', kind: 'huge_body', bytes })
    const reply = await call('GET', CONTACT_1)
    t.equal(reply.headers['content-length'], String(bytes))
    t.equal(Buffer.byteLength(reply.text), bytes)
    t.type(reply.json(), 'object')

    sim.setFault({ operation: 'get_contact', kind: 'huge_body', bytes: 5, status: 500, chunked: true })
    const chunked = await call('GET', CONTACT_1)
    t.equal(chunked.status, 500)
    t.equal(chunked.headers['content-length'], undefined)
    t.equal(chunked.headers['transfer-encoding'], 'chunked')
    t.equal(chunked.text, 'xxxxx')

    sim.setFault({ operation: 'get_contact', kind: 'huge_body', bytes: 64 * 1024 * 1024 })
    const abandoned = await open('GET', CONTACT_1)
    abandoned.body.destroy()
    await sleep(50)
    sim.clearFaults()
    t.equal((await call('GET', CONTACT_1)).status, 401, 'still serving after the client walked away')
  })

  t.test('garbage answers invalid JSON labelled as JSON', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'authenticate', kind: 'garbage' })
    let reply = await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })
    t.equal(reply.status, 200)
    t.match(reply.headers['content-type'], /^application\/json/)
    t.throws(() => reply.json())
    sim.setFault({ operation: 'authenticate', kind: 'garbage', status: 502 })
    reply = await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })
    t.equal(reply.status, 502)
    t.throws(() => reply.json())
  })

  t.test('redirect answers a redirect status with a Location', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'patch_contact', kind: 'redirect', location: 'http://elsewhere.invalid/' })
    let reply = await call('PATCH', CONTACT_1, { body: {} })
    t.equal(reply.status, 302)
    t.equal(reply.headers.location, 'http://elsewhere.invalid/')
    sim.setFault({ operation: 'patch_contact', kind: 'redirect', status: 307, location: '/x' })
    reply = await call('PATCH', CONTACT_1, { body: {} })
    t.equal(reply.status, 307)
  })

  t.test('unauthorized_empty and gateway_unauthorized mimic the two bodiless 401s', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    sim.setFault({ operation: 'any', kind: 'unauthorized_empty', times: 1 })
    let reply = await call('GET', CONTACT_1, { token })
    t.equal(reply.status, 401)
    t.equal(reply.text, '')
    sim.setFault({ operation: 'any', kind: 'gateway_unauthorized', times: 1 })
    reply = await call('GET', CONTACT_1, { token })
    t.equal(reply.status, 401)
    t.same(reply.json(), { message: 'Unauthorized' })
  })

  t.test('invalid faults are rejected', async (t) => {
    const { sim } = await setup(t)
    const invalid: unknown[] = [
      null,
      { operation: 'nope', kind: 'hang' },
      { operation: 'any', kind: 'explode' },
      { operation: 'any', kind: 'status' },
      { operation: 'any', kind: 'status', status: 99 },
      { operation: 'any', kind: 'status', status: 500, headers: { a: 1 } },
      { operation: 'any', kind: 'delay', ms: -1 },
      { operation: 'any', kind: 'hang', times: 0 },
      { operation: 'any', kind: 'trickle', intervalMs: 10, chunks: 0 },
      { operation: 'any', kind: 'trickle', intervalMs: 10, chunks: 1, body: {} },
      { operation: 'any', kind: 'huge_body', bytes: 1.5 },
      { operation: 'any', kind: 'huge_body', bytes: 1, chunked: 'yes' },
      { operation: 'any', kind: 'redirect' },
      { operation: 'any', kind: 'redirect', location: '/x', status: 200 }
    ]
    for (const fault of invalid) {
      t.throws(() => sim.addFault(fault as Fault), FaultError, JSON.stringify(fault))
    }
    t.same(sim.state.faults, [])
    const kept: Fault = { operation: 'any', kind: 'hang' }
    sim.setFault(kept)
    t.throws(() => sim.setFault([{ operation: 'any', kind: 'delay', ms: 1 }, invalid[1] as Fault]), FaultError)
    t.same(sim.state.faults, [kept], 'a rejected setFault leaves the faults as they were')
  })
})

t.test('HTTP control endpoints', async (t) => {
  t.test('POST /_sim/faults adds one fault or many, GET lists them, DELETE clears them', async (t) => {
    const { call } = await setup(t)
    let reply = await call('POST', '/_sim/faults', { body: { operation: 'get_contact', kind: 'status', status: 503, times: 1 } })
    t.equal(reply.status, 200)
    reply = await call('POST', '/_sim/faults', {
      body: [{ operation: 'authenticate', kind: 'unauthorized_empty' }, { operation: 'any', kind: 'delay', ms: 1 }]
    })
    t.same((reply.json() as { faults: Fault[] }).faults.map((f) => f.kind), ['status', 'unauthorized_empty', 'delay'])
    t.equal((await call('GET', CONTACT_1)).status, 503)
    t.equal((await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })).status, 401)
    reply = await call('GET', '/_sim/faults')
    t.equal((reply.json() as { faults: Fault[] }).faults.length, 2)
    t.equal((await call('DELETE', '/_sim/faults')).status, 204)
    t.same((await call('GET', '/_sim/faults')).json(), { faults: [] })
  })

  t.test('an invalid fault over HTTP gets 400 and adds nothing', async (t) => {
    const { sim, call } = await setup(t)
    let reply = await call('POST', '/_sim/faults', { body: [{ operation: 'any', kind: 'hang' }, { operation: 'any', kind: 'nope' }] })
    t.equal(reply.status, 400)
    t.match(reply.json(), { message: /unknown fault kind/ })
    reply = await call('POST', '/_sim/faults', { body: '{' })
    t.equal(reply.status, 400)
    t.same(sim.state.faults, [])
  })

  t.test('GET /_sim/calls returns the log and counters, optionally filtered by operation', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    await call('GET', CONTACT_1, { token })
    const all = (await call('GET', '/_sim/calls')).json() as { calls: RecordedCall[], counters: Record<string, number> }
    t.equal(all.calls.length, 2, 'control requests are not logged')
    t.match(all.counters, { authenticate: 1, get_contact: 1, total: 2 })
    const filtered = (await call('GET', '/_sim/calls?operation=get_contact')).json() as { calls: RecordedCall[] }
    t.same(filtered.calls.map((c) => c.operation), ['get_contact'])
  })

  t.test('POST /_sim/reset clears the log and faults; ?data=1 also restores the seed', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    await call('PATCH', CONTACT_1, { token, body: { name: 'Changed' } })
    sim.addFault({ operation: 'other', kind: 'hang' })
    t.equal((await call('POST', '/_sim/reset')).status, 204)
    t.same(sim.state.calls, [])
    t.same(sim.state.faults, [])
    t.equal(sim.state.getContact(1, 1)?.name, 'Changed')
    await call('POST', '/_sim/reset?data=1')
    t.equal(sim.state.getContact(1, 1)?.name, 'Ada Lovelace')
  })

  t.test('POST /_sim/revoke-tokens invalidates issued tokens', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    t.equal((await call('POST', '/_sim/revoke-tokens')).status, 204)
    t.match((await call('GET', CONTACT_1, { token })).json(), { error_code: 1102 })
  })

  t.test('unknown control routes get 404 and oversized control bodies 413', async (t) => {
    const { call } = await setup(t)
    t.equal((await call('GET', '/_sim/nothing')).status, 404)
    t.equal((await call('PUT', '/_sim/faults')).status, 404)
    t.equal((await call('POST', '/_sim/faults', { body: 'x'.repeat(1024 * 1024 + 1) })).status, 413)
  })
})

t.test('robustness', async (t) => {
  t.test('a bug in request handling answers 500 instead of crashing', async (t) => {
    const { sim, call } = await setup(t)
    sim.state.takeFault = () => { throw new Error('boom') }
    const reply = await call('GET', CONTACT_1)
    t.equal(reply.status, 500)
    t.same(reply.json(), { message: 'Internal server error' })
  })

  t.test('a bug after a delay fault answers 500 instead of crashing', async (t) => {
    const { sim, call } = await setup(t)
    sim.setFault({ operation: 'any', kind: 'delay', ms: 1 })
    sim.state.checkToken = () => { throw new Error('boom') }
    t.equal((await call('GET', CONTACT_1, { token: 'a.b.c' })).status, 500)
  })

  t.test('an internal error after the headers went out cuts the connection', async (t) => {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-length': '10' })
      res.write('{', () => internalError(res))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.teardown(() => { server.close() })
    const { port } = server.address() as { port: number }
    const response = await request(`http://127.0.0.1:${port}/`)
    t.equal(response.statusCode, 200)
    await t.rejects(response.body.text())
  })

  t.test('oversized headers are refused without crashing', async (t) => {
    const { call } = await setup(t)
    const reply = await call('GET', CONTACT_1, { headers: { 'x-big': 'x'.repeat(64 * 1024) } })
    t.equal(reply.status, 431)
    t.equal((await call('GET', CONTACT_1)).status, 401)
  })

  t.test('a client aborting mid-body is logged and the simulator keeps serving', async (t) => {
    const { sim, call } = await setup(t)
    const received = once(sim.server, 'request')
    const socket = connect(sim.port, '127.0.0.1')
    socket.write('PATCH /api/v1/organisation/1/contact/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{"name":')
    await received
    await sleep(20)
    socket.destroy()
    const controlReceived = once(sim.server, 'request')
    const control = connect(sim.port, '127.0.0.1')
    control.write('POST /_sim/faults HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{')
    await controlReceived
    control.destroy()
    await waitFor(() => sim.state.calls.length === 1)
    t.equal(sim.state.calls[0]?.body, '{"name":')
    t.same(sim.state.faults, [], 'a half-sent fault is not applied')
    t.equal((await call('GET', CONTACT_1)).status, 401)
  })

  t.test('listening on 0.0.0.0 reports a loopback url', async (t) => {
    const { sim } = await setup(t, { host: '0.0.0.0' })
    t.equal(sim.url, `http://127.0.0.1:${sim.port}`)
  })

  t.test('listening on an IPv6 address brackets it in the url', async (t) => {
    const sim = await startSimulator({ host: '::1' }).catch(() => undefined)
    if (sim === undefined) {
      t.pass('skipped: no IPv6 loopback here')
      return
    }
    t.teardown(() => sim.close())
    t.equal(sim.url, `http://[::1]:${sim.port}`)
  })

  t.test('startSimulator rejects when the port is taken, and close is idempotent', async (t) => {
    const { sim } = await setup(t)
    await t.rejects(startSimulator({ port: sim.port }), { code: 'EADDRINUSE' })
    await sim.close()
    await sim.close()
  })
})

t.test('CLI', async (t) => {
  const main = fileURLToPath(new URL('../../simulator/main.ts', import.meta.url))

  function run (env: Record<string, string>): ReturnType<typeof spawn> {
    return spawn(process.execPath, [main], { env: { ...process.env, SIM_PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  }

  t.test('prints its url, serves the configured token and stops on SIGTERM', async (t) => {
    const child = run({ SIM_HOST: '', SIM_APPLICATION_TOKEN: 'cli-token', SIM_TOKEN_LIFETIME_S: '600', SIM_LEAN: '1' })
    const [line] = await once(child.stdout!, 'data') as [Buffer]
    const banner = JSON.parse(line.toString()) as { url: string, lean: boolean }
    t.match(banner, { url: /^http:\/\/127\.0\.0\.1:\d+$/, lean: true })
    const reply = await request(`${banner.url}/api/v1/authenticate`, {
      method: 'POST',
      body: JSON.stringify({ application_token: 'cli-token' })
    })
    const { auth_token: token } = await reply.body.json() as { auth_token: string }
    const claims = decodeTokenClaims(token)
    t.equal(Number(claims.exp) - Number(claims.iat), 600)
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit')
    t.equal(code, 0)
  })

  t.test('stops on SIGINT and honours SIM_HOST and SIM_TOKEN_WITHOUT_EXP', async (t) => {
    const child = run({ SIM_HOST: '127.0.0.1', SIM_TOKEN_WITHOUT_EXP: '1' })
    const [line] = await once(child.stdout!, 'data') as [Buffer]
    const { url } = JSON.parse(line.toString()) as { url: string }
    const reply = await request(`${url}/api/v1/authenticate`, {
      method: 'POST',
      body: JSON.stringify({ application_token: 'demo-application-token' })
    })
    const { auth_token: token } = await reply.body.json() as { auth_token: string }
    t.notOk('exp' in decodeTokenClaims(token))
    child.kill('SIGINT')
    const [code] = await once(child, 'exit')
    t.equal(code, 0)
  })

  t.test('SIM_RATE_LIMIT turns emnify\'s limit on, scaled by SIM_RATE_LIMIT_*; the banner shows every setting', async (t) => {
    const child = run({
      SIM_RATE_LIMIT: '1',
      SIM_RATE_LIMIT_REQUESTS: '2',
      SIM_RATE_LIMIT_AUTHENTICATE: '1',
      SIM_RATE_LIMIT_WINDOW_MS: '60000',
      SIM_CREATED_LOCATION: 'relative',
      SIM_EXTRA_FIELDS: '1'
    })
    t.teardown(() => { child.kill('SIGTERM') })
    const [line] = await once(child.stdout!, 'data') as [Buffer]
    const banner = JSON.parse(line.toString()) as { url: string, settings: unknown }
    t.same(banner.settings, {
      createdLocation: 'relative',
      extraFields: true,
      rateLimit: { requests: 2, authenticate: 1, windowMs: 60_000 }
    })
    const statuses = []
    for (let i = 0; i < 2; i++) {
      const reply = await request(`${banner.url}/api/v1/authenticate`, { method: 'POST', body: JSON.stringify({ application_token: APP_TOKEN }) })
      await reply.body.dump()
      statuses.push(reply.statusCode)
    }
    t.same(statuses, [200, 429], 'the second authenticate is over SIM_RATE_LIMIT_AUTHENTICATE')
  })

  t.test('without SIM_RATE_LIMIT the limit is off whatever its figures say, and the other defaults hold', async (t) => {
    const child = run({ SIM_RATE_LIMIT_REQUESTS: '1' })
    t.teardown(() => { child.kill('SIGTERM') })
    const [line] = await once(child.stdout!, 'data') as [Buffer]
    t.same((JSON.parse(line.toString()) as { settings: unknown }).settings, { createdLocation: 'absolute', extraFields: false, rateLimit: false })
  })

  t.test('exits with a message when the port is taken', async (t) => {
    const { sim } = await setup(t)
    const child = run({ SIM_PORT: String(sim.port) })
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const [code] = await once(child, 'exit')
    t.equal(code, 1)
    t.match(stderr, /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/)
  })

  t.test('refuses invalid settings with a readable message', async (t) => {
    const cases: Array<Record<string, string>> = [
      { SIM_PORT: 'abc' },
      { SIM_PORT: '70000' },
      { SIM_LEAN: 'maybe' },
      { SIM_TOKEN_LIFETIME_S: '0' },
      { SIM_RATE_LIMIT: 'yes' },
      { SIM_RATE_LIMIT_REQUESTS: '0', SIM_RATE_LIMIT: '1' },
      { SIM_RATE_LIMIT_WINDOW_MS: '1.5', SIM_RATE_LIMIT: '1' },
      { SIM_RATE_LIMIT_AUTHENTICATE: '-1', SIM_RATE_LIMIT: '1' },
      { SIM_CREATED_LOCATION: 'sideways' },
      { SIM_EXTRA_FIELDS: 'true' }
    ]
    for (const env of cases) {
      const child = run(env)
      let stderr = ''
      child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
      const [code] = await once(child, 'exit')
      t.equal(code, 1, JSON.stringify(env))
      t.match(stderr, Object.keys(env)[0] as string)
    }
  })
})
