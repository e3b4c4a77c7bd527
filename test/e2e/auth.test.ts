// Login, who-am-I and logout end to end: the users file, the cookie and its CSRF rule, the
// brute-force limits, revocation, SIGHUP reloads of the real server and the users CLI.
import { readFile, readdir, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { buildApp } from '../../src/app.ts'
import { hashPassword, parseHash, verifyPassword } from '../../src/users/password.ts'
import { parseUsers } from '../../src/users/users-file.ts'
import { startServer, type RunningServer } from '../helpers/server-process.ts'
import { runScript, USERS_CLI } from '../helpers/cli.ts'
import {
  APPLICATION_TOKEN,
  CONTACT,
  SECRET,
  captureLogs,
  claims,
  forge,
  session,
  startStack,
  testConfig,
  type Reply,
  type Stack
} from '../helpers/stack.ts'

const PASSWORD = 'correct horse battery staple'
const WRONG = 'incorrect donkey battery staple'
// Cheap hashes keep the suite fast; only the timing test needs the real cost.
const FAST = { ln: 10, r: 8, p: 1 }
const FAST_HASH = await hashPassword(PASSWORD, FAST)
const HS256 = { alg: 'HS256', typ: 'JWT' }

interface UserEntry { username: string, password_hash?: string, orgs: number[] | '*' }

/** Writes a users file into the test's own directory; every user's password is PASSWORD unless a hash is given. */
async function usersFile (t: Test, users: UserEntry[]): Promise<string> {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, JSON.stringify({ users: users.map((user) => ({ password_hash: FAST_HASH, ...user })) }))
  return path
}

/** A BFF with login enabled; the per-IP limit is lifted unless a test is about it. */
async function authStack (t: Test, users: UserEntry[] = [{ username: 'alice', orgs: [1, 2] }], env: Record<string, string> = {}): Promise<Stack> {
  return startStack(t, { env: { USERS_FILE: await usersFile(t, users), LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: '100000', ...env } })
}

const login = (stack: Stack, username: string, password: string) => stack.call('POST', '/auth/login', {
  headers: { 'content-type': 'application/json' },
  body: { username, password }
})

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const cookieName = (stack: Stack) => stack.config.SESSION_COOKIE_SECURE ? '__Host-session' : 'session'
const cookie = (stack: Stack, token: string) => ({ cookie: `${cookieName(stack)}=${token}` })

function setCookies (reply: Reply): string[] {
  const header = reply.headers['set-cookie']
  return header === undefined ? [] : Array.isArray(header) ? header : [header]
}

/** Splits one Set-Cookie line into name, value and attributes (names lower-cased). */
function parseSetCookie (line: string) {
  const [pair = '', ...rest] = line.split(';').map((part) => part.trim())
  const eq = pair.indexOf('=')
  const attributes = new Map<string, string>()
  for (const part of rest) {
    const at = part.indexOf('=')
    attributes.set((at === -1 ? part : part.slice(0, at)).toLowerCase(), at === -1 ? '' : part.slice(at + 1))
  }
  return { name: pair.slice(0, eq), value: pair.slice(eq + 1), attributes }
}

function payloadOf (token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8'))
}

