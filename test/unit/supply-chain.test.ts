// What ships is what the lockfile says, installed only by `npm ci`, and above the security floors;
// and the audit gate (scripts/audit.ts) reads npm's answers and applies its floors correctly.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import {
  COMPROMISED,
  FLOORS,
  belowFloor,
  compareVersions,
  interpretAudit,
  offlineProblems,
  readLockfile,
  type Lockfile
} from '../../scripts/audit.ts'

const ROOT = new URL('../../', import.meta.url).pathname
const FAST_JWT_FLOOR = '6.3.4'
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
  overrides?: Record<string, string>
}
const lock = readLockfile(ROOT)

/** The range forms package.json uses: ^x.y.z, ~x.y.z and exact versions. Anything else fails loudly. */
function satisfies (version: string, range: string): boolean {
  const match = /^([~^]?)(\d+)\.(\d+)\.(\d+)$/.exec(range)
  if (match === null) throw new Error(`unsupported range ${range}: teach this test about it`)
  const [, operator, major, minor] = match
  const base = range.replace(/^[~^]/, '')
  const [vMajor, vMinor] = version.split('.').map(Number)
  if (compareVersions(version, base) < 0) return false
  if (operator === '') return version === base
  if (operator === '~') return vMajor === Number(major) && vMinor === Number(minor)
  if (Number(major) > 0) return vMajor === Number(major)
  return vMajor === 0 && vMinor === Number(minor)
}

function installed (path: string): string | undefined {
  const manifest = join(ROOT, path, 'package.json')
  return existsSync(manifest) ? String(JSON.parse(readFileSync(manifest, 'utf8')).version) : undefined
}

/** Shell lines of a script or Dockerfile with comments dropped. */
function commands (file: string): string[] {
  return readFileSync(join(ROOT, file), 'utf8').split('\n').map((line) => line.replace(/(^|\s)#.*$/, '').trim()).filter((line) => line !== '')
}

t.test(`every installed fast-jwt, top level and nested, is at least ${FAST_JWT_FLOOR}`, async (t) => {
  const topLevel = installed('node_modules/fast-jwt')
  t.ok(topLevel !== undefined, 'fast-jwt is installed')
  t.ok(compareVersions(topLevel ?? '0.0.0', FAST_JWT_FLOOR) >= 0, `node_modules/fast-jwt is ${topLevel}`)
  const copies = lock.entries.filter((entry) => entry.name === 'fast-jwt')
  t.ok(copies.length >= 1, 'the lockfile lists fast-jwt')
  for (const copy of copies) {
    t.ok(compareVersions(copy.version, FAST_JWT_FLOOR) >= 0, `${copy.path} is locked at ${copy.version}`)
    const onDisk = installed(copy.path)
    if (onDisk !== undefined) t.ok(compareVersions(onDisk, FAST_JWT_FLOOR) >= 0, `${copy.path} is installed at ${onDisk}`)
  }
  const override = pkg.overrides?.['fast-jwt']
  t.ok(override !== undefined && compareVersions(override.replace(/^[~^]/, ''), FAST_JWT_FLOOR) >= 0, `package.json overrides every copy to a fixed fast-jwt (${override})`)
  t.same(FLOORS.find((floor) => floor.name === 'fast-jwt')?.fixed, [FAST_JWT_FLOOR], 'the audit gate enforces the same floor')
})

t.test('package-lock.json is committed, lockfileVersion 3, and matches package.json', async (t) => {
  const tracked = execFileSync('git', ['ls-files', 'package-lock.json'], { cwd: ROOT, encoding: 'utf8' }).trim()
  t.equal(tracked, 'package-lock.json', 'tracked by git')
  t.equal(lock.lockfileVersion, 3)
  t.same(lock.root.dependencies, pkg.dependencies, 'the lockfile root lists exactly the dependencies')
  t.same(lock.root.devDependencies, pkg.devDependencies, 'and exactly the devDependencies')
  for (const [name, range] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies })) {
    const entry = lock.entries.find((candidate) => candidate.path === `node_modules/${name}`)
    t.ok(entry !== undefined && satisfies(entry.version, range), `${name}: locked ${entry?.version} satisfies ${range}`)
    if (name in pkg.dependencies) t.equal(entry?.dev, false, `${name} is a production package in the lockfile`)
  }
  for (const [name, range] of Object.entries(pkg.overrides ?? {})) {
    for (const entry of lock.entries.filter((candidate) => candidate.name === name)) {
      t.ok(satisfies(entry.version, range), `override ${name} ${range}: ${entry.path} is ${entry.version}`)
    }
  }
  t.same(offlineProblems(lock, ROOT), [], 'sources, sha512 integrity, installed versions, compromised releases and floors all hold')
})

