// Operations (§7): health, not-found, the headers every response carries, request ids, CORS and
// what the logs may (one access line per request) and may never (credentials) contain.
import { setImmediate as tick } from 'node:timers/promises'
import t from 'tap'
import type { Test } from 'tap'
import { APPLICATION_TOKEN, CONTACT, SECRET, claims, forge, session, startStack, type Reply } from '../helpers/stack.ts'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/
const ROUTE = '/api/v1/organisation/:org_id/contact/:contact_id'

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const JSON_TYPE = { 'content-type': 'application/json' }

/** Every response, whatever its status, names its request and forbids MIME sniffing. */
function assertCommonHeaders (t: Test, reply: { status: number, headers: Record<string, unknown>, text: string }, label: string) {
  t.equal(reply.headers['x-content-type-options'], 'nosniff', `${label}: nosniff`)
  const id = reply.headers['x-request-id']
  t.ok(typeof id === 'string' && REQUEST_ID.test(id), `${label}: has X-Request-Id`)
  if (/^application\/problem\+json/.test(String(reply.headers['content-type']))) {
    t.equal(JSON.parse(reply.text).request_id, id, `${label}: request_id in the body equals the header`)
  }
}

function assertProblem (t: Test, reply: Reply, status: number, code: string) {
  t.equal(reply.status, status, `answers ${status}`)
  t.match(reply.headers['content-type'], /^application\/problem\+json/, 'as problem+json')
  t.equal(reply.json().code, code, `with code ${code}`)
  assertCommonHeaders(t, reply, code)
}

const accessHeaders = (reply: { headers: Record<string, unknown> }) => Object.keys(reply.headers).filter((name) => name.startsWith('access-control-'))

t.test('/health/live and /health/ready answer 200 without a session', async (t) => {
  const stack = await startStack(t)
  for (const [path, status] of [['/health/live', 'ok'], ['/health/ready', 'ready']] as const) {
    const reply = await stack.call('GET', path)
    t.equal(reply.status, 200, path)
    t.equal(reply.json().status, status, path)
    assertCommonHeaders(t, reply, path)
    // Credentials are irrelevant there, even broken ones.
    t.equal((await stack.call('GET', path, { headers: bearer('garbage') })).status, 200, `${path} ignores a bad token`)
  }
  t.equal(stack.sim.state.counters.total, 0, 'health checks never call emnify')
})

t.test('an unknown route is 404 NOT_FOUND problem+json, with or without a session', async (t) => {
  const stack = await startStack(t)
  const paths = ['/nope', '/api/v1/organisation/1/contacts', '/api/v1/organisation/1/contact/1/extra', '/api/v1/authenticate', '/']
  for (const headers of [{}, bearer(stack.token), bearer('garbage')]) {
    for (const path of paths) {
      const reply = await stack.call('GET', path, { headers })
      assertProblem(t, reply, 404, 'NOT_FOUND')
      t.equal(reply.json().instance, path)
    }
  }
  assertProblem(t, await stack.call('POST', '/api/v1/authenticate', { headers: { ...JSON_TYPE, ...bearer(stack.token) }, body: { application_token: 'x' } }), 404, 'NOT_FOUND')
  t.equal(stack.sim.state.counters.total, 0, 'nothing reached emnify')
})

