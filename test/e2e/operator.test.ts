// What a first-time operator sees from the real process: one start-up line saying what the
// service is configured to do, an authenticate check at start-up, upstream failures in one line.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { startSimulator } from '../../simulator/simulator.ts'
import { hashPassword } from '../../src/users/password.ts'
import { SERVER, startServer, type RunningServer } from '../helpers/server-process.ts'
import { APPLICATION_TOKEN, CONTACT, SECRET, startStack } from '../helpers/stack.ts'

const records = (server: RunningServer) => server.stdout.flatMap((line) => {
  try {
    return [JSON.parse(line) as Record<string, any>]
  } catch {
    return []
  }
})

async function recordOf (server: RunningServer, event: string): Promise<Record<string, any>> {
  for (let i = 0; i < 100; i++) {
    const found = records(server).find((record) => record.event === event)
    if (found !== undefined) return found
    await sleep(50)
  }
  throw new Error(`no ${event} line in ${server.stdout.join('\n')}`)
}

async function simulator (t: Test) {
  const sim = await startSimulator({ applicationTokens: [APPLICATION_TOKEN] })
  t.teardown(() => sim.close())
  return sim
}

t.test('start-up logs one line with what the service is configured to do and its pid, never a secret', async (t) => {
  const sim = await simulator(t)
  const dir = t.testdir()
  const users = join(dir, 'users.json')
  writeFileSync(users, JSON.stringify({ users: [{ username: 'alice', password_hash: await hashPassword('correct horse battery staple', { ln: 10, r: 8, p: 1 }), orgs: [1] }] }))
  const server = await startServer(t, dir, {
    EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
    SESSION_SECRET: SECRET,
    EMNIFY_API_URL: sim.url,
    USERS_FILE: users,
    CORS_ORIGINS: 'http://localhost:5173',
    METRICS_PORT: '0',
    REDIS_URL: 'redis://bff:redis-password-value@127.0.0.1:1/0'
  })
  // REDIS_URL points nowhere: the service still starts (readiness waits for Redis) and says where it looks.
  const line = await recordOf(server, 'startup')
  t.equal(line.pid, server.child.pid, 'the pid of the process to signal')
  t.match(line.msg, `pid ${server.child.pid}`)
  t.match(line.msg, /SIGTERM.*SIGHUP/, 'says which signals it takes')
  t.equal(line.upstream, sim.url)
  t.equal(line.listen, server.url)
  t.match(line.users, /^1 in .*users\.json$/)
  t.same(line.cors_origins, ['http://localhost:5173'])
  t.match(line.cookie, /^__Host-session/)
  t.match(line.metrics, /^port \d+ \/metrics$/)
  t.equal(line.store, 'redis://127.0.0.1:1 prefix emnify-bff:', 'where Redis is, without its password')
  t.match(line.limits, { contact_requests_per_minute: Number, login_attempts_per_ip_per_minute: Number, max_connections: Number })
  t.notMatch(JSON.stringify(line), /redis-password-value|application-token|session-secret|\$scrypt/, 'no secret in the line')
})

t.test('start-up tries one authenticate and says clearly that emnify accepted the token', async (t) => {
  const sim = await simulator(t)
  const server = await startServer(t, t.testdir(), { EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN, SESSION_SECRET: SECRET, EMNIFY_API_URL: sim.url })
  const check = await recordOf(server, 'upstream.check')
  t.equal(check.outcome, 'ok')
  t.equal(check.level, 30)
  t.match(check.msg, 'emnify accepted the application token')
  t.equal(sim.state.callsFor('authenticate').length, 1, 'exactly one authenticate')
})

t.test('a wrong application token is an error line at start-up naming the variable to check; the service stays up and ready', async (t) => {
  const sim = await simulator(t)
  const server = await startServer(t, t.testdir(), { EMNIFY_APPLICATION_TOKEN: 'wrong-application-token-1', SESSION_SECRET: SECRET, EMNIFY_API_URL: sim.url })
  const check = await recordOf(server, 'upstream.check')
  t.equal(check.outcome, 'failed')
  t.equal(check.level, 50)
  t.equal(check.code, 'UPSTREAM_AUTH_FAILED')
  t.match(check.msg, 'check EMNIFY_APPLICATION_TOKEN')
  t.notOk('stack' in check || 'err' in check, 'one line, no stack trace')
  const ready = await request(`${server.url}/health/ready`)
  await ready.body.dump()
  t.equal(ready.statusCode, 200, 'readiness does not depend on emnify')
})

t.test('an unreachable emnify is an error line at start-up naming the URL to check', async (t) => {
  const server = await startServer(t, t.testdir(), { EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN, SESSION_SECRET: SECRET, EMNIFY_API_URL: 'http://127.0.0.1:9' })
  const check = await recordOf(server, 'upstream.check')
  t.equal(check.code, 'UPSTREAM_UNAVAILABLE')
  t.match(check.msg, 'check EMNIFY_API_URL')
  t.match(check.failure, /ECONNREFUSED/, 'what failed, in one field')
  t.notOk('stack' in check || 'err' in check, 'no stack trace')
})

t.test('an expected upstream failure on a request is one warning line without a stack trace', async (t) => {
  const stack = await startStack(t, { env: { EMNIFY_API_URL: 'http://127.0.0.1:9' } })
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).status, 503)
  const warnings = stack.logs.records().filter((record) => record.level === 40)
  t.equal(warnings.length, 1, 'one warning')
  t.equal(warnings[0]?.code, 'UPSTREAM_UNAVAILABLE')
  t.notOk(JSON.stringify(warnings[0]).includes('    at '), 'no stack frames')
  t.notOk('err' in (warnings[0] ?? {}), 'no serialised error object')
})

t.test('a .env that is a directory stops the process with one readable line, no stack trace', async (t) => {
  const dir = t.testdir()
  mkdirSync(join(dir, '.env'))
  const child = spawn(process.execPath, [SERVER], { cwd: dir, env: { PATH: process.env.PATH ?? '', EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN, SESSION_SECRET: SECRET } })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
  child.stdout.resume()
  const [code] = await once(child, 'exit')
  t.equal(code, 78, 'EX_CONFIG')
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, stderr)
  t.match(JSON.parse(lines[0] as string).msg, /\.env in .* is a directory/)
  t.notMatch(stderr, /EISDIR|\s{4}at /)
})

t.test('connections beyond MAX_CONNECTIONS are closed at once; those within keep working', async (t) => {
  const stack = await startStack(t, { env: { MAX_CONNECTIONS: '2' } })
  const { connect } = await import('node:net')
  const port = Number(new URL(stack.url).port)
  const open = () => new Promise<import('node:net').Socket>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
    socket.on('error', () => {})
  })
  const held = [await open(), await open()]
  t.teardown(() => { for (const socket of held) socket.destroy() })
  await sleep(50)
  const extra = await open()
  const closed = await Promise.race([once(extra, 'close').then(() => true), sleep(2_000).then(() => false)])
  t.ok(closed, 'the third connection is closed by the server')
  const first = held[0] as import('node:net').Socket
  first.write('GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n')
  const [data] = await once(first, 'data') as [Buffer]
  t.match(data.toString('latin1'), /^HTTP\/1\.1 200/, 'a held connection is served')
})
