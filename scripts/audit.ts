// Supply-chain gate: `npm audit --omit=dev --audit-level=high`, and what can still be checked
// when the audit endpoint cannot answer (some registry mirrors refuse it with 405).
//
//   node scripts/audit.ts          exit 0 when every check passed, 1 otherwise
//
// Always:   the lockfile is sane (version 3; production packages from the npm registry with
//           sha512 integrity; installed versions match it), no known-compromised version is
//           anywhere in the tree, and the security floors below hold for production packages.
// Then:     the audit report is enforced when the endpoint answers (high/critical fail);
//           otherwise, loudly, each production package is looked up on the registry: its
//           published integrity must match the lockfile and it must not be deprecated.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = new URL('..', import.meta.url).pathname
const REGISTRY = 'https://registry.npmjs.org/'
const AUDIT_TIMEOUT_MS = 60_000
const LOOKUP_TIMEOUT_MS = 10_000
const LOOKUP_BUDGET_MS = 40_000
const LOOKUP_CONCURRENCY = 8

/**
 * Security floors for production packages: the first fixed release on each release line. An
 * installed version must be at least the floor of its own major; a major newer than every line
 * listed is taken as fixed, an older one (or one between lines) is not.
 */
export const FLOORS: Array<{ name: string, fixed: string[], why: string }> = [
  {
    name: 'fast-jwt',
    fixed: ['6.3.4'],
    why: 'JWT algorithm confusion (CVE-2023-48223, CVE-2026-34950 and its incomplete-fix follow-ups GHSA-ww5h-9m49-7xx4, GHSA-g3jj-5cmm-3hxx) and CVE-2026-44351'
  },
  {
    name: 'fastify',
    fixed: ['5.8.5'],
    why: 'Content-Type parsing lets request bodies bypass schema validation (CVE-2025-32442 fixed in 5.3.2, CVE-2026-25223 in 5.7.2, CVE-2026-33806 in 5.8.5)'
  },
  {
    name: 'undici',
    fixed: ['7.28.0', '8.2.0'],
    why: 'GHSA-hm92-r4w5-c3mj (CVE-2026-6734), fixed in 7.28.0 and 8.2.0; the 7 line carries the earlier CVE-2025-22150 and CVE-2025-47279 fixes'
  },
  { name: 'find-my-way', fixed: ['8.2.2', '9.0.1'], why: 'ReDoS in multi-parameter routes (CVE-2024-45813)' },
  { name: 'cookie', fixed: ['0.7.0'], why: 'out-of-bounds characters in cookie name, path and domain (CVE-2024-47764)' },
  { name: '@fastify/swagger-ui', fixed: ['2.1.0'], why: 'default configuration served every file of the module directory (CVE-2024-22207)' },
  { name: 'ajv', fixed: ['6.12.3'], why: 'prototype pollution through a crafted schema (CVE-2020-15366)' },
  { name: 'semver', fixed: ['5.7.2', '6.3.1', '7.5.2'], why: 'ReDoS in range parsing (CVE-2022-25883)' },
  { name: 'brace-expansion', fixed: ['1.1.12', '2.0.2', '3.0.1', '4.0.1'], why: 'ReDoS (CVE-2025-5889)' }
]

/** Versions published by a hijacked maintainer account (September 2025); refused anywhere in the tree, dev included. */
export const COMPROMISED: Record<string, string[]> = {
  debug: ['4.4.2'],
  chalk: ['5.6.1'],
  'ansi-styles': ['6.2.2'],
  'ansi-regex': ['6.2.1'],
  'strip-ansi': ['7.1.1'],
  'supports-color': ['10.2.1'],
  'wrap-ansi': ['9.0.1']
}

export interface LockEntry {
  /** Path in the lockfile, e.g. `node_modules/a/node_modules/b`. */
  path: string
  name: string
  version: string
  resolved?: string
  integrity?: string
  dev: boolean
  link: boolean
}

