// The OpenAPI 3.1 document (§8): generated from the routes' own schemas, committed, valid, complete
// (every route and status the app serves, derived from the app itself), and the docs UI.
import { readFile } from 'node:fs/promises'
import t from 'tap'
import type { Test } from 'tap'
import type { RouteOptions } from 'fastify'
import { Validator } from '@seriousme/openapi-schema-validator'
import { buildApp } from '../../src/app.ts'
import { DOCUMENTATION_SSO_ENV, documentationProviderFetch, openApiDocument, serialiseDocument } from '../../src/docs/openapi.ts'
import { PROBLEMS } from '../../src/errors/problems.ts'
import { Browser, FRONTEND, reachCallback, signIn, startSsoStack, type Page, type SsoStack } from '../helpers/oidc-stack.ts'
import { CONTACT, session, startStack, testConfig } from '../helpers/stack.ts'
import { openApiPath, PASSWORD, usersFile } from './ops-helpers.ts'

const COMMITTED = new URL('../../openapi.json', import.meta.url)
const CONTACT_ROUTE = '/api/v1/organisation/:org_id/contact/:contact_id'
const SSO_ROUTES = ['GET /auth/oidc/login', 'GET /auth/oidc/callback', 'POST /auth/oidc/backchannel-logout']

interface Operation {
  security?: unknown[]
  requestBody?: { content: Record<string, { schema: unknown, example?: unknown }> }
  parameters?: Array<{ in: string, name: string }>
  responses: Record<string, {
    description: string
    headers?: Record<string, unknown>
    content?: Record<string, { schema: { properties?: { code?: { enum?: string[] } } }, examples?: Record<string, { value: { code: string, status: number } }> }>
  }>
}
type Document = { openapi: string, paths: Record<string, Record<string, Operation>>, components: { securitySchemes: Record<string, Record<string, string>> }, security: unknown[] }

const committed = async () => JSON.parse(await readFile(COMMITTED, 'utf8')) as Document

/** Routes a client can call, as the app registered them: HEAD twins and the hidden docs UI routes aside. */
function servedRoutes (routes: RouteOptions[]) {
  return routes.filter((route) => route.method !== 'HEAD' && (route.schema as { hide?: boolean } | undefined)?.hide !== true)
}

t.test('the committed openapi.json is what `npm run openapi` produces (regenerate it when this fails)', async (t) => {
  const fresh = serialiseDocument(await openApiDocument())
  t.equal(await readFile(COMMITTED, 'utf8'), fresh, 'openapi.json is up to date')
})

t.test('openapi.json is a valid OpenAPI 3.1 document', async (t) => {
  const document = await committed()
  t.equal(document.openapi, '3.1.0')
  const validator = new Validator()
  const result = await validator.validate(document as unknown as Record<string, unknown>)
  t.same(result.errors ?? [], [], 'no schema violations')
  t.ok(result.valid, 'valid')
  t.equal(validator.version, '3.1')
})

