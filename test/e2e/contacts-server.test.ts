// The production build (`npm run build`, then `node dist/server.js` as `npm start` runs it) against a
// tiny emnify stand-in written here on node:http — not the project's simulator — driving list, read,
// create, patch, delete and countries end to end, as a black-box check of the contact resource.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from 'undici'
import { LeakWatch, secrets } from '../helpers/leak-scan.ts'
import { SECRET, session } from '../helpers/stack.ts'

// Building the whole service and starting it is slow on a busy machine.
t.setTimeout(300_000)

const ROOT = new URL('../../', import.meta.url).pathname
// A build of its own next to package.json (the service reads ../package.json from its output folder), so the shared dist/ is left alone.
const OUT = `${ROOT}.dist-contacts-test-${process.pid}`
const APP_TOKEN = 'stand-in-application-token-7d41'
const AUTH_TOKEN = `${Buffer.from('{"alg":"HS384"}').toString('base64url')}.${Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 3600 })).toString('base64url')}.c3RhbmQtaW4`
secrets.add('the stand-in\'s application token', APP_TOKEN)
secrets.add('the stand-in\'s auth token', AUTH_TOKEN)

interface Seen { method: string, url: string, headers: IncomingMessage['headers'], body: string }

/** emnify as its documentation describes it, in forty lines: enough for the contact workflow. */
function standIn () {
  const contacts = new Map<number, Record<string, unknown>>([
    [41, { id: 41, organisation: { id: 5, name: 'Stand-in Org' }, type: { id: 1, description: 'Commercial' }, name: 'Edsger', city: 'Austin', country: { id: 222, name: 'United States' }, email: null, erp_id: 'ERP-41' }]
  ])
  let next = 42
  const seen: Seen[] = []
  const reply = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, body === undefined ? headers : { 'content-type': 'application/json', ...headers })
    res.end(body === undefined ? undefined : JSON.stringify(body))
  }
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => { body += chunk.toString('utf8') })
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      const route = `${req.method} ${req.url}`
      if (route === 'POST /api/v1/authenticate') {
        return JSON.parse(body).application_token === APP_TOKEN ? reply(res, 200, { auth_token: AUTH_TOKEN }) : reply(res, 401)
      }
      if (req.headers.authorization !== `Bearer ${AUTH_TOKEN}`) return reply(res, 401, { error_code: 1102, error_token: 'InvalidToken', message: 'Invalid token' })
      if (route === 'GET /api/v1/country') return reply(res, 200, [{ id: 222, name: 'United States', country_code: '1', mcc: '310', iso_code: 'us' }])
      if (route === 'GET /api/v1/organisation/5/contact') return reply(res, 200, [...contacts.values()])
      if (route === 'POST /api/v1/organisation/5/contact') {
        const id = next++
        contacts.set(id, { id, organisation: { id: 5, name: 'Stand-in Org' }, ...JSON.parse(body), erp_id: `ERP-${id}` })
        return reply(res, 201, {}, { location: `/api/v1/organisation/5/contact/${id}` })
      }
      const match = /^\/api\/v1\/organisation\/5\/contact\/(\d+)$/.exec(req.url ?? '')
      const contact = match === null ? undefined : contacts.get(Number(match[1]))
      if (contact === undefined) return reply(res, 404, { error_code: 1201, error_token: 'NotFound', message: 'Not found' })
      if (req.method === 'GET') return reply(res, 200, contact)
      if (req.method === 'PATCH') {
        Object.assign(contact, JSON.parse(body))
        return reply(res, 204)
      }
      if (req.method === 'DELETE') {
        contacts.delete(contact.id as number)
        return reply(res, 204)
      }
      reply(res, 405, { message: 'Method not allowed' })
    })
  })
  return { server, seen, contacts }
}

