// Single sign-on end to end against a real OpenID Provider over real HTTP, with a browser's
// cookie jar: sign-in, the session it gives, every way a sign-in can fail, two tabs at once.
import t from 'tap'
import type { Test } from 'tap'
import { CONTACT } from '../helpers/stack.ts'
import { Browser, FRONTEND, formOf, reachCallback, sessionCookie, signIn, startSsoStack, type Page, type SsoStack } from '../helpers/oidc-stack.ts'

function payloadOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>
}

function setCookies (page: Page): string[] {
  const header = page.headers['set-cookie']
  return header === undefined ? [] : Array.isArray(header) ? header : [header]
}

function problem (t: Test, page: Page, status: number, code: string) {
  t.equal(page.status, status, page.text)
  t.match(page.headers['content-type'], /^application\/problem\+json/)
  const body = JSON.parse(page.text) as Record<string, unknown>
  t.equal(body.code, code)
  if (page.url.includes('/auth/')) t.equal(page.headers['cache-control'], 'no-store')
  return body
}

const loginUrl = (stack: SsoStack, returnTo: string) => `${stack.url}/auth/oidc/login?return_to=${encodeURIComponent(returnTo)}`

/** No session cookie was set by any answer of the BFF. */
function noSessionSet (t: Test, browser: Browser, stack: SsoStack) {
  t.equal(sessionCookie(browser, stack), undefined, 'no session cookie')
  const set = browser.history.filter((page) => page.url.startsWith(stack.url)).flatMap(setCookies)
  t.notOk(set.some((line) => /^session=[^;]/.test(line)), 'no answer set a session')
}

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

t.test('a user who cancels at the provider gets 401 OIDC_LOGIN_FAILED and no session', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const form = await browser.navigate(loginUrl(stack, `${FRONTEND}/`))
  const { action } = formOf(form)
  const page = await browser.submit(action, { login: '', password: '', cancel: 'yes' })
  const body = problem(t, page, 401, 'OIDC_LOGIN_FAILED')
  t.match(body.detail, /access_denied/)
  noSessionSet(t, browser, stack)
  t.notOk(stack.providerCalls.includes('/token'), 'no code exchange')
})

t.test('a callback whose state names no sign-in of this browser is refused', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const callback = new URL(await reachCallback(browser, stack))
  const other = new URL(callback)
  other.searchParams.set('state', 'A'.repeat(43))
  problem(t, await browser.fetch(other.href), 401, 'OIDC_LOGIN_FAILED')
  const malformed = new URL(callback)
  malformed.searchParams.set('state', '../../x')
  problem(t, await browser.fetch(malformed.href), 401, 'OIDC_LOGIN_FAILED')
  const none = new URL(callback)
  none.searchParams.delete('state')
  problem(t, await browser.fetch(none.href), 401, 'OIDC_LOGIN_FAILED')
  // Another browser (an attacker's link) has no transaction for the real state either.
  problem(t, await new Browser().fetch(callback.href), 401, 'OIDC_LOGIN_FAILED')
  noSessionSet(t, browser, stack)
  t.notOk(stack.providerCalls.includes('/token'))
})

t.test('a code from one sign-in presented with another sign-in\'s state fails the PKCE check', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const first = new URL(await reachCallback(browser, stack))
  const second = new URL(await reachCallback(browser, stack))
  const swapped = new URL(second)
  swapped.searchParams.set('code', first.searchParams.get('code') as string)
  problem(t, await browser.fetch(swapped.href), 401, 'OIDC_LOGIN_FAILED')
  t.ok(stack.providerCalls.includes('/token'), 'the provider refused the exchange')
  noSessionSet(t, browser, stack)
})

t.test('a replayed callback is refused, with or without the old sign-in cookie', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const callback = await reachCallback(browser, stack)
  const state = new URL(callback).searchParams.get('state') as string
  const sealed = browser.cookies(`${stack.url}/auth/oidc/callback`)[`oidc-tx-${state}`] as string
  t.ok(sealed)
  t.equal((await browser.fetch(callback)).status, 302, 'first use signs in')
  const exchanges = stack.providerCalls.filter((path) => path === '/token').length
  t.equal(browser.cookies(`${stack.url}/auth/oidc/callback`)[`oidc-tx-${state}`], undefined, 'the sign-in cookie is cleared')

  const replayer = new Browser()
  problem(t, await replayer.fetch(callback), 401, 'OIDC_LOGIN_FAILED')
  replayer.setCookie(stack.url, `oidc-tx-${state}`, sealed, '/auth/oidc/callback')
  const withCookie = await replayer.fetch(callback)
  const body = problem(t, withCookie, 401, 'OIDC_LOGIN_FAILED')
  t.match(body.detail, /already used/)
  t.equal(stack.providerCalls.filter((path) => path === '/token').length, exchanges, 'the provider is not asked again')
  noSessionSet(t, replayer, stack)
})

