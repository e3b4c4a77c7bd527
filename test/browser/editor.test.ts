// The reference contact editor in a real Chromium against the demo stack (simulator, BFF, page),
// each on its own free port. Without Chromium these tests are skipped with what to install.
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { startDemo, type Demo } from '../../bin/demo.ts'
import { mintSession } from '../../src/session/mint.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const OPERATOR = { username: 'operator', password: 'operator-password-for-tests', orgs: '*' as const }
const SCREENSHOTS = join(import.meta.dirname, '.screenshots')
// The flags a headless CI box needs; nothing may phone home or update itself mid-test.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

if (!existsSync(CHROMIUM)) {
  const message = `Chromium not found at ${CHROMIUM}: the browser tests are skipped. Install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH.`
  process.stderr.write(`${message}\n`)
  t.plan(0, message)
} else {
  t.test('the contact editor in Chromium against the demo stack', run)
}

async function run (t: Test): Promise<void> {
  const { chromium } = await import('playwright-core')
  const logLines: string[] = []
  const logStream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''))
      done()
    }
  })
  const demo: Demo = await startDemo({
    bffPort: 0,
    webPort: 0,
    logLevel: 'info',
    logStream,
    // The misconfiguration a new user makes: the page on localhost, the BFF on 127.0.0.1, CORS allowing it.
    extraCorsOrigins: (web) => [`http://localhost:${web.port}`],
    extraUsers: [OPERATOR]
  })
  t.teardown(() => demo.close())
  // Playwright gives every launch a fresh, temporary user-data-dir.
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
  t.teardown(() => browser.close())
  const context: BrowserContext = await browser.newContext({ viewport: { width: 1100, height: 900 } })
  const page: Page = await context.newPage()
  page.setDefaultTimeout(10_000)
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(error.message))
  // A CSP violation is only a console message; the page's policy must not block anything it needs.
  page.on('console', (message) => { if (/Content Security Policy/i.test(message.text())) pageErrors.push(message.text()) })

  /** A subtest that leaves a screenshot in test/browser/.screenshots when it fails. */
  async function step (name: string, fn: (t: Test) => Promise<void>, on: Page = page): Promise<void> {
    await t.test(name, async (t) => {
      const screenshot = async () => {
        await mkdir(SCREENSHOTS, { recursive: true })
        const file = join(SCREENSHOTS, `${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 80)}.png`)
        await on.screenshot({ path: file, fullPage: true }).then(() => t.comment(`screenshot: ${file}`), () => {})
      }
      try {
        await fn(t)
      } catch (error) {
        await screenshot()
        throw error
      }
      if (!t.passing()) await screenshot()
    })
  }

  const alert = () => page.getByRole('alert')
  const status = () => page.getByRole('status')
  const field = (name: string) => page.getByLabel(name, { exact: true })
  const contactUrl = (org: number, id: number) => `${demo.webUrl}/#/org/${org}/contact/${id}`
  const upstreamCalls = (operation: string) => demo.sim.state.calls.filter((call) => call.operation === operation)

  async function openContact (org: number, id: number, name: string): Promise<void> {
    await page.goto(contactUrl(org, id))
    await page.getByRole('heading', { level: 1, name }).waitFor()
    await page.getByRole('button', { name: 'Save changes' }).waitFor()
  }

  await step('signing in with the keyboard shows the organisations, then the contacts of the one chosen', async (t) => {
    await page.goto(demo.webUrl)
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    t.equal(await page.getByRole('link', { name: 'Sign in with SSO' }).count(), 0, 'no SSO offered by this BFF, so no SSO button')
    await field('Username').focus()
    await page.keyboard.type(demo.user.username)
    await page.keyboard.press('Tab')
    await page.keyboard.type(demo.user.password)
    await page.keyboard.press('Enter')
    await page.getByRole('heading', { name: 'Choose an organisation' }).waitFor()
    t.match(await page.getByRole('navigation', { name: 'Session' }).textContent(), 'Signed in as demo')
    t.same(await field('Organisation').locator('option:not([disabled])').allTextContents(), ['Organisation 1', 'Organisation 2'], 'the session\'s organisations')

    await field('Organisation').focus()
    await field('Organisation').selectOption('1')
    await page.keyboard.press('Tab')
    await page.keyboard.press('Enter')
    await page.getByRole('heading', { name: 'Contacts of organisation 1' }).waitFor()
    const rows = page.getByRole('table').getByRole('row')
    await rows.nth(1).waitFor()
    t.same(await page.getByRole('table').getByRole('link').allTextContents(), ['Accounts Payable', 'Ada Lovelace', 'Grace Hopper'], 'every contact, by name')
    t.match(await rows.filter({ hasText: 'Ada Lovelace' }).textContent(), /Commercial.*ada\.lovelace@demo-org\.example.*Berlin.*Germany/)

    t.equal(await page.evaluate('document.cookie'), '', 'the session cookie is HttpOnly: the page cannot read it')
    t.equal(await page.evaluate('localStorage.length + sessionStorage.length'), 0, 'and nothing is kept in storage')
    t.notOk(logLines.some((line) => line.includes(demo.user.password)), 'the password is in no log line')
  })

  await step('an organisation outside the session is refused with a message and its request id', async (t) => {
    await page.goto(`${demo.webUrl}/#/org/3`)
    await alert().getByText('No access to this organisation').waitFor()
    t.match(await alert().textContent(), /Request id: \S+/)
    t.ok(await page.getByRole('table').isHidden(), 'no contacts shown')
    await page.goto(`${demo.webUrl}/#/org/1`)
    await page.getByRole('table').getByRole('link', { name: 'Ada Lovelace' }).waitFor()
  })

  await step('emnify unavailable: the list says the service is busy, when to retry, and the request id; trying again works', async (t) => {
    demo.sim.setFault({ operation: 'list_contacts', kind: 'status', status: 503, times: 2 })
    t.teardown(() => demo.sim.clearFaults())
    await page.goto(`${demo.webUrl}/#/org/2`)
    await alert().getByText('Could not show the contacts: the service is busy').waitFor()
    t.match(await alert().textContent(), /Try again in \d+ s\.[\s\S]*Request id: \S+/)
    demo.sim.clearFaults()
    await alert().getByRole('button', { name: 'Try again' }).click()
    await page.getByRole('table').getByRole('link', { name: 'Katherine Johnson' }).waitFor()
    t.ok(await alert().isHidden(), 'the failure is gone once it worked')
  })

  await step('editing a contact sends only the changed field, with X-CSRF and the ETag of the read', async (t) => {
    await page.goto(`${demo.webUrl}/#/org/1`)
    await page.getByRole('link', { name: 'Ada Lovelace' }).click()
    await page.getByRole('heading', { level: 1, name: 'Ada Lovelace' }).waitFor()
    await field('City').fill('Potsdam')
    const sent = page.waitForRequest((request) => request.method() === 'PATCH')
    await page.getByRole('button', { name: 'Save changes' }).click()
    const request = await sent
    await status().getByText('Saved the change.').waitFor()
    t.same(request.postDataJSON(), { city: 'Potsdam' })
    const headers = await request.allHeaders()
    t.equal(headers['x-csrf'], '1')
    t.match(headers['if-match'], /^"[^"]+"$/, 'If-Match carries the strong ETag of the read')
    t.notOk(headers.authorization, 'no token: the cookie does the work')
    t.same(JSON.parse(upstreamCalls('patch_contact').at(-1)?.body ?? '{}'), { city: 'Potsdam' }, 'emnify got exactly that change')

    await page.reload()
    await page.getByRole('heading', { level: 1, name: 'Ada Lovelace' }).waitFor()
    t.equal(await field('City').inputValue(), 'Potsdam', 'the saved value is what the BFF answers afterwards')
  })

  await step('an invalid e-mail is shown at the e-mail field, with the request id, and nothing reaches emnify', async (t) => {
    const patchesBefore = upstreamCalls('patch_contact').length
    await field('E-mail').fill('not-an-email')
    const answered = page.waitForResponse((response) => response.request().method() === 'PATCH')
    await page.getByRole('button', { name: 'Save changes' }).click()
    const response = await answered
    t.equal(response.status(), 400)
    await alert().waitFor()
    const email = field('E-mail')
    t.equal(await email.getAttribute('aria-invalid'), 'true', 'the field is marked invalid')
    const described = await email.getAttribute('aria-describedby') ?? ''
    const description = await page.locator(described.split(' ').map((id) => `#${id}`).join(', ')).allTextContents()
    t.match(description.join(' '), /E-mail .*format/, 'the BFF\'s message is the field\'s accessible description')
    t.equal(await page.evaluate('document.activeElement?.id'), 'field-email', 'focus moves to the field')
    t.match(await alert().textContent(), `Request id: ${await response.headerValue('x-request-id')}`, 'the request id a user can report')
    t.equal(upstreamCalls('patch_contact').length, patchesBefore)
    if (process.env.WRITE_EDITOR_SCREENSHOT === '1') {
      await page.screenshot({ path: join(import.meta.dirname, '../../docs/editor.png'), fullPage: true })
    }
  })

  await step('a contact someone else changed since it was opened is not overwritten: a clear 412 message and a reload', async (t) => {
    await openContact(1, 2, 'Grace Hopper')
    // Someone else, with their own session, changes the same contact in between.
    const other = mintSession(demo.config, { sub: 'someone-else', orgs: [1], ttlS: 300 }).token
    const elsewhere = await fetch(`${demo.bffUrl}/api/v1/organisation/1/contact/2`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${other}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Rear Admiral' })
    })
    t.equal(elsewhere.status, 204)
    const patchesBefore = upstreamCalls('patch_contact').length

    await field('Department').fill('Research')
    await page.getByRole('button', { name: 'Save changes' }).click()
    await alert().getByText('Someone else changed this contact after you opened it').waitFor()
    t.match(await alert().textContent(), /Nothing was saved[\s\S]*Request id: \S+/)
    t.equal(upstreamCalls('patch_contact').length, patchesBefore, 'the change was not sent')

    await alert().getByRole('button', { name: 'Reload contact' }).click()
    await page.getByRole('button', { name: 'Save changes' }).waitFor()
    await t.resolveMatch(field('Job title').inputValue(), 'Rear Admiral', 'the reload shows their version')
    await t.resolveMatch(field('Department').inputValue(), 'Engineering', 'and drops the unsaved edit')
  })

  await step('creating a contact: the type is required at its field, the pickers fill the body, and the new contact opens', async (t) => {
    await page.getByRole('link', { name: '← All contacts' }).click()
    await page.getByRole('link', { name: 'New contact' }).click()
    await page.getByRole('heading', { name: 'New contact in organisation 1' }).waitFor()
    t.same(await field('Type').locator('option').allTextContents(),
      ['Choose a type…', 'Commercial', 'Technical', 'Finance', 'Shipping address', 'Company address', 'Invoice address'])
    const countries = await field('Country').locator('option').allTextContents()
    t.ok(countries.includes('United Kingdom') && countries.length > 2, 'countries come from the BFF')

    await field('Name').fill('Alan Turing')
    await page.getByRole('button', { name: 'Create contact' }).click()
    await alert().waitFor()
    t.equal(await field('Type').getAttribute('aria-invalid'), 'true', 'a missing type is shown at the Type field')

    await field('Type').selectOption({ label: 'Technical' })
    await field('E-mail').fill('alan.turing@example.com')
    await field('Country').selectOption({ label: 'United Kingdom' })
    t.ok(await field('Purchase order number').isDisabled(), 'a purchase order number only for invoice contacts')
    const sent = page.waitForRequest((request) => request.method() === 'POST' && request.url().endsWith('/contact'))
    await page.getByRole('button', { name: 'Create contact' }).click()
    const request = await sent
    await page.getByRole('heading', { level: 1, name: 'Alan Turing' }).waitFor()
    await status().getByText('Contact created.').waitFor()
    t.match((await request.allHeaders())['idempotency-key'], /^[0-9a-f]{32}$/, 'an Idempotency-Key on the create')
    const body = request.postDataJSON()
    t.same(body, { type: { id: 2 }, name: 'Alan Turing', email: 'alan.turing@example.com', country: { id: body.country?.id } })
    t.equal(await field('Country').locator('option:checked').textContent(), 'United Kingdom')
  })

  await step('deleting a contact asks first: cancel keeps it, confirm removes it from the list', async (t) => {
    await page.getByRole('button', { name: 'Delete contact' }).click()
    const dialog = page.getByRole('dialog', { name: 'Delete this contact?' })
    await dialog.waitFor()
    t.match(await dialog.textContent(), '“Alan Turing” will be removed from organisation 1')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
    t.equal(upstreamCalls('delete_contact').length, 0, 'cancelled: nothing deleted')

    await page.getByRole('button', { name: 'Delete contact' }).click()
    const sent = page.waitForRequest((request) => request.method() === 'DELETE')
    await dialog.getByRole('button', { name: 'Delete' }).click()
    const request = await sent
    await page.getByRole('heading', { name: 'Contacts of organisation 1' }).waitFor()
    await status().getByText('Deleted “Alan Turing”.').waitFor()
    t.match((await request.allHeaders())['if-match'], /^"[^"]+"$/, 'the delete is conditional too')
    await page.getByRole('table').getByRole('link', { name: 'Ada Lovelace' }).waitFor()
    t.equal(await page.getByRole('link', { name: 'Alan Turing' }).count(), 0)
  })

  await step('a session that ended elsewhere sends the user to sign in, and back to the same screen after', async (t) => {
    await context.clearCookies()
    await page.goto(`${demo.webUrl}/#/org/2`)
    await alert().getByText('Please sign in again').waitFor()
    t.match(await alert().textContent(), /Request id: \S+/)
    await field('Username').fill(demo.user.username)
    await field('Password').fill(demo.user.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { name: 'Contacts of organisation 2' }).waitFor()
  })

  await step('signing out ends the session: a reload shows the sign-in form', async (t) => {
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await status().getByText('Signed out.').waitFor()
    await page.reload()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    t.ok(await page.getByRole('navigation', { name: 'Session' }).isHidden(), 'no session bar')
    t.same(pageErrors, [], 'no script error on the way')
  })

  const operatorContext = await browser.newContext()
  t.teardown(() => operatorContext.close())
  const operator = await operatorContext.newPage()
  operator.setDefaultTimeout(10_000)
  await step('a session for every organisation types the organisation id', async (t) => {
    await operator.goto(demo.webUrl)
    await operator.getByLabel('Username').fill(OPERATOR.username)
    await operator.getByLabel('Password').fill(OPERATOR.password)
    await operator.getByRole('button', { name: 'Sign in' }).click()
    const id = operator.getByRole('textbox', { name: 'Organisation id' })
    await id.fill('two')
    await id.press('Enter')
    await operator.getByRole('alert').getByText('Enter an organisation id').waitFor()
    await id.fill('2')
    await id.press('Enter')
    await operator.getByRole('heading', { name: 'Contacts of organisation 2' }).waitFor()
    t.same(await operator.getByRole('table').getByRole('link').allTextContents(), ['Katherine Johnson'])

    await id.fill('99')
    await id.press('Enter')
    await operator.getByRole('alert').getByText('Organisation not found').waitFor()
    t.match(await operator.getByRole('alert').textContent(), /emnify knows no organisation 99[\s\S]*Request id: \S+/)
  }, operator)

  await step('an organisation without contacts shows loading, then says it is empty and offers to create one', async (t) => {
    const token = mintSession(demo.config, { sub: 'cleaner', orgs: [2], ttlS: 300 }).token
    const gone = await fetch(`${demo.bffUrl}/api/v1/organisation/2/contact/10`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } })
    t.equal(gone.status, 204)
    // emnify answers slowly once, so the loading state is on screen before the answer.
    demo.sim.setFault({ operation: 'list_contacts', kind: 'delay', ms: 3000, times: 1 })
    t.teardown(() => demo.sim.clearFaults())
    await operator.goto(`${demo.webUrl}/#/org/2`)
    await operator.getByText('Loading contacts…').waitFor()
    await operator.getByText('No contacts in this organisation yet.').waitFor()
    t.ok(await operator.getByText('Loading contacts…').isHidden(), 'the loading state ends with the answer')
    t.ok(await operator.getByRole('table').isHidden(), 'no empty table')
    t.equal(await operator.getByRole('link', { name: 'New contact' }).getAttribute('href'), '#/org/2/new')
  }, operator)

  const localhost = await browser.newContext()
  t.teardown(() => localhost.close())
  const misplaced = await localhost.newPage()
  misplaced.setDefaultTimeout(10_000)
  await step('a page on localhost calling the BFF on 127.0.0.1 says loudly that the cookie was dropped and what to open instead', async (t) => {
    const url = `http://localhost:${demo.web.port}/`
    await misplaced.goto(url)
    await misplaced.getByLabel('Username').fill(demo.user.username)
    await misplaced.getByLabel('Password').fill(demo.user.password)
    await misplaced.getByRole('button', { name: 'Sign in' }).click()
    const failure = misplaced.getByRole('alert')
    await failure.getByText('Signed in, but the browser did not keep the session cookie').waitFor()
    t.match(await failure.textContent(), `Open this page as ${demo.webUrl}/ instead`)
    t.match(await failure.textContent(), /Request id: \S+/)
    t.ok(await misplaced.getByRole('heading', { name: 'Sign in' }).isVisible(), 'it stays on the sign-in form')
  }, misplaced)
}
