// Ending SSO sessions: the provider's back-channel logout (real, and hand-made logout tokens the
// BFF must refuse), RP-initiated logout through POST /auth/logout, and the fleet sharing it.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { randomUUID } from 'node:crypto'
import type { Test } from 'tap'
import { Browser, FRONTEND, formOf, reachCallback, sessionCookie, signIn, startSsoStack, type Page, type SsoStack } from '../helpers/oidc-stack.ts'
import { payloadOf, problem } from '../helpers/oidc-assert.ts'
import { redisMissing, startRedis } from '../helpers/redis.ts'
import { forge, session } from '../helpers/stack.ts'

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout'

/** The claims of a valid logout token from this stack's provider. */
function logoutClaims (stack: SsoStack, claims: Record<string, unknown>): Record<string, unknown> {
  return { iss: stack.idp.issuer, aud: stack.idp.clientId, iat: Math.floor(Date.now() / 1000), jti: randomUUID(), events: { [BACKCHANNEL_EVENT]: {} }, ...claims }
}

async function postLogout (browser: Browser, stack: SsoStack, body: string, contentType = 'application/x-www-form-urlencoded'): Promise<Page> {
  return await browser.fetch(`${stack.url}/auth/oidc/backchannel-logout`, { method: 'POST', headers: { 'content-type': contentType }, body })
}

const form = (token: string) => new URLSearchParams({ logout_token: token }).toString()

async function sessionStatus (browser: Browser, stack: SsoStack): Promise<number> {
  return (await browser.fetch(`${stack.url}/auth/session`)).status
}

/** Signs in at the provider's own sign-out page, as a user ending their day there would. */
async function signOutAtProvider (browser: Browser, stack: SsoStack, url = `${stack.idp.issuer}/session/end?client_id=${stack.idp.clientId}`): Promise<Page> {
  const confirm = await browser.navigate(url)
  const { action, fields } = formOf(confirm)
  return await browser.submit(action, { ...fields, logout: 'yes' })
}

t.test('signing out at the provider ends the BFF session through back-channel logout', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  await signIn(browser, stack)
  const token = sessionCookie(browser, stack) as string
  t.equal(await sessionStatus(browser, stack), 200)
  const done = await signOutAtProvider(browser, stack)
  t.equal(done.status, 200, done.text)
  t.match(stack.idp.backchannel, [{ ok: true, accountId: 'alice', sid: payloadOf(token).sid }], 'the BFF answered the provider 200')
  problem(t, await browser.fetch(`${stack.url}/auth/session`), 401, 'UNAUTHENTICATED')
  const bearer = await new Browser().fetch(`${stack.url}/auth/session`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(bearer.status, 401, 'the same token as a Bearer is ended too')
  t.ok(stack.logs.records().some((line) => line.event === 'oidc.backchannel_logout' && line.kind === 'sid'))
})

t.test('the back-channel answer is 200 with no body and not cacheable', async (t) => {
  const stack = await startSsoStack(t)
  const page = await postLogout(new Browser(), stack, form(await stack.idp.sign(logoutClaims(stack, { sid: 'some-provider-session' }), { typ: 'logout+jwt' })))
  t.equal(page.status, 200)
  t.equal(page.text, '')
  t.equal(page.headers['cache-control'], 'no-store')
})

