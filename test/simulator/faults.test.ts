import t from 'tap'
import type { Test } from 'tap'
import { DEFAULT_BAD_ITEM, FaultError } from '../../simulator/simulator.ts'
import type { Fault, FaultKind, Operation } from '../../simulator/simulator.ts'
import { until } from '../e2e/upstream-helpers.ts'
import { APP_TOKEN, CONTACT_1, setup } from './harness.ts'
import type { Harness, Reply } from './harness.ts'

const LIST_1 = '/api/v1/organisation/1/contact'
const CONTACT_2 = '/api/v1/organisation/1/contact/2'

type ApiOperation = Exclude<Operation, 'other'>

interface Request {
  method: string
  path: string
  body?: unknown
  /** What the operation answers without a fault. */
  ok: number
}

const REQUESTS: Record<ApiOperation, Request> = {
  authenticate: { method: 'POST', path: '/api/v1/authenticate', body: { application_token: APP_TOKEN }, ok: 200 },
  list_contacts: { method: 'GET', path: LIST_1, ok: 200 },
  get_contact: { method: 'GET', path: CONTACT_1, ok: 200 },
  create_contact: { method: 'POST', path: LIST_1, body: { type: { id: 1 }, name: 'Faulted' }, ok: 201 },
  patch_contact: { method: 'PATCH', path: CONTACT_1, body: { name: 'Faulted' }, ok: 204 },
  delete_contact: { method: 'DELETE', path: CONTACT_2, ok: 204 },
  list_countries: { method: 'GET', path: '/api/v1/country', ok: 200 }
}

const OPERATION_NAMES = Object.keys(REQUESTS) as ApiOperation[]

/** The data the writes would change, to show a fault answered before emnify acted. */
function snapshot ({ sim }: Harness): string {
  return JSON.stringify([sim.state.listContacts(1), sim.state.listContacts(2)])
}

function send (h: Harness, operation: ApiOperation, token: string, extra: { headersTimeout?: number } = {}): Promise<Reply> {
  const { method, path, body } = REQUESTS[operation]
  return h.call(method, path, { token, body, ...extra })
}

type Check = (t: Test, h: Harness, operation: ApiOperation, token: string) => Promise<void>

const MATRIX: Array<{ name: string, fault: FaultKind, check: Check }> = [
  {
    name: 'a 503 with the gateway body',
    fault: { kind: 'status', status: 503 },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 503)
      t.same(reply.json(), { message: 'Service Unavailable' })
    }
  },
  {
    name: 'a 429 TooManyRequests without Retry-After',
    fault: { kind: 'status', status: 429 },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 429)
      t.match(reply.json(), { error_code: 1105, error_token: 'TooManyRequests' })
      t.equal(reply.headers['retry-after'], undefined)
    }
  },
  {
    name: 'a 500 with an emnify body',
    fault: { kind: 'status', status: 500, body: { error_code: 1000, error_token: 'Internal', message: 'boom' } },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 500)
      t.match(reply.json(), { message: 'boom' })
    }
  },
  {
    name: 'an empty 401',
    fault: { kind: 'unauthorized_empty' },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 401)
      t.equal(reply.text, '')
    }
  },
  {
    name: 'the gateway 401',
    fault: { kind: 'gateway_unauthorized' },
    check: async (t, h, op, token) => {
      t.same((await send(h, op, token)).json(), { message: 'Unauthorized' })
    }
  },
  {
    name: 'a garbled body',
    fault: { kind: 'garbage' },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 200)
      t.throws(() => reply.json())
    }
  },
  {
    name: 'a redirect',
    fault: { kind: 'redirect', status: 307, location: 'http://elsewhere.invalid/' },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 307)
      t.equal(reply.headers.location, 'http://elsewhere.invalid/')
    }
  },
  {
    name: 'a reset before headers',
    fault: { kind: 'reset_before_headers' },
    check: async (t, h, op, token) => {
      await t.rejects(send(h, op, token), { code: 'UND_ERR_SOCKET' })
    }
  },
  {
    name: 'a reset after headers',
    fault: { kind: 'reset_after_headers' },
    check: async (t, h, op, token) => {
      await t.rejects(send(h, op, token))
    }
  },
  {
    name: 'a hang',
    fault: { kind: 'hang' },
    check: async (t, h, op, token) => {
      await t.rejects(send(h, op, token, { headersTimeout: 100 }), { code: 'UND_ERR_HEADERS_TIMEOUT' })
      // A machine that stalls can time the client out before the simulator has read the request.
      await until(() => h.sim.state.counters[op] > 0)
    }
  },
  {
    name: 'a small huge_body',
    fault: { kind: 'huge_body', bytes: 100, status: 502 },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 502)
      t.equal(reply.text.length, 100)
    }
  },
  {
    name: 'a trickled body',
    fault: { kind: 'trickle', intervalMs: 1, chunks: 3, status: 504 },
    check: async (t, h, op, token) => {
      const reply = await send(h, op, token)
      t.equal(reply.status, 504)
      t.type(reply.json(), 'object')
    }
  }
]

