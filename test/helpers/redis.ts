// A real redis-server of the test's own, on a free port, never a system service. Files that need
// it call `redisAvailable()` first and skip (saying what to install) on a machine without it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const BINARY = process.env.REDIS_SERVER ?? 'redis-server'

/** Why Redis tests cannot run here, or undefined when they can. */
export function redisMissing (): string | undefined {
  const probe = spawnSync(BINARY, ['--version'], { encoding: 'utf8' })
  if (probe.error === undefined && probe.status === 0) return undefined
  return 'redis-server is not installed: run `apt-get install -y redis-server` (Debian) to run the Redis tests'
}

function listensOn (port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(undefined))
    server.listen(port, '127.0.0.1', () => {
      const address = server.address()
      const bound = typeof address === 'object' && address !== null ? address.port : undefined
      server.close(() => resolve(bound))
    })
  })
}

/** The first port the kernel hands out for outgoing connections and `listen(0)` (Linux: 32768). */
function ephemeralStart (): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    return Number.isInteger(low) && low > 2048 ? low : 32768
  } catch {
    return 32768
  }
}

/**
 * A free TCP port on 127.0.0.1 for a server whose address must be known before it listens (the
 * listener is closed again before the port is used). Chosen below the ephemeral range: a port
 * from `listen(0)` is also what the kernel gives the next outgoing connection of any test running
 * alongside, which then takes it before the server binds it (EADDRINUSE, seen in CI).
 */
export async function freePort (): Promise<number> {
  const high = ephemeralStart() - 1
  const low = Math.max(1024, high - 12_000)
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listensOn(low + Math.floor(Math.random() * (high - low + 1)))
    if (port !== undefined) return port
  }
  const port = await listensOn(0)
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1')
  return port
}

export interface RunningRedis {
  port: number
  url: string
  /** Stops the server (SIGKILL when `hard`), keeping its port for `start()`. */
  stop: (hard?: boolean) => Promise<void>
  /** Starts it again on the same port (empty: no persistence). */
  start: () => Promise<void>
  close: () => Promise<void>
}

async function waitForPort (port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited early: ${output()}`)
    if (output().includes('Ready to accept connections')) return
    if (Date.now() > deadline) throw new Error(`redis-server did not start in 10 s: ${output()}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Starts a private redis-server (`--save '' --appendonly no`) on a free port. */
export async function startRedis (options: { password?: string } = {}): Promise<RunningRedis> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'bff-redis-'))
  let child: ChildProcess | undefined
  const launch = async () => {
    let text = ''
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'notice']
    if (options.password !== undefined) args.push('--requirepass', options.password)
    const started = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    started.stdout?.on('data', (chunk: Buffer) => { text += chunk.toString() })
    started.stderr?.on('data', (chunk: Buffer) => { text += chunk.toString() })
    child = started
    await waitForPort(port, started, () => text)
  }
  const stop = async (hard = false) => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill(hard ? 'SIGKILL' : 'SIGTERM')
    await exited
  }
  await launch()
  const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`
  return {
    port,
    url: `redis://${auth}127.0.0.1:${port}`,
    stop,
    start: launch,
    close: async () => {
      await stop(true)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
