// Three BFF processes, one redis-server and the simulator: everything one instance learns, the
// others honour, and a Redis outage in the middle of load loses nothing and hangs nothing.
import t, { type Test } from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startSimulator, type RunningSimulator } from '../../simulator/simulator.ts'
import { hashPassword } from '../../src/users/password.ts'
import { secrets } from '../helpers/leak-scan.ts'
import { redisMissing, startRedis, type RunningRedis } from '../helpers/redis.ts'
import { startServer, type RunningServer } from '../helpers/server-process.ts'
import { APPLICATION_TOKEN, SECRET, session } from '../helpers/stack.ts'

const PASSWORD = 'correct horse battery staple'
const CONTACT = '/api/v1/organisation/1/contact/1'
const UPSTREAM_TIMEOUT_MS = 2000

interface Reply { status: number, headers: Record<string, string | string[] | undefined>, body: any }

async function call (server: RunningServer, method: string, path: string, options: { token?: string, body?: unknown, headers?: Record<string, string>, timeoutMs?: number } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  const response = await request(`${server.url}${path}`, {
    method: method as 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    headersTimeout: options.timeoutMs ?? 10_000,
    bodyTimeout: options.timeoutMs ?? 10_000
  })
  const text = await response.body.text()
  return { status: response.statusCode, headers: response.headers, body: text === '' ? undefined : JSON.parse(text) }
}

/** Polls `check` every 20 ms for up to `ms`; answers whether it held. */
async function within (ms: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await sleep(20)
  }
}

interface Fleet {
  redis: RunningRedis
  sim: RunningSimulator
  servers: RunningServer[]
  start: (t: Test) => Promise<RunningServer>
}

async function fleet (t: Test, env: Record<string, string> = {}): Promise<Fleet> {
  const redis = await startRedis()
  t.teardown(() => redis.close())
  const sim = await startSimulator({ applicationTokens: [APPLICATION_TOKEN], onTokenIssued: (token) => secrets.add('an auth_token issued by the simulator', token) })
  t.teardown(() => sim.close())
  const dir = t.testdir()
  const users = join(dir, 'users.json')
  await writeFile(users, JSON.stringify({
    users: [
      { username: 'alice', password_hash: await hashPassword(PASSWORD, { ln: 10, r: 8, p: 1 }), orgs: [1, 2] },
      { username: 'bob', password_hash: await hashPassword(PASSWORD, { ln: 10, r: 8, p: 1 }), orgs: [1] }
    ]
  }))
  const start = async (t: Test) => await startServer(t, dir, {
    EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
    SESSION_SECRET: SECRET,
    EMNIFY_API_URL: sim.url,
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: 'fleet-test:',
    USERS_FILE: users,
    SESSION_COOKIE_SECURE: 'false',
    LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: '100000',
    RATE_LIMIT_PER_MINUTE: '1000000',
    CONTACT_CACHE_TTL_MS: '600000',
    UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
    DOCS_ENABLED: 'false',
    ...env
  })
  const servers = await Promise.all([start(t), start(t), start(t)])
  return { redis, sim, servers, start }
}

async function login (server: RunningServer, username: string, password = PASSWORD): Promise<Reply> {
  return await call(server, 'POST', '/auth/login', { body: { username, password } })
}

// Each fleet is three processes starting (about 10 s on a test machine); the file needs more than tap's 60 s.
t.setTimeout(240_000)