function assertProblem (t: Test, reply: Reply, status: number, code: string) {
  t.equal(reply.status, status, `answers ${status}`)
  t.match(reply.headers['content-type'], /^application\/problem\+json/, 'as problem+json')
  t.equal(reply.json().code, code, `with code ${code}`)
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

t.test('login answers the token, its type, expiry and user; the token works as Bearer on the contact PATCH', async (t) => {
  const stack = await authStack(t, [{ username: 'alice', orgs: [1] }, { username: 'root', orgs: '*' }], { SESSION_TTL_S: '900' })
  const before = Date.now()
  const reply = await login(stack, 'alice', PASSWORD)
  t.equal(reply.status, 200)
  t.match(reply.headers['content-type'], /^application\/json/)
  const body = reply.json()
  t.same(Object.keys(body).sort(), ['expires_at', 'token', 'token_type', 'user'], 'exactly the documented fields')
  t.equal(body.token_type, 'Bearer')
  t.same(body.user, { sub: 'alice', orgs: [1], scope: 'contacts:read contacts:write' }, 'a user without scope holds both')
  t.match(body.expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'expires_at is ISO 8601')
  const expiresAt = Date.parse(body.expires_at)
  t.ok(expiresAt >= before + 900_000 - 1000 && expiresAt <= Date.now() + 900_000 + 1000, 'expires_at is now + SESSION_TTL_S')

  const payload = payloadOf(body.token)
  t.equal(payload.sub, 'alice')
  t.same(payload.orgs, [1])
  t.equal(payload.exp - payload.iat, 900, 'the token lives SESSION_TTL_S')
  t.equal(payload.exp * 1000, expiresAt, 'expires_at is the token exp')
  t.type(payload.jti, 'string', 'the BFF adds a jti')
  t.equal(payload.iss, 'emnify-bff')
  t.equal(payload.aud, 'emnify-bff')

  const patched = await stack.patch(CONTACT, { city: 'Berlin' }, bearer(body.token))
  t.equal(patched.status, 204, 'the issued token is accepted on the contact PATCH')
  t.equal(stack.sim.state.counters.patch_contact, 1, 'and the change reached emnify')
  const forbidden = await stack.patch('/api/v1/organisation/2/contact/10', { city: 'Berlin' }, bearer(body.token))
  assertProblem(t, forbidden, 403, 'ORGANISATION_FORBIDDEN')

  const root = (await login(stack, 'root', PASSWORD)).json()
  t.same(root.user, { sub: 'root', orgs: '*', scope: 'contacts:read contacts:write' }, 'orgs "*" is passed on as is')
  t.equal((await stack.patch('/api/v1/organisation/2/contact/10', { city: 'Berlin' }, bearer(root.token))).status, 204, 'orgs "*" reaches any organisation')
})

t.test('each login issues a distinct session', async (t) => {
  const stack = await authStack(t)
  const a = (await login(stack, 'alice', PASSWORD)).json()
  const b = (await login(stack, 'alice', PASSWORD)).json()
  t.not(a.token, b.token)
  t.not(payloadOf(a.token).jti, payloadOf(b.token).jti)
})

t.test('with secure cookies (default) login sets __Host-session: Secure, HttpOnly, SameSite=Strict, Path=/, Max-Age=TTL, no Domain', async (t) => {
  const stack = await authStack(t, undefined, { SESSION_TTL_S: '1800' })
  const reply = await login(stack, 'alice', PASSWORD)
  const lines = setCookies(reply)
  t.equal(lines.length, 1, 'one cookie')
  const set = parseSetCookie(lines[0] as string)
  t.equal(set.name, '__Host-session')
  t.equal(set.value, reply.json().token, 'the cookie carries the session token')
  t.equal(set.attributes.get('max-age'), '1800', 'Max-Age is SESSION_TTL_S')
  t.equal(set.attributes.get('path'), '/')
  t.ok(set.attributes.has('httponly'), 'HttpOnly')
  t.ok(set.attributes.has('secure'), 'Secure')
  t.equal(set.attributes.get('samesite')?.toLowerCase(), 'strict', 'SameSite=Strict')
  t.notOk(set.attributes.has('domain'), 'no Domain')

  const who = await stack.call('GET', '/auth/session', { headers: cookie(stack, set.value) })
  t.equal(who.status, 200, 'the cookie is a working session')
})

t.test('with SESSION_COOKIE_SECURE=false login sets "session" without Secure, otherwise the same flags', async (t) => {
  const stack = await authStack(t, undefined, { SESSION_COOKIE_SECURE: 'false' })
  const reply = await login(stack, 'alice', PASSWORD)
  const lines = setCookies(reply)
  t.equal(lines.length, 1, 'one cookie')
  const set = parseSetCookie(lines[0] as string)
  t.equal(set.name, 'session')
  t.equal(set.value, reply.json().token)
  t.equal(set.attributes.get('max-age'), String(stack.config.SESSION_TTL_S), 'Max-Age is SESSION_TTL_S')
  t.equal(set.attributes.get('path'), '/')
  t.ok(set.attributes.has('httponly'), 'HttpOnly')
  t.notOk(set.attributes.has('secure'), 'not Secure')
  t.equal(set.attributes.get('samesite')?.toLowerCase(), 'strict', 'SameSite=Strict')
  t.notOk(set.attributes.has('domain'), 'no Domain')
  t.equal((await stack.call('GET', '/auth/session', { headers: cookie(stack, set.value) })).status, 200)
})

t.test('every auth response carries Cache-Control: no-store, errors included', async (t) => {
  const stack = await authStack(t, [{ username: 'alice', orgs: [1] }, { username: 'locked', orgs: [1] }])
  for (let i = 0; i < 5; i++) await login(stack, 'locked', WRONG)
  const ok = await login(stack, 'alice', PASSWORD)
  const token = ok.json().token
  const replies: Record<string, Reply> = {
    'login 200': ok,
    'login 401': await login(stack, 'alice', WRONG),
    'login 429': await login(stack, 'locked', PASSWORD),
    'login 400': await stack.call('POST', '/auth/login', { headers: { 'content-type': 'application/json' }, body: { username: 'alice' } }),
    'session 200': await stack.call('GET', '/auth/session', { headers: bearer(token) }),
    'session 401': await stack.call('GET', '/auth/session'),
    'logout 403': await stack.call('POST', '/auth/logout', { headers: cookie(stack, token) }),
    'logout 204': await stack.call('POST', '/auth/logout', { headers: bearer(token) }),
    'logout 401': await stack.call('POST', '/auth/logout', { headers: bearer(token) })
  }
  for (const [label, reply] of Object.entries(replies)) {
    t.equal(reply.status, Number(label.split(' ')[1]), `${label}: status`)
    t.equal(reply.headers['cache-control'], 'no-store', `${label}: Cache-Control: no-store`)
  }
})

t.test('a wrong password and an unknown user get the same 401 INVALID_CREDENTIALS and no cookie', async (t) => {
  const stack = await authStack(t)
  const wrong = await login(stack, 'alice', WRONG)
  const unknown = await login(stack, 'mallory', PASSWORD)
  for (const reply of [wrong, unknown]) {
    assertProblem(t, reply, 401, 'INVALID_CREDENTIALS')
    t.same(setCookies(reply), [], 'no cookie')
  }
  const strip = (reply: Reply) => {
    const { request_id: _id, instance: _instance, ...rest } = reply.json()
    return rest
  }
  t.same(strip(wrong), strip(unknown), 'bodies are identical apart from request_id and instance')
  t.equal(wrong.json().instance, '/auth/login')
  t.equal(wrong.headers['content-length'], unknown.headers['content-length'], 'same length')
  t.equal(wrong.headers['www-authenticate'], unknown.headers['www-authenticate'], 'same headers')
})

t.test('a wrong password and an unknown user take similar time (medians within 50 %)', async (t) => {
  // Real cost (ln=15) for the users; the unknown-user path verifies against a dummy of that cost.
  const hash = await hashPassword(PASSWORD)
  const names = ['t0', 't1', 't2', 't3', 't4']
  const stack = await authStack(t, names.map((username) => ({ username, password_hash: hash, orgs: [1] })))
  const timed = async (username: string, password: string) => {
    const started = performance.now()
    const reply = await login(stack, username, password)
    const ms = performance.now() - started
    t.equal(reply.status, 401, `${username}: 401`)
    return ms
  }
  // Warm-up: JIT, connection, schema compilation.
  await timed('ghost-warmup', WRONG)
  await login(stack, 't0', PASSWORD)

  const unknown: number[] = []
  const wrong: number[] = []
  for (let i = 0; i < 20; i++) {
    // Four failures per known user stay under the per-username limit.
    const pair = [() => timed(`ghost${i}`, WRONG), () => timed(names[i % names.length] as string, WRONG)] as const
    if (i % 2 === 0) {
      unknown.push(await pair[0]())
      wrong.push(await pair[1]())
    } else {
      wrong.push(await pair[1]())
      unknown.push(await pair[0]())
    }
  }
  const [u, w] = [median(unknown), median(wrong)]
  t.comment(`login timing medians over 20 tries each: unknown user ${u.toFixed(1)} ms, wrong password ${w.toFixed(1)} ms`)
  t.ok(Math.max(u, w) <= 1.5 * Math.min(u, w), `medians within 50 % of each other (${u.toFixed(1)} vs ${w.toFixed(1)} ms)`)
})

t.test('after 5 failures a username gets 429 RATE_LIMITED with Retry-After, even with the right password; others still log in', async (t) => {
  const stack = await authStack(t, [{ username: 'alice', orgs: [1] }, { username: 'bob', orgs: [2] }])
  for (let i = 1; i <= 5; i++) assertProblem(t, await login(stack, 'alice', WRONG), 401, 'INVALID_CREDENTIALS')

  const blocked = await login(stack, 'alice', PASSWORD)
  assertProblem(t, blocked, 429, 'RATE_LIMITED')
  const retryAfter = Number(blocked.headers['retry-after'])
  t.ok(retryAfter > 15 * 60 - 30 && retryAfter <= 15 * 60, `Retry-After is the rest of the 15-minute window (${retryAfter})`)
  t.same(setCookies(blocked), [], 'no cookie')
  t.notOk('token' in blocked.json(), 'no token')

  assertProblem(t, await login(stack, 'ALICE', PASSWORD), 429, 'RATE_LIMITED')
  t.equal((await login(stack, 'bob', PASSWORD)).status, 200, 'another username still logs in')
})

t.test('a successful login before the fifth failure resets the count', async (t) => {
  const stack = await authStack(t)
  for (let i = 0; i < 4; i++) assertProblem(t, await login(stack, 'alice', WRONG), 401, 'INVALID_CREDENTIALS')
  t.equal((await login(stack, 'alice', PASSWORD)).status, 200, 'the right password after four failures')
  for (let i = 0; i < 5; i++) assertProblem(t, await login(stack, 'alice', WRONG), 401, 'INVALID_CREDENTIALS')
  assertProblem(t, await login(stack, 'alice', PASSWORD), 429, 'RATE_LIMITED')
})

t.test('per client IP, LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE attempts pass and the next gets 429 RATE_LIMITED with Retry-After', async (t) => {
  const stack = await authStack(t, [{ username: 'alice', orgs: [1] }], { LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: '3' })
  t.equal((await login(stack, 'alice', WRONG)).status, 401)
  t.equal((await login(stack, 'alice', WRONG)).status, 401)
  t.equal((await login(stack, 'alice', PASSWORD)).status, 200)
  const limited = await login(stack, 'alice', PASSWORD)
  assertProblem(t, limited, 429, 'RATE_LIMITED')
  const body = limited.json()
  t.equal(body.status, 429)
  t.equal(body.instance, '/auth/login')
  t.type(body.request_id, 'string')
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After within the minute (${retryAfter})`)
  t.same(setCookies(limited), [], 'no cookie')
  t.equal((await stack.call('GET', '/auth/session', { headers: bearer(session()) })).status, 200, 'other routes are not limited by it')
})

t.test('the per-IP login limit defaults to 30 a minute', async (t) => {
  const stack = await startStack(t, { env: { USERS_FILE: await usersFile(t, [{ username: 'alice', orgs: [1] }]) } })
  for (let i = 0; i < 30; i++) t.equal((await login(stack, 'alice', PASSWORD)).status, 200, `attempt ${i + 1}`)
  const limited = await login(stack, 'alice', PASSWORD)
  assertProblem(t, limited, 429, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) <= 60, 'limited by the per-minute IP budget, not the per-user one')
})

t.test('without USERS_FILE there is no login: 404, while minted sessions still work', async (t) => {
  const stack = await startStack(t)
  assertProblem(t, await login(stack, 'alice', PASSWORD), 404, 'NOT_FOUND')
  const who = await stack.call('GET', '/auth/session', { headers: bearer(session()) })
  t.equal(who.status, 200)
})

t.test('a login body must be exactly {username, password} within limits: else 400, and no attempt is counted', async (t) => {
  const stack = await authStack(t)
  const post = (body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    stack.call('POST', '/auth/login', { headers, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const invalid: Record<string, unknown> = {
    'missing password': { username: 'alice' },
    'missing username': { password: PASSWORD },
    'empty object': {},
    'extra field': { username: 'alice', password: PASSWORD, remember: true },
    'empty username': { username: '', password: PASSWORD },
    'empty password': { username: 'alice', password: '' },
    'username over 128 characters': { username: 'a'.repeat(129), password: PASSWORD },
    'password over 1024 characters': { username: 'alice', password: 'p'.repeat(1025) },
    'numeric password': { username: 'alice', password: 123456789012 },
    'array body': [{ username: 'alice', password: PASSWORD }]
  }
  for (const [label, body] of Object.entries(invalid)) {
    const reply = await post(body)
    t.equal(reply.status, 400, `${label}: 400`)
    t.equal(reply.json().code, 'VALIDATION_FAILED', `${label}: VALIDATION_FAILED`)
  }
  const extra = (await post(invalid['extra field'])).json()
  t.match(extra.errors, [{ pointer: '/remember' }], 'names the extra field')
  assertProblem(t, await post('{"username": "alice",'), 400, 'MALFORMED_JSON')
  assertProblem(t, await post(`username=alice&password=${PASSWORD}`, { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE')
  assertProblem(t, await post({ username: 'alice', password: 'p'.repeat(5000) }), 413, 'PAYLOAD_TOO_LARGE')
  t.equal((await login(stack, 'alice', PASSWORD)).status, 200, 'none of these counted as a failed login')
})

t.test('GET /auth/session answers sub, orgs and expiry by Bearer and by cookie (no X-CSRF for GET); 401 without a session', async (t) => {
  const stack = await authStack(t, [{ username: 'alice', orgs: [4, 5] }])
  const token = (await login(stack, 'alice', PASSWORD)).json().token
  const exp = payloadOf(token).exp
  for (const [label, headers] of [['Bearer', bearer(token)], ['cookie', cookie(stack, token)]] as const) {
    const reply = await stack.call('GET', '/auth/session', { headers })
    t.equal(reply.status, 200, `${label}: 200`)
    t.same(reply.json(), { sub: 'alice', orgs: [4, 5], scope: 'contacts:read contacts:write', expires_at: new Date(exp * 1000).toISOString() }, `${label}: exactly sub, orgs, scope, expires_at`)
  }
  const minted = await stack.call('GET', '/auth/session', { headers: bearer(session('ops', '*')) })
  t.match(minted.json(), { sub: 'ops', orgs: '*' }, 'an externally minted session is reported too')

  const none = await stack.call('GET', '/auth/session')
  assertProblem(t, none, 401, 'UNAUTHENTICATED')
  t.equal(none.headers['www-authenticate'], 'Bearer')
  assertProblem(t, await stack.call('GET', '/auth/session', { headers: bearer('not-a-jwt') }), 401, 'UNAUTHENTICATED')
  assertProblem(t, await stack.call('GET', '/auth/session', { headers: { ...bearer(token), ...cookie(stack, token) } }), 401, 'UNAUTHENTICATED')
})

t.test('logout by Bearer: 204, then that token gets 401 everywhere and nothing reaches emnify; other sessions live on', async (t) => {
  const stack = await authStack(t)
  const token = (await login(stack, 'alice', PASSWORD)).json().token
  const other = (await login(stack, 'alice', PASSWORD)).json().token
  const out = await stack.call('POST', '/auth/logout', { headers: bearer(token) })
  t.equal(out.status, 204)
  t.equal(out.text, '', 'empty body')

  assertProblem(t, await stack.call('GET', '/auth/session', { headers: bearer(token) }), 401, 'UNAUTHENTICATED')
  assertProblem(t, await stack.patch(CONTACT, { city: 'Berlin' }, bearer(token)), 401, 'UNAUTHENTICATED')
  assertProblem(t, await stack.call('GET', '/auth/session', { headers: cookie(stack, token) }), 401, 'UNAUTHENTICATED')
  t.equal(stack.sim.state.counters.total, 0, 'nothing was sent upstream')
  assertProblem(t, await stack.call('POST', '/auth/logout', { headers: bearer(token) }), 401, 'UNAUTHENTICATED')

  t.equal((await stack.call('GET', '/auth/session', { headers: bearer(other) })).status, 200, 'another session of the same user still works')
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' }, bearer(other))).status, 204)
})

t.test('logout by cookie needs X-CSRF: 1; without it 403 and the session still works; with it 204 and the cookie is cleared', async (t) => {
  for (const secure of ['true', 'false']) {
    t.test(`SESSION_COOKIE_SECURE=${secure}`, async (t) => {
      const stack = await authStack(t, undefined, { SESSION_COOKIE_SECURE: secure })
      const token = (await login(stack, 'alice', PASSWORD)).json().token

      const refused = await stack.call('POST', '/auth/logout', { headers: cookie(stack, token) })
      assertProblem(t, refused, 403, 'CSRF_HEADER_REQUIRED')
      t.same(setCookies(refused), [], 'the cookie is not touched')
      assertProblem(t, await stack.call('POST', '/auth/logout', { headers: { ...cookie(stack, token), 'x-csrf': 'yes' } }), 403, 'CSRF_HEADER_REQUIRED')
      t.equal((await stack.call('GET', '/auth/session', { headers: cookie(stack, token) })).status, 200, 'the session still works')

      const out = await stack.call('POST', '/auth/logout', { headers: { ...cookie(stack, token), 'x-csrf': '1' } })
      t.equal(out.status, 204)
      const lines = setCookies(out)
      t.equal(lines.length, 1, 'one Set-Cookie')
      const cleared = parseSetCookie(lines[0] as string)
      t.equal(cleared.name, cookieName(stack), 'clears the session cookie')
      t.equal(cleared.value, '', 'with an empty value')
      t.equal(cleared.attributes.get('max-age'), '0', 'Max-Age=0')
      t.equal(cleared.attributes.get('path'), '/', 'on the same path')
      t.equal(cleared.attributes.has('secure'), secure === 'true', 'Secure as when it was set')
      t.notOk(cleared.attributes.has('domain'), 'no Domain')

      assertProblem(t, await stack.call('GET', '/auth/session', { headers: cookie(stack, token) }), 401, 'UNAUTHENTICATED')
      assertProblem(t, await stack.patch(CONTACT, { city: 'Berlin' }, { authorization: '', ...cookie(stack, token), 'x-csrf': '1' }), 401, 'UNAUTHENTICATED')
    })
  }
})

t.test('logging out an externally minted session without jti revokes that token by its hash', async (t) => {
  const stack = await authStack(t)
  const external = forge(HS256, claims())
  const sibling = forge(HS256, claims({ sub: 'bob' }))
  t.notOk('jti' in payloadOf(external), 'the token has no jti')
  t.equal((await stack.call('GET', '/auth/session', { headers: bearer(external) })).status, 200, 'accepted before logout')
  t.equal((await stack.call('POST', '/auth/logout', { headers: bearer(external) })).status, 204)
  assertProblem(t, await stack.call('GET', '/auth/session', { headers: bearer(external) }), 401, 'UNAUTHENTICATED')
  assertProblem(t, await stack.patch(CONTACT, { city: 'Berlin' }, bearer(external)), 401, 'UNAUTHENTICATED')
  t.equal((await stack.call('GET', '/auth/session', { headers: bearer(sibling) })).status, 200, 'another jti-less session is unaffected')
  t.equal(stack.sim.state.counters.total, 0, 'nothing was sent upstream')
})

t.test('a session logged out just after its exp (still inside the clock tolerance) stays refused', async (t) => {
  const stack = await authStack(t)
  const now = Math.floor(Date.now() / 1000)
  const late = forge(HS256, claims({ iat: now - 600, exp: now - 5, jti: 'late-session' }))
  t.equal((await stack.call('GET', '/auth/session', { headers: bearer(late) })).status, 200, 'accepted within the clock tolerance')
  t.equal((await stack.call('POST', '/auth/logout', { headers: bearer(late) })).status, 204)
  assertProblem(t, await stack.call('GET', '/auth/session', { headers: bearer(late) }), 401, 'UNAUTHENTICATED')
  assertProblem(t, await stack.patch(CONTACT, { city: 'Berlin' }, bearer(late)), 401, 'UNAUTHENTICATED')
})

t.test('CSRF and the session requirement also protect routes registered after the session plugin', async (t) => {
  const app = await buildApp(testConfig(), { logStream: captureLogs().stream })
  t.teardown(() => app.close())
  app.post('/later', async () => ({ ok: true }))
  await app.register(async (child) => {
    child.post('/later/child', async () => ({ ok: true }))
  })
  await app.ready()
  const token = session()
  const post = (url: string, headers: Record<string, string>) => app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload: '{}' })

  for (const url of ['/later', '/later/child']) {
    const noCsrf = await post(url, { cookie: `__Host-session=${token}` })
    t.equal(noCsrf.statusCode, 403, `${url}: cookie without X-CSRF is 403`)
    t.equal(noCsrf.json().code, 'CSRF_HEADER_REQUIRED')
    const withCsrf = await post(url, { cookie: `__Host-session=${token}`, 'x-csrf': '1' })
    t.equal(withCsrf.statusCode, 200, `${url}: cookie with X-CSRF is 200`)
    t.same(withCsrf.json(), { ok: true })
    const none = await post(url, {})
    t.equal(none.statusCode, 401, `${url}: no session is 401`)
    t.equal(none.json().code, 'UNAUTHENTICATED')
    t.equal((await post(url, bearer(token))).statusCode, 200, `${url}: Bearer needs no X-CSRF`)
  }
})

t.test('logs never contain the password, the issued token or the session secret', async (t) => {
  const stack = await authStack(t)
  const reply = await login(stack, 'alice', PASSWORD)
  const token = reply.json().token
  await login(stack, 'alice', WRONG)
  await login(stack, 'mallory', PASSWORD)
  await stack.call('POST', '/auth/login', { headers: { 'content-type': 'application/json' }, body: { username: 'alice', password: PASSWORD, extra: 1 } })
  await stack.call('GET', '/auth/session', { headers: cookie(stack, token) })
  await stack.call('POST', '/auth/logout', { headers: cookie(stack, token) })
  await stack.call('POST', '/auth/logout', { headers: { ...cookie(stack, token), 'x-csrf': '1' } })
  await stack.app.close() // flushes the last lines
  const text = stack.logs.lines.join('\n')
  t.ok(stack.logs.lines.length >= 7, 'the requests were logged')
  t.ok(text.includes('login failed') && text.includes('login succeeded'), 'login outcomes are logged')
  for (const [label, secret] of [['password', PASSWORD], ['wrong password', WRONG], ['token', token], ['token signature', token.split('.')[2]], ['session secret', SECRET]] as const) {
    t.notOk(text.includes(secret as string), `no ${label}`)
  }
})

// -- the real server process and the operator CLI ------------------------------------------------

type Running = RunningServer

/** Waits (bounded) until the server has logged a line containing `text` at or after line `from`. */
async function logged (server: Running, text: string, from: number): Promise<boolean> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (server.stdout.slice(from).some((line) => line.includes(text))) return true
    await sleep(20)
  }
  return false
}

async function remoteLogin (url: string, username: string, password: string): Promise<number> {
  const response = await request(`${url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password })
  })
  await response.body.dump()
  return response.statusCode
}