t.test('the Dockerfile and CI install only with npm ci, and CI runs the audit gate after installing', async (t) => {
  for (const file of ['Dockerfile', '.ci/run']) {
    const lines = commands(file)
    const installs = lines.filter((line) => /\bnpm\s+(install|i|in|ins|inst|insta|instal|isnt|isnta|isntal|isntall|add|update|up|upgrade)\b/.test(line))
    t.same(installs, [], `${file}: no npm install, add or update`)
    t.notOk(lines.some((line) => /\b(yarn|pnpm|bun)\b/.test(line)), `${file}: no other package manager`)
    t.ok(lines.some((line) => /\bnpm ci\b/.test(line)), `${file}: installs with npm ci`)
  }
  const ci = commands('.ci/run')
  const install = ci.findIndex((line) => /\bnpm ci\b/.test(line))
  const audit = ci.findIndex((line) => line === 'node scripts/audit.ts')
  t.ok(audit > install, '.ci/run runs node scripts/audit.ts after npm ci')
  const docker = commands('Dockerfile')
  const dockerInstalls = docker.filter((line) => /\bnpm ci\b/.test(line))
  t.ok(dockerInstalls.length > 0 && dockerInstalls.every((line) => /--ignore-scripts/.test(line)), 'the image runs no install scripts')
  const runtime = docker.slice(docker.findLastIndex((line) => /^FROM\b/.test(line)))
  t.ok(runtime.some((line) => /\bnpm ci\b.*--omit=dev/.test(line)), 'the runtime image installs production dependencies only')
  t.ok(runtime.includes('USER node'), 'and runs as the unprivileged node user')
})

t.test('an audit report is enforced: high and critical findings are listed with their advisories', async (t) => {
  const report = JSON.stringify({
    auditReportVersion: 2,
    vulnerabilities: {
      'fast-jwt': { name: 'fast-jwt', severity: 'critical', range: '<6.3.4', via: [{ title: 'Algorithm confusion', url: 'https://github.com/advisories/GHSA-x' }] },
      '@fastify/jwt': { name: '@fastify/jwt', severity: 'critical', range: '*', via: ['fast-jwt'] },
      ms: { name: 'ms', severity: 'moderate', range: '<2.0.0', via: [{ title: 'ReDoS', url: 'u' }] }
    },
    metadata: { vulnerabilities: { info: 0, low: 0, moderate: 1, high: 0, critical: 2, total: 3 } }
  })
  const outcome = interpretAudit(report, '')
  t.equal(outcome.kind, 'report')
  if (outcome.kind !== 'report') return
  t.equal(outcome.critical, 2)
  t.equal(outcome.high, 0)
  t.same(outcome.findings, [
    'critical: fast-jwt <6.3.4 — Algorithm confusion https://github.com/advisories/GHSA-x',
    'critical: @fastify/jwt * (through a dependency)'
  ], 'moderate findings are not listed')

  const clean = interpretAudit(JSON.stringify({ auditReportVersion: 2, vulnerabilities: {}, metadata: { vulnerabilities: { info: 0, low: 0, moderate: 0, high: 0, critical: 0, total: 0 } } }), '')
  t.same(clean, { kind: 'report', high: 0, critical: 0, findings: [] }, 'a clean report passes')
})

t.test('an audit endpoint that refuses or is unreachable is reported as unavailable, never as clean', async (t) => {
  const refused = interpretAudit(JSON.stringify({ message: '405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk', statusCode: 405 }), '')
  t.same(refused, { kind: 'unavailable', reason: '405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk' })
  const offline = interpretAudit(JSON.stringify({ error: { code: 'ENOTFOUND', summary: 'request to https://registry.npmjs.org failed' } }), '')
  t.same(offline, { kind: 'unavailable', reason: 'ENOTFOUND request to https://registry.npmjs.org failed' })
  const garbage = interpretAudit('', 'npm error audit endpoint returned an error\n')
  t.same(garbage, { kind: 'unavailable', reason: 'npm error audit endpoint returned an error' })
})