t.test('a known path asked with another method is 405 METHOD_NOT_ALLOWED with Allow, and reaches nothing', async (t) => {
  const stack = await startStack(t)
  const cases: Array<[string, string, string]> = [
    ['PUT', CONTACT, 'DELETE, GET, HEAD, PATCH'],
    ['POST', CONTACT, 'DELETE, GET, HEAD, PATCH'],
    ['PUT', '/api/v1/organisation/1/contact', 'GET, HEAD, POST'],
    ['DELETE', '/api/v1/organisation/1/contact', 'GET, HEAD, POST'],
    ['POST', '/api/v1/country', 'GET, HEAD'],
    ['GET', '/auth/logout', 'POST']
  ]
  for (const [method, path, allow] of cases) {
    const withBody = method === 'PUT' || method === 'POST'
    const reply = await stack.call(method, path, { headers: { ...(withBody ? JSON_TYPE : {}), ...bearer(stack.token) }, body: withBody ? { name: 'Eve' } : undefined })
    assertProblem(t, reply, 405, 'METHOD_NOT_ALLOWED')
    t.equal(reply.headers.allow, allow, `${method} ${path}: Allow lists what the path answers`)
  }
  t.equal(stack.sim.state.counters.total, 0, 'nothing reached emnify')
})

t.test('every response carries X-Content-Type-Options: nosniff and X-Request-Id', async (t) => {
  const stack = await startStack(t)
  const token = stack.token
  const patch = (body: unknown, headers: Record<string, string> = {}, path = CONTACT) =>
    stack.call('PATCH', path, { headers: { ...JSON_TYPE, ...bearer(token), ...headers }, body: body as object })
  const cases: Array<[string, number, () => Promise<Reply>]> = [
    ['success', 204, () => patch({ name: 'Ada' })],
    ['representation', 200, () => patch({ name: 'Ada' }, { prefer: 'return=representation' })],
    ['validation', 400, () => patch({ nickname: 'Ada' })],
    ['malformed', 400, () => patch('{"name":')],
    ['bad url', 400, () => patch({ name: 'Ada' }, {}, '/api/v1/organisation/%zz/contact/1')],
    ['param too long', 400, () => patch({ name: 'Ada' }, {}, `/api/v1/organisation/${'1'.repeat(100)}/contact/1`)],
    ['unauthenticated', 401, () => stack.call('PATCH', CONTACT, { headers: JSON_TYPE, body: { name: 'Ada' } })],
    ['csrf', 403, () => stack.call('PATCH', CONTACT, { headers: { ...JSON_TYPE, cookie: `__Host-session=${token}` }, body: { name: 'Ada' } })],
    ['forbidden org', 403, () => patch({ name: 'Ada' }, {}, '/api/v1/organisation/3/contact/1')],
    ['not found', 404, () => stack.call('GET', '/nope')],
    ['contact not found', 404, () => patch({ name: 'Ada' }, {}, '/api/v1/organisation/1/contact/999')],
    ['too large', 413, () => patch(`{"name":"${'x'.repeat(17 * 1024)}"}`)],
    ['media type', 415, () => patch('name=Ada', { 'content-type': 'text/plain' })],
    ['upstream 500', 502, () => { stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 500, times: 1 }); return patch({ name: 'Ada' }) }],
    ['upstream 503', 503, () => { stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 503, times: 1 }); return patch({ name: 'Ada' }) }],
    ['health', 200, () => stack.call('GET', '/health/live')]
  ]
  for (const [label, status, run] of cases) {
    const reply = await run()
    t.equal(reply.status, status, `${label}: ${status}`)
    assertCommonHeaders(t, reply, label)
  }
})

t.test('a valid inbound X-Request-Id is echoed, used in problem bodies and sent upstream', async (t) => {
  const stack = await startStack(t)
  for (const id of ['req-123.ABC_x', 'a', 'x'.repeat(64)]) {
    const ok = await stack.patch(CONTACT, { name: 'Ada' }, { 'x-request-id': id })
    t.equal(ok.status, 204)
    t.equal(ok.headers['x-request-id'], id, 'echoed')
    t.equal(stack.sim.state.callsFor('patch_contact').at(-1)?.headers['x-request-id'], id, 'sent to emnify')

    const problem = await stack.patch(CONTACT, { nickname: 'Ada' }, { 'x-request-id': id })
    t.equal(problem.status, 400)
    t.equal(problem.headers['x-request-id'], id, 'echoed on errors')
    t.equal(problem.json().request_id, id, 'named in the problem body')
  }
  const read = await stack.patch(CONTACT, { name: 'Ada' }, { 'x-request-id': 'read-back-1', prefer: 'return=representation' })
  t.equal(read.status, 200)
  t.equal(stack.sim.state.callsFor('get_contact').at(-1)?.headers['x-request-id'], 'read-back-1', 'the read-back carries it too')
})

