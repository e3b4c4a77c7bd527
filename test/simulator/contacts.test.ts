import t from 'tap'
import { COUNTRIES, EXTRA_FIELD_MARKER, SettingsError } from '../../simulator/simulator.ts'
import type { Country } from '../../simulator/simulator.ts'
import { CONTACT_1, CONTACT_KEYS, setup } from './harness.ts'

const LIST_1 = '/api/v1/organisation/1/contact'
const COUNTRY_KEYS = ['id', 'name', 'country_code', 'mcc', 'iso_code']

interface ValidationBody {
  error_code: number
  error_token: string
  message: string
  errors: Array<{ error_code: number, error_token: string, message: string }>
}

t.test('list, read, create, patch and delete share one state', async (t) => {
  const { sim, call, authenticate } = await setup(t)
  const token = await authenticate()
  const created = await call('POST', LIST_1, { token, body: { type: { id: 2 }, name: 'Lin', country: { id: 74 } } })
  t.equal(created.status, 201)
  t.same(created.json(), {}, 'the body is {} as in emnify\'s example')
  const path = new URL(created.headers.location as string).pathname
  t.equal(path, '/api/v1/organisation/1/contact/11')

  const listed = (await call('GET', LIST_1, { token })).json() as Array<{ id: number, name: string }>
  t.same(listed.map((c) => c.id), [1, 2, 3, 11], 'the new contact is listed after the seed')
  t.match((await call('GET', path, { token })).json(), { id: 11, name: 'Lin', type: { id: 2, description: 'Technical' } })

  t.equal((await call('PATCH', path, { token, body: { name: 'Lin Wei', country: { id: 44 } } })).status, 204)
  const listedAfterPatch = (await call('GET', LIST_1, { token })).json() as Array<{ id: number, name: string, country: { id: number } }>
  t.match(listedAfterPatch.at(-1), { id: 11, name: 'Lin Wei', country: { id: 44, name: 'China' } })

  t.equal((await call('DELETE', path, { token })).status, 204)
  t.equal((await call('GET', path, { token })).status, 404)
  t.same(((await call('GET', LIST_1, { token })).json() as Array<{ id: number }>).map((c) => c.id), [1, 2, 3])
  t.equal(sim.state.getContact(1, 11), undefined)

  const next = await call('POST', LIST_1, { token, body: { type: { id: 1 } } })
  t.match(next.headers.location, /\/contact\/12$/, 'ids keep increasing; a deleted id is never reused')
})

t.test('a list item has exactly the fields of a contact read on its own', async (t) => {
  const { call, authenticate } = await setup(t)
  const token = await authenticate()
  const list = (await call('GET', LIST_1, { token })).json() as Array<Record<string, unknown>>
  for (const item of list) {
    t.same(Object.keys(item), CONTACT_KEYS)
    t.same(item, (await call('GET', `${LIST_1}/${String(item.id)}`, { token })).json())
  }
})

t.test('unknown organisations and contacts get 404 NotFound on every contact operation', async (t) => {
  const { call, authenticate } = await setup(t)
  const token = await authenticate()
  const cases: Array<[string, string, unknown]> = [
    ['GET', '/api/v1/organisation/77/contact', undefined],
    ['POST', '/api/v1/organisation/77/contact', { type: { id: 1 } }],
    ['GET', '/api/v1/organisation/77/contact/1', undefined],
    ['GET', '/api/v1/organisation/1/contact/777', undefined],
    ['PATCH', '/api/v1/organisation/1/contact/777', { name: 'x' }],
    ['DELETE', '/api/v1/organisation/77/contact/1', undefined],
    ['DELETE', '/api/v1/organisation/1/contact/777', undefined]
  ]
  for (const [method, path, body] of cases) {
    const reply = await call(method, path, { token, body })
    t.equal(reply.status, 404, `${method} ${path}`)
    t.match(reply.json(), { error_code: 1201, error_token: 'NotFound', message: String })
  }
})

t.test('a 204 DELETE carries no body and the contact is gone for GET, PATCH and DELETE', async (t) => {
  const { call, authenticate } = await setup(t)
  const token = await authenticate()
  const reply = await call('DELETE', CONTACT_1, { token })
  t.equal(reply.status, 204)
  t.equal(reply.text, '')
  t.equal(reply.headers['content-length'], undefined)
  for (const method of ['GET', 'PATCH', 'DELETE']) {
    t.equal((await call(method, CONTACT_1, { token, body: method === 'PATCH' ? { name: 'x' } : undefined })).status, 404, method)
  }
})

