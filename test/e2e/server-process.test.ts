import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startSimulator } from '../../simulator/simulator.ts'
import { APPLICATION_TOKEN, SECRET, session } from '../helpers/stack.ts'
import { SERVER, startServer } from '../helpers/server-process.ts'

/** Polls readiness every 20 ms for up to 10 s until `until` holds; answers the last status and content type. */
async function readiness (url: string, until: (status: number) => boolean): Promise<{ status: number, contentType: string | undefined }> {
  for (const deadline = Date.now() + 10_000; ; await sleep(20)) {
    const answer = await request(`${url}/health/ready`)
    await answer.body.dump()
    const last = { status: answer.statusCode, contentType: answer.headers['content-type'] as string | undefined }
    if (until(last.status) || Date.now() > deadline) return last
  }
}

const startServerIn = (t: { testdir: () => string, teardown: (fn: () => void) => void }, env: Record<string, string>) => startServer(t, t.testdir(), env)

t.test('a bad configuration stops the process with one message naming every offending variable', async (t) => {
  const child = spawn(process.execPath, [SERVER], {
    cwd: t.testdir(),
    env: { PATH: process.env.PATH ?? '', PORT: 'not-a-port', SESSION_SECRET: 'too-short-secret', EMNIFY_API_URL: 'https://cdn.emnify.net/api' }
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
  const [code] = await once(child, 'exit')
  t.not(code, 0, 'exit code is not 0')
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, 'one message')
  for (const variable of ['PORT', 'SESSION_SECRET', 'EMNIFY_API_URL', 'EMNIFY_APPLICATION_TOKEN']) {
    t.match(lines[0], variable, `names ${variable}`)
  }
  t.notMatch(stderr, 'too-short-secret', 'does not echo the secret')
})

t.test('a .env file in the working directory is read', async (t) => {
  const sim = await startSimulator({ applicationTokens: [APPLICATION_TOKEN] })
  t.teardown(() => sim.close())
  const dir = t.testdir({
    '.env': `EMNIFY_APPLICATION_TOKEN=${APPLICATION_TOKEN}\nSESSION_SECRET=${SECRET}\nEMNIFY_API_URL=${sim.url}\n`
  })
  const child = spawn(process.execPath, [SERVER], { cwd: dir, env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0' } })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const url = await new Promise<string>((resolve) => {
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8')
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (match !== null) resolve(match[1] as string)
    })
  })
  // Ready first, as a load balancer waits: with the production defaults (load shedding on), a
  // process starting on a busy machine can shed requests until its start-up has left the sample.
  await readiness(url, (status) => status === 200)
  const response = await request(`${url}/api/v1/organisation/1/contact/1`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${session()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ city: 'Berlin' })
  })
  await response.body.dump()
  t.equal(response.statusCode, 204, 'configured from .env alone')
  child.kill('SIGTERM')
  t.equal((await once(child, 'exit'))[0], 0)
})

t.test('SIGTERM: readiness fails at once, traffic is served through the drain delay, in-flight work finishes, exit 0', async (t) => {
  const sim = await startSimulator({ applicationTokens: [APPLICATION_TOKEN] })
  t.teardown(() => sim.close())
  const server = await startServerIn(t, {
    EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
    SESSION_SECRET: SECRET,
    EMNIFY_API_URL: sim.url,
    // Long enough that a stalled test machine still polls readiness and sends a PATCH inside it.
    SHUTDOWN_DELAY_MS: '3000'
  })
  const patch = () => request(`${server.url}/api/v1/organisation/1/contact/1`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${session()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ city: 'Hamburg' })
  })

  const ready = await request(`${server.url}/health/ready`)
  await ready.body.dump()
  t.equal(ready.statusCode, 200, 'ready before shutdown')

  // An upstream call still in flight when the signal arrives.
  sim.setFault({ operation: 'patch_contact', kind: 'delay', ms: 3500, times: 1 })
  const inFlight = patch()
  await sleep(150)
  server.child.kill('SIGTERM')

  // Polled: the child handles the signal when it is next scheduled.
  const draining = await readiness(server.url, (status) => status !== 200)
  t.equal(draining.status, 503, 'readiness is 503 once shutdown begins')
  t.match(draining.contentType, /application\/problem\+json/)

  const duringDelay = await patch()
  await duringDelay.body.dump()
  t.equal(duringDelay.statusCode, 204, 'new requests are still served during SHUTDOWN_DELAY_MS')

  const finished = await inFlight
  await finished.body.dump()
  t.equal(finished.statusCode, 204, 'the in-flight request completed')

  t.equal(await server.exit, 0, 'exit code 0')
  t.ok(server.stdout.some((line) => line.includes('shutdown complete')), 'logs the end of shutdown')
  t.equal(sim.state.counters.patch_contact, 2, 'both patches reached the upstream exactly once')
})

t.test('a second signal exits at once', async (t) => {
  const sim = await startSimulator({ applicationTokens: [APPLICATION_TOKEN] })
  t.teardown(() => sim.close())
  const server = await startServerIn(t, {
    EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
    SESSION_SECRET: SECRET,
    EMNIFY_API_URL: sim.url,
    SHUTDOWN_DELAY_MS: '30000'
  })
  const started = Date.now()
  server.child.kill('SIGTERM')
  await sleep(200)
  server.child.kill('SIGTERM')
  const code = await server.exit
  t.ok(Date.now() - started < 10_000, 'did not wait for the 30 s drain delay')
  t.not(code, null)
})
