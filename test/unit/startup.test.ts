import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { checkUpstream, startupMessage, startupSummary } from '../../src/logging/startup.ts'
import { APPLICATION_TOKEN, SECRET, captureLogs, testConfig } from '../helpers/stack.ts'

t.test('the start-up summary names places and limits, never a secret, and strips credentials from the Redis URL', async (t) => {
  const config = testConfig({ REDIS_URL: 'rediss://user:hunter2-redis@cache.internal:6380/2', METRICS_ENABLED: 'false', DOCS_ENABLED: 'false', TRUST_PROXY: '10.0.0.0/8', SESSION_COOKIE_SECURE: 'false' })
  const app = await buildApp(config, { logStream: captureLogs().stream })
  t.teardown(() => app.close())
  const summary = startupSummary(config, app, 4242)
  t.match(summary, {
    event: 'startup',
    pid: 4242,
    upstream: config.EMNIFY_API_URL,
    users: /password login off/,
    sso: 'off',
    metrics: 'off',
    docs: 'off',
    trust_proxy: '10.0.0.0/8',
    cookie: /^session \(not Secure/,
    store: 'rediss://cache.internal:6380 prefix emnify-bff:'
  })
  t.notMatch(JSON.stringify(summary), new RegExp(`hunter2|${APPLICATION_TOKEN}|${SECRET}`))
  t.match(startupMessage(summary), /pid 4242 .*SIGTERM.*SIGHUP/)
})

t.test('the start-up check reports an unreachable emnify as one error line and answers false', async (t) => {
  const logs = captureLogs()
  const app = await buildApp(testConfig({ EMNIFY_API_URL: 'http://127.0.0.1:9' }), { logStream: logs.stream })
  t.teardown(() => app.close())
  t.equal(await checkUpstream(app, 'http://127.0.0.1:9'), false)
  await app.close()
  const line = logs.records().find((record) => record.event === 'upstream.check')
  t.match(line, { level: 50, outcome: 'failed', code: 'UPSTREAM_UNAVAILABLE', msg: /check EMNIFY_API_URL/ })
})
