// Shared by bench/run.ts and bench/soak.ts: child processes on free loopback ports, their CPU and
// memory read from /proc, the upstream stand-in and a BFF built for production.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { openSync, readFileSync, closeSync } from 'node:fs'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { Pool, request } from 'undici'
import { loadConfig } from '../src/config/config.ts'
import { createSigner } from 'fast-jwt'
import { newSessionPayload, sessionSignOptions } from '../src/session/claims.ts'
import { mintSession } from '../src/session/mint.ts'
import { freePort } from '../test/helpers/redis.ts'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const APPLICATION_TOKEN = 'bench-application-token'
export const SECRET = 'bench-session-secret-0123456789abcdef'
export const CONTACT_PATH = '/api/v1/organisation/1/contact/1'
export const PATCH_BODY = JSON.stringify({ name: 'Operations desk', email: 'ops@example.com', phone: '+49 30 1234567', city: 'Berlin' })
export const LIST_PATH = '/api/v1/organisation/1/contact'

/** One request shape, sent the same way to every target. */
export interface Load {
  method: 'PATCH' | 'GET'
  path: string
  body?: string
}

export const PATCH_LOAD: Load = { method: 'PATCH', path: CONTACT_PATH, body: PATCH_BODY }
export const LIST_LOAD: Load = { method: 'GET', path: LIST_PATH }

const CLOCK_TICKS_PER_S = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100
const PAGE_BYTES = Number(spawnSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).stdout.trim()) || 4096

export interface Proc {
  name: string
  child: ChildProcess
  port: number
  url: string
  logFile: string
  /** The process reading its stdout from a pipe into logFile, when it logs through one. */
  drain?: ChildProcess
  stop: () => Promise<void>
}

/**
 * Where a process's stdout goes. `pipe`: into a pipe that a `cat` drains into the log file, as a
 * container runtime takes a container's stdout (Docker's and containerd's shims read a pipe and
 * write the file); the process pays for copying its lines into the pipe, the drain for the file
 * system. `file`: straight into the log file, so the process also pays for the file system's
 * write path (ext4 here: 1–3 µs of system time per KiB written).
 */
export type LogTo = 'pipe' | 'file'

// The tests' port picker (below the ephemeral range, so no outgoing connection takes it first).
export { freePort }

async function waitForPort (port: number, child: ChildProcess, name: string, logFile: string, startupMs: number): Promise<void> {
  const deadline = Date.now() + startupMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}; see ${logFile}`)
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    await sleep(50)
  }
  throw new Error(`${name} did not listen on ${port} within ${startupMs / 1000} s; see ${logFile}`)
}

const exitOf = (child: ChildProcess): Promise<void> => child.exitCode !== null || child.signalCode !== null
  ? Promise.resolve()
  : new Promise<void>((resolve) => child.once('exit', () => resolve()))

/** How a process is started: under a wrapper (`valgrind …`, which runs `node <args>`), and how long it may take to listen. */
export interface Launch {
  wrapper?: string[]
  startupMs?: number
}

/** Starts `node <args>` with its stdout and stderr in a log file (see LogTo) and waits until it listens. */
export async function startProcess (name: string, args: string[], env: Record<string, string>, port: number, logFile: string, logTo: LogTo = 'file', launch: Launch = {}): Promise<Proc> {
  const fd = openSync(logFile, 'w')
  const drain = logTo === 'pipe' ? spawn('cat', [], { stdio: ['pipe', fd, 'inherit'] }) : undefined
  const out = drain?.stdin ?? fd
  const [command, ...prefix] = [...(launch.wrapper ?? []), process.execPath]
  const child = spawn(command as string, [...prefix, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', ...env },
    stdio: ['ignore', out, out]
  })
  closeSync(fd)
  // The child holds its own end of the pipe; this process's copy would keep the drain from ever seeing the end.
  drain?.stdin?.destroy()
  await waitForPort(port, child, name, logFile, launch.startupMs ?? 20_000)
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = exitOf(child)
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
    // The drain ends at the pipe's end, once it has written everything the process logged.
    if (drain !== undefined) await exitOf(drain)
  }
  return { name, child, port, url: `http://127.0.0.1:${port}`, logFile, ...(drain === undefined ? {} : { drain }), stop }
}

export interface Usage {
  /** user + system CPU time in microseconds */
  cpuUs: number
  rssBytes: number
}