t.test('the document lists every route the app serves and every status each route declares, and nothing else', async (t) => {
  const document = await committed()
  const routes: RouteOptions[] = []
  // Configured as the generator is: login and single sign-on offered, metrics on the main port, docs on.
  const app = await buildApp(testConfig({ USERS_FILE: await usersFile(t), LOG_LEVEL: 'silent', ...DOCUMENTATION_SSO_ENV }), {
    onRoute: (route) => { routes.push(route) },
    oidc: { fetch: documentationProviderFetch }
  })
  t.teardown(() => app.close())
  await app.ready()

  const served = servedRoutes(routes)
  t.ok(served.length >= 6, `${served.length} routes collected from the app`)
  const servedKeys = served.flatMap((route) => [route.method].flat().map((method) => `${method} ${openApiPath(route.url)}`))
  for (const key of SSO_ROUTES) t.ok(servedKeys.includes(key), `${key} is served with SSO configured`)
  const documented = new Set<string>()
  for (const [path, operations] of Object.entries(document.paths)) {
    for (const method of Object.keys(operations)) documented.add(`${method.toUpperCase()} ${path}`)
  }
  const seen = new Set<string>()
  for (const route of served) {
    for (const method of [route.method].flat()) {
      const key = `${method} ${openApiPath(route.url)}`
      seen.add(key)
      const operation = document.paths[openApiPath(route.url)]?.[method.toLowerCase()]
      if (operation === undefined) {
        t.fail(`${key} is not documented`)
        continue
      }
      const declared = (route.schema as { response?: Record<string, { content?: Record<string, { schema: { properties?: { code?: { enum?: string[] } } } }> }> } | undefined)?.response ?? {}
      t.ok(Object.keys(declared).length > 0, `${key} declares its responses`)
      t.same(Object.keys(operation.responses).sort(), Object.keys(declared).sort(), `${key}: the document has exactly the declared statuses`)
      for (const [status, response] of Object.entries(declared)) {
        const problem = response.content?.['application/problem+json']
        if (problem === undefined) continue
        const codes = problem.schema.properties?.code?.enum ?? []
        t.same(operation.responses[status]?.content?.['application/problem+json']?.schema.properties?.code?.enum, codes, `${key} ${status}: codes ${codes.join(', ')}`)
        for (const code of codes) {
          t.equal(PROBLEMS[code as keyof typeof PROBLEMS].status, Number(status), `${code} belongs under ${status}`)
          t.ok(operation.responses[status]?.description.includes(code), `${key} ${status}: ${code} named in the description`)
          t.equal(operation.responses[status]?.content?.['application/problem+json']?.examples?.[code]?.value.code, code, `${key} ${status}: an example of ${code}`)
        }
      }
    }
  }
  t.same([...documented].filter((key) => !seen.has(key)), [], 'the document describes no route the app does not serve')
})

t.test('every status and code the app actually answers is documented for its route', async (t) => {
  const document = await committed()
  const stack = await startStack(t, { env: { USERS_FILE: await usersFile(t), RATE_LIMIT_PER_MINUTE: '8', UPSTREAM_TIMEOUT_MS: '1000' } })
  const bearer = { authorization: `Bearer ${stack.token}` }
  const json = { 'content-type': 'application/json' }
  const cookie = { cookie: `__Host-session=${stack.token}` }
  const observed: Array<{ id: string, status: number, code: string | undefined }> = []
  async function send (method: string, path: string, options: { headers?: Record<string, string>, body?: string | object } = {}) {
    const reply = await stack.call(method, path, options)
    const problem = /problem\+json/.test(String(reply.headers['content-type'])) ? reply.json().code as string : undefined
    observed.push({ id: String(reply.headers['x-request-id']), status: reply.status, code: problem })
    return reply
  }
  const patch = (body: string | object, headers: Record<string, string> = {}) => send('PATCH', CONTACT, { headers: { ...bearer, ...json, ...headers }, body })

  await send('GET', '/health/live')
  await send('GET', '/health/ready')
  await send('GET', '/metrics')
  await send('POST', '/auth/login', { headers: json, body: { username: 'alice', password: PASSWORD } })
  await send('POST', '/auth/login', { headers: json, body: { username: 'alice', password: 'wrong' } })
  await send('POST', '/auth/login', { headers: json, body: { username: 'alice' } })
  await send('POST', '/auth/login', { headers: json, body: '{"username":' })
  await send('POST', '/auth/login', { headers: { 'content-type': 'text/plain' }, body: 'alice' })
  await send('GET', '/auth/session', { headers: bearer })
  await send('GET', '/auth/session')
  await send('POST', '/auth/logout', { headers: { ...bearer, 'content-type': 'text/plain' }, body: 'x' })
  await send('POST', '/auth/logout', { headers: cookie })
  await send('POST', '/auth/logout', { headers: { authorization: `Bearer ${session('carol')}` } })
  await patch({ city: 'Berlin' })
  await patch({ city: 'Berlin' }, { prefer: 'return=representation' })
  await patch({ colour: 'red' })
  await patch('{"city":')
  await patch({ city: 'x'.repeat(20_000) })
  await patch({ city: 'Berlin' }, { 'content-type': 'text/plain' })
  await send('PATCH', '/api/v1/organisation/9/contact/1', { headers: { ...bearer, ...json }, body: { city: 'Berlin' } })
  await send('PATCH', CONTACT, { headers: { ...cookie, ...json }, body: { city: 'Berlin' } })
  for (const [status, times] of [[404, 1], [409, 1], [422, 1], [500, 1], [403, 1], [503, 1]]) {
    stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: status as number, times })
    await patch({ city: 'Berlin' }, { authorization: `Bearer ${session(`user-${status}`)}` })
  }
  stack.sim.setFault({ operation: 'patch_contact', kind: 'delay', ms: 1_000, times: 1 })
  await patch({ city: 'Berlin' }, { authorization: `Bearer ${session('slow')}` })
  stack.sim.clearFaults()
  for (let i = 0; i < 9; i++) await patch({ city: 'Berlin' }, { authorization: `Bearer ${session('busy')}` })

  const routeOf = new Map<string, { method: string, route: string | undefined }>()
  for (const record of stack.logs.records()) {
    if (record.msg === 'request completed') routeOf.set(String(record.request_id), { method: String(record.method), route: record.route as string | undefined })
  }
  const statuses = new Set<number>()
  for (const { id, status, code } of observed) {
    const where = routeOf.get(id)
    if (where?.route === undefined) {
      t.fail(`no access line with a route for request ${id}`)
      continue
    }
    statuses.add(status)
    const response = document.paths[openApiPath(where.route)]?.[where.method.toLowerCase()]?.responses[String(status)]
    t.ok(response, `${where.method} ${where.route} ${status} is documented`)
    if (code !== undefined) {
      t.ok(response?.content?.['application/problem+json']?.schema.properties?.code?.enum?.includes(code), `${where.method} ${where.route} ${status} ${code} is documented`)
    }
  }
  t.same([...statuses].sort(), [200, 204, 400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503, 504], 'the traffic covered the statuses intended')
})