const missing = redisMissing()
if (missing !== undefined) {
  t.comment(missing)
  t.pass('skipped: no redis-server')
} else {
  t.test('three instances on one Redis behave as one service', async (t) => {
    const f = await fleet(t)
    const [a, b, c] = f.servers as [RunningServer, RunningServer, RunningServer]

    t.test('every instance is ready once Redis has answered', async (t) => {
      for (const server of f.servers) {
        const reply = await call(server, 'GET', '/health/ready')
        t.equal(reply.status, 200, JSON.stringify(reply.body))
        if (reply.status !== 200) t.comment(server.stdout.join('\n'))
      }
    })

    t.test('three instances starting together and serving make one authenticate call', async (t) => {
      const token = session()
      const replies = await Promise.all(f.servers.flatMap((server) => Array.from({ length: 5 }, () => call(server, 'PATCH', CONTACT, { token, body: { city: 'Berlin' } }))))
      t.same(replies.map((reply) => reply.status), replies.map(() => 204), 'every request succeeded')
      t.equal(f.sim.state.counters.authenticate, 1, 'one authenticate for three instances (each checks emnify at start-up too)')
    })

    t.test('a logout on one instance is honoured by the others within 1 s, and after a restart', async (t) => {
      const { token } = (await login(a, 'alice')).body as { token: string }
      t.equal((await call(b, 'GET', '/auth/session', { token })).status, 200, 'the session works everywhere')
      t.equal((await call(a, 'POST', '/auth/logout', { token })).status, 204)
      for (const server of [b, c]) {
        t.ok(await within(1000, async () => (await call(server, 'GET', '/auth/session', { token })).status === 401), 'refused on another instance within 1 s')
      }
      const restarted = await f.start(t)
      t.equal((await call(restarted, 'GET', '/auth/session', { token })).status, 401, 'a freshly started instance refuses it from its first request')
    })

    t.test('the login lockout counts failures on all instances together', async (t) => {
      const failures = await Promise.all([a, a, b, b, c].map((server) => login(server, 'bob', 'wrong password')))
      t.same(failures.map((reply) => reply.status), [401, 401, 401, 401, 401])
      const locked = await login(c, 'bob')
      t.equal(locked.status, 429, 'the sixth attempt is refused even with the right password')
      t.ok(Number(locked.headers['retry-after']) > 0, 'with Retry-After')
      t.equal((await login(a, 'bob')).status, 429, 'on every instance')
    })

    t.test('a write through one instance drops the cached reads of all', async (t) => {
      const token = session()
      for (const server of f.servers) t.equal((await call(server, 'GET', CONTACT, { token })).status, 200, 'read and cached')
      const reads = f.sim.state.counters.get_contact
      await call(b, 'GET', CONTACT, { token })
      t.equal(f.sim.state.counters.get_contact, reads, 'a repeated read is served from the cache')
      t.equal((await call(a, 'PATCH', CONTACT, { token, body: { city: 'Lisbon' } })).status, 204)
      for (const server of [b, c]) {
        t.ok(await within(1000, async () => (await call(server, 'GET', CONTACT, { token })).body?.city === 'Lisbon'), 'another instance reads the new value within 1 s')
      }
    })

    t.test('an Idempotency-Key is honoured across instances', async (t) => {
      const token = session()
      const headers = { 'idempotency-key': 'fleet-create-1' }
      const body = { type: { id: 1 }, name: 'Fleet Contact' }
      const first = await call(a, 'POST', '/api/v1/organisation/1/contact', { token, body, headers })
      t.equal(first.status, 201)
      const again = await call(b, 'POST', '/api/v1/organisation/1/contact', { token, body, headers })
      t.equal(again.status, 201)
      t.equal(again.headers['idempotency-replayed'], 'true', 'replayed by the other instance')
      t.equal(again.headers.location, first.headers.location)
      t.equal(f.sim.state.counters.create_contact, 1, 'one contact created')
      const other = await call(c, 'POST', '/api/v1/organisation/1/contact', { token, body: { ...body, name: 'Another' }, headers })
      t.equal(other.status, 422, 'the same key with another body is refused on a third')
    })
  })

  t.test('the upstream budget is one bucket for the fleet', async (t) => {
    const f = await fleet(t, { UPSTREAM_BUDGET_PER_5MIN: '1', UPSTREAM_BUDGET_BURST: '6', UPSTREAM_QUEUE_TIMEOUT_MS: '0' })
    const token = session()
    // An instance whose first lease missed Redis (slow start) spends its own share until its next
    // heartbeat (1 s) reaches the shared bucket: wait until every instance is on it and counts three.
    const onShared = async (server: RunningServer) => {
      const budget = (await call(server, 'GET', '/health/ready')).body?.upstream_budget
      return budget?.mode === 'shared' && budget?.instances === 3
    }
    t.ok(await within(10_000, async () => (await Promise.all(f.servers.map(onShared))).every(Boolean)), 'every instance spends from the shared bucket')
    const replies = await Promise.all(f.servers.flatMap((server) => Array.from({ length: 6 }, () => call(server, 'PATCH', CONTACT, { token, body: { city: 'Oslo' } }))))
    const sent = replies.filter((reply) => reply.status === 204).length
    t.ok(sent <= 6, `at most the burst of 6 went upstream for all three instances (${sent})`)
    t.ok(replies.filter((reply) => reply.status === 503).every((reply) => reply.body?.code === 'UPSTREAM_BUDGET_EXHAUSTED'), 'the rest were refused for the budget')
    t.equal(f.sim.state.counters.patch_contact, sent)
  })

  t.test('Redis killed under load and restarted: nothing lost, nothing hung', async (t) => {
    const f = await fleet(t, { UPSTREAM_BUDGET_PER_5MIN: '10000000', UPSTREAM_BUDGET_BURST: '100000' })
    const [a, b, c] = f.servers as [RunningServer, RunningServer, RunningServer]
    const token = session()
    const { token: leaving } = (await login(a, 'alice')).body as { token: string }
    // Budget for one request: its upstream call and a retry, well inside the client's own timeout.
    const budget = UPSTREAM_TIMEOUT_MS * 2
    const load = { running: true }
    let sent = 0
    const statuses = new Map<number, number>()
    const failures: string[] = []
    const loops = Array.from({ length: 12 }, async (_, i) => {
      const server = f.servers[i % 3] as RunningServer
      while (load.running) {
        sent++
        try {
          const reply = await call(server, 'PATCH', CONTACT, { token, body: { city: `City ${i}` }, timeoutMs: budget })
          statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
        } catch (error) {
          failures.push(String(error))
        }
      }
    })
    await sleep(300)
    await f.redis.stop(true)
    await sleep(300)
    t.equal((await call(a, 'POST', '/auth/logout', { token: leaving })).status, 204, 'a logout while Redis is down is accepted')
    t.equal((await call(a, 'GET', '/auth/session', { token: leaving })).status, 401, 'and honoured at once where it was made')
    const create = await call(b, 'POST', '/api/v1/organisation/1/contact', { token, body: { type: { id: 1 }, name: 'Outage' }, headers: { 'idempotency-key': 'outage-1' } })
    t.equal(create.status, 503)
    t.equal(create.body?.code, 'STORE_UNAVAILABLE', 'an idempotent create is refused rather than risked')
    for (const server of f.servers) t.equal((await call(server, 'GET', '/health/ready')).status, 200, 'instances stay ready')
    const late = await f.start(t)
    const unready = await call(late, 'GET', '/health/ready')
    t.equal(unready.status, 503, 'an instance started during the outage is not ready')
    t.equal(unready.body?.code, 'STORE_UNAVAILABLE')
    await f.redis.start()
    t.ok(await within(5000, async () => (await call(late, 'GET', '/health/ready')).status === 200), 'until Redis has answered')
    for (const server of [b, c]) {
      t.ok(await within(5000, async () => (await call(server, 'GET', '/auth/session', { token: leaving })).status === 401), 'the logout reached the other instances once Redis was back')
    }
    await sleep(300)
    load.running = false
    await Promise.all(loops)
    const answered = [...statuses.values()].reduce((sum, count) => sum + count, 0)
    t.same(failures, [], 'no request hung past its budget or lost its connection')
    t.equal(answered, sent, `every one of ${sent} requests was answered`)
    t.same([...statuses.keys()], [204], 'and every one succeeded')
    t.equal(f.sim.state.counters.patch_contact, sent, 'each reached emnify exactly once')
    // The command connection reconnects on its own backoff (up to 2 s), after the subscriber that
    // carried the logout: wait for it within the same bound before counting its lines.
    const ups = (server: RunningServer) => server.stdout.filter((line) => line.includes('"event":"redis.up"')).length
    for (const server of f.servers) await within(5000, async () => ups(server) >= 2)
    for (const server of f.servers) {
      const lines = server.stdout.map((line) => JSON.parse(line) as Record<string, unknown>)
      t.equal(lines.filter((line) => line.event === 'redis.down').length, 1, 'one log line for the outage')
      t.equal(lines.filter((line) => line.event === 'redis.up').length, 2, 'one for each time Redis answered')
    }
    const metrics = await request(`${a.url}/metrics`)
    t.match(await metrics.body.text(), /emnify_bff_redis_up 1/, 'the gauge shows Redis up again')
  })
}