t.test('the built server serves the whole contact workflow against an emnify stand-in', async (t) => {
  t.teardown(() => rm(OUT, { recursive: true, force: true }))
  const build = spawn('npm', ['run', 'build', '--', '--outDir', OUT], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } })
  let buildOutput = ''
  build.stdout.on('data', (chunk: Buffer) => { buildOutput += chunk.toString('utf8') })
  build.stderr.on('data', (chunk: Buffer) => { buildOutput += chunk.toString('utf8') })
  const [buildCode] = await once(build, 'exit')
  t.equal(buildCode, 0, `npm run build succeeds${buildCode === 0 ? '' : `:\n${buildOutput.slice(-2000)}`}`)
  t.ok(existsSync(`${OUT}/server.js`), 'server.js was built')

  const upstream = standIn()
  await new Promise<void>((resolve) => upstream.server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { upstream.server.close(() => resolve()); upstream.server.closeAllConnections() }))
  const address = upstream.server.address()
  const origin = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`

  const child = spawn(process.execPath, [`${OUT}/server.js`], {
    cwd: t.testdir(),
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: '0',
      EMNIFY_API_URL: origin,
      EMNIFY_APPLICATION_TOKEN: APP_TOKEN,
      SESSION_SECRET: SECRET,
      MAX_EVENT_LOOP_DELAY_MS: '0',
      MAX_EVENT_LOOP_UTILIZATION: '0'
    }
  })
  const lines: string[] = []
  const watch = new LeakWatch(secrets)
  watch.watchLines('log line of the built server', lines)
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const stopped = await Promise.race([once(child, 'close').then(() => true), sleep(5_000, false, { ref: false })])
      if (!stopped) child.kill('SIGKILL')
    }
    watch.assertClean()
  })
  child.stderr.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== '')))
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ''
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8')
      const parts = buffered.split('\n')
      buffered = parts.pop() ?? ''
      for (const line of parts) {
        lines.push(line)
        const listening = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
        if (listening !== null) resolve(listening[1] as string)
      }
    })
    child.once('exit', (code) => reject(new Error(`the built server exited with ${code}:\n${lines.join('\n')}`)))
  })

  const token = session('carol', [5])
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await request(`${url}${path}`, {
      method: method as 'GET',
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await response.body.text()
    watch.wire.recordInjected({ method, url: path, payload: body }, { statusCode: response.statusCode, headers: response.headers, payload: text })
    return { status: response.statusCode, headers: response.headers, text, json: () => JSON.parse(text) }
  }
  const org = '/api/v1/organisation/5'

  const list = await call('GET', `${org}/contact`)
  t.equal(list.status, 200, 'list')
  t.same(list.json(), [{ id: 41, organisation: { id: 5, name: 'Stand-in Org' }, type: { id: 1, description: 'Commercial' }, name: 'Edsger', city: 'Austin', country: { id: 222, name: 'United States' }, email: null }],
    'the BFF\'s representation: emnify\'s erp_id is dropped')
  t.match(String(list.headers.etag), /^"[^"]+"$/)

  const read = await call('GET', `${org}/contact/41`)
  t.equal(read.status, 200, 'read')
  t.notOk(read.text.includes('ERP-'), 'no added field')
  t.equal((await call('GET', `${org}/contact/41`, undefined, { 'if-none-match': String(read.headers.etag) })).status, 304, 'revalidated')

  const created = await call('POST', `${org}/contact`, { type: { id: 2 }, name: 'Barbara', city: 'Boston' }, { 'idempotency-key': 'stand-in-1' })
  t.equal(created.status, 201, 'create')
  t.equal(created.headers.location, `${org}/contact/42`, 'the BFF\'s own Location from emnify\'s relative one')
  t.same(created.json(), { id: 42, organisation: { id: 5, name: 'Stand-in Org' }, type: { id: 2 }, name: 'Barbara', city: 'Boston' }, 'read back, in the BFF\'s shape')
  const replay = await call('POST', `${org}/contact`, { type: { id: 2 }, name: 'Barbara', city: 'Boston' }, { 'idempotency-key': 'stand-in-1' })
  t.equal(replay.headers['idempotency-replayed'], 'true', 'a retry replays')
  t.equal(upstream.seen.filter((s) => s.method === 'POST' && s.url.endsWith('/contact')).length, 1, 'one create reached emnify')

  const patched = await call('PATCH', `${org}/contact/42`, { city: null, title: 'Dr' }, { prefer: 'return=representation', 'if-match': '*' })
  t.equal(patched.status, 200, 'patch with representation')
  t.equal(patched.json().title, 'Dr')
  t.equal(patched.json().city, null, 'null cleared it')

  const stale = await call('DELETE', `${org}/contact/42`, undefined, { 'if-match': '"stale"' })
  t.equal(stale.status, 412, 'a stale If-Match is refused')
  t.equal((await call('DELETE', `${org}/contact/42`, undefined, { 'if-match': String(patched.headers.etag) })).status, 204, 'delete')
  t.equal((await call('GET', `${org}/contact/42`)).status, 404, 'gone')
  t.equal(upstream.seen.filter((s) => s.method === 'DELETE').length, 1, 'one delete reached emnify')

  const countries = await call('GET', '/api/v1/country')
  t.same(countries.json(), [{ id: 222, name: 'United States', iso_code: 'us', country_code: '1' }], 'countries, projected')

  const forbidden = await call('GET', '/api/v1/organisation/6/contact')
  t.equal(forbidden.status, 403, 'another organisation')
  t.equal(forbidden.json().code, 'ORGANISATION_FORBIDDEN')
  const wrongMethod = await call('PUT', `${org}/contact/41`, { name: 'x' })
  t.equal(wrongMethod.status, 405)
  t.match(String(wrongMethod.headers.allow), /GET/)

  for (const seen of upstream.seen.filter((s) => s.url !== '/api/v1/authenticate')) {
    t.equal(seen.headers.authorization, `Bearer ${AUTH_TOKEN}`, `${seen.method} ${seen.url}: the service token, never the session`)
    t.notOk(seen.url.includes('?'), 'no query forwarded')
  }
  t.equal(upstream.seen.filter((s) => s.url === '/api/v1/authenticate').length, 1, 'one authenticate for the whole workflow')
  await sleep(100)
  t.ok(lines.some((line) => line.includes('"contact.created"')) && lines.some((line) => line.includes('"contact.deleted"')), 'audit records written')
  t.notOk(lines.some((line) => line.includes('Barbara') || line.includes('Boston')), 'no contact value in the logs')
})