/** Status and code of each answer, and the route its access line names. */
async function documentedAnswers (t: Test, stack: SsoStack, document: Document, pages: Page[]) {
  const routeOf = new Map<string, { method: string, route: string | undefined }>()
  for (const record of stack.logs.records()) {
    if (record.msg === 'request completed') routeOf.set(String(record.request_id), { method: String(record.method), route: record.route as string | undefined })
  }
  const seen: string[] = []
  for (const page of pages) {
    const where = routeOf.get(String(page.headers['x-request-id']))
    if (where?.route === undefined) {
      t.fail(`no access line with a route for ${page.url}`)
      continue
    }
    const code = /problem\+json/.test(String(page.headers['content-type'])) ? (JSON.parse(page.text) as { code: string }).code : undefined
    const response = document.paths[openApiPath(where.route)]?.[where.method.toLowerCase()]?.responses[String(page.status)]
    t.ok(response, `${where.method} ${where.route} ${page.status} is documented`)
    if (code !== undefined) t.ok(response?.content?.['application/problem+json']?.schema.properties?.code?.enum?.includes(code), `${where.method} ${where.route} ${page.status} ${code} is documented`)
    seen.push(`${where.method} ${where.route} ${page.status}${code === undefined ? '' : ` ${code}`}`)
  }
  return seen
}

