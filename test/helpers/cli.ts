import { spawn } from 'node:child_process'
import { once } from 'node:events'

export const USERS_CLI = new URL('../../bin/users.ts', import.meta.url).pathname
export const MINT_CLI = new URL('../../bin/session-mint.ts', import.meta.url).pathname

/** Runs a CLI script on this Node with `stdin` as its input (passwords never go in argv). */
export async function runScript (script: string, args: string[], stdin: string, cwd: string) {
  const child = spawn(process.execPath, [script, ...args], { cwd, env: { PATH: process.env.PATH ?? '' } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8') })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
  child.stdin.end(stdin)
  const [code] = await once(child, 'exit')
  return { code: code as number | null, stdout, stderr }
}