export interface Lockfile {
  lockfileVersion: number
  entries: LockEntry[]
  root: { dependencies: Record<string, string>, devDependencies: Record<string, string> }
}

/** The package name a lockfile path installs: the part after its last `node_modules/`. */
export function nameOf (path: string): string {
  return path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
}

export function readLockfile (dir = ROOT): Lockfile {
  const data = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as {
    lockfileVersion?: number
    packages?: Record<string, Record<string, unknown>>
  }
  const packages = data.packages ?? {}
  const root = packages[''] ?? {}
  const entries: LockEntry[] = []
  for (const [path, entry] of Object.entries(packages)) {
    if (path === '') continue
    entries.push({
      path,
      name: typeof entry.name === 'string' ? entry.name : nameOf(path),
      version: String(entry.version ?? ''),
      ...(typeof entry.resolved === 'string' ? { resolved: entry.resolved } : {}),
      ...(typeof entry.integrity === 'string' ? { integrity: entry.integrity } : {}),
      dev: entry.dev === true,
      link: entry.link === true
    })
  }
  return {
    lockfileVersion: Number(data.lockfileVersion ?? 0),
    entries,
    root: {
      dependencies: (root.dependencies ?? {}) as Record<string, string>,
      devDependencies: (root.devDependencies ?? {}) as Record<string, string>
    }
  }
}

type Version = [number, number, number, string]

export function parseVersion (text: string): Version | undefined {
  const match = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/.exec(text.trim())
  if (match === null) return undefined
  return [Number(match[1]), Number(match[2]), Number(match[3]), match[4] ?? '']
}

/** Negative, zero or positive like a sort comparator; a prerelease sorts before its release. */
export function compareVersions (a: string, b: string): number {
  const x = parseVersion(a)
  const y = parseVersion(b)
  if (x === undefined || y === undefined) throw new Error(`not a version: ${x === undefined ? a : b}`)
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number)
  if (x[3] === y[3]) return 0
  if (x[3] === '') return 1
  if (y[3] === '') return -1
  return x[3] < y[3] ? -1 : 1
}

/** Undefined when `version` is at or above the floor of its release line, else why not. */
export function belowFloor (version: string, fixed: string[]): string | undefined {
  const installed = parseVersion(version)
  if (installed === undefined) return `${version} is not a release version`
  const lines = fixed.map((floor) => ({ floor, major: (parseVersion(floor) as Version)[0] })).sort((a, b) => a.major - b.major)
  const line = lines.find(({ major }) => major === installed[0])
  if (line !== undefined) return compareVersions(version, line.floor) >= 0 ? undefined : `${version} < ${line.floor}`
  const newest = lines[lines.length - 1]
  if (newest !== undefined && installed[0] > newest.major) return undefined
  return `${version} is on a release line with no known fix (fixed in ${fixed.join(', ')})`
}

/** The version actually on disk for a lockfile path, if installed. */
function installedVersion (dir: string, path: string): string | undefined {
  const manifest = join(dir, path, 'package.json')
  if (!existsSync(manifest)) return undefined
  return String((JSON.parse(readFileSync(manifest, 'utf8')) as { version?: unknown }).version)
}

