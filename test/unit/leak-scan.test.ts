// The leak scanner that every end-to-end stack runs at teardown must itself be trustworthy: it
// flags whole and truncated credentials in lines and responses, exempts only a login's own token
// in that login's body and cookie, and its wiring sees HTTP, inject, raw-socket and child output.
import { connect } from 'node:net'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { hashPassword } from '../../src/users/password.ts'
import { LeakWatch, SecretRegistry, scanResponse, scanText, type WireResponse } from '../helpers/leak-scan.ts'
import { APPLICATION_TOKEN, CONTACT, SECRET, forge, registerSecret, session, startStack } from '../helpers/stack.ts'
import { startServer } from '../helpers/server-process.ts'
import { until } from '../e2e/upstream-helpers.ts'

const HS256 = { alg: 'HS256', typ: 'JWT' }
const TOKEN = forge(HS256, { sub: 'alice', orgs: [1], iat: 1_700_000_000, exp: 1_700_000_600, jti: 'leak-scan-unit' })
const [HEADER, PAYLOAD, SIGNATURE] = TOKEN.split('.') as [string, string, string]

function registry (): SecretRegistry {
  const secrets = new SecretRegistry()
  secrets.add('the session secret', SECRET)
  secrets.add('the emnify application token', APPLICATION_TOKEN)
  secrets.add('a session token', TOKEN)
  return secrets
}

const flagged = (secrets: SecretRegistry, text: string) => scanText(secrets, 'line', text).map((finding) => finding.secret)

function response (method: string, url: string, status: number, headers: string[], body: string): WireResponse {
  return { method, url, raw: [`HTTP/1.1 ${status} X`, ...headers, `content-length: ${Buffer.byteLength(body)}`, '', body].join('\r\n') }
}

/** Stands in for tap's `t`: collects teardowns and runs them as tap would (last first), returning what they threw. */
function teardowns () {
  const fns: Array<() => unknown> = []
  return {
    teardown: (fn: () => unknown) => { fns.push(fn) },
    run: async (): Promise<string> => {
      const errors: string[] = []
      for (const fn of fns.reverse()) {
        try {
          await fn()
        } catch (error) {
          errors.push((error as Error).message)
        }
      }
      return errors.join('\n')
    }
  }
}

t.test('a whole credential in a line is flagged, by name, with the place it showed', async (t) => {
  const secrets = registry()
  const [finding] = scanText(secrets, 'log line 7', `{"msg":"config","secret":"${SECRET}"}`)
  t.equal(finding?.where, 'log line 7')
  t.equal(finding?.secret, 'the session secret')
  t.match(finding?.excerpt, '"secret":"⟦the session secret⟧"}', 'the excerpt names the secret in place of its value')
  t.same(flagged(secrets, `Bearer ${TOKEN}`), ['a session token'])
  t.same(flagged(secrets, `x-emnify-key: ${APPLICATION_TOKEN}`), ['the emnify application token'])
})

t.test('truncated credentials are flagged: a JWT signature alone, 23 characters of it, a cut payload, two thirds of a secret', async (t) => {
  const secrets = registry()
  t.same(flagged(secrets, `sig=${SIGNATURE}`), ['a session token'], 'the signature alone')
  for (const at of [0, 5, SIGNATURE.length - 23]) {
    t.same(flagged(secrets, `…${SIGNATURE.slice(at, at + 23)}…`), ['a session token'], `23 characters of the signature from ${at}`)
  }
  t.same(flagged(secrets, `${HEADER}.${PAYLOAD.slice(0, 30)}`), ['a session token'], 'a token cut inside its payload')
  t.same(flagged(secrets, `"${SECRET.slice(0, 25)}"`), ['the session secret'], 'the first two thirds of the secret')
  t.same(flagged(secrets, `"${SECRET.slice(-25)}"`), ['the session secret'], 'the last two thirds of the secret')
})