t.test('POST /auth/logout of an SSO session answers 200 with the provider\'s end-session URL; it signs out there too', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  await signIn(browser, stack)
  const logout = await browser.fetch(`${stack.url}/auth/logout`, { method: 'POST', headers: { 'x-csrf': '1' } })
  t.equal(logout.status, 200, logout.text)
  t.match(logout.headers['content-type'], /^application\/json/)
  const { end_session_url: endSession } = JSON.parse(logout.text) as { end_session_url: string }
  const url = new URL(endSession)
  t.equal(`${url.origin}${url.pathname}`, `${stack.idp.issuer}/session/end`)
  t.equal(url.searchParams.get('client_id'), stack.idp.clientId)
  t.notOk(url.searchParams.has('id_token_hint'), 'the BFF keeps no ID token to hint with')
  t.equal(sessionCookie(browser, stack), undefined, 'the cookie is cleared')
  t.equal(await sessionStatus(browser, stack), 401)

  await signOutAtProvider(browser, stack, endSession)
  // The provider's session is over: a new sign-in asks for the password again.
  const again = await browser.navigate(`${stack.url}/auth/oidc/login?return_to=${encodeURIComponent('http://127.0.0.1:5173/')}`)
  t.match(again.text, /name="password"/)
})

t.test('signing out with return_to comes back to that page once the provider\'s session has ended', async (t) => {
  const back = `${FRONTEND}/`
  const stack = await startSsoStack(t, { idp: { postLogoutRedirectUris: [back] } })
  const browser = new Browser()
  await signIn(browser, stack)
  const logout = await browser.fetch(`${stack.url}/auth/logout?return_to=${encodeURIComponent(back)}`, { method: 'POST', headers: { 'x-csrf': '1' } })
  t.equal(logout.status, 200, logout.text)
  const endSession = new URL((JSON.parse(logout.text) as { end_session_url: string }).end_session_url)
  t.equal(`${endSession.origin}${endSession.pathname}`, `${stack.idp.issuer}/session/end`)
  t.equal(endSession.searchParams.get('post_logout_redirect_uri'), back)
  t.equal(endSession.searchParams.get('client_id'), stack.idp.clientId, 'client_id, which the provider needs with post_logout_redirect_uri')
  t.notOk(endSession.searchParams.has('id_token_hint'), 'still no ID token')
  t.equal(await sessionStatus(browser, stack), 401, 'the BFF session is over')

  const confirm = await browser.navigate(endSession.href)
  const { action, fields } = formOf(confirm)
  const done = await browser.submit(action, { ...fields, logout: 'yes' }, (url) => url.startsWith(FRONTEND))
  t.equal(done.url, back, 'the provider sends the browser back to the page it signed out from')
  const again = await browser.navigate(`${stack.url}/auth/oidc/login?return_to=${encodeURIComponent(back)}`)
  t.match(again.text, /name="password"/, 'and its session is over')
})

t.test('a logout return_to outside OIDC_RETURN_ORIGINS is refused with 400 and the session is not ended', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  await signIn(browser, stack)
  for (const returnTo of ['https://attacker.example/', 'http://127.0.0.1:5174/', '/relative', 'javascript:alert(1)', `http://user@${FRONTEND.slice(7)}/`]) {
    const page = await browser.fetch(`${stack.url}/auth/logout?return_to=${encodeURIComponent(returnTo)}`, { method: 'POST', headers: { 'x-csrf': '1' } })
    const body = problem(t, page, 400, 'VALIDATION_FAILED')
    t.match(body.errors, [{ pointer: '/return_to' }], returnTo)
    t.notOk(page.text.includes('end_session_url'), 'no end-session URL')
  }
  t.ok(sessionCookie(browser, stack), 'the cookie is kept')
  t.equal(await sessionStatus(browser, stack), 200, 'the session still works')
})

t.test('POST /auth/logout of a minted or password session still answers 204, return_to or not', async (t) => {
  const stack = await startSsoStack(t)
  for (const query of ['', `?return_to=${encodeURIComponent(`${FRONTEND}/`)}`, '?return_to=https%3A%2F%2Fattacker.example%2F']) {
    const page = await new Browser().fetch(`${stack.url}/auth/logout${query}`, { method: 'POST', headers: { authorization: `Bearer ${session(`local-${query.length}`, [1])}` } })
    t.equal(page.status, 204, query)
    t.equal(page.text, '')
  }
})