t.test('every fault kind answers every operation, is counted, and a faulted write changes nothing', async (t) => {
  for (const operation of OPERATION_NAMES) {
    for (const { name, fault, check } of MATRIX) {
      t.test(`${operation}: ${name}`, async (t) => {
        const h = await setup(t)
        const token = await h.authenticate()
        const before = snapshot(h)
        h.sim.reset()
        h.sim.setFault({ ...fault, operation } as Fault)
        await check(t, h, operation, token)
        t.equal(h.sim.state.counters[operation], 1, `counters.${operation}`)
        t.equal(h.sim.state.counters.total, 1)
        t.equal(snapshot(h), before, 'emnify did not act on a faulted request')
        const other: ApiOperation = operation === 'list_countries' ? 'get_contact' : 'list_countries'
        t.equal((await send(h, other, token)).status, 200, `${other} is not faulted`)
      })
    }
  }
})

t.test('a delay fault answers every operation normally, late', async (t) => {
  for (const operation of OPERATION_NAMES) {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation, kind: 'delay', ms: 20 })
    const started = performance.now()
    const reply = await send(h, operation, token)
    t.equal(reply.status, REQUESTS[operation].ok, operation)
    t.ok(performance.now() - started >= 15, `${operation} took at least the delay`)
  }
})

t.test('not_a_list', async (t) => {
  t.test('wraps the contact and country lists in an object, the data intact inside', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    for (const path of [LIST_1, '/api/v1/country']) {
      const plain = (await h.call('GET', path, { token })).json()
      h.sim.setFault({ operation: 'any', kind: 'not_a_list', times: 1 })
      const reply = await h.call('GET', path, { token })
      t.equal(reply.status, 200)
      t.same(reply.json(), { data: plain }, path)
    }
  })

  t.test('leaves error answers alone', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'list_contacts', kind: 'not_a_list' })
    const reply = await h.call('GET', '/api/v1/organisation/77/contact', { token })
    t.equal(reply.status, 404)
    t.match(reply.json(), { error_code: 1201 })
  })
})