t.test('an invalid X-Request-Id is replaced by a generated one, neither echoed, sent upstream nor logged', async (t) => {
  const stack = await startStack(t)
  const invalid = ['x'.repeat(65), 'x'.repeat(1000), 'has space', 'a/b', 'id;drop', 'caf\u00e9-latin1', '']
  const check = async (t: Test, value: string, reply: { status: number, headers: Record<string, unknown> }) => {
    t.equal(reply.status, 204)
    const echoed = reply.headers['x-request-id']
    t.not(echoed, value, 'not echoed')
    t.ok(typeof echoed === 'string' && REQUEST_ID.test(echoed), 'a generated id instead')
    const upstream = stack.sim.state.callsFor('patch_contact').at(-1)?.headers['x-request-id']
    t.equal(upstream, echoed, 'emnify receives the generated id')
    if (value.length > 1) t.notOk(stack.logs.lines.some((line) => line.includes(value)), 'not logged')
  }
  for (const value of invalid) {
    t.test(JSON.stringify(value.length > 70 ? `${value.slice(0, 10)}…(${value.length})` : value), async (t) => {
      await check(t, value, await stack.patch(CONTACT, { name: 'Ada' }, { 'x-request-id': value }))
    })
  }
  // Beyond Latin-1 a header cannot travel through an HTTP client; inject hands it over as is.
  for (const [label, value] of [['accented', 'ünïcødé'], ['CJK', '日本語-id'], ['line separator', 'id\u2028x']] as const) {
    t.test(`unicode: ${label}`, async (t) => {
      const response = await stack.app.inject({
        method: 'PATCH',
        url: CONTACT,
        headers: { ...JSON_TYPE, ...bearer(stack.token), 'x-request-id': value },
        payload: '{"name":"Ada"}'
      })
      await check(t, value, { status: response.statusCode, headers: response.headers })
    })
  }
  t.test('generated ids differ per request', async (t) => {
    const a = await stack.patch(CONTACT, { name: 'Ada' }, { 'x-request-id': 'has space' })
    const b = await stack.patch(CONTACT, { name: 'Ada' }, { 'x-request-id': 'has space' })
    t.not(a.headers['x-request-id'], b.headers['x-request-id'])
  })
})

t.test('without CORS_ORIGINS no access-control-* header is ever sent, even to an Origin', async (t) => {
  const stack = await startStack(t)
  const origin = 'https://app.example.com'
  const preflight = await stack.call('OPTIONS', CONTACT, {
    headers: { origin, 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'content-type,x-csrf' }
  })
  t.same(accessHeaders(preflight), [], 'preflight gets none')
  assertCommonHeaders(t, preflight, 'preflight')
  const patch = await stack.patch(CONTACT, { name: 'Ada' }, { origin })
  t.equal(patch.status, 204)
  t.same(accessHeaders(patch), [], 'PATCH gets none')
  const failed = await stack.call('PATCH', CONTACT, { headers: { ...JSON_TYPE, origin }, body: { name: 'Ada' } })
  t.equal(failed.status, 401)
  t.same(accessHeaders(failed), [], '401 gets none')
  t.same(accessHeaders(await stack.call('GET', '/health/live', { headers: { origin } })), [], 'health gets none')
})

