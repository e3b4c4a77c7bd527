// Helpers shared by the operability tests (OpenAPI, metrics, protection).
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { hashPassword } from '../../src/users/password.ts'

export const PASSWORD = 'correct horse battery staple'
// A cheap hash keeps the tests fast; the cost is not what they are about.
const HASH = await hashPassword(PASSWORD, { ln: 10, r: 8, p: 1 })

/** A users file in the test's own directory, with alice (orgs 1, 2) whose password is PASSWORD. */
export async function usersFile (t: Test): Promise<string> {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, JSON.stringify({ users: [{ username: 'alice', password_hash: HASH, orgs: [1, 2] }] }))
  return path
}

/**
 * The value of one sample in a Prometheus text exposition, or undefined when absent.
 * `labels` must list every label of the series, in any order.
 */
export function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`).sort().join(',')
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const found = (match[2] ?? '').split(/,(?=[a-zA-Z_]+=")/).filter((part) => part !== '').sort().join(',')
    if (found === wanted) return Number(match[3])
  }
  return undefined
}

/** Polls until `check` holds, or fails after `timeoutMs`; for states the process reaches by itself. */
export async function eventually (check: () => Promise<boolean>, timeoutMs = 5_000, label = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${label} not reached within ${timeoutMs} ms`)
    await sleep(25)
  }
}

/** Keeps the event loop busy `busyMs` out of every `periodMs` until the returned stop function is called. */
export function saturateEventLoop (busyMs = 90, periodMs = 100): () => void {
  const timer = setInterval(() => {
    const until = performance.now() + busyMs
    while (performance.now() < until) { /* burn */ }
  }, periodMs)
  return () => clearInterval(timer)
}

/** Fastify route template to OpenAPI path: `/a/:id` → `/a/{id}`. */
export function openApiPath (url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}