/** Runs the users CLI with the password on stdin. */
const cli = (args: string[], stdin: string, cwd: string) => runScript(USERS_CLI, args, stdin, cwd)

t.test('the real server re-reads the users file on SIGHUP and keeps the old users when the new file is broken', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'users.json')
  await writeFile(file, JSON.stringify({ users: [{ username: 'alice', password_hash: FAST_HASH, orgs: [1] }] }))
  const server = await startServer(t, dir, {
    EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
    SESSION_SECRET: SECRET,
    EMNIFY_API_URL: 'http://127.0.0.1:9',
    USERS_FILE: file
  })
  t.equal(await remoteLogin(server.url, 'alice', PASSWORD), 200, 'alice logs in')
  t.equal(await remoteLogin(server.url, 'bob', 'bobs-own-long-password'), 401, 'bob is not a user yet')

  // The operator's way: add bob with the CLI, then signal the service.
  const added = await cli(['add', '--file', file, '--username', 'bob', '--orgs', '2'], 'bobs-own-long-password\n', dir)
  t.equal(added.code, 0, `user:add succeeded ${added.stderr}`)
  let from = server.stdout.length
  server.child.kill('SIGHUP')
  t.ok(await logged(server, 'users file reloaded', from), 'logs the reload')
  t.equal(await remoteLogin(server.url, 'bob', 'bobs-own-long-password'), 200, 'the new user logs in')
  t.equal(await remoteLogin(server.url, 'alice', PASSWORD), 200, 'the existing user still logs in')
  t.equal(server.child.exitCode, null, 'SIGHUP did not stop the process')

  // A broken edit, written atomically as an editor would: the running users stay.
  await writeFile(`${file}.new`, JSON.stringify({ users: [{ username: 'carol', password_hash: 'plain-text', orgs: [1] }] }))
  await rename(`${file}.new`, file)
  from = server.stdout.length
  server.child.kill('SIGHUP')
  t.ok(await logged(server, 'users file reload failed', from), 'logs the failed reload')
  const failure = server.stdout.slice(from).find((line) => line.includes('users file reload failed')) ?? ''
  t.match(failure, 'users[0] \\"carol\\"', 'the log names the bad entry')
  t.equal(await remoteLogin(server.url, 'bob', 'bobs-own-long-password'), 200, 'bob still logs in')
  t.equal(await remoteLogin(server.url, 'alice', PASSWORD), 200, 'alice still logs in')
  t.equal(await remoteLogin(server.url, 'carol', PASSWORD), 401, 'nothing of the broken file was taken')
  const ready = await request(`${server.url}/health/ready`)
  await ready.body.dump()
  t.equal(ready.statusCode, 200, 'still serving')

  const all = server.stdout.join('\n')
  t.notOk(all.includes(PASSWORD) || all.includes('bobs-own-long-password'), 'no password in the logs')
  server.child.kill('SIGTERM')
  t.equal(await server.exit, 0, 'stops cleanly afterwards')
})

