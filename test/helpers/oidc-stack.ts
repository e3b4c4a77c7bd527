// The BFF with single sign-on against a real OpenID Provider (simulator/identity-provider.ts), the
// emnify simulator behind it, and a small browser with a cookie jar that follows redirects the
// way a real one does. Everything the BFF writes is leak-scanned when the test ends; the client
// secret, codes, PKCE verifiers and every token the provider issues are registered as secrets.
import { request } from 'undici'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import type { Config } from '../../src/config/config.ts'
import type { CustomFetch } from '../../src/auth/oidc/provider.ts'
import { startIdentityProvider, type IdentityProviderOptions, type RunningIdentityProvider } from '../../simulator/identity-provider.ts'
import { startSimulator, type RunningSimulator } from '../../simulator/simulator.ts'
import { LeakWatch, secrets } from './leak-scan.ts'
import { freePort } from './redis.ts'
import { APPLICATION_TOKEN, captureLogs, testConfig, type LogCapture } from './stack.ts'

interface Teardown { teardown: (fn: () => unknown) => void }

export const FRONTEND = 'http://127.0.0.1:5173'

// The provider must know the BFF's redirect URI before the BFF listens: tests pick its port first.
export { freePort }

/** What a test may do to the provider's token answers on their way to the BFF. */
export type TokenTamper = (tokens: Record<string, unknown>) => Record<string, unknown> | Promise<Record<string, unknown>>

export interface SsoStackOptions {
  env?: Record<string, string>
  idp?: Partial<IdentityProviderOptions>
  /** The BFF's clock for transactions and logout tokens (ms epoch). */
  now?: () => number
  /** Another BFF instance in front of the same provider (the fleet); it is not closed here. */
  provider?: RunningIdentityProvider
}

export interface SsoStack {
  app: FastifyInstance
  url: string
  idp: RunningIdentityProvider
  sim: RunningSimulator
  config: Config
  logs: LogCapture
  /** Replaces the provider's next token answers until cleared (undefined). */
  tamperTokens: (tamper: TokenTamper | undefined) => void
  /** Calls the BFF made to the provider, by path. */
  providerCalls: string[]
  /** Stops the BFF and starts a new process-alike with the same configuration on the same port. */
  restart: () => Promise<void>
}

/** Registers what passes between the BFF and the provider as secrets, and lets tests tamper with token answers. */
function providerFetch (calls: string[], tamper: () => TokenTamper | undefined): CustomFetch {
  return async (url, options) => {
    calls.push(new URL(url).pathname)
    if (typeof options.body === 'string' || options.body instanceof URLSearchParams) {
      const form = new URLSearchParams(options.body)
      for (const name of ['code', 'code_verifier', 'client_secret']) secrets.add(`${name} sent to the provider`, form.get(name) ?? undefined)
    }
    const authorization = options.headers.authorization ?? options.headers.Authorization
    secrets.add('an Authorization header sent to the provider', authorization?.replace(/^\w+ /, ''))
    const response = await fetch(url, options as RequestInit)
    if (!url.endsWith('/token')) return response
    const tokens = await response.json() as Record<string, unknown>
    for (const name of ['access_token', 'id_token', 'refresh_token']) secrets.add(`the ${name} the provider issued`, tokens[name])
    const change = tamper()
    const body = change === undefined ? tokens : await change(tokens)
    for (const name of ['access_token', 'id_token']) secrets.add(`a tampered ${name}`, body[name])
    return new Response(JSON.stringify(body), { status: response.status, headers: response.headers })
  }
}

