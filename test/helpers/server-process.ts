import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'

export const SERVER = new URL('../../src/server.ts', import.meta.url).pathname

export interface RunningServer {
  child: ChildProcessWithoutNullStreams
  url: string
  stdout: string[]
  exit: Promise<number | null>
}

/** Starts the real entry point as operators do, in `cwd`, and waits until it listens. */
export async function startServer (
  t: { teardown: (fn: () => void) => void },
  cwd: string,
  env: Record<string, string>
): Promise<RunningServer> {
  const child = spawn(process.execPath, [SERVER], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', ...env }
  })
  const stdout: string[] = []
  const exit = once(child, 'exit').then(([code]) => code as number | null)
  let buffered = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8')
      let newline: number
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        stdout.push(line)
        const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
        if (match !== null) resolve(match[1] as string)
      }
    })
    exit.then((code) => reject(new Error(`server exited early with ${code}`)), reject)
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { child, url, stdout, exit }
}