t.test('user:hash reads the password from stdin and prints a hash that verifies it', async (t) => {
  const result = await cli(['hash'], `${PASSWORD}\n`, t.testdir())
  t.equal(result.code, 0)
  const printed = result.stdout.trim()
  t.equal(result.stdout, `${printed}\n`, 'one line')
  t.match(printed, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]{43}$/)
  const hash = parseHash(printed)
  t.equal(await verifyPassword(PASSWORD, hash), true, 'verifies the password without the trailing newline')
  t.equal(await verifyPassword(`${PASSWORD}\n`, hash), false, 'the newline is not part of the password')
  t.notOk(result.stdout.includes(PASSWORD) || result.stderr.includes(PASSWORD), 'the password is not echoed')
})

t.test('user:add creates the file, adds more users and replaces an existing one; the result loads', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'users.json')
  const first = await cli(['add', '--file', file, '--username', 'alice', '--orgs', '1,2'], `${PASSWORD}\n`, dir)
  t.equal(first.code, 0, first.stderr)
  let users = parseUsers(await readFile(file, 'utf8'), file)
  t.same([...users.keys()], ['alice'])
  t.same(users.get('alice')?.orgs, [1, 2])
  t.equal(await verifyPassword(PASSWORD, users.get('alice')!.hash), true, 'alice\'s password verifies')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'readable by the owner only')

  t.equal((await cli(['add', '--file', file, '--username', 'ops', '--orgs', '*'], 'operators-passphrase\n', dir)).code, 0)
  t.equal((await cli(['add', '--file', file, '--username', 'alice', '--orgs', '3', '--update'], 'alices-new-passphrase\n', dir)).code, 0)
  users = parseUsers(await readFile(file, 'utf8'), file)
  t.same([...users.keys()], ['alice', 'ops'], 'alice replaced in place, ops added')
  t.same(users.get('alice')?.orgs, [3])
  t.equal(users.get('ops')?.orgs, '*')
  t.equal(await verifyPassword('alices-new-passphrase', users.get('alice')!.hash), true, 'the new password verifies')
  t.equal(await verifyPassword(PASSWORD, users.get('alice')!.hash), false, 'the old password no longer does')
  t.same((await readdir(dir)).sort(), ['users.json'], 'no temporary file left behind')
})