t.test('clean text is not flagged: shared JWT headers, short pieces, ordinary log lines', async (t) => {
  const secrets = registry()
  t.same(flagged(secrets, `header ${HEADER}`), [], 'the JWT header is the same in every token and no secret')
  t.same(flagged(secrets, `${SIGNATURE.slice(0, 12)} ${SECRET.slice(0, 11)}`), [], 'pieces too short to identify anything')
  t.same(flagged(secrets, '{"level":30,"msg":"request completed","path":"/api/v1/organisation/1/contact/1","status":204,"sub":"alice"}'), [])
  t.same(flagged(secrets, 'test-application is the app'), [], 'an unrelated phrase sharing a prefix')
  t.same(flagged(secrets, ''), [])
})

t.test('a leaked token is one finding named after it, even when another token shares claims with it', async (t) => {
  const secrets = new SecretRegistry()
  const claims = { sub: 'alice', orgs: [1], iat: 1_700_000_000, exp: 1_700_000_600, iss: 'emnify-bff', aud: 'emnify-bff' }
  const first = forge(HS256, { ...claims, jti: 'first' })
  const second = forge(HS256, { ...claims, jti: 'second' })
  secrets.add('the first token', first)
  secrets.add('the second token', second)
  t.same(scanText(secrets, 'line', `token=${second} end`).map((f) => f.secret), ['the second token'])
  t.match(scanText(secrets, 'line', `token=${second} end`)[0]?.excerpt, /\.⟦the second token⟧ end$/, 'the whole payload and signature are one stretch')
})

t.test('anything shaped like a JWT is flagged even when nobody registered it', async (t) => {
  const unknown = forge({ alg: 'HS384', typ: 'JWT' }, { sub: 'someone-else' }, { key: 'another-key' })
  t.same(flagged(new SecretRegistry(), `token=${unknown}`), ['something shaped like a JWT (eyJ….eyJ…)'])
  t.same(flagged(new SecretRegistry(), 'eyJ is how base64 JSON starts'), [], 'the prefix alone is not')
})

t.test('values shorter than 8 characters and non-strings are not registered', async (t) => {
  const secrets = new SecretRegistry()
  secrets.add('short', 'abc1234')
  secrets.add('number', 123456789012)
  secrets.add('missing', undefined)
  t.equal(secrets.size, 0)
  t.same(flagged(secrets, 'abc1234 123456789012'), [])
})

t.test('a successful login may answer its own token once in the body and once in the session cookie, and nothing more', async (t) => {
  const secrets = registry()
  const body = JSON.stringify({ token: TOKEN, token_type: 'Bearer', expires_at: '2030-01-01T00:00:00.000Z', user: { sub: 'alice', orgs: [1] } })
  const cookie = `set-cookie: __Host-session=${TOKEN}; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Strict`
  t.same(scanResponse(secrets, response('POST', '/auth/login', 200, [cookie], body)), [], 'the login answer itself is clean')
  t.same(scanResponse(secrets, response('POST', '/auth/login', 200, [cookie.replace('__Host-session', 'session')], body)), [], 'also with the plain cookie name')

  const twice = JSON.stringify({ token: TOKEN, echo: TOKEN })
  t.same(scanResponse(secrets, response('POST', '/auth/login', 200, [cookie], twice)).map((f) => f.where), ['response to POST /auth/login (200), body'], 'a second copy in the body')
  t.same(scanResponse(secrets, response('POST', '/auth/login', 200, [cookie, `x-debug: ${TOKEN}`], body)).map((f) => f.where), ['response to POST /auth/login (200), head'], 'the token in another header')
  t.same(scanResponse(secrets, response('POST', '/auth/login', 200, [`set-cookie: tracking=${TOKEN}`], body)).map((f) => f.where), ['response to POST /auth/login (200), head'], 'the token in another cookie')
  const withSecret = JSON.stringify({ token: TOKEN, key: SECRET })
  t.same(scanResponse(secrets, response('POST', '/auth/login', 200, [cookie], withSecret)).map((f) => f.secret), ['the session secret'], 'other secrets in a login answer')

  t.equal(scanResponse(secrets, response('POST', '/auth/login', 401, [], body)).length, 1, 'no exemption for a failed login')
  t.equal(scanResponse(secrets, response('GET', '/auth/login', 200, [], body)).length, 1, 'nor for another method')
  t.equal(scanResponse(secrets, response('GET', '/auth/session', 200, [cookie], body)).length, 2, 'nor for another route')
  t.equal(scanResponse(secrets, response('POST', '/auth/login/x', 200, [cookie], body)).length, 2, 'nor for another path')
})

