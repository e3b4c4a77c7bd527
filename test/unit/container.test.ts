// What the image and npm scripts do for an operator: checked on the files themselves.
import { readFileSync } from 'node:fs'
import t from 'tap'

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')

t.test('the container HEALTHCHECK probes liveness, so load shedding or a drain never marks the container unhealthy', async (t) => {
  const healthcheck = /^HEALTHCHECK[\s\S]*?CMD (.*)$/m.exec(read('Dockerfile'))?.[1] ?? ''
  t.match(healthcheck, '/health/live')
  t.notMatch(healthcheck, '/health/ready')
})

t.test('npm start runs the built server directly: no compile step before it, no wrapper between npm and node', async (t) => {
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts
  t.equal(scripts.start, 'node dist/server.js')
  t.equal(scripts.prestart, undefined, 'no prestart (it compiled on every start)')
  t.equal(scripts.poststart, undefined)
})
