// Every way an SSO sign-in can fail ends in a problem answer and no session: the provider's
// refusal, a foreign or replayed callback, an expired sign-in, an untrustworthy ID token, the
// provider down.
import t from 'tap'
import { Browser, FRONTEND, formOf, reachCallback, signIn, startSsoStack, type SsoStack } from '../helpers/oidc-stack.ts'
import { loginUrl, noSessionSet, payloadOf, problem } from '../helpers/oidc-assert.ts'
import type { Test } from 'tap'

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

t.test('callbacks are limited per client IP like password sign-ins, before the provider is asked', async (t) => {
  const stack = await startSsoStack(t, { env: { LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: '2' } })
  const browser = new Browser()
  for (let i = 0; i < 2; i++) problem(t, await browser.fetch(`${stack.url}/auth/oidc/callback?code=x&state=${'C'.repeat(43)}`), 401, 'OIDC_LOGIN_FAILED')
  const limited = await browser.fetch(`${stack.url}/auth/oidc/callback?code=x&state=${'C'.repeat(43)}`)
  problem(t, limited, 429, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) > 0)
})