t.test('create', async (t) => {
  t.test('refuses server-assigned id and organisation_id with 422 naming each field', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    const reply = await call('POST', LIST_1, { token, body: { type: { id: 1 }, id: 5, organisation_id: 1 } })
    t.equal(reply.status, 422)
    const body = reply.json() as ValidationBody
    t.same(body.errors.map((e) => e.message), [
      'id: must not be set when creating a contact',
      'organisation_id: must not be set when creating a contact'
    ])
    t.equal(sim.state.listContacts(1)?.length, 3, 'nothing was created')
  })

  t.test('a missing type, an unknown country and a bad email are all reported in emnify\'s shape', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    const reply = await call('POST', LIST_1, { token, body: { country: { id: 99999 }, email: 'nope' } })
    t.equal(reply.status, 422)
    const body = reply.json() as ValidationBody
    t.same(Object.keys(body), ['error_code', 'error_token', 'message', 'errors'])
    t.match(body, { error_code: 1400, error_token: 'InputValidationFailed', message: 'Validation failed' })
    t.same(body.errors, [
      { error_code: 1400, error_token: 'InputValidationFailed', message: 'type: may not be null' },
      { error_code: 1400, error_token: 'InputValidationFailed', message: 'email: must be a well-formed email address' },
      { error_code: 1400, error_token: 'InputValidationFailed', message: 'country: unknown country id 99999' }
    ])
    t.equal(sim.state.listContacts(1)?.length, 3)
  })

  t.test('an unknown type id or a type of the wrong shape is refused', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    for (const [type, message] of [
      [{ id: 9 }, 'type: unknown contact type id 9'],
      [null, 'type: must be an object with a numeric id'],
      ['6', 'type: must be an object with a numeric id']
    ] as const) {
      const reply = await call('POST', LIST_1, { token, body: { type } })
      t.equal(reply.status, 422, JSON.stringify(type))
      t.same((reply.json() as ValidationBody).errors.map((e) => e.message), [message])
    }
  })

  t.test('every string field may be set and is read back; unknown fields are ignored', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const fields = {
      name: 'N',
      title: 'T',
      department: 'D',
      street: 'S',
      zipcode: 'Z',
      city: 'C',
      email: 'a@b.example',
      phone: '1',
      mobile: '2',
      state: 'St',
      secondary_address: 'SA',
      purchase_order_number: 'PO-1'
    }
    const created = await call('POST', LIST_1, { token, body: { type: { id: 6 }, ...fields, colour: 'blue' } })
    t.equal(created.status, 201)
    const contact = (await call('GET', new URL(created.headers.location as string).pathname, { token })).json()
    t.match(contact, { ...fields, organisation: { id: 1, name: 'Demo Org' }, country: null })
    t.same(Object.keys(contact as object), CONTACT_KEYS)
  })

  t.test('Location is absolute by default, relative or absent when switched, also at runtime', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    const token = await authenticate()
    const absolute = await call('POST', LIST_1, { token, body: { type: { id: 1 } } })
    t.equal(absolute.headers.location, `${sim.url}/api/v1/organisation/1/contact/11`)

    sim.configure({ createdLocation: 'relative' })
    const relative = await call('POST', LIST_1, { token, body: { type: { id: 1 } } })
    t.equal(relative.headers.location, '/api/v1/organisation/1/contact/12')

    const reply = await call('POST', '/_sim/settings', { body: { createdLocation: 'none' } })
    t.match(reply.json(), { createdLocation: 'none' })
    const none = await call('POST', LIST_1, { token, body: { type: { id: 1 } } })
    t.equal(none.status, 201)
    t.equal(none.headers.location, undefined)
    t.same(none.json(), {})
    t.ok(sim.state.hasContact(1, 13), 'the contact exists even though no Location named it')
  })

  t.test('createdLocation can be chosen at start', async (t) => {
    const { call, authenticate } = await setup(t, { createdLocation: 'relative' })
    const reply = await call('POST', LIST_1, { token: await authenticate(), body: { type: { id: 1 } } })
    t.equal(reply.headers.location, '/api/v1/organisation/1/contact/11')
  })

  t.test('mounted without startSimulator, an absolute Location uses the Host the client sent', async (t) => {
    const { sim, call, authenticate } = await setup(t)
    sim.state.origin = undefined
    const token = await authenticate()
    const reply = await call('POST', LIST_1, { token, body: { type: { id: 1 } }, headers: { host: 'emnify.example:8443' } })
    t.equal(reply.headers.location, 'http://emnify.example:8443/api/v1/organisation/1/contact/11')
  })
})