/** The BFF on a free port with SSO against a fresh provider and simulator. */
export async function startSsoStack (t: Teardown, options: SsoStackOptions = {}): Promise<SsoStack> {
  const watch = new LeakWatch(secrets)
  t.teardown(() => watch.assertClean())
  const sim = await startSimulator({ applicationTokens: [APPLICATION_TOKEN], onTokenIssued: (token) => secrets.add('an auth_token issued by the simulator', token) })
  t.teardown(() => sim.close())
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const idp = options.provider ?? await startIdentityProvider({ bffUrl: url, ...options.idp })
  if (options.provider === undefined) t.teardown(() => idp.close())
  secrets.add('the OIDC client secret', idp.clientSecret)
  for (const user of idp.users) secrets.add('a password at the identity provider', user.password)

  const config = testConfig({
    EMNIFY_API_URL: sim.url,
    OIDC_ISSUER: idp.issuer,
    OIDC_CLIENT_ID: idp.clientId,
    OIDC_CLIENT_SECRET: idp.clientSecret,
    PUBLIC_URL: url,
    CORS_ORIGINS: FRONTEND,
    OIDC_SCOPE_CLAIM: 'emnify_scope',
    SESSION_COOKIE_SECURE: 'false',
    ...options.env
  })
  let tamper: TokenTamper | undefined
  const providerCalls: string[] = []
  const fetch = providerFetch(providerCalls, () => tamper)
  // Scanned for leaks when the file ends, like every app's lines.
  const logs = captureLogs()
  const start = async () => {
    const app = await buildApp(config, { logStream: logs.stream, oidc: { fetch, ...(options.now === undefined ? {} : { now: options.now }) } })
    t.teardown(() => app.close())
    watch.watchServer(app.server)
    await app.listen({ host: '127.0.0.1', port })
    return app
  }
  const stack: SsoStack = {
    app: await start(),
    url,
    idp,
    sim,
    config,
    logs,
    providerCalls,
    tamperTokens: (next) => { tamper = next },
    restart: async () => {
      await stack.app.close()
      stack.app = await start()
    }
  }
  return stack
}

export interface Page {
  url: string
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

interface StoredCookie { value: string, path: string, expires: number }

/**
 * A browser, as far as sign-in needs one: a cookie jar per host (ports share cookies, as in real
 * browsers), redirects followed one at a time, forms posted.
 */
export class Browser {
  readonly #jar = new Map<string, Map<string, StoredCookie>>()
  /** Every page visited, redirects included. */
  readonly history: Page[] = []

  cookies (url: string): Record<string, string> {
    const { hostname, pathname } = new URL(url)
    const now = Date.now()
    const out: Record<string, string> = {}
    for (const [key, cookie] of this.#jar.get(hostname) ?? []) {
      if (cookie.expires <= now || !pathname.startsWith(cookie.path)) continue
      out[key.slice(0, key.indexOf('\n'))] = cookie.value
    }
    return out
  }

  /** Adds or replaces a cookie, as a test that copies one from another browser would. */
  setCookie (url: string, name: string, value: string, path = '/'): void {
    const { hostname } = new URL(url)
    let host = this.#jar.get(hostname)
    if (host === undefined) this.#jar.set(hostname, host = new Map())
    host.set(`${name}\n${path}`, { value, path, expires: Infinity })
  }

  #store (url: string, header: string | string[] | undefined): void {
    for (const line of header === undefined ? [] : Array.isArray(header) ? header : [header]) {
      const [pair = '', ...attributes] = line.split(';').map((part) => part.trim())
      const eq = pair.indexOf('=')
      const name = pair.slice(0, eq)
      let path = '/'
      let expires = Infinity
      for (const attribute of attributes) {
        const [key = '', value = ''] = attribute.split('=')
        if (key.toLowerCase() === 'path') path = value
        if (key.toLowerCase() === 'max-age') expires = Date.now() + Number(value) * 1000
        if (key.toLowerCase() === 'expires' && expires === Infinity) expires = Date.parse(value)
      }
      const { hostname } = new URL(url)
      let host = this.#jar.get(hostname)
      if (host === undefined) this.#jar.set(hostname, host = new Map())
      if (expires <= Date.now()) host.delete(`${name}\n${path}`)
      else host.set(`${name}\n${path}`, { value: pair.slice(eq + 1), path, expires })
    }
  }