t.test('bad_item', async (t) => {
  t.test('by default gives the first list item an id that is not a number, the rest intact', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    const plain = (await h.call('GET', LIST_1, { token })).json() as Array<Record<string, unknown>>
    h.sim.setFault({ operation: 'list_contacts', kind: 'bad_item' })
    const bad = (await h.call('GET', LIST_1, { token })).json() as Array<Record<string, unknown>>
    t.same(bad[0], { ...plain[0], ...DEFAULT_BAD_ITEM })
    t.equal(bad[0]?.id, 'not-a-number')
    t.same(bad.slice(1), plain.slice(1))
  })

  t.test('merges a given item into the element at index, or appends it past the end', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    const plain = (await h.call('GET', LIST_1, { token })).json() as Array<Record<string, unknown>>
    h.sim.setFault({ operation: 'list_contacts', kind: 'bad_item', item: { organisation: null }, index: 2, times: 1 })
    const second = (await h.call('GET', LIST_1, { token })).json() as Array<Record<string, unknown>>
    t.same(second[2], { ...plain[2], organisation: null })
    t.same(second.slice(0, 2), plain.slice(0, 2))
    h.sim.setFault({ operation: 'list_contacts', kind: 'bad_item', item: { id: 1.5 }, index: 99, times: 1 })
    const appended = (await h.call('GET', LIST_1, { token })).json() as unknown[]
    t.equal(appended.length, plain.length + 1)
    t.same(appended.at(-1), { id: 1.5 })
  })

  t.test('an empty list gets the item alone', async (t) => {
    const h = await setup(t, { seed: false })
    h.sim.state.addOrganisation(3, 'Empty')
    h.sim.setFault({ operation: 'list_contacts', kind: 'bad_item' })
    const reply = await h.call('GET', '/api/v1/organisation/3/contact', { token: await h.authenticate() })
    t.same(reply.json(), [DEFAULT_BAD_ITEM])
  })

  t.test('bends a single contact and the country list as well', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault([
      { operation: 'get_contact', kind: 'bad_item', item: { type: { id: 'x' } } },
      { operation: 'list_countries', kind: 'bad_item', item: { name: 7 } }
    ])
    t.match((await h.call('GET', CONTACT_1, { token })).json(), { id: 1, name: 'Ada Lovelace', type: { id: 'x' } })
    const countries = (await h.call('GET', '/api/v1/country', { token })).json() as Array<{ name: unknown }>
    t.equal(countries[0]?.name, 7)
    t.type(countries[1]?.name, 'string')
  })

  t.test('leaves empty and error answers alone', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'any', kind: 'bad_item' })
    const patched = await h.call('PATCH', CONTACT_1, { token, body: { name: 'Still' } })
    t.equal(patched.status, 204)
    t.equal(patched.text, '')
    t.equal(h.sim.state.getContact(1, 1)?.name, 'Still', 'the operation itself was carried out')
    t.equal((await h.call('GET', '/api/v1/organisation/1/contact/999', { token })).status, 404)
  })
})

t.test('no_location and location', async (t) => {
  t.test('no_location creates the contact and answers 201 {} without Location', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'create_contact', kind: 'no_location', times: 1 })
    const reply = await h.call('POST', LIST_1, { token, body: { type: { id: 1 }, name: 'Unnamed' } })
    t.equal(reply.status, 201)
    t.same(reply.json(), {})
    t.equal(reply.headers.location, undefined)
    t.match(h.sim.state.getContact(1, 11), { name: 'Unnamed' }, 'the contact exists')
    t.equal(h.sim.state.counters.create_contact, 1)
  })

  t.test('location creates the contact and names whatever it is told', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    for (const location of ['https://evil.example/api/v1/organisation/1/contact/11', '/api/v1/organisation/2/contact/10', 'not a url', '']) {
      h.sim.setFault({ operation: 'create_contact', kind: 'location', location, times: 1 })
      const reply = await h.call('POST', LIST_1, { token, body: { type: { id: 1 } } })
      t.equal(reply.status, 201)
      t.equal(reply.headers.location, location)
    }
    t.equal(h.sim.state.listContacts(1)?.length, 7, 'every one was created')
  })

  t.test('location leaves a refused create alone', async (t) => {
    const h = await setup(t)
    h.sim.setFault({ operation: 'create_contact', kind: 'location', location: '/x' })
    const reply = await h.call('POST', LIST_1, { token: await h.authenticate(), body: { name: 'untyped' } })
    t.equal(reply.status, 422)
    t.equal(reply.headers.location, undefined)
  })
})