/** Problems found without the network: sources, integrity, installed versions, compromised versions, floors. */
export function offlineProblems (lock: Lockfile, dir = ROOT): string[] {
  const problems: string[] = []
  if (lock.lockfileVersion !== 3) problems.push(`package-lock.json has lockfileVersion ${lock.lockfileVersion}, expected 3`)
  const production = lock.entries.filter((entry) => !entry.dev)
  for (const entry of production) {
    const id = `${entry.name}@${entry.version} (${entry.path})`
    if (entry.link) problems.push(`${id} is a link, not a registry package`)
    if (entry.resolved !== undefined && !entry.resolved.startsWith(REGISTRY)) problems.push(`${id} resolves from ${entry.resolved}, not ${REGISTRY}`)
    if (parseVersion(entry.version) === undefined) problems.push(`${id} is not pinned to a registry version`)
    if (entry.integrity === undefined || !/^sha512-[A-Za-z0-9+/]+={0,2}$/.test(entry.integrity)) problems.push(`${id} has no sha512 integrity`)
    const installed = installedVersion(dir, entry.path)
    if (installed !== undefined && installed !== entry.version) problems.push(`${id} is installed as ${installed}: node_modules does not match the lockfile (run npm ci)`)
  }
  for (const entry of lock.entries) {
    const versions = [entry.version, installedVersion(dir, entry.path)]
    if (versions.some((version) => version !== undefined && COMPROMISED[entry.name]?.includes(version))) {
      problems.push(`${entry.name}@${entry.version} (${entry.path}) is a known-compromised release`)
    }
  }
  for (const { name, fixed, why } of FLOORS) {
    for (const entry of production.filter((candidate) => candidate.name === name)) {
      const version = installedVersion(dir, entry.path) ?? entry.version
      const below = belowFloor(version, fixed)
      if (below !== undefined) problems.push(`${name} at ${entry.path} is ${below}: ${why}`)
    }
  }
  return problems
}

export type AuditOutcome =
  | { kind: 'report', high: number, critical: number, findings: string[] }
  | { kind: 'unavailable', reason: string }

/** Reads `npm audit --json` output: a report, or the reason the endpoint gave none. */
export function interpretAudit (stdout: string, stderr: string): AuditOutcome {
  let data: Record<string, any>
  try {
    data = JSON.parse(stdout) as Record<string, any>
  } catch {
    const line = stderr.split('\n').find((text) => /error|ERR|warn/.test(text)) ?? 'no JSON on stdout'
    return { kind: 'unavailable', reason: line.trim() }
  }
  const counts = data.metadata?.vulnerabilities
  if (typeof counts === 'object' && counts !== null && typeof counts.high === 'number') {
    const findings: string[] = []
    for (const [name, vulnerability] of Object.entries((data.vulnerabilities ?? {}) as Record<string, any>)) {
      if (vulnerability?.severity !== 'high' && vulnerability?.severity !== 'critical') continue
      const advisories = (Array.isArray(vulnerability.via) ? vulnerability.via : [])
        .filter((via: unknown) => typeof via === 'object' && via !== null)
        .map((via: { title?: string, url?: string }) => `${via.title ?? 'advisory'} ${via.url ?? ''}`.trim())
      findings.push(`${vulnerability.severity}: ${name} ${vulnerability.range ?? ''}${advisories.length > 0 ? ` — ${advisories.join('; ')}` : ' (through a dependency)'}`)
    }
    return { kind: 'report', high: counts.high, critical: Number(counts.critical ?? 0), findings }
  }
  const status = data.statusCode ?? data.error?.code ?? data.code
  const message = data.message ?? data.error?.summary ?? 'no report in the answer'
  const text = String(message)
  return { kind: 'unavailable', reason: status === undefined || text.includes(String(status)) ? text : `${String(status)} ${text}` }
}

function runAudit (dir: string): Promise<AuditOutcome> {
  return new Promise((resolve) => {
    const child = spawn('npm', ['audit', '--omit=dev', '--audit-level=high', '--json'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8') })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
    const timer = setTimeout(() => child.kill('SIGKILL'), AUDIT_TIMEOUT_MS)
    child.on('error', (error) => {
      clearTimeout(timer)
      resolve({ kind: 'unavailable', reason: `npm could not be run: ${error.message}` })
    })
    child.on('close', (_code, signal) => {
      clearTimeout(timer)
      resolve(signal === 'SIGKILL'
        ? { kind: 'unavailable', reason: `npm audit gave no answer within ${AUDIT_TIMEOUT_MS / 1000} s` }
        : interpretAudit(stdout, stderr))
    })
  })
}

/** What the registry publishes for one version, or why it could not be had (two tries). */
async function lookup (name: string, version: string, deadline: number): Promise<Record<string, any> | string> {
  const url = `${REGISTRY}${name.replace('/', '%2f')}/${version}`
  let reason = ''
  for (let attempt = 0; attempt < 2; attempt++) {
    const left = deadline - Date.now()
    if (left <= 0) return `${reason === '' ? '' : `${reason}; `}no time left in the ${LOOKUP_BUDGET_MS / 1000} s budget`
    try {
      const response = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(Math.min(LOOKUP_TIMEOUT_MS, left)) })
      if (response.ok) return await response.json() as Record<string, any>
      reason = `HTTP ${response.status}`
      if (response.status === 404) break
    } catch (error) {
      reason = (error as Error).name === 'TimeoutError' ? 'timed out' : (error as Error).message
    }
  }
  return reason
}