  /** One request with this browser's cookies; Set-Cookie is stored. */
  async fetch (url: string, init: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Page> {
    const cookie = Object.entries(this.cookies(url)).map(([name, value]) => `${name}=${value}`).join('; ')
    const response = await request(url, {
      method: (init.method ?? 'GET') as 'GET',
      headers: { ...(cookie === '' ? {} : { cookie }), ...init.headers },
      body: init.body
    })
    const text = await response.body.text()
    this.#store(url, response.headers['set-cookie'])
    const page = { url, status: response.statusCode, headers: response.headers, text }
    this.history.push(page)
    return page
  }

  /** Follows redirects from `url` until a page is not a redirect or leaves for `stopAt`'s origin. */
  async navigate (url: string, stopAt?: (url: string) => boolean): Promise<Page> {
    let page = await this.fetch(url)
    for (let hops = 0; hops < 20; hops++) {
      const location = page.headers.location
      if (page.status < 300 || page.status >= 400 || typeof location !== 'string') return page
      const next = new URL(location, page.url).href
      if (stopAt?.(next) === true) return { ...page, url: next }
      page = await this.fetch(next)
    }
    throw new Error('too many redirects')
  }

  /** Posts a form and follows where it leads. */
  async submit (url: string, fields: Record<string, string>, stopAt?: (url: string) => boolean): Promise<Page> {
    const page = await this.fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() })
    const location = page.headers.location
    if (page.status < 300 || page.status >= 400 || typeof location !== 'string') return page
    const next = new URL(location, url).href
    if (stopAt?.(next) === true) return { ...page, url: next }
    return await this.navigate(next, stopAt)
  }
}

/** The action and hidden fields of the first form on a page. */
export function formOf (page: Page): { action: string, fields: Record<string, string> } {
  const action = /<form[^>]*action="([^"]+)"/.exec(page.text)?.[1]
  if (action === undefined) throw new Error(`no form on ${page.url} (${page.status}): ${page.text.slice(0, 200)}`)
  const fields: Record<string, string> = {}
  for (const match of page.text.matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) fields[match[1] as string] = match[2] as string
  return { action: new URL(action.replaceAll('&amp;', '&'), page.url).href, fields }
}

export interface SignIn {
  /** The last page: the 302 to return_to when all went well (not followed), else the BFF's answer. */
  page: Page
  /** The callback URL the provider sent the browser to (code and state in it). */
  callback: string | undefined
}

/** Where the browser was about to go next, once the BFF's callback was reached. */
const atCallback = (stack: SsoStack) => (url: string) => url.startsWith(`${stack.url}/auth/oidc/callback`)

/**
 * Starts sign-in at the BFF and signs in at the provider, stopping just before the callback
 * (whose URL is returned, its code registered as a secret). Without a username, the provider's
 * own session is expected to sign the user in without a form.
 */
export async function reachCallback (browser: Browser, stack: SsoStack, options: { username?: string, password?: string, returnTo?: string } = {}): Promise<string> {
  const returnTo = options.returnTo ?? `${FRONTEND}/contacts`
  let page = await browser.navigate(`${stack.url}/auth/oidc/login?return_to=${encodeURIComponent(returnTo)}`, atCallback(stack))
  if (!page.url.startsWith(`${stack.url}/auth/oidc/callback`)) {
    const user = stack.idp.users.find((candidate) => candidate.username === (options.username ?? 'alice'))
    const form = formOf(page)
    page = await browser.submit(form.action, { login: user?.username ?? options.username ?? '', password: options.password ?? user?.password ?? '' }, atCallback(stack))
  }
  if (!page.url.startsWith(`${stack.url}/auth/oidc/callback`)) throw new Error(`sign-in at the provider did not reach the callback: ${page.status} ${page.url} ${page.text.slice(0, 300)}`)
  secrets.add('an authorization code', new URL(page.url).searchParams.get('code') ?? undefined)
  return page.url
}

/** The whole sign-in: login, provider form, callback. */
export async function signIn (browser: Browser, stack: SsoStack, options: { username?: string, password?: string, returnTo?: string } = {}): Promise<SignIn> {
  const callback = await reachCallback(browser, stack, options)
  const page = await browser.fetch(callback)
  return { page, callback }
}

/** The session cookie the BFF set in this browser, if any. */
export function sessionCookie (browser: Browser, stack: SsoStack): string | undefined {
  return browser.cookies(stack.url + '/')[stack.config.SESSION_COOKIE_SECURE ? '__Host-session' : 'session']
}