t.test('the users CLI refuses passwords shorter than 12 characters and leaves the file alone', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'users.json')
  const [hash, eleven, twelve, add] = await Promise.all([
    cli(['hash'], 'short-pw\n', dir),
    cli(['hash'], 'elevenchars\n', dir),
    cli(['hash'], 'twelve-chars\n', dir),
    cli(['add', '--file', file, '--username', 'alice', '--orgs', '1'], 'short-pw\n', dir)
  ])
  t.not(hash.code, 0, 'user:hash fails')
  t.equal(hash.stdout, '', 'prints no hash')
  t.match(hash.stderr, /12 characters/, 'says why')
  t.not(eleven.code, 0, '11 characters are refused')
  t.equal(twelve.code, 0, '12 characters are accepted')
  t.match(twelve.stdout, /^\$scrypt\$/)

  t.not(add.code, 0, 'user:add fails')
  t.match(add.stderr, /12 characters/)
  t.same(await readdir(dir), [], 'no file was created')
})

t.test('user:add refuses to edit a users file the service would refuse to load', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'users.json')
  const broken = JSON.stringify({ users: [{ username: 'alice', password_hash: 'plain', orgs: [1] }] })
  await writeFile(file, broken)
  const result = await cli(['add', '--file', file, '--username', 'bob', '--orgs', '1'], `${PASSWORD}\n`, dir)
  t.not(result.code, 0)
  t.match(result.stderr, /users\[0\] "alice"/, 'names the bad entry')
  t.equal(await readFile(file, 'utf8'), broken, 'the file is unchanged')
})

t.test('a login body that is not valid UTF-8 is MALFORMED_JSON, not a login attempt with replacement characters', async (t) => {
  const stack = await authStack(t)
  const body = Buffer.concat([Buffer.from('{"username":"alice","password":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])
  const response = await request(`${stack.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  const reply = { status: response.statusCode, headers: response.headers, text: await response.body.text() } as Reply
  reply.json = () => JSON.parse(reply.text)
  assertProblem(t, reply, 400, 'MALFORMED_JSON')
  t.notOk(stack.logs.records().some((line) => line.msg === 'login failed' || line.event === 'login_failed'), 'not counted as a failed login')
})