t.test('security floors hold per release line: older lines and in-between majors fail, newer majors pass', async (t) => {
  t.equal(belowFloor('6.3.6', ['6.3.4']), undefined)
  t.equal(belowFloor('6.3.4', ['6.3.4']), undefined, 'the fixed release itself')
  t.equal(belowFloor('6.3.3', ['6.3.4']), '6.3.3 < 6.3.4')
  t.equal(belowFloor('6.3.4-rc.1', ['6.3.4']), '6.3.4-rc.1 < 6.3.4', 'a prerelease of the fix is not the fix')
  t.match(belowFloor('5.9.9', ['6.3.4']), /no known fix/, 'an older major')
  t.equal(belowFloor('7.0.0', ['6.3.4']), undefined, 'a newer major')
  t.equal(belowFloor('7.28.0', ['7.28.0', '8.2.0']), undefined)
  t.equal(belowFloor('8.1.9', ['7.28.0', '8.2.0']), '8.1.9 < 8.2.0')
  t.equal(belowFloor('9.0.0', ['7.28.0', '8.2.0']), undefined)
  t.match(belowFloor('6.30.0', ['7.28.0', '8.2.0']), /no known fix/)
  t.match(belowFloor('latest', ['1.0.0']), /not a release version/)
  for (const { name, fixed } of FLOORS) {
    t.ok(fixed.length > 0 && fixed.every((version) => /^\d+\.\d+\.\d+$/.test(version)), `${name}: floors are plain versions`)
  }
})

t.test('the offline checks catch foreign sources, missing integrity, drift, compromised releases and versions below a floor', async (t) => {
  const dir = t.testdir()
  const entry = (path: string, version: string, extra: Record<string, unknown> = {}) => [path, { version, integrity: `sha512-${'A'.repeat(86)}==`, ...extra }]
  const lockfile = {
    lockfileVersion: 3,
    packages: Object.fromEntries([
      ['', { dependencies: {}, devDependencies: {} }],
      entry('node_modules/fast-jwt', '6.3.3'),
      entry('node_modules/a/node_modules/fast-jwt', '6.3.6'),
      entry('node_modules/evil', '1.0.0', { resolved: 'https://example.invalid/evil-1.0.0.tgz' }),
      entry('node_modules/weak', '1.0.0', { integrity: 'sha1-abc' }),
      entry('node_modules/drifted', '1.0.0'),
      entry('node_modules/debug', '4.4.2', { dev: true }),
      entry('node_modules/undici', '8.13.1'),
      entry('node_modules/gitdep', 'github:someone/gitdep')
    ])
  }
  await writeFile(join(dir, 'package-lock.json'), JSON.stringify(lockfile))
  await mkdir(join(dir, 'node_modules/drifted'), { recursive: true })
  await writeFile(join(dir, 'node_modules/drifted/package.json'), JSON.stringify({ version: '1.0.1' }))
  const problems = offlineProblems(readLockfile(dir), dir)
  const expect = [
    /^fast-jwt at node_modules\/fast-jwt is 6\.3\.3 < 6\.3\.4/,
    /^evil@1\.0\.0 .* resolves from https:\/\/example\.invalid/,
    /^weak@1\.0\.0 .* has no sha512 integrity/,
    /^drifted@1\.0\.0 .* is installed as 1\.0\.1/,
    /^debug@4\.4\.2 .* is a known-compromised release/,
    /^gitdep@github:someone\/gitdep .* is not pinned to a registry version/
  ]
  for (const pattern of expect) t.ok(problems.some((problem) => pattern.test(problem)), `flags ${pattern}`)
  t.equal(problems.length, expect.length, `nothing else: ${JSON.stringify(problems)}`)
  t.notOk(problems.some((problem) => problem.includes('node_modules/a/node_modules/fast-jwt')), 'a fixed nested copy passes')
  t.ok(COMPROMISED.debug?.includes('4.4.2'))

  const old: Lockfile = { ...readLockfile(dir), lockfileVersion: 2 }
  t.ok(offlineProblems(old, dir).includes('package-lock.json has lockfileVersion 2, expected 3'))
})
