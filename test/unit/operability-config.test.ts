import { readFile } from 'node:fs/promises'
import t from 'tap'
import { ConfigError, ConfigProperties, loadConfig } from '../../src/config/config.ts'

const REQUIRED = { EMNIFY_APPLICATION_TOKEN: 'token', SESSION_SECRET: 's'.repeat(32) }

t.test('operability variables have the documented defaults', async (t) => {
  const config = loadConfig({ env: REQUIRED })
  t.equal(config.DOCS_ENABLED, true)
  t.equal(config.METRICS_ENABLED, true)
  t.equal(config.METRICS_PORT, undefined)
  t.equal(config.RATE_LIMIT_PER_MINUTE, 60, 'at most half of the default upstream budget for one session')
  t.equal(config.MAX_EVENT_LOOP_DELAY_MS, 1000)
  t.equal(config.MAX_EVENT_LOOP_UTILIZATION, 0.98)
})

t.test('operability variables are read and validated', async (t) => {
  const config = loadConfig({
    env: { ...REQUIRED, DOCS_ENABLED: 'false', METRICS_ENABLED: 'false', METRICS_PORT: '9100', RATE_LIMIT_PER_MINUTE: '3', MAX_EVENT_LOOP_DELAY_MS: '0', MAX_EVENT_LOOP_UTILIZATION: '0' }
  })
  t.match(config, { DOCS_ENABLED: false, METRICS_ENABLED: false, METRICS_PORT: 9100, RATE_LIMIT_PER_MINUTE: 3, MAX_EVENT_LOOP_DELAY_MS: 0, MAX_EVENT_LOOP_UTILIZATION: 0 })

  const error = t.throws(() => loadConfig({
    env: { ...REQUIRED, DOCS_ENABLED: 'maybe', METRICS_PORT: '70000', RATE_LIMIT_PER_MINUTE: '0', MAX_EVENT_LOOP_DELAY_MS: '-1', MAX_EVENT_LOOP_UTILIZATION: '1.5' }
  })) as ConfigError
  t.ok(error instanceof ConfigError)
  t.same(error.variables, ['DOCS_ENABLED', 'MAX_EVENT_LOOP_DELAY_MS', 'MAX_EVENT_LOOP_UTILIZATION', 'METRICS_PORT', 'RATE_LIMIT_PER_MINUTE'], 'every bad variable named')
})

t.test('every configuration variable is documented in .env.example and the README', async (t) => {
  const example = await readFile(new URL('../../.env.example', import.meta.url), 'utf8')
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  for (const name of Object.keys(ConfigProperties)) {
    t.match(example, new RegExp(`^#? ?${name}=`, 'm'), `${name} in .env.example`)
    t.match(readme, new RegExp(`^\\| \`${name}\` \\|`, 'm'), `${name} in the README table`)
  }
})
