// Single sign-on end to end against a real OpenID Provider over real HTTP, with a browser's
// cookie jar: sign-in, the session and cookies it gives, where a sign-in may return to, two tabs.
import t from 'tap'
import { Browser, FRONTEND, formOf, reachCallback, sessionCookie, signIn, startSsoStack } from '../helpers/oidc-stack.ts'
import { loginUrl, payloadOf, problem, setCookies } from '../helpers/oidc-assert.ts'
import { CONTACT } from '../helpers/stack.ts'

t.test('signing in at the provider gives a session cookie that can change a contact with X-CSRF', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const { page } = await signIn(browser, stack, { returnTo: `${FRONTEND}/contacts?org=1` })
  t.equal(page.status, 302)
  t.equal(page.headers.location, `${FRONTEND}/contacts?org=1`)
  const who = await browser.fetch(`${stack.url}/auth/session`)
  t.equal(who.status, 200)
  t.match(JSON.parse(who.text), { sub: 'oidc:alice', orgs: [1, 2], scope: 'contacts:read contacts:write' })
  const patch = await browser.fetch(stack.url + CONTACT, { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-csrf': '1' }, body: JSON.stringify({ name: 'Alice via SSO' }) })
  t.equal(patch.status, 204, patch.text)
  const withoutCsrf = await browser.fetch(stack.url + CONTACT, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x' }) })
  problem(t, withoutCsrf, 403, 'CSRF_HEADER_REQUIRED')
})

t.test('the session cookie is the small HttpOnly SameSite=Strict one of password login, holding no provider token', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const { page } = await signIn(browser, stack)
  const line = setCookies(page).find((cookie) => cookie.startsWith('session='))
  t.ok(line)
  t.match(line, /HttpOnly/)
  t.match(line, /SameSite=Strict/)
  t.match(line, /Path=\/(;|$)/)
  t.match(line, new RegExp(`Max-Age=${stack.config.SESSION_TTL_S}`))
  const token = sessionCookie(browser, stack) as string
  t.ok(token.length < 1024, `cookie is small (${token.length} bytes)`)
  const claims = payloadOf(token)
  t.same(Object.keys(claims).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'orgs', 'scope', 'sid', 'sub'])
  t.equal(claims.iss, 'emnify-bff')
  t.type(claims.sid, 'string')
})

t.test('the authorization request uses PKCE S256, state and nonce, and the sign-in waits in its own short-lived cookie', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const start = await browser.fetch(loginUrl(stack, `${FRONTEND}/`))
  t.equal(start.status, 302)
  const location = new URL(start.headers.location as string)
  t.equal(location.origin, stack.idp.issuer)
  const params = location.searchParams
  t.equal(params.get('response_type'), 'code')
  t.equal(params.get('client_id'), stack.idp.clientId)
  t.equal(params.get('redirect_uri'), `${stack.url}/auth/oidc/callback`)
  t.equal(params.get('code_challenge_method'), 'S256')
  t.match(params.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/)
  t.match(params.get('nonce'), /^[A-Za-z0-9_-]{43}$/)
  t.equal(params.get('scope'), 'openid profile email')
  const state = params.get('state') as string
  t.match(state, /^[A-Za-z0-9_-]{43}$/)
  const [cookie] = setCookies(start)
  t.match(cookie, new RegExp(`^oidc-tx-${state}=`))
  t.match(cookie, /HttpOnly/)
  t.match(cookie, /SameSite=Lax/)
  t.match(cookie, /Path=\/auth\/oidc\/callback/)
  t.match(cookie, /Max-Age=600/)
  // Sealed: neither the PKCE verifier nor the nonce can be read from it.
  const value = (cookie as string).slice((cookie as string).indexOf('=') + 1, (cookie as string).indexOf(';'))
  t.notMatch(Buffer.from(value, 'base64url').toString('latin1'), params.get('nonce') as string)
})

t.test('the secure cookie variant uses the __Secure- prefix for the sign-in and __Host- for the session', async (t) => {
  const stack = await startSsoStack(t, { env: { SESSION_COOKIE_SECURE: 'true' } })
  const browser = new Browser()
  const start = await browser.fetch(loginUrl(stack, `${FRONTEND}/`))
  const state = new URL(start.headers.location as string).searchParams.get('state') as string
  const [cookie] = setCookies(start)
  t.match(cookie, new RegExp(`^__Secure-oidc-tx-${state}=.*; Secure`))
})

t.test('return_to must be an absolute URL on an allowed origin, else 400 and no redirect', async (t) => {
  const stack = await startSsoStack(t)
  const refused = [
    'https://evil.example/phish',
    'http://127.0.0.1:5174/',
    'http://user:secret@127.0.0.1:5173/',
    '/contacts',
    '//evil.example/',
    'javascript:alert(1)',
    `${FRONTEND}.evil.example/`
  ]
  for (const returnTo of refused) {
    const browser = new Browser()
    const page = await browser.fetch(loginUrl(stack, returnTo))
    const body = problem(t, page, 400, 'VALIDATION_FAILED')
    t.match(body.errors, [{ pointer: '/return_to' }], returnTo)
    t.equal(page.headers.location, undefined)
    t.same(setCookies(page), [], 'no sign-in started')
  }
  const missing = await new Browser().fetch(`${stack.url}/auth/oidc/login`)
  problem(t, missing, 400, 'VALIDATION_FAILED')
})

t.test('OIDC_RETURN_ORIGINS replaces CORS_ORIGINS as the origins a sign-in may return to', async (t) => {
  const stack = await startSsoStack(t, { env: { OIDC_RETURN_ORIGINS: 'http://127.0.0.1:6100' } })
  problem(t, await new Browser().fetch(loginUrl(stack, `${FRONTEND}/`)), 400, 'VALIDATION_FAILED')
  const browser = new Browser()
  const { page } = await signIn(browser, stack, { returnTo: 'http://127.0.0.1:6100/app' })
  t.equal(page.status, 302)
  t.equal(page.headers.location, 'http://127.0.0.1:6100/app')
})

t.test('two sign-ins in two tabs of one browser both succeed, whichever finishes first', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const tab1 = await browser.navigate(loginUrl(stack, `${FRONTEND}/tab1`))
  const tab2 = await browser.navigate(loginUrl(stack, `${FRONTEND}/tab2`))
  const atCallback = (url: string) => url.startsWith(`${stack.url}/auth/oidc/callback`)
  const alice = stack.idp.users.find((user) => user.username === 'alice')
  const login = { login: 'alice', password: alice?.password as string }
  const second = await browser.submit(formOf(tab2).action, login, atCallback)
  const first = await browser.submit(formOf(tab1).action, login, atCallback)
  const [end2, end1] = [await browser.fetch(second.url), await browser.fetch(first.url)]
  t.equal(end2.status, 302, end2.text)
  t.equal(end2.headers.location, `${FRONTEND}/tab2`)
  t.equal(end1.status, 302, end1.text)
  t.equal(end1.headers.location, `${FRONTEND}/tab1`)
  t.equal((await browser.fetch(`${stack.url}/auth/session`)).status, 200)
})

t.test('a sign-in started before the BFF restarts finishes after it, and its session outlives the restart', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  await signIn(browser, stack)
  const tab = await reachCallback(browser, stack)
  await stack.restart()
  t.equal((await browser.fetch(`${stack.url}/auth/session`)).status, 200, 'the session survives')
  const finished = await browser.fetch(tab)
  t.equal(finished.status, 302, finished.text)
  t.equal((await browser.fetch(`${stack.url}/auth/session`)).status, 200)
})
