// Assertions shared by the SSO end-to-end tests.
import type { Test } from 'tap'
import { sessionCookie, type Browser, type Page, type SsoStack } from './oidc-stack.ts'

export function payloadOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>
}

export function setCookies (page: Page): string[] {
  const header = page.headers['set-cookie']
  return header === undefined ? [] : Array.isArray(header) ? header : [header]
}

/** A problem+json answer with this status and code (and no-store on the BFF's auth routes); its body. */
export function problem (t: Test, page: Page, status: number, code: string): Record<string, unknown> {
  t.equal(page.status, status, page.text)
  t.match(page.headers['content-type'], /^application\/problem\+json/)
  const body = JSON.parse(page.text) as Record<string, unknown>
  t.equal(body.code, code)
  if (page.url.includes('/auth/')) t.equal(page.headers['cache-control'], 'no-store')
  return body
}

export const loginUrl = (stack: SsoStack, returnTo: string) => `${stack.url}/auth/oidc/login?return_to=${encodeURIComponent(returnTo)}`

/** No session cookie was set by any answer of the BFF. */
export function noSessionSet (t: Test, browser: Browser, stack: SsoStack): void {
  t.equal(sessionCookie(browser, stack), undefined, 'no session cookie')
  const set = browser.history.filter((page) => page.url.startsWith(stack.url)).flatMap(setCookies)
  t.notOk(set.some((line) => /^(__Host-)?session=[^;]/.test(line)), 'no answer set a session')
}