t.test('every status and code the single sign-on routes answer against a real provider is documented', async (t) => {
  const document = await committed()
  const stack = await startSsoStack(t)
  const pages: Page[] = []
  const bff = (page: Page) => { if (page.url.startsWith(stack.url)) pages.push(page) }
  const login = (returnTo: string) => `${stack.url}/auth/oidc/login?return_to=${encodeURIComponent(returnTo)}`

  const alice = new Browser()
  const signedIn = await signIn(alice, stack)
  alice.history.forEach(bff)
  bff(await alice.fetch(signedIn.callback as string))
  bff(await new Browser().fetch(login('https://elsewhere.example/')))
  bff(await new Browser().fetch(`${stack.url}/auth/oidc/callback?state=${'s'.repeat(600)}`))
  const bob = new Browser()
  bff((await signIn(bob, stack, { username: 'bob' })).page)
  const logoutToken = await stack.idp.sign({ iss: stack.idp.issuer, aud: stack.idp.clientId, iat: Math.floor(Date.now() / 1000), jti: `openapi-${Date.now()}`, sid: 'a-provider-session', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } })
  const backchannel = (body: string, type = 'application/x-www-form-urlencoded') => new Browser().fetch(`${stack.url}/auth/oidc/backchannel-logout`, { method: 'POST', headers: { 'content-type': type }, body })
  bff(await backchannel(new URLSearchParams({ logout_token: logoutToken }).toString()))
  bff(await backchannel('logout_token=not-a-jwt'))
  bff(await backchannel('logout_token=x', 'text/plain'))
  const logout = (returnTo: string) => alice.fetch(`${stack.url}/auth/logout?return_to=${encodeURIComponent(returnTo)}`, { method: 'POST', headers: { 'x-csrf': '1' } })
  bff(await logout('https://elsewhere.example/'))
  bff(await logout(`${FRONTEND}/`))

  // The provider gone: a sign-in cannot be finished, a logout token cannot be checked.
  const late = await startSsoStack(t)
  const lateBrowser = new Browser()
  const callback = await reachCallback(lateBrowser, late, {})
  const lateToken = await late.idp.sign({ iss: late.idp.issuer, aud: late.idp.clientId, iat: Math.floor(Date.now() / 1000), jti: `openapi-late-${Date.now()}`, sid: 'another', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } })
  await late.idp.close()
  const latePages = [
    await lateBrowser.fetch(callback),
    await new Browser().fetch(`${late.url}/auth/oidc/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: lateToken }).toString() })
  ]

  const seen = [...await documentedAnswers(t, stack, document, pages), ...await documentedAnswers(t, late, document, latePages)]
  t.same([...new Set(seen)].sort(), [
    'GET /auth/oidc/callback 302',
    'GET /auth/oidc/callback 400 VALIDATION_FAILED',
    'GET /auth/oidc/callback 401 OIDC_LOGIN_FAILED',
    'GET /auth/oidc/callback 403 OIDC_NO_ORGANISATIONS',
    'GET /auth/oidc/callback 503 OIDC_PROVIDER_UNAVAILABLE',
    'GET /auth/oidc/login 302',
    'GET /auth/oidc/login 400 VALIDATION_FAILED',
    'POST /auth/logout 200',
    'POST /auth/logout 400 VALIDATION_FAILED',
    'POST /auth/oidc/backchannel-logout 200',
    'POST /auth/oidc/backchannel-logout 400 VALIDATION_FAILED',
    'POST /auth/oidc/backchannel-logout 415 UNSUPPORTED_MEDIA_TYPE',
    'POST /auth/oidc/backchannel-logout 503 OIDC_PROVIDER_UNAVAILABLE'
  ], 'the traffic covered every answer intended')
})

t.test('the document describes the single sign-on routes\' inputs and the logout\'s end-session answer', async (t) => {
  const document = await committed()
  const login = document.paths['/auth/oidc/login']?.get
  t.same(login?.parameters?.filter((p) => p.in === 'query').map((p) => p.name), ['return_to'], 'login takes return_to')
  t.same(login?.security, [], 'login is public')
  t.same(document.paths['/auth/oidc/callback']?.get?.security, [], 'the callback is public')
  const backchannel = document.paths['/auth/oidc/backchannel-logout']?.post
  t.same(Object.keys(backchannel?.requestBody?.content ?? {}), ['application/x-www-form-urlencoded'], 'the logout token comes as a form')
  t.match(backchannel?.requestBody?.content['application/x-www-form-urlencoded']?.schema, { properties: { logout_token: { type: 'string' } }, required: ['logout_token'] })
  t.same(backchannel?.security, [], 'the provider calls it without a session')
  const logout = document.paths['/auth/logout']?.post
  t.match(logout?.responses['200']?.content, { 'application/json': { schema: { required: ['end_session_url'], properties: { end_session_url: { format: 'uri' } } } } })
  t.same(logout?.parameters?.filter((p) => p.in === 'query').map((p) => p.name), ['return_to'], 'logout takes return_to')
})

t.test('the document carries the contract: both PATCH media types, security schemes, public routes, examples', async (t) => {
  const document = await committed()
  const patch = document.paths[openApiPath(CONTACT_ROUTE)]?.patch
  if (patch === undefined) throw new Error('PATCH is not documented')
  t.same(Object.keys(patch.requestBody?.content ?? {}).sort(), ['application/json', 'application/merge-patch+json'], 'the PATCH body under both media types')
  t.ok(patch.requestBody?.content['application/json']?.example, 'an example patch')
  t.same(patch.parameters?.filter((p) => p.in === 'path').map((p) => p.name), ['org_id', 'contact_id'], 'both path parameters')
  t.ok(patch.parameters?.some((p) => p.in === 'header' && p.name === 'x-csrf'), 'X-CSRF documented')
  for (const [status, response] of Object.entries(patch.responses)) {
    if (Number(status) < 400) continue
    t.same(Object.keys(response.content ?? {}), ['application/problem+json'], `${status} is problem+json`)
  }
  t.ok(patch.responses['429']?.headers?.['Retry-After'], '429 documents Retry-After')
  t.ok(patch.responses['429']?.headers?.RateLimit, '429 documents the RateLimit headers')

  const schemes = document.components.securitySchemes
  t.match(schemes.bearerAuth, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
  t.match(schemes.sessionCookie, { type: 'apiKey', in: 'cookie', name: '__Host-session' })
  t.match(schemes.sessionCookie?.description, /X-CSRF: 1/)
  t.same(document.security, [{ bearerAuth: [] }, { sessionCookie: [] }], 'a session is required by default')
  for (const path of ['/health/live', '/health/ready', '/metrics']) t.same(document.paths[path]?.get?.security, [], `${path} is public`)
  t.same(document.paths['/auth/login']?.post?.security, [], 'login is public')
  t.equal(patch.security, undefined, 'the PATCH requires a session')
})

t.test('Swagger UI is served at /docs with a CSP that lets its own assets load', async (t) => {
  const stack = await startStack(t)
  const page = await stack.call('GET', '/docs')
  t.equal(page.status, 200, 'no session needed')
  t.match(page.headers['content-type'], /^text\/html/)
  const csp = String(page.headers['content-security-policy'])
  const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values]))
  for (const name of ['script-src', 'style-src', 'img-src', 'connect-src']) t.ok(directives.get(name)?.includes("'self'"), `${name} allows 'self'`)
  t.ok(directives.get('img-src')?.includes('data:'), 'the logo (a data: URL) may load')
  t.same(directives.get('frame-ancestors'), ["'none'"], 'not frameable')
  t.notOk(directives.get('script-src')?.includes("'unsafe-inline'"), 'no inline scripts')

  const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string)
  t.ok(assets.length >= 4, 'the page references its assets')
  for (const asset of assets) {
    t.ok(asset.startsWith('/docs/static/'), `${asset} is same-origin, under /docs/static`)
    const reply = await stack.call('GET', asset)
    t.equal(reply.status, 200, `${asset} is served`)
  }
  const spec = await stack.call('GET', '/docs/json')
  t.equal(spec.status, 200)
  t.equal(spec.json().openapi, '3.1.0')
  t.ok(spec.json().paths[openApiPath(CONTACT_ROUTE)], 'the served document describes the PATCH')
  const yaml = await stack.call('GET', '/docs/yaml')
  t.equal(yaml.status, 200)
  t.match(yaml.text, /^openapi: 3\.1\.0/m)
  t.equal(stack.sim.state.counters.total, 0, 'the docs reach nothing upstream')
})

t.test('the served document follows the configuration: no login without USERS_FILE, the cookie name', async (t) => {
  const stack = await startStack(t, { env: { SESSION_COOKIE_SECURE: 'false' } })
  const document = (await stack.call('GET', '/docs/json')).json() as Document
  t.notOk(document.paths['/auth/login'], 'login is not offered, so not documented')
  for (const path of ['/auth/oidc/login', '/auth/oidc/callback', '/auth/oidc/backchannel-logout']) t.notOk(document.paths[path], `${path}: no SSO without OIDC_ISSUER, so not documented`)
  t.equal(document.components.securitySchemes.sessionCookie?.name, 'session')
})

t.test('DOCS_ENABLED=false: /docs, /docs/json and /docs/yaml are 404 problems', async (t) => {
  const stack = await startStack(t, { env: { DOCS_ENABLED: 'false' } })
  for (const path of ['/docs', '/docs/json', '/docs/yaml', '/docs/static/swagger-ui.css']) {
    const reply = await stack.call('GET', path)
    t.equal(reply.status, 404, path)
    t.equal(reply.json().code, 'NOT_FOUND')
  }
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).status, 204, 'the API still works')
})