t.test('afterCommit: emnify acts, then the answer is lost, wrong or late', async (t) => {
  t.test('a create cut before the headers still creates the contact', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'create_contact', kind: 'reset_before_headers', afterCommit: true })
    await t.rejects(h.call('POST', LIST_1, { token, body: { type: { id: 1 }, name: 'Ghost' } }), { code: 'UND_ERR_SOCKET' })
    t.match(h.sim.state.getContact(1, 11), { name: 'Ghost' })
  })

  t.test('a delete answered 502 is still carried out', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'delete_contact', kind: 'status', status: 502, afterCommit: true })
    t.equal((await h.call('DELETE', CONTACT_2, { token })).status, 502)
    t.equal(h.sim.state.getContact(1, 2), undefined)
  })

  t.test('a hung create has created the contact while the client still waits', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'create_contact', kind: 'hang', afterCommit: true })
    await t.rejects(h.call('POST', LIST_1, { token, body: { type: { id: 1 } }, headersTimeout: 100 }))
    // Polled: a stalled machine can time the client out before the simulator has read the request.
    t.ok(await until(() => h.sim.state.hasContact(1, 11)))
  })

  t.test('a delayed PATCH the client abandons has already been applied', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'patch_contact', kind: 'delay', ms: 400, afterCommit: true })
    await t.rejects(h.call('PATCH', CONTACT_1, { token, body: { name: 'Early' }, signal: AbortSignal.timeout(50) }))
    t.ok(await until(() => h.sim.state.getContact(1, 1)?.name === 'Early'), 'applied')
  })

  t.test('a delayed create answers its real 201 after the delay', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    h.sim.setFault({ operation: 'create_contact', kind: 'delay', ms: 20, afterCommit: true })
    const reply = await h.call('POST', LIST_1, { token, body: { type: { id: 1 } } })
    t.equal(reply.status, 201)
    t.equal(reply.headers.location, `${h.sim.url}/api/v1/organisation/1/contact/11`)
  })

  t.test('a refused request stays refused: afterCommit only carries out what emnify would', async (t) => {
    const h = await setup(t)
    h.sim.setFault({ operation: 'create_contact', kind: 'status', status: 502, afterCommit: true })
    t.equal((await h.call('POST', LIST_1, { body: { type: { id: 1 } } })).status, 502)
    t.equal(h.sim.state.listContacts(1)?.length, 3, 'no token, nothing created')
    t.equal(h.sim.state.counters.unauthorized, 1)
  })

  t.test('is kept and reported with the fault', async (t) => {
    const h = await setup(t)
    const reply = await h.call('POST', '/_sim/faults', { body: { operation: 'delete_contact', kind: 'hang', afterCommit: true, times: 2 } })
    t.same((reply.json() as { faults: Fault[] }).faults, [{ operation: 'delete_contact', kind: 'hang', afterCommit: true, times: 2 }])
  })
})

t.test('the new operation and fault kinds are validated', async (t) => {
  const h = await setup(t)
  const invalid: unknown[] = [
    { operation: 'list_countries', kind: 'hang', afterCommit: 'yes' },
    { operation: 'any', kind: 'bad_item', item: [1] },
    { operation: 'any', kind: 'bad_item', item: 'x' },
    { operation: 'any', kind: 'bad_item', index: -1 },
    { operation: 'any', kind: 'location' },
    { operation: 'any', kind: 'location', location: 5 },
    { operation: 'any', kind: 'location', location: 'a\r\nset-cookie: x=1' }
  ]
  for (const fault of invalid) t.throws(() => h.sim.addFault(fault as Fault), FaultError, JSON.stringify(fault))
  const valid: Fault[] = [
    { operation: 'list_countries', kind: 'not_a_list' },
    { operation: 'create_contact', kind: 'no_location', afterCommit: true },
    { operation: 'any', kind: 'bad_item', item: {}, index: 0 },
    { operation: 'create_contact', kind: 'location', location: '' }
  ]
  for (const fault of valid) h.sim.addFault(fault)
  t.same(h.sim.state.faults, valid)
})

t.test('a bug behind a transform or an afterCommit fault answers 500 instead of crashing', async (t) => {
  const h = await setup(t)
  const token = await h.authenticate()
  h.sim.state.answerContacts = () => { throw new Error('boom') }
  for (const fault of [{ kind: 'not_a_list' }, { kind: 'status', status: 502, afterCommit: true }, { kind: 'delay', ms: 1, afterCommit: true }]) {
    h.sim.setFault({ operation: 'list_contacts', ...fault } as Fault)
    t.equal((await h.call('GET', LIST_1, { token })).status, 500, JSON.stringify(fault))
  }
})