t.test('a login answer makes its token a secret everywhere else', async (t) => {
  const secrets = new SecretRegistry()
  const issued = forge(HS256, { sub: 'bob', jti: 'issued-by-login' })
  const login = response('POST', '/auth/login?next=1', 200, [], JSON.stringify({ token: issued }))
  t.same(scanResponse(secrets, login), [], 'the login query string does not change the route')
  t.equal(secrets.nameOf(issued), 'a session token issued by POST /auth/login')
  t.same(flagged(secrets, `sig ${issued.split('.')[2]}`), ['a session token issued by POST /auth/login'])
})

t.test('chunked bodies are scanned as one text, so a secret split across chunks is found', async (t) => {
  const secrets = registry()
  const raw = ['HTTP/1.1 200 OK', 'transfer-encoding: chunked', '', '10', SECRET.slice(0, 16), `${(SECRET.length - 16).toString(16)}`, SECRET.slice(16), '0', '', ''].join('\r\n')
  t.same(scanResponse(secrets, { method: 'GET', url: '/x', raw }).map((f) => f.secret), ['the session secret'])
  // Chunk sizes count bytes: multi-byte characters before the secret must not shift the framing.
  const text = Buffer.from(`ünïcødé … ${SECRET}`)
  const framed = Buffer.concat([
    Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n'), text.subarray(0, 10),
    Buffer.from(`\r\n${(text.length - 10).toString(16)}\r\n`), text.subarray(10), Buffer.from('\r\n0\r\n\r\n')
  ])
  t.same(scanResponse(secrets, { method: 'GET', url: '/x', raw: framed.toString('latin1') }).map((f) => f.secret), ['the session secret'], 'after multi-byte characters')
  const interim = `HTTP/1.1 100 Continue\r\n\r\n${response('GET', '/x', 500, [], `{"detail":"${APPLICATION_TOKEN}"}`).raw}`
  t.same(scanResponse(secrets, { method: 'GET', url: '/x', raw: interim }).map((f) => f.where), ['response to GET /x (500), body'], 'after a 100 Continue')
})

t.test('the wire capture sees exactly what a raw socket client receives, and bytes written outside a response', async (t) => {
  const secrets = registry()
  const watch = new LeakWatch(secrets)
  const server = createServer((req, res) => {
    if (req.url === '/leak') res.setHeader('x-debug', SECRET)
    res.write('part one, ')
    res.end(req.url === '/leak' ? 'clean' : `tail ${SIGNATURE}`)
  })
  server.on('clientError', (_error, socket) => socket.end(`HTTP/1.1 400 Bad Request\r\nx-key: ${APPLICATION_TOKEN}\r\n\r\n`))
  watch.watchServer(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port

  const socket = connect(port, '127.0.0.1')
  const received: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { received.push(chunk) })
  socket.write('GET /leak HTTP/1.1\r\nHost: x\r\n\r\nGET /other HTTP/1.1\r\nHost: x\r\n\r\n')
  // Both (chunked) answers to their last chunk first: read together with the garbage, the second could be cut off.
  await until(() => (Buffer.concat(received).toString('latin1').match(/\r\n0\r\n\r\n/g) ?? []).length >= 2, 5000)
  socket.write('NOT HTTP\r\n\r\n')
  await once(socket, 'close')

  t.equal(watch.wire.wire().map((r) => r.raw).join('') + Buffer.concat(watch.wire.stray).toString('latin1'), Buffer.concat(received).toString('latin1'), 'every byte the client got was captured')
  const found = watch.findings()
  t.same(found.map((f) => `${f.where}: ${f.secret}`).sort(), [
    'bytes written outside any response: the emnify application token',
    'response to GET /leak (200), head: the session secret',
    'response to GET /other (200), body: a session token'
  ])
  t.throws(() => watch.assertClean(), /3 credential leak\(s\)/)
})

