// How the provider's claims become the BFF session: organisations, scope, and where they are read.
import t from 'tap'
import { Browser, sessionCookie, signIn, startSsoStack } from '../helpers/oidc-stack.ts'
import { noSessionSet, payloadOf, problem } from '../helpers/oidc-assert.ts'
import { CONTACT } from '../helpers/stack.ts'

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

t.test('a user whose scope claim names no contact scope gets a session that may neither read nor change contacts', async (t) => {
  const stack = await startSsoStack(t, { idp: { users: [{ username: 'dave', password: 'dave-password-12', orgs: [1], scope: ['admin', 'contacts:delete'] }, { username: 'erin', password: 'erin-password-12', orgs: [1] }] } })
  for (const username of ['dave', 'erin']) {
    const browser = new Browser()
    await signIn(browser, stack, { username })
    t.equal(payloadOf(sessionCookie(browser, stack) as string).scope, '', username)
    const patch = await browser.fetch(stack.url + CONTACT, { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-csrf': '1' }, body: JSON.stringify({ name: 'x' }) })
    problem(t, patch, 403, 'INSUFFICIENT_SCOPE')
    problem(t, await browser.fetch(stack.url + CONTACT), 403, 'INSUFFICIENT_SCOPE')
  }
})