t.test('a logout token naming a sid ends only that provider session', async (t) => {
  const stack = await startSsoStack(t)
  const first = new Browser()
  const second = new Browser()
  await signIn(first, stack)
  await signIn(second, stack)
  const sid = payloadOf(sessionCookie(first, stack) as string).sid
  t.not(sid, payloadOf(sessionCookie(second, stack) as string).sid, 'two browsers, two provider sessions')
  t.equal((await postLogout(new Browser(), stack, form(await stack.idp.sign(logoutClaims(stack, { sub: 'alice', sid }))))).status, 200)
  t.equal(await sessionStatus(first, stack), 401)
  t.equal(await sessionStatus(second, stack), 200)
})

t.test('one provider session signed into twice ends both BFF sessions with one sid', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  await signIn(browser, stack)
  const before = sessionCookie(browser, stack) as string
  // The provider remembers the user: no form the second time.
  const callback = await reachCallback(browser, stack, { username: undefined })
  t.equal((await browser.fetch(callback)).status, 302)
  const after = sessionCookie(browser, stack) as string
  t.not(after, before)
  t.equal(payloadOf(after).sid, payloadOf(before).sid)
  await signOutAtProvider(browser, stack)
  for (const token of [before, after]) {
    t.equal((await new Browser().fetch(`${stack.url}/auth/session`, { headers: { authorization: `Bearer ${token}` } })).status, 401)
  }
})

t.test('a logout token naming only the subject ends every session of that SSO user, and nobody else\'s', async (t) => {
  const stack = await startSsoStack(t)
  const alice1 = new Browser()
  const alice2 = new Browser()
  const carol = new Browser()
  await signIn(alice1, stack)
  await signIn(alice2, stack)
  await signIn(carol, stack, { username: 'carol' })
  // A users-file or minted "alice" is another person: the SSO subject is oidc:alice.
  const localAlice = session('alice', [1])
  t.equal((await postLogout(new Browser(), stack, form(await stack.idp.sign(logoutClaims(stack, { sub: 'alice' }))))).status, 200)
  t.equal(await sessionStatus(alice1, stack), 401)
  t.equal(await sessionStatus(alice2, stack), 401)
  t.equal(await sessionStatus(carol, stack), 200)
  t.equal((await new Browser().fetch(`${stack.url}/auth/session`, { headers: { authorization: `Bearer ${localAlice}` } })).status, 200, 'the local alice keeps her session')
  t.ok(stack.logs.records().some((line) => line.event === 'oidc.backchannel_logout' && line.kind === 'sub' && line.sub === 'oidc:alice'))
})