/** CPU time and RSS of a process, from /proc/<pid>/stat (utime, stime, rss). */
export function usage (pid: number): Usage {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may contain spaces; fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return { cpuUs: ticks * 1e6 / CLOCK_TICKS_PER_S, rssBytes: Number(fields[21]) * PAGE_BYTES }
}

export async function startUpstream (logFile: string, env: Record<string, string> = {}): Promise<Proc> {
  const port = await freePort()
  return startProcess('upstream', ['simulator/main.ts'], {
    SIM_PORT: String(port),
    SIM_LEAN: '1',
    SIM_APPLICATION_TOKEN: APPLICATION_TOKEN,
    ...env
  }, port, logFile)
}

/**
 * The BFF exactly as production runs it: the compiled dist/server.js, LOG_LEVEL=info, its stdout
 * a pipe drained into a log file as under a container runtime (or, with `file`, the file itself).
 */
export async function startBff (upstreamUrl: string, logFile: string, env: Record<string, string> = {}, script = 'dist/server.js', nodeArgs: string[] = [], logTo: LogTo = 'pipe', launch: Launch = {}): Promise<Proc> {
  const port = await freePort()
  return startProcess('bff', [...nodeArgs, script], {
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
    EMNIFY_API_URL: upstreamUrl,
    EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN,
    SESSION_SECRET: SECRET,
    // A benchmark drives one session far past a person's pace; the limiter still runs on every request.
    RATE_LIMIT_PER_MINUTE: '1000000',
    // Saturation needs far more than emnify's allowance; the bucket still runs on every call.
    UPSTREAM_BUDGET_PER_5MIN: '10000000',
    UPSTREAM_BUDGET_BURST: '100000',
    // Saturation is the point of the measurement; shedding would turn it into 503s. The
    // under-pressure sampler still runs.
    MAX_EVENT_LOOP_UTILIZATION: '0',
    ...env
  }, port, logFile, logTo, launch)
}

/** One of the references: the raw floor or the @fastify/reply-from proxy, in front of `upstreamUrl`. */
export async function startProxy (name: 'floor' | 'reply-from', upstreamUrl: string, logFile: string, nodeArgs: string[] = [], launch: Launch = {}): Promise<Proc> {
  const port = await freePort()
  return startProcess(name, [...nodeArgs, `bench/${name}.ts`], { UPSTREAM: upstreamUrl, PORT: String(port) }, port, logFile, 'file', launch)
}

/** autocannon on one request shape (the contact PATCH unless told), the same for every target. */
export function drive (url: string, authorization: string, seconds: number, connections: number, load: Load = PATCH_LOAD): Promise<autocannon.Result> {
  return autocannon({
    url: url + load.path,
    method: load.method,
    headers: load.body === undefined ? { authorization } : { authorization, 'content-type': 'application/json' },
    ...(load.body === undefined ? {} : { body: load.body }),
    connections,
    pipelining: 1,
    duration: seconds
  })
}

/** Runs `work` and answers what it gave with each process's CPU (utime + stime, µs, from /proc) meanwhile. */
export async function cpuDuring<T> (procs: readonly Proc[], work: () => Promise<T>): Promise<{ value: T, cpuUs: number[], drainUs: number[] }> {
  const cpuOf = (child: ChildProcess | undefined) => child?.pid === undefined ? 0 : usage(child.pid).cpuUs
  const sample = (of: (proc: Proc) => ChildProcess | undefined) => procs.map((proc) => cpuOf(of(proc)))
  const [cpuBefore, drainBefore] = [sample((proc) => proc.child), sample((proc) => proc.drain)]
  const value = await work()
  const since = (before: number[], now: number[]) => now.map((us, i) => us - (before[i] as number))
  // drainUs: what each one's log drain (see LogTo) spent meanwhile, 0 without one.
  return { value, cpuUs: since(cpuBefore, sample((proc) => proc.child)), drainUs: since(drainBefore, sample((proc) => proc.drain)) }
}

/**
 * Several targets loaded at the same moment, one autocannon each, and each one's CPU per request
 * over that time: whatever else the machine does meets all alike.
 */
export async function driveTogether (targets: ReadonlyArray<{ proc: Proc, authorization: string }>, seconds: number, connections: number, load: Load = PATCH_LOAD): Promise<Array<{ result: autocannon.Result, cpuUsPerReq: number, drainUsPerReq: number }>> {
  const { value: results, cpuUs, drainUs } = await cpuDuring(targets.map(({ proc }) => proc), () =>
    Promise.all(targets.map(({ proc, authorization }) => drive(proc.url, authorization, seconds, connections, load))))
  return results.map((result, i) => {
    const requests = Math.max(result.requests.total, 1)
    return { result, cpuUsPerReq: (cpuUs[i] as number) / requests, drainUsPerReq: (drainUs[i] as number) / requests }
  })
}