t.test('PATCH', async (t) => {
  t.test('null clears every string field; GET and the list then show null', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const cleared = { title: null, department: null, email: null, phone: null, purchase_order_number: null }
    t.equal((await call('PATCH', '/api/v1/organisation/1/contact/3', { token, body: cleared })).status, 204)
    t.match((await call('GET', '/api/v1/organisation/1/contact/3', { token })).json(), { ...cleared, name: 'Accounts Payable' })
    const listed = (await call('GET', LIST_1, { token })).json() as Array<{ id: number }>
    t.match(listed.find((c) => c.id === 3), cleared)
  })

  t.test('type and country may not be null', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const reply = await call('PATCH', CONTACT_1, { token, body: { type: null, country: null } })
    t.equal(reply.status, 422)
    t.same((reply.json() as ValidationBody).errors.map((e) => e.message), [
      'type: must be an object with a numeric id',
      'country: must be an object with a numeric id'
    ])
  })
})

t.test('countries', async (t) => {
  t.test('GET /api/v1/country answers a bare array of at least 20 countries in emnify\'s shape', async (t) => {
    const { call, authenticate } = await setup(t)
    const reply = await call('GET', '/api/v1/country', { token: await authenticate() })
    t.equal(reply.status, 200)
    t.match(reply.headers['content-type'], /^application\/json/)
    const countries = reply.json() as Country[]
    t.ok(Array.isArray(countries))
    t.ok(countries.length >= 20, `${countries.length} countries`)
    for (const country of countries) {
      t.same(Object.keys(country), COUNTRY_KEYS)
      t.type(country.id, 'number')
      for (const key of ['name', 'country_code', 'mcc', 'iso_code'] as const) t.type(country[key], 'string')
    }
    t.match(countries.find((c) => c.id === 74), { name: 'Germany', country_code: '49', mcc: '262', iso_code: 'de' })
    const ids = countries.map((c) => c.id)
    t.notSame(ids, ids.map((_, i) => i + 1), 'ids are not 1..n, so a client cannot guess them')
    t.equal(new Set(ids).size, ids.length, 'ids are unique')
  })

  t.test('every listed country is accepted as a contact country, and only those', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const countries = (await call('GET', '/api/v1/country', { token })).json() as Country[]
    t.same(countries.map((c) => c.id), [...COUNTRIES.keys()])
    for (const { id, name } of countries) {
      t.equal((await call('PATCH', CONTACT_1, { token, body: { country: { id } } })).status, 204)
      t.match((await call('GET', CONTACT_1, { token })).json(), { country: { id, name } })
    }
    const unknown = Math.max(...countries.map((c) => c.id)) + 1
    const reply = await call('PATCH', CONTACT_1, { token, body: { country: { id: unknown } } })
    t.same((reply.json() as ValidationBody).errors.map((e) => e.message), [`country: unknown country id ${unknown}`])
  })

  t.test('geographic=true leaves out networks without a country; other values list everything', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    const all = (await call('GET', '/api/v1/country', { token })).json() as Country[]
    const geographic = (await call('GET', '/api/v1/country?geographic=true', { token })).json() as Country[]
    t.ok(geographic.length >= 20)
    t.ok(geographic.length < all.length)
    t.notOk(geographic.some((c) => c.name === 'International Networks'))
    t.same((await call('GET', '/api/v1/country?geographic=TRUE', { token })).json(), geographic)
    for (const query of ['geographic=false', 'geographic=', 'other=1']) {
      t.same((await call('GET', `/api/v1/country?${query}`, { token })).json(), all, query)
    }
  })

  t.test('countries need a valid auth token and only accept GET', async (t) => {
    const { call, authenticate } = await setup(t)
    t.equal((await call('GET', '/api/v1/country')).status, 401)
    t.equal((await call('GET', '/api/v1/country', { token: 'a.b.c' })).status, 401)
    const post = await call('POST', '/api/v1/country', { token: await authenticate(), body: {} })
    t.equal(post.status, 405)
    t.equal(post.headers.allow, 'GET')
  })

  t.test('a change to one answer does not leak into the table', async (t) => {
    const { sim } = await setup(t)
    const first = sim.state.answerCountries() as Country[]
    ;(first[0] as Country).name = 'Changed'
    t.not((sim.state.answerCountries() as Country[])[0]?.name, 'Changed')
  })
})