t.test('logout tokens the BFF must not act on are refused with 400 and end nothing', async (t) => {
  const stack = await startSsoStack(t)
  const alice = new Browser()
  await signIn(alice, stack)
  const sid = payloadOf(sessionCookie(alice, stack) as string).sid
  const now = Math.floor(Date.now() / 1000)
  const valid = (claims: Record<string, unknown> = {}) => logoutClaims(stack, { sub: 'alice', sid, ...claims })
  const without = (name: string) => {
    const claims = valid()
    delete claims[name]
    return claims
  }
  const cases: Array<[string, () => Promise<string>]> = [
    ['signed by a key the provider does not publish', () => stack.idp.sign(valid(), { foreignKey: true })],
    ['from another issuer', () => stack.idp.sign(valid({ iss: 'http://127.0.0.1:1' }))],
    ['for another client', () => stack.idp.sign(valid({ aud: 'another-client' }))],
    ['without iat', () => stack.idp.sign(without('iat'))],
    ['issued too long ago', () => stack.idp.sign(valid({ iat: now - 600 }))],
    ['issued in the future', () => stack.idp.sign(valid({ iat: now + 600 }))],
    ['expired', () => stack.idp.sign(valid({ exp: now - 120 }))],
    ['without jti', () => stack.idp.sign(without('jti'))],
    ['without events', () => stack.idp.sign(without('events'))],
    ['with events lacking the back-channel logout event', () => stack.idp.sign(valid({ events: { 'http://schemas.openid.net/event/other': {} } }))],
    ['with the event not an object', () => stack.idp.sign(valid({ events: { [BACKCHANNEL_EVENT]: true } }))],
    ['with a nonce (an ID token, not a logout token)', () => stack.idp.sign(valid({ nonce: 'n-0S6_WzA2Mj' }))],
    ['naming neither sub nor sid', async () => { const claims = without('sub'); delete claims.sid; return stack.idp.sign(claims) }],
    ['of another type', () => stack.idp.sign(valid(), { typ: 'at+jwt' })],
    ['signed with the client secret (HS256)', async () => forge({ alg: 'HS256', typ: 'logout+jwt' }, valid(), { key: stack.idp.clientSecret })],
    ['unsigned', async () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(valid())).toString('base64url')}.`],
    ['not a JWT', async () => 'not-a-jwt']
  ]
  for (const [name, make] of cases) {
    const page = await postLogout(new Browser(), stack, form(await make()))
    const body = problem(t, page, 400, 'VALIDATION_FAILED')
    t.match(body.errors, [{ pointer: '/logout_token' }], name)
  }
  problem(t, await postLogout(new Browser(), stack, ''), 400, 'VALIDATION_FAILED')
  const token = await stack.idp.sign(valid())
  problem(t, await postLogout(new Browser(), stack, `${form(token)}&${form(token)}`), 400, 'VALIDATION_FAILED')
  problem(t, await postLogout(new Browser(), stack, JSON.stringify({ logout_token: token }), 'application/json'), 400, 'VALIDATION_FAILED')
  problem(t, await postLogout(new Browser(), stack, form(token), 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE')
  t.equal(await sessionStatus(alice, stack), 200, 'nothing was ended')
  t.ok(stack.logs.records().filter((line) => line.event === 'oidc.backchannel_logout.rejected').length >= cases.length)
})

t.test('a logout token is acted on once: its jti cannot be replayed', async (t) => {
  const stack = await startSsoStack(t)
  const token = await stack.idp.sign(logoutClaims(stack, { sid: 'a-provider-session' }))
  t.equal((await postLogout(new Browser(), stack, form(token))).status, 200)
  problem(t, await postLogout(new Browser(), stack, form(token)), 400, 'VALIDATION_FAILED')
})

t.test('the provider\'s keys unreachable answers 503 OIDC_PROVIDER_UNAVAILABLE, so the provider retries', async (t) => {
  const stack = await startSsoStack(t)
  const token = await stack.idp.sign(logoutClaims(stack, { sid: 'a-provider-session' }))
  await stack.idp.close()
  const page = await postLogout(new Browser(), stack, form(token))
  problem(t, page, 503, 'OIDC_PROVIDER_UNAVAILABLE')
  t.ok(Number(page.headers['retry-after']) > 0)
})

t.test('a back-channel logout received by one instance ends the session on every instance sharing Redis', { skip: redisMissing() }, async (t: Test) => {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const a = await startSsoStack(t, { env: { REDIS_URL: redis.url } })
  const b = await startSsoStack(t, { env: { REDIS_URL: redis.url }, provider: a.idp })
  const browser = new Browser()
  await signIn(browser, a)
  const token = sessionCookie(browser, a) as string
  const onA = () => new Browser().fetch(`${a.url}/auth/session`, { headers: { authorization: `Bearer ${token}` } })
  t.equal((await onA()).status, 200)
  t.equal((await postLogout(new Browser(), b, form(await a.idp.sign(logoutClaims(a, { sid: payloadOf(token).sid }))))).status, 200)
  // Within 1 s on the other instance.
  let status = 0
  for (let tries = 0; tries < 40 && status !== 401; tries++) {
    status = (await onA()).status
    if (status !== 401) await sleep(50)
  }
  t.equal(status, 401)
})