t.test('startStack scans its logs and every response at teardown: HTTP, inject and raw sockets', async (t) => {
  const canary = 'leak-canary-0123456789abcdef'
  registerSecret('the canary', canary)

  const clean = teardowns()
  const quiet = await startStack(clean)
  t.equal((await quiet.patch(CONTACT, { city: 'Berlin' })).status, 204)
  t.equal(await clean.run(), '', 'a stack that leaked nothing passes')

  // The BFF echoes a well-formed X-Request-Id in its answer and its access log: a leak on purpose.
  for (const [label, send] of [
    ['HTTP', async (stack: Awaited<ReturnType<typeof startStack>>) => { await stack.call('GET', '/health/live', { headers: { 'x-request-id': canary } }) }],
    ['inject', async (stack: Awaited<ReturnType<typeof startStack>>) => { await stack.app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': canary } }) }],
    ['raw socket', async (stack: Awaited<ReturnType<typeof startStack>>) => {
      const socket = connect(Number(new URL(stack.url).port), '127.0.0.1')
      socket.end(`GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${canary}\r\nConnection: close\r\n\r\n`)
      socket.resume()
      await once(socket, 'close')
    }]
  ] as const) {
    const collected = teardowns()
    const stack = await startStack(collected)
    await send(stack)
    const report = await collected.run()
    t.match(report, /^leak scan: 2 credential leak\(s\)/, `${label}: the teardown fails`)
    t.match(report, 'response to GET /health/live (200), head: the canary', `${label}: names the response`)
    t.match(report, /log line \d+: the canary/, `${label}: names the log line`)
  }
})

t.test('secrets a stack learns on its own: login passwords and tokens, simulator auth_tokens', async (t) => {
  const password = 'leak-scan-password-for-alice'
  const dir = t.testdir()
  const users = join(dir, 'users.json')
  await writeFile(users, JSON.stringify({ users: [{ username: 'alice', password_hash: await hashPassword(password, { ln: 10, r: 8, p: 1 }), orgs: [1] }] }))

  const collected = teardowns()
  const stack = await startStack(collected, { env: { USERS_FILE: users } })
  const login = await stack.call('POST', '/auth/login', { headers: { 'content-type': 'application/json' }, body: { username: 'alice', password } })
  t.equal(login.status, 200)
  const token = login.json().token as string
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' }, { authorization: `Bearer ${token}` })).status, 204, 'the BFF fetched an auth_token from the simulator')
  const authToken = (stack.sim.state.calls.find((call) => call.headers.authorization !== undefined)?.headers.authorization ?? '').replace('Bearer ', '')
  t.equal(await collected.run(), '', 'the login answer and a normal PATCH are clean')

  const leaking = teardowns()
  const again = await startStack(leaking, { env: { USERS_FILE: users } })
  for (const echoed of [password, token.split('.')[2] as string, authToken.split('.')[2] as string]) {
    await again.call('GET', '/health/live', { headers: { 'x-request-id': echoed } })
  }
  const report = await leaking.run()
  for (const secret of ['a password sent to POST /auth/login', 'a session token issued by POST /auth/login', 'an auth_token issued by the simulator']) {
    t.match(report, `response to GET /health/live (200), head: ${secret}`, `flags ${secret}`)
  }
})

t.test('startServer scans the process output at teardown', async (t) => {
  const canary = 'leak-canary-for-the-process'
  registerSecret('the process canary', canary)
  const collected = teardowns()
  const server = await startServer(collected, t.testdir(), {
    EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
    SESSION_SECRET: SECRET,
    EMNIFY_API_URL: 'http://127.0.0.1:9'
  })
  const clean = await request(`${server.url}/auth/session`, { headers: { authorization: `Bearer ${session()}` } })
  await clean.body.dump()
  t.equal(clean.statusCode, 200)
  const leak = await request(`${server.url}/health/live`, { headers: { 'x-request-id': canary } })
  await leak.body.dump()
  const report = await collected.run()
  t.match(report, /stdout line \d+: the process canary/, 'the access line carrying the canary is flagged')
  t.notMatch(report, 'session token', 'the session presented on /auth/session was not logged')
  t.not(server.child.exitCode === null && server.child.signalCode === null, true, 'the process was stopped')
})