t.test('extraFields', async (t) => {
  t.test('off by default: contacts and countries carry exactly emnify\'s documented fields', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    for (const path of [CONTACT_1, LIST_1, '/api/v1/country']) {
      t.notOk((await call('GET', path, { token })).text.includes(EXTRA_FIELD_MARKER), path)
    }
  })

  t.test('on: fields emnify might add appear at the top level and inside every reference', async (t) => {
    const { sim, call, authenticate } = await setup(t, { extraFields: true })
    const token = await authenticate()
    const contact = (await call('GET', CONTACT_1, { token })).json() as Record<string, Record<string, unknown>>
    t.same(Object.keys(contact), [...CONTACT_KEYS, 'created_at', 'internal_ref'])
    t.match(contact, {
      created_at: '2024-03-01T09:00:00.000Z',
      internal_ref: `${EXTRA_FIELD_MARKER}-contact-1`,
      organisation: { id: 1, name: 'Demo Org', internal_ref: `${EXTRA_FIELD_MARKER}-org-1` },
      type: { id: 1, description: 'Commercial', internal_ref: String },
      country: { id: 74, name: 'Germany', internal_ref: String }
    })
    const list = (await call('GET', LIST_1, { token })).json() as Array<Record<string, unknown>>
    t.same(list[0], contact, 'list items carry them too')
    const countries = (await call('GET', '/api/v1/country', { token })).json() as Array<Record<string, unknown>>
    for (const country of countries) t.same(Object.keys(country), [...COUNTRY_KEYS, 'currency', 'internal_ref'])
    t.same(Object.keys(sim.state.getContact(1, 1) ?? {}), CONTACT_KEYS, 'state helpers stay plain')
  })

  t.test('a contact created later carries its own creation time and a null country stays null', async (t) => {
    const now = Date.UTC(2026, 0, 2, 3, 4, 5)
    const { call, authenticate } = await setup(t, { extraFields: true, clock: () => now })
    const token = await authenticate()
    const created = await call('POST', LIST_1, { token, body: { type: { id: 1 } } })
    const contact = (await call('GET', new URL(created.headers.location as string).pathname, { token })).json()
    t.match(contact, { created_at: '2026-01-02T03:04:05.000Z', country: null })
  })

  t.test('switched at runtime over HTTP', async (t) => {
    const { call, authenticate } = await setup(t)
    const token = await authenticate()
    t.match((await call('POST', '/_sim/settings', { body: { extraFields: true } })).json(), { extraFields: true })
    t.ok((await call('GET', CONTACT_1, { token })).text.includes(EXTRA_FIELD_MARKER))
    await call('POST', '/_sim/settings', { body: { extraFields: false } })
    t.notOk((await call('GET', CONTACT_1, { token })).text.includes(EXTRA_FIELD_MARKER))
  })
})

t.test('settings', async (t) => {
  t.test('GET /_sim/settings reports them; invalid ones are refused and change nothing', async (t) => {
    const { sim, call } = await setup(t)
    t.same((await call('GET', '/_sim/settings')).json(), { createdLocation: 'absolute', extraFields: false, rateLimit: false })
    const invalid: unknown[] = [
      '[]', 'null', '{', { createdLocation: 'sideways' }, { extraFields: 'yes' }, { rateLimit: 5 },
      { rateLimit: { requests: 0 } }, { rateLimit: { windowMs: 1.5 } }, { rateLimit: { burst: 1 } }, { colour: 'blue' },
      { extraFields: true, createdLocation: 'up' }
    ]
    for (const body of invalid) {
      const reply = await call('POST', '/_sim/settings', { body, headers: { 'content-type': 'application/json' } })
      t.equal(reply.status, 400, JSON.stringify(body))
      t.match(reply.json(), { message: String })
    }
    t.same(sim.state.settings, { createdLocation: 'absolute', extraFields: false, rateLimit: false })
    t.throws(() => sim.configure({ createdLocation: 'up' as 'none' }), SettingsError)
  })

  t.test('invalid start options are refused', async (t) => {
    await t.rejects(setup(t, { rateLimit: { requests: -1 } }), SettingsError)
  })

  t.test('the settings a caller reads are a copy', async (t) => {
    const { sim } = await setup(t, { rateLimit: true })
    const settings = sim.state.settings
    if (settings.rateLimit !== false) settings.rateLimit.requests = 1
    t.match(sim.state.settings, { rateLimit: { requests: 2000 } })
  })
})
