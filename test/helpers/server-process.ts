import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { isAbsolute, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { LeakWatch, secrets } from './leak-scan.ts'

export const SERVER = new URL('../../src/server.ts', import.meta.url).pathname

export interface RunningServer {
  child: ChildProcessWithoutNullStreams
  url: string
  stdout: string[]
  stderr: string[]
  exit: Promise<number | null>
}

/** Splits a stream into lines as they arrive; `onLine` sees each complete one. */
function collectLines (stream: NodeJS.ReadableStream, lines: string[], onLine: (line: string) => void = () => {}): void {
  let buffered = ''
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8')
    let newline: number
    while ((newline = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      lines.push(line)
      onLine(line)
    }
  })
  stream.on('end', () => { if (buffered !== '') lines.push(buffered) })
}

/** Credentials handed to the process: secret-looking variables and the users file's hashes. */
function registerEnvironment (cwd: string, env: Record<string, string>): void {
  for (const [name, value] of Object.entries(env)) {
    if (/SECRET|TOKEN|PASSWORD/.test(name)) secrets.add(`the value of ${name}`, value)
  }
  if (env.USERS_FILE === undefined) return
  try {
    const path = isAbsolute(env.USERS_FILE) ? env.USERS_FILE : join(cwd, env.USERS_FILE)
    const users = (JSON.parse(readFileSync(path, 'utf8')) as { users?: Array<{ password_hash?: unknown }> }).users
    for (const user of Array.isArray(users) ? users : []) secrets.add('a password hash from the users file', user?.password_hash)
  } catch {
    // Unreadable or broken: the server refuses it, and there is nothing to look for.
  }
}

/**
 * Starts the real entry point as operators do, in `cwd`, and waits until it listens. When the
 * test ends the process is stopped and everything it wrote to stdout and stderr is scanned for
 * credentials (test/helpers/leak-scan.ts).
 */
export async function startServer (
  t: { teardown: (fn: () => void | Promise<void>) => void },
  cwd: string,
  env: Record<string, string>
): Promise<RunningServer> {
  const watch = new LeakWatch(secrets)
  registerEnvironment(cwd, env)
  const child = spawn(process.execPath, [SERVER], {
    cwd,
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: '0',
      // As in the in-process stacks: a process starting while the suite keeps both cores busy
      // can measure its own start-up as overload and shed its first requests. Tests of load
      // shedding set these themselves.
      MAX_EVENT_LOOP_DELAY_MS: '0',
      MAX_EVENT_LOOP_UTILIZATION: '0',
      ...env
    }
  })
  const stdout: string[] = []
  const stderr: string[] = []
  watch.watchLines('stdout line', stdout)
  watch.watchLines('stderr line', stderr)
  const exit = once(child, 'exit').then(([code]) => code as number | null)
  // After 'exit' the pipes may still hold output; 'close' comes when they are drained.
  const closed = once(child, 'close').catch(() => null)
  // Registered before the URL is known, so a process that never listens is scanned too.
  t.teardown(async () => {
    // SIGTERM first: a killed process would lose the log lines it had not flushed yet.
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const stopped = await Promise.race([closed.then(() => true), sleep(3_000, false, { ref: false })])
      if (!stopped) child.kill('SIGKILL')
    }
    await closed
    // Users files change during tests (SIGHUP reloads); their final hashes count too.
    registerEnvironment(cwd, env)
    watch.assertClean()
  })
  collectLines(child.stderr, stderr)
  const url = await new Promise<string>((resolve, reject) => {
    collectLines(child.stdout, stdout, (line) => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match !== null) resolve(match[1] as string)
    })
    exit.then((code) => reject(new Error(`server exited early with ${code}`)), reject)
  })
  return { child, url, stdout, stderr, exit }
}
