// Single sign-on through the editor in a real Chromium: the demo stack with its own OpenID
// Provider, all on 127.0.0.1 so every cookie is same-site.
import t from 'tap'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { Test } from 'tap'
import { startDemo } from '../../bin/demo.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

if (!existsSync(CHROMIUM)) {
  t.plan(0, `Chromium not found at ${CHROMIUM}: the browser tests are skipped. Install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH.`)
} else {
  t.test('signing in with SSO from the editor', run)
}

async function run (t: Test): Promise<void> {
  const { chromium } = await import('playwright-core')
  // The demo's own identity provider, as `npm run demo` runs it.
  const demo = await startDemo({
    bffPort: 0,
    webPort: 0,
    idpPort: 0,
    logLevel: 'warn',
    logStream: new Writable({ write (_chunk, _encoding, done) { done() } })
  })
  t.teardown(() => demo.close())
  const { bffUrl, idp } = demo
  if (idp === undefined) throw new Error('the demo started no identity provider')
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } })
  page.setDefaultTimeout(10_000)
  const alice = idp.users.find((user) => user.username === 'alice')
  if (alice === undefined) throw new Error('the test provider has no alice')

  const screenshotOnFailure = async (t: Test, name: string) => {
    if (t.passing()) return
    await mkdir(join(import.meta.dirname, '.screenshots'), { recursive: true })
    await page.screenshot({ path: join(import.meta.dirname, '.screenshots', `${name}.png`), fullPage: true }).catch(() => {})
  }

  await t.test('the SSO button appears, the provider signs the user in, and the editor comes back signed in', async (t) => {
    t.teardown(() => screenshotOnFailure(t, 'sso-sign-in'))
    await page.goto(demo.webUrl)
    const sso = page.getByRole('link', { name: 'Sign in with SSO' })
    await sso.waitFor()
    t.equal(await sso.getAttribute('href'), `${bffUrl}/auth/oidc/login?return_to=${encodeURIComponent(`${demo.webUrl}/`)}`)
    await sso.click()
    await page.waitForURL((url) => url.origin === idp.issuer)
    await page.getByLabel('Username').fill(alice.username)
    await page.getByLabel('Password').fill(alice.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.waitForURL((url) => url.origin === demo.webUrl)
    await page.getByRole('heading', { name: 'Choose an organisation' }).waitFor()
    t.match(await page.getByRole('navigation', { name: 'Session' }).textContent(), /Signed in as \S*alice/)
    await page.getByLabel('Organisation', { exact: true }).selectOption('1')
    await page.getByRole('button', { name: 'Open' }).click()
    await page.getByRole('table').getByRole('link', { name: 'Ada Lovelace' }).waitFor()
    t.equal(await page.evaluate('document.cookie'), '', 'the session cookie is HttpOnly here too')
  })

  await t.test('signing out of an SSO session leads to the provider to end its session, and back to the editor', async (t) => {
    t.teardown(() => screenshotOnFailure(t, 'sso-sign-out'))
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.waitForURL((url) => url.origin === idp.issuer)
    const back = await page.context().request.get(`${bffUrl}/auth/session`)
    t.equal(back.status(), 401, 'the BFF session is over')
    t.equal(new URL(page.url()).searchParams.get('post_logout_redirect_uri'), `${demo.webUrl}/`, 'the provider is asked to send the browser back to the editor')
    await page.getByRole('button', { name: 'Sign out everywhere' }).click()
    await page.waitForURL((url) => url.origin === demo.webUrl)
    t.equal(page.url(), `${demo.webUrl}/`, 'the editor, where the user signed out')
    await page.getByRole('link', { name: 'Sign in with SSO' }).click()
    await page.waitForURL((url) => url.origin === idp.issuer)
    await page.getByLabel('Password').waitFor()
    t.pass('the provider asks for the password again: its session ended too')
  })
}