t.test('with CORS_ORIGINS only the listed origin is allowed, with credentials and X-CSRF', async (t) => {
  const allowed = 'https://app.example.com'
  const stack = await startStack(t, { env: { CORS_ORIGINS: allowed } })
  const preflight = (origin: string) => stack.call('OPTIONS', CONTACT, {
    headers: { origin, 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'content-type,x-csrf' }
  })

  const ok = await preflight(allowed)
  t.ok(ok.status >= 200 && ok.status < 300, 'preflight succeeds')
  t.equal(ok.headers['access-control-allow-origin'], allowed, 'the origin itself, never *')
  t.equal(ok.headers['access-control-allow-credentials'], 'true')
  const allowHeaders = String(ok.headers['access-control-allow-headers']).toLowerCase().split(/\s*,\s*/)
  for (const header of ['x-csrf', 'content-type', 'authorization']) t.ok(allowHeaders.includes(header), `allows ${header}`)
  t.ok(String(ok.headers['access-control-allow-methods']).split(/\s*,\s*/).includes('PATCH'), 'allows PATCH')
  assertCommonHeaders(t, ok, 'preflight')

  for (const origin of ['https://evil.example.com', 'http://app.example.com', 'https://app.example.com.evil.example', 'null']) {
    const other = await preflight(origin)
    t.equal(other.headers['access-control-allow-origin'], undefined, `no allow-origin for ${origin}`)
  }

  const patch = await stack.patch(CONTACT, { name: 'Ada' }, { origin: allowed })
  t.equal(patch.status, 204)
  t.equal(patch.headers['access-control-allow-origin'], allowed)
  t.equal(patch.headers['access-control-allow-credentials'], 'true')
  t.match(String(patch.headers['access-control-expose-headers']).toLowerCase(), /x-request-id/, 'the request id is readable by the page')
  const evil = await stack.patch(CONTACT, { name: 'Ada' }, { origin: 'https://evil.example.com' })
  t.equal(evil.headers['access-control-allow-origin'], undefined, 'no allow-origin on a request from another origin')
  t.equal(stack.sim.state.counters.patch_contact, 2, 'preflights reached nothing upstream')
})