t.test('a sign-in cookie moved to another state, or altered, is refused', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const start = await browser.fetch(loginUrl(stack, `${FRONTEND}/`))
  const state = new URL(start.headers.location as string).searchParams.get('state') as string
  const sealed = browser.cookies(`${stack.url}/auth/oidc/callback`)[`oidc-tx-${state}`] as string
  const other = 'B'.repeat(43)
  const attacker = new Browser()
  attacker.setCookie(stack.url, `oidc-tx-${other}`, sealed, '/auth/oidc/callback')
  problem(t, await attacker.fetch(`${stack.url}/auth/oidc/callback?code=x&state=${other}`), 401, 'OIDC_LOGIN_FAILED')
  attacker.setCookie(stack.url, `oidc-tx-${state}`, `${sealed.slice(0, -2)}AA`, '/auth/oidc/callback')
  problem(t, await attacker.fetch(`${stack.url}/auth/oidc/callback?code=x&state=${state}`), 401, 'OIDC_LOGIN_FAILED')
  t.notOk(stack.providerCalls.includes('/token'))
})

t.test('a sign-in that comes back after the transaction expired is refused', async (t) => {
  let now = Date.now()
  const stack = await startSsoStack(t, { now: () => now })
  const browser = new Browser()
  const callback = await reachCallback(browser, stack)
  // The cookie itself may still be there (a browser with a slow clock); its sealed expiry counts.
  now += 601_000
  const body = problem(t, await browser.fetch(callback), 401, 'OIDC_LOGIN_FAILED')
  t.match(body.detail, /too long/)
  noSessionSet(t, browser, stack)

  const onTime = new Browser()
  const fresh = await reachCallback(onTime, stack)
  now += 599_000
  t.equal((await onTime.fetch(fresh)).status, 302, 'just inside the window still signs in')
})

/** Signs in with the provider's token answer changed by `change`; the BFF must refuse it. */
async function tamperedSignIn (t: Test, change: (claims: Record<string, unknown>, stack: SsoStack) => Promise<Record<string, unknown>>) {
  const stack = await startSsoStack(t)
  stack.tamperTokens(async (tokens) => ({ ...tokens, ...(await change(payloadOf(tokens.id_token as string), stack)) }))
  const browser = new Browser()
  const { page } = await signIn(browser, stack)
  problem(t, page, 401, 'OIDC_LOGIN_FAILED')
  noSessionSet(t, browser, stack)
}

t.test('an ID token the BFF cannot trust ends the sign-in with 401 OIDC_LOGIN_FAILED', async (t) => {
  t.test('signed by a key the provider does not publish', (t) => tamperedSignIn(t, async (claims, stack) => ({ id_token: await stack.idp.sign(claims, { foreignKey: true }) })))
  t.test('for another client', (t) => tamperedSignIn(t, async (claims, stack) => ({ id_token: await stack.idp.sign({ ...claims, aud: 'someone-else' }) })))
  t.test('from another issuer', (t) => tamperedSignIn(t, async (claims, stack) => ({ id_token: await stack.idp.sign({ ...claims, iss: 'http://127.0.0.1:1' }) })))
  t.test('expired', (t) => tamperedSignIn(t, async (claims, stack) => ({ id_token: await stack.idp.sign({ ...claims, iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 }) })))
  t.test('with another nonce', (t) => tamperedSignIn(t, async (claims, stack) => ({ id_token: await stack.idp.sign({ ...claims, nonce: 'not-the-nonce-of-this-sign-in' }) })))
  t.test('with its claims altered after signing', (t) => tamperedSignIn(t, async (claims, stack) => {
    const [header, , signature] = (await stack.idp.sign(claims)).split('.')
    const altered = Buffer.from(JSON.stringify({ ...claims, sub: 'mallory' })).toString('base64url')
    return { id_token: `${header}.${altered}.${signature}` }
  }))
  t.test('unsigned (alg none)', (t) => tamperedSignIn(t, async (claims) => {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    return { id_token: `${encode({ alg: 'none' })}.${encode(claims)}.` }
  }))
  t.test('missing', (t) => tamperedSignIn(t, async () => ({ id_token: undefined })))
  t.end()
})

t.test('a user without organisations gets 403 OIDC_NO_ORGANISATIONS and no session', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const { page } = await signIn(browser, stack, { username: 'bob' })
  const body = problem(t, page, 403, 'OIDC_NO_ORGANISATIONS')
  t.match(body.detail, /emnify_orgs/)
  noSessionSet(t, browser, stack)
})