export interface PacedResult {
  sent: number
  errors: number
  /** Latency percentiles in milliseconds, microsecond resolution (autocannon's are whole ms). */
  p50: number
  p90: number
  p99: number
  max: number
}

/**
 * Open-loop load at a fixed rate, on one or several targets at once: requests leave on schedule
 * whether or not earlier ones have answered, so a slow answer cannot hide the ones queued behind
 * it, and each due moment sends one request to every target, in turns first and last, so
 * whatever stalls the machine (the upstream, the driver, the VM) meets all of them alike. Each
 * latency is measured from the moment its request was due to the end of its body.
 */
export async function pacedTogether (targets: ReadonlyArray<{ url: string, authorization: string }>, ratePerS: number, seconds: number, load: Load = PATCH_LOAD): Promise<PacedResult[]> {
  const runs = targets.map(({ url, authorization }) => ({
    pool: new Pool(url, { connections: 32, pipelining: 1 }),
    headers: load.body === undefined ? { authorization } : { authorization, 'content-type': 'application/json' } as Record<string, string>,
    latencies: [] as number[],
    errors: 0
  }))
  let sent = 0
  const total = Math.round(ratePerS * seconds)
  const pending: Array<Promise<void>> = []
  const start = performance.now()
  const one = async (run: (typeof runs)[number], due: number): Promise<void> => {
    try {
      const answer = await run.pool.request({ method: load.method, path: load.path, headers: run.headers, body: load.body })
      await answer.body.dump()
      if (answer.statusCode >= 400) run.errors++
      run.latencies.push(performance.now() - due)
    } catch {
      run.errors++
    }
  }
  while (sent < total) {
    const now = performance.now()
    const due = Math.min(total, Math.floor((now - start) * ratePerS / 1000) + 1)
    while (sent < due) {
      const at = start + sent * 1000 / ratePerS
      // Whoever is sent first is answered a little sooner (the floor beside a second floor read
      // +0.035 ms at p50 for the one always sent second): the order turns at every due moment.
      for (let k = 0; k < runs.length; k++) pending.push(one(runs[sent % 2 === 0 ? k : runs.length - 1 - k] as (typeof runs)[number], at))
      sent++
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 1))
  }
  await Promise.all(pending)
  await Promise.all(runs.map((run) => run.pool.close()))
  return runs.map(({ latencies, errors }) => {
    latencies.sort((a, b) => a - b)
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN
    return { sent, errors, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: latencies[latencies.length - 1] ?? NaN }
  })
}

export function buildProduction (): void {
  const result = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' })
  if (result.status !== 0) throw new Error('npm run build failed')
}

const benchConfig = loadConfig({ env: { EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN, SESSION_SECRET: SECRET } })

export function benchSession (sub = 'bench-user', ttlS = 3600): string {
  return mintSession(benchConfig, { sub, orgs: [1, 2], ttlS }).token
}

/** Many sessions at once, one signer for all (mintSession builds a signer per call). */
export function benchSessions (count: number, prefix: string, ttlS = 3600): string[] {
  const sign = createSigner({ ...sessionSignOptions(benchConfig), key: SECRET, expiresIn: `${ttlS}s` })
  return Array.from({ length: count }, (_, i) => sign(newSessionPayload({ sub: `${prefix}${i}`, orgs: [1, 2] })))
}

/** An auth_token straight from the upstream, for the proxies that cannot get one themselves. */
export async function upstreamToken (upstreamUrl: string): Promise<string> {
  const response = await request(`${upstreamUrl}/api/v1/authenticate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ application_token: APPLICATION_TOKEN })
  })
  const body = await response.body.json() as { auth_token: string }
  return body.auth_token
}

export interface UpstreamCounters { authenticate: number, patch_contact: number, list_contacts: number, unauthorized: number, total: number }

export async function upstreamCounters (upstreamUrl: string): Promise<UpstreamCounters> {
  const response = await request(`${upstreamUrl}/_sim/calls?operation=authenticate`)
  return (await response.body.json() as { counters: UpstreamCounters }).counters
}

export async function resetUpstream (upstreamUrl: string): Promise<void> {
  const response = await request(`${upstreamUrl}/_sim/reset`, { method: 'POST' })
  await response.body.dump()
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}