t.test('logs never contain credentials, and every request writes exactly one access line', async (t) => {
  // trace: the most verbose level must not leak either.
  // The token cache's clock runs ahead on demand, so a revoked token is old enough to be replaced.
  let skewMs = 0
  const age = () => { skewMs += 5_000 }
  const stack = await startStack(t, { env: { LOG_LEVEL: 'trace' }, app: { tokenCache: { now: () => Date.now() + skewMs } } })
  const issued: string[] = []
  const issue = stack.sim.state.issueToken.bind(stack.sim.state)
  stack.sim.state.issueToken = (options) => {
    const token = issue(options)
    issued.push(token)
    return token
  }

  const token = stack.token
  const cookieToken = session('carol', [1])
  const wrongSecret = forge({ alg: 'HS256', typ: 'JWT' }, claims(), { key: 'not-the-secret-not-the-secret-0123' })
  const expired = forge({ alg: 'HS256', typ: 'JWT' }, claims({ iat: 1, exp: 2 }))
  const body = { name: 'Ada' }
  const withToken = { ...JSON_TYPE, ...bearer(token) }
  const byCookie = { ...JSON_TYPE, cookie: `__Host-session=${cookieToken}` }

  interface Step { id?: string, method: string, path: string, headers: Record<string, string>, body?: unknown, route?: string, before?: () => void }
  const steps: Step[] = [
    { method: 'PATCH', path: CONTACT, headers: withToken, body, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: { ...withToken, prefer: 'return=representation' }, body, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: { ...byCookie, 'x-csrf': '1' }, body, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: byCookie, body, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: { ...withToken, cookie: `__Host-session=${cookieToken}` }, body, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: { ...JSON_TYPE, ...bearer(wrongSecret) }, body, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: { ...JSON_TYPE, ...bearer(expired) }, body, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: withToken, body, route: ROUTE, before: () => { age(); stack.sim.revokeAllTokens() } },
    { method: 'PATCH', path: CONTACT, headers: withToken, body, route: ROUTE, before: () => stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 500, times: 1 }) },
    { method: 'PATCH', path: CONTACT, headers: withToken, body, route: ROUTE, before: () => { age(); stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 401, times: 2 }) } },
    { method: 'PATCH', path: CONTACT, headers: withToken, body, route: ROUTE, before: () => stack.sim.setFault({ operation: 'patch_contact', kind: 'reset_after_headers', times: 1 }) },
    { method: 'PATCH', path: CONTACT, headers: withToken, body: { password: SECRET, application_token: APPLICATION_TOKEN }, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: withToken, body: `{"name":"${token}`, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: withToken, body: `{"name":"${'x'.repeat(20_000)}"}`, route: ROUTE },
    { method: 'PATCH', path: CONTACT, headers: { ...withToken, 'content-type': 'text/plain' }, body, route: ROUTE },
    { method: 'PATCH', path: '/api/v1/organisation/9/contact/1', headers: withToken, body, route: ROUTE },
    { method: 'GET', path: '/nope', headers: withToken },
    { method: 'PATCH', path: '/api/v1/organisation/%zz/contact/1', headers: withToken, body },
    { method: 'PATCH', path: `/api/v1/organisation/${'1'.repeat(100)}/contact/1`, headers: withToken, body },
    { method: 'GET', path: '/health/ready', headers: { cookie: `__Host-session=${cookieToken}` }, route: '/health/ready' },
    { id: 'generated', method: 'PATCH', path: CONTACT, headers: { ...withToken, 'x-request-id': 'not valid!' }, body, route: ROUTE }
  ]

  const statuses: number[] = []
  const ids: string[] = []
  for (const [i, step] of steps.entries()) {
    step.before?.()
    const headers = step.id === undefined ? { 'x-request-id': `log-step-${i}`, ...step.headers } : step.headers
    const reply = await stack.call(step.method, step.path, { headers, body: step.body as object | undefined })
    statuses.push(reply.status)
    ids.push(String(reply.headers['x-request-id']))
  }
  t.same(statuses, [204, 200, 204, 403, 401, 401, 401, 204, 502, 502, 502, 400, 400, 413, 415, 403, 404, 400, 400, 200, 204], 'the mix of outcomes intended')
  t.ok(issued.length >= 3, `emnify issued ${issued.length} auth tokens (re-authentication happened)`)

  // Access lines are written when the response finishes, which may trail the client by a tick.
  const accessLines = () => stack.logs.records().filter((record) => record.msg === 'request completed' || record.msg === 'request errored')
  for (let i = 0; i < 100 && accessLines().length < steps.length; i++) await tick()

  const secrets: Record<string, string> = { 'session secret': SECRET, 'application token': APPLICATION_TOKEN }
  for (const [name, jwt] of [['bearer session', token], ['cookie session', cookieToken], ['wrong-secret session', wrongSecret], ['expired session', expired], ...issued.map((value, i) => [`emnify auth token ${i}`, value])] as Array<[string, string]>) {
    secrets[name] = jwt
    secrets[`${name} signature`] = jwt.split('.')[2] as string
  }
  for (const [name, value] of Object.entries(secrets)) {
    t.notOk(stack.logs.lines.some((line) => line.includes(value)), `no log line contains the ${name}`)
  }

  const lines = accessLines()
  t.equal(lines.length, steps.length, 'as many access lines as requests')
  for (const [i, step] of steps.entries()) {
    const mine = lines.filter((line) => line.request_id === ids[i])
    t.equal(mine.length, 1, `${step.method} ${step.path.slice(0, 60)}: one access line`)
    const line = mine[0]
    if (line === undefined) continue
    t.equal(line.msg, 'request completed')
    t.equal(line.method, step.method)
    t.equal(line.status, statuses[i])
    if (step.route !== undefined) t.equal(line.route, step.route, 'names the route template')
    else t.not(line.route, step.path, 'never the raw path as route')
  }
})