t.test('an organisations claim that is empty or malformed gives no session either', async (t) => {
  const stack = await startSsoStack(t, {
    idp: {
      users: [
        { username: 'empty', password: 'empty-password-1', orgs: [] },
        { username: 'zero', password: 'zero-password-12', orgs: [0, 1] },
        { username: 'text', password: 'text-password-12', orgs: '1,2' },
        { username: 'strings', password: 'strings-password', orgs: ['3', 4, 4] },
        { username: 'all', password: 'all-password-123', orgs: '*' }
      ]
    }
  })
  for (const username of ['empty', 'zero', 'text']) {
    const browser = new Browser()
    problem(t, (await signIn(browser, stack, { username })).page, 403, 'OIDC_NO_ORGANISATIONS')
    noSessionSet(t, browser, stack)
  }
  const strings = new Browser()
  t.equal((await signIn(strings, stack, { username: 'strings' })).page.status, 302)
  t.same(payloadOf(sessionCookie(strings, stack) as string).orgs, [3, 4], 'decimal strings are ids; duplicates go')
  const all = new Browser()
  t.equal((await signIn(all, stack, { username: 'all' })).page.status, 302)
  t.equal(payloadOf(sessionCookie(all, stack) as string).orgs, '*')
})

t.test('claims are read from the ID token when the provider puts them there, without a userinfo call', async (t) => {
  const stack = await startSsoStack(t, { idp: { claimsInIdToken: true } })
  const browser = new Browser()
  t.equal((await signIn(browser, stack)).page.status, 302)
  t.notOk(stack.providerCalls.includes('/me'), 'no userinfo call')
  t.same(payloadOf(sessionCookie(browser, stack) as string).orgs, [1, 2])

  const fromUserinfo = await startSsoStack(t)
  t.equal((await signIn(new Browser(), fromUserinfo)).page.status, 302)
  t.ok(fromUserinfo.providerCalls.includes('/me'), 'userinfo asked when the ID token lacks the claims')
})

t.test('the scope claim limits what the session may do; without OIDC_SCOPE_CLAIM a session holds both scopes', async (t) => {
  const stack = await startSsoStack(t)
  const carol = new Browser()
  await signIn(carol, stack, { username: 'carol' })
  const who = JSON.parse((await carol.fetch(`${stack.url}/auth/session`)).text) as Record<string, unknown>
  t.equal(who.scope, 'contacts:read')
  const patch = await carol.fetch(stack.url + '/api/v1/organisation/2/contact/1', { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-csrf': '1' }, body: JSON.stringify({ name: 'x' }) })
  problem(t, patch, 403, 'INSUFFICIENT_SCOPE')

  const unscoped = await startSsoStack(t, { env: { OIDC_SCOPE_CLAIM: '' } })
  const alice = new Browser()
  await signIn(alice, unscoped, { username: 'carol' })
  t.notOk('scope' in payloadOf(sessionCookie(alice, unscoped) as string), 'no scope claim: both scopes')
  t.equal(JSON.parse((await alice.fetch(`${unscoped.url}/auth/session`)).text).scope, 'contacts:read contacts:write')
})

t.test('a user whose scope claim names no contact scope gets a session that may change nothing', async (t) => {
  const stack = await startSsoStack(t, { idp: { users: [{ username: 'dave', password: 'dave-password-12', orgs: [1], scope: ['admin', 'contacts:delete'] }, { username: 'erin', password: 'erin-password-12', orgs: [1] }] } })
  for (const username of ['dave', 'erin']) {
    const browser = new Browser()
    await signIn(browser, stack, { username })
    t.equal(payloadOf(sessionCookie(browser, stack) as string).scope, '', username)
    const patch = await browser.fetch(stack.url + CONTACT, { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-csrf': '1' }, body: JSON.stringify({ name: 'x' }) })
    problem(t, patch, 403, 'INSUFFICIENT_SCOPE')
  }
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

t.test('the provider unreachable at the callback answers 503 OIDC_PROVIDER_UNAVAILABLE, no session', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const callback = await reachCallback(browser, stack)
  await stack.idp.close()
  const page = await browser.fetch(callback)
  problem(t, page, 503, 'OIDC_PROVIDER_UNAVAILABLE')
  t.ok(Number(page.headers['retry-after']) > 0)
  noSessionSet(t, browser, stack)
  t.ok(stack.logs.records().some((line) => line.event === 'oidc.login.provider_unavailable'))
})

t.test('failed sign-ins are logged with a reason, and nothing secret', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const callback = await reachCallback(browser, stack)
  await browser.fetch(callback)
  await new Browser().fetch(callback)
  const failed = stack.logs.records().filter((line) => line.event === 'oidc.login.failed')
  t.equal(failed.length, 1)
  t.equal(failed[0]?.reason, 'no transaction for state')
  const access = stack.logs.records().filter((line) => line.path === '/auth/oidc/callback')
  t.ok(access.length >= 2)
  t.notOk(JSON.stringify(access).includes('code='), 'the access line has no query string')
  // The leak scan at teardown checks every line and answer for the code, tokens and secret.
})