/** Each distinct production name@version: published integrity equals the lockfile's, and not deprecated. */
async function registryProblems (lock: Lockfile): Promise<{ problems: string[], checked: number }> {
  const distinct = new Map<string, LockEntry>()
  for (const entry of lock.entries) if (!entry.dev && !entry.link) distinct.set(`${entry.name}@${entry.version}`, entry)
  const queue = [...distinct.values()]
  const problems: string[] = []
  const deadline = Date.now() + LOOKUP_BUDGET_MS
  const worker = async () => {
    for (let entry = queue.shift(); entry !== undefined; entry = queue.shift()) {
      const id = `${entry.name}@${entry.version}`
      const doc = await lookup(entry.name, entry.version, deadline)
      if (typeof doc === 'string') {
        problems.push(`${id} could not be looked up on the registry (${doc})`)
        continue
      }
      if (doc.version !== entry.version) problems.push(`${id}: the registry answered version ${String(doc.version)}`)
      if (typeof doc.deprecated === 'string' && doc.deprecated !== '') problems.push(`${id} is deprecated: ${doc.deprecated}`)
      const integrity = doc.dist?.integrity
      if (integrity !== entry.integrity) problems.push(`${id}: the registry publishes integrity ${String(integrity)}, the lockfile has ${String(entry.integrity)}`)
      const tarball = String(doc.dist?.tarball ?? '')
      if (!tarball.startsWith(REGISTRY)) problems.push(`${id}: the registry's tarball is at ${tarball}, not ${REGISTRY}`)
    }
  }
  await Promise.all(Array.from({ length: LOOKUP_CONCURRENCY }, worker))
  return { problems: problems.sort(), checked: distinct.size }
}

async function main (): Promise<number> {
  const started = Date.now()
  const lock = readLockfile()
  const production = lock.entries.filter((entry) => !entry.dev)
  const problems = offlineProblems(lock)
  console.log(`audit: ${production.length} production packages of ${lock.entries.length} in package-lock.json; ${FLOORS.length} security floors checked`)

  const audit = await runAudit(ROOT)
  if (audit.kind === 'report') {
    console.log(`audit: npm audit --omit=dev: ${audit.critical} critical, ${audit.high} high`)
    if (audit.high + audit.critical > 0) problems.push(...audit.findings.map((finding) => `npm audit: ${finding}`))
  } else {
    console.log([
      '',
      '!!! ================================================================================ !!!',
      '!!! npm audit could not get a report: the registry\'s audit endpoint is unavailable.   !!!',
      `!!! ${audit.reason}`,
      '!!! Known advisories were NOT checked by npm. Falling back to registry look-ups:      !!!',
      '!!! published integrity and deprecation of every production package, plus the floors. !!!',
      '!!! ================================================================================ !!!',
      ''
    ].join('\n'))
    const registry = await registryProblems(lock)
    console.log(`audit: looked up ${registry.checked} production name@version pairs on ${REGISTRY} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    problems.push(...registry.problems)
  }

  if (problems.length > 0) {
    console.error(`audit: FAILED, ${problems.length} problem(s):`)
    for (const problem of problems) console.error(`  - ${problem}`)
    return 1
  }
  console.log(`audit: passed (${audit.kind === 'report' ? 'npm audit report' : 'fallback checks; npm audit unavailable'}) in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return 0
}

if (import.meta.main) process.exitCode = await main()
