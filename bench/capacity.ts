// `npm run bench:capacity`: how many people one emnify allowance serves. A working day replayed in
// fast-forward against the simulator with emnify's per-IP limit on: N editors open their
// organisation's contact list, read contacts, now and then update or create one, at human
// think-times, while one runaway session fires PATCHes as fast as it can. Run for the BFF and for
// the raw floor (a passthrough forwarding every request). Every time in the replay is divided by
// --speed: emnify's 5-minute window, the think-times, and the BFF's budget rate, queue timeout,
// cache TTL and per-session limit, so the run has the day's proportions in a fraction of its time.
// Prints a table and writes bench/results/capacity-latest.{json,md}; BENCHMARKS.md explains it.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { createSigner } from 'fast-jwt'
import { Pool } from 'undici'
import { newSessionPayload, sessionSignOptions } from '../src/session/claims.ts'
import { CONTACT_TYPES, startSimulator } from '../simulator/simulator.ts'
import {
  APPLICATION_TOKEN, ROOT, SECRET, buildProduction, freePort, startBff, startProcess, startProxy,
  upstreamCounters, upstreamToken, type Proc
} from './lib.ts'

const EMNIFY_WINDOW_MS = 300_000
const EMNIFY_REQUESTS = 2000

const { values: args } = parseArgs({
  options: {
    editors: { type: 'string', default: '50,100,200,1000' },
    speed: { type: 'string', default: '20' },
    // Simulated minutes of the working day per run.
    minutes: { type: 'string', default: '5' },
    orgs: { type: 'string', default: '20' },
    contacts: { type: 'string', default: '25' },
    targets: { type: 'string', default: 'bff,passthrough' },
    runaway: { type: 'boolean', default: true },
    'runaway-connections': { type: 'string', default: '4' },
    // The BFF's budget settings in day-time units (the defaults); scaled like everything else.
    budget: { type: 'string', default: '1800' },
    burst: { type: 'string', default: '60' },
    'queue-timeout-ms': { type: 'string', default: '2000' },
    // Off: the runaway is held by the fair queue alone, not also by RATE_LIMIT_PER_MINUTE.
    'session-limit': { type: 'boolean', default: true },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(ROOT, 'bench', 'results') },
    'skip-build': { type: 'boolean', default: false },
    // Internal: run the upstream (the simulator with the organisations of the replay) in this process.
    'serve-upstream': { type: 'boolean', default: false }
  },
  allowNegative: true
})

const number = (name: keyof typeof args): number => {
  const value = Number(args[name])
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`)
  return value
}

if (args['serve-upstream']) {
  await serveUpstream()
} else {
  await main()
}

/** The simulator as the replay needs it: emnify's limit in fast-forward, organisations full of contacts. */
async function serveUpstream (): Promise<void> {
  const env = process.env
  const simulator = await startSimulator({
    port: Number(env.SIM_PORT),
    lean: true,
    seed: false,
    applicationTokens: [APPLICATION_TOKEN],
    rateLimit: { requests: EMNIFY_REQUESTS, authenticate: 100, windowMs: Number(env.CAPACITY_WINDOW_MS) }
  })
  const orgs = Number(env.CAPACITY_ORGS)
  const contacts = Number(env.CAPACITY_CONTACTS)
  for (let org = 1; org <= orgs; org++) {
    simulator.state.addOrganisation(org, `Organisation ${org}`)
    for (let i = 0; i < contacts; i++) {
      const type = 1 + (i % 5)
      simulator.state.createContact(org, { type: { id: type, description: CONTACT_TYPES.get(type) as string }, name: `Contact ${i + 1}`, email: `contact${i + 1}@org${org}.example`, city: 'Berlin' })
    }
  }
  process.stdout.write(`capacity upstream listening on ${simulator.url}\n`)
  process.once('SIGTERM', () => { simulator.close().then(() => process.exit(0)) })
}

interface Tally {
  ok: number
  failed: number
  latencies: number[]
}

interface RunResult {
  target: string
  editors: number
  actions: number
  upstreamCalls: number
  callsPerAction: number
  emnify429: number
  successPct: number
  worstUserPct: number
  p50Ms: number
  p99Ms: number
  failures: Record<string, number>
  runawayRequests: number
  runawayCalls: number
  runawaySharePct: number
  /** The runaway's upstream calls against emnify's allowance for the simulated minutes of the run. */
  runawayAllowancePct: number
  passes: boolean
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
}

function uniform (min: number, max: number): number {
  return min + Math.random() * (max - min)
}

async function main (): Promise<void> {
  const quick = args.quick
  const speed = number('speed')
  const minutes = quick ? 3 : number('minutes')
  const editorCounts = (quick ? '20' : args.editors).split(',').map((n) => Number(n.trim()))
  if (editorCounts.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error('--editors must be a comma-separated list of positive integers')
  const orgs = Math.floor(number('orgs'))
  const contacts = Math.floor(number('contacts'))
  const targets = args.targets.split(',').map((t) => t.trim())
  for (const target of targets) if (target !== 'bff' && target !== 'passthrough') throw new Error(`unknown target ${target}`)
  const outDir = args.out
  mkdirSync(outDir, { recursive: true })
  if (!args['skip-build'] && targets.includes('bff')) buildProduction()

  const sign = createSigner({
    ...sessionSignOptions({ SESSION_SECRET: SECRET, SESSION_ISSUER: 'emnify-bff', SESSION_AUDIENCE: 'emnify-bff', SESSION_TTL_S: 3600 }),
    key: SECRET,
    expiresIn: '24h'
  })
  const scaled = (ms: number) => ms / speed
  const runMs = scaled(minutes * 60_000)
  process.stdout.write(`capacity: ${minutes} simulated minutes per run at ${speed}× (${(runMs / 1000).toFixed(1)} s), ` +
    `${orgs} organisations × ${contacts} contacts, runaway ${args.runaway ? `on (${args['runaway-connections']} connections)` : 'off'}, ` +
    `per-session limit ${args['session-limit'] ? 'on' : 'off'}, ${cpus().length} CPUs, load ${loadavg()[0]?.toFixed(1)}\n`)

  const results: RunResult[] = []
  for (const target of targets) {
    for (const editors of editorCounts) {
      const result = await run(target as 'bff' | 'passthrough', editors)
      results.push(result)
      process.stdout.write(`${line(result)}\n`)
    }
  }
  const table = markdown(results, { speed, minutes, orgs, contacts, load: loadavg()[0] ?? 0 })
  process.stdout.write(`\n${table}\n`)
  writeFileSync(join(outDir, 'capacity-latest.json'), JSON.stringify({ speed, minutes, orgs, contacts, runaway: args.runaway, results }, null, 2))
  writeFileSync(join(outDir, 'capacity-latest.md'), table)

  async function run (target: 'bff' | 'passthrough', editors: number): Promise<RunResult> {
    const log = (name: string) => join(outDir, `capacity-${target}-${editors}-${name}.log`)
    const upstreamPort = await freePort()
    const upstream = await startProcess('upstream', ['bench/capacity.ts', '--serve-upstream'], {
      SIM_PORT: String(upstreamPort),
      CAPACITY_WINDOW_MS: String(Math.round(scaled(EMNIFY_WINDOW_MS))),
      CAPACITY_ORGS: String(orgs),
      CAPACITY_CONTACTS: String(contacts)
    }, upstreamPort, log('upstream'))
    let proc: Proc | undefined
    try {
      let authorization: (sub: string, org: number) => string
      if (target === 'bff') {
        proc = await startBff(upstream.url, log('bff'), {
          LOG_LEVEL: 'warn',
          // The production defaults, with every time divided by the speed.
          UPSTREAM_BUDGET_PER_5MIN: String(Math.round(number('budget') * speed)),
          UPSTREAM_BUDGET_BURST: String(Math.round(number('burst'))),
          UPSTREAM_QUEUE_TIMEOUT_MS: String(Math.max(1, Math.round(scaled(number('queue-timeout-ms'))))),
          // The limiter's window is one real minute whatever the speed: over a run shorter than that,
          // a session may make what the default (60 a minute) allows it over the simulated minutes.
          RATE_LIMIT_PER_MINUTE: args['session-limit'] ? String(Math.round(60 * Math.min(speed, minutes))) : '1000000',
          CONTACT_CACHE_TTL_MS: String(Math.max(1, Math.round(scaled(5000)))),
          MAX_EVENT_LOOP_DELAY_MS: '0'
        })
        const tokens = new Map<string, string>()
        authorization = (sub, org) => {
          let token = tokens.get(sub)
          if (token === undefined) {
            token = `Bearer ${sign(newSessionPayload({ sub, orgs: [org] }))}`
            tokens.set(sub, token)
          }
          return token
        }
      } else {
        proc = await startProxy('floor', upstream.url, log('floor'))
        const token = `Bearer ${await upstreamToken(upstream.url)}`
        authorization = () => token
      }
      const before = await upstreamCounters(upstream.url)
      const result = await replay(proc.url, target, editors, authorization)
      const after = await upstreamCounters(upstream.url) as unknown as Record<string, number>
      const beforeAll = before as unknown as Record<string, number>
      const total = (after.total ?? 0) - (beforeAll.total ?? 0) - ((after.authenticate ?? 0) - (beforeAll.authenticate ?? 0))
      const emnify429 = (after.rate_limited ?? 0) - (beforeAll.rate_limited ?? 0)
      const editorCalls = Math.max(0, total - result.runawayCalls)
      const sorted = result.editors.latencies.sort((a, b) => a - b)
      const successPct = 100 * result.editors.ok / Math.max(1, result.editors.ok + result.editors.failed)
      const summary: RunResult = {
        target,
        editors,
        actions: result.editors.ok + result.editors.failed,
        upstreamCalls: total,
        callsPerAction: editorCalls / Math.max(1, result.editors.ok + result.editors.failed),
        emnify429,
        successPct,
        worstUserPct: result.worstUserPct,
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
        failures: result.failures,
        runawayRequests: result.runawayRequests,
        runawayCalls: result.runawayCalls,
        runawaySharePct: 100 * result.runawayCalls / Math.max(1, total),
        runawayAllowancePct: 100 * result.runawayCalls / (EMNIFY_REQUESTS * minutes / 5),
        passes: emnify429 === 0 && successPct >= 99
      }
      return summary
    } finally {
      await proc?.stop()
      await upstream.stop()
    }
  }

  async function replay (url: string, target: 'bff' | 'passthrough', editors: number, authorization: (sub: string, org: number) => string) {
    const pool = new Pool(url, { connections: 256, pipelining: 1 })
    const runawayPool = new Pool(url, { connections: Number(args['runaway-connections']), pipelining: 1 })
    const end = performance.now() + runMs
    const failures: Record<string, number> = {}
    const all: Tally = { ok: 0, failed: 0, latencies: [] }
    const perUser: Tally[] = []

    async function send (client: Pool, method: 'GET' | 'PATCH' | 'POST', path: string, auth: string, body?: string): Promise<{ status: number, code?: string, json?: unknown }> {
      const headers: Record<string, string> = { authorization: auth, accept: 'application/json' }
      if (body !== undefined) headers['content-type'] = 'application/json'
      try {
        const response = await client.request({ method, path, headers, body })
        const text = await response.body.text()
        let json: unknown
        if (text !== '' && (response.statusCode >= 400 || path.endsWith('/contact'))) {
          try { json = JSON.parse(text) } catch {}
        }
        const code = response.statusCode >= 400 ? String((json as { code?: unknown } | undefined)?.code ?? `HTTP_${response.statusCode}`) : undefined
        return { status: response.statusCode, code, json }
      } catch {
        return { status: 0, code: 'NETWORK_ERROR' }
      }
    }

    async function editor (index: number): Promise<void> {
      const tally: Tally = { ok: 0, failed: 0, latencies: [] }
      perUser.push(tally)
      const org = (index % orgs) + 1
      const sub = `editor${index}`
      const auth = authorization(sub, org)
      const base = `/api/v1/organisation/${org}/contact`
      let ids: number[] = []
      const act = async (method: 'GET' | 'PATCH' | 'POST', path: string, body?: string) => {
        // The day is over: nothing more is sent, so every upstream call belongs to a counted action.
        if (performance.now() >= end) return { status: 0 }
        const started = performance.now()
        const answer = await send(pool, method, path, auth, body)
        const ms = performance.now() - started
        all.latencies.push(ms)
        if (answer.status >= 200 && answer.status < 300) {
          tally.ok++
          all.ok++
        } else {
          tally.failed++
          all.failed++
          const code = answer.code ?? String(answer.status)
          failures[code] = (failures[code] ?? 0) + 1
        }
        return answer
      }
      const think = (minS: number, maxS: number) => sleep(Math.max(0, Math.min(scaled(uniform(minS, maxS) * 1000), end - performance.now())))
      // People start their day over the first two simulated minutes.
      await sleep(scaled(uniform(0, 120_000)))
      while (performance.now() < end) {
        const list = await act('GET', base)
        if (Array.isArray(list.json)) ids = (list.json as Array<{ id?: unknown }>).map((c) => Number(c.id)).filter((id) => Number.isInteger(id) && id > 0)
        await think(3, 8)
        const reads = 1 + Math.floor(Math.random() * 4)
        for (let r = 0; r < reads && performance.now() < end && ids.length > 0; r++) {
          const id = ids[Math.floor(Math.random() * ids.length)] as number
          await act('GET', `${base}/${id}`)
          await think(5, 20)
          if (Math.random() < 0.25) {
            // Editing the form, then saving it.
            await think(10, 30)
            await act('PATCH', `${base}/${id}`, JSON.stringify({ phone: `+49 30 ${Math.floor(uniform(1e6, 1e7))}` }))
            await think(2, 5)
          }
        }
        if (Math.random() < 0.05) {
          await act('POST', base, JSON.stringify({ type: { id: 1 }, name: `New contact ${sub}`, email: `${sub}@example.com` }))
          await think(5, 10)
        }
      }
    }

    let runawayRequests = 0
    let runawayCalls = 0
    async function runaway (): Promise<void> {
      const auth = authorization('runaway', 1)
      // A retry storm: the same save, again and again, as fast as the answers come.
      const path = '/api/v1/organisation/1/contact/1'
      const body = JSON.stringify({ name: 'Runaway save' })
      while (performance.now() < end) {
        const answer = await send(runawayPool, 'PATCH', path, auth, body)
        runawayRequests++
        // A call reached emnify unless the BFF refused it itself (its own limit, the budget, load).
        const refusedLocally = answer.code === 'RATE_LIMITED' || answer.code === 'UPSTREAM_BUDGET_EXHAUSTED' || answer.code === 'OVERLOADED' || answer.code === 'NETWORK_ERROR'
        if (target === 'passthrough' ? answer.status !== 0 : !refusedLocally) runawayCalls++
        if (answer.status === 0) await sleep(1)
      }
    }

    const loops = Array.from({ length: editors }, (_, i) => editor(i))
    if (args.runaway) for (let c = 0; c < Number(args['runaway-connections']); c++) loops.push(runaway())
    await Promise.all(loops)
    await Promise.all([pool.close(), runawayPool.close()])
    const worstUserPct = perUser.reduce((worst, t) => {
      const total = t.ok + t.failed
      return total === 0 ? worst : Math.min(worst, 100 * t.ok / total)
    }, 100)
    return { editors: all, failures, worstUserPct, runawayRequests, runawayCalls }
  }
}

function line (r: RunResult): string {
  return `${r.target.padEnd(11)} N=${String(r.editors).padStart(4)}  actions ${String(r.actions).padStart(6)}  calls/action ${r.callsPerAction.toFixed(2)}  ` +
    `emnify 429s ${String(r.emnify429).padStart(6)}  success ${r.successPct.toFixed(2)} % (worst user ${r.worstUserPct.toFixed(0)} %)  ` +
    `p50 ${r.p50Ms.toFixed(1)} ms  p99 ${r.p99Ms.toFixed(1)} ms  runaway ${r.runawaySharePct.toFixed(1)} % of calls, ${r.runawayAllowancePct.toFixed(0)} % of the allowance  ${r.passes ? 'PASS' : 'fail'}  ${JSON.stringify(r.failures)}`
}

function markdown (results: RunResult[], setup: { speed: number, minutes: number, orgs: number, contacts: number, load: number }): string {
  const rows = results.map((r) => `| ${r.target} | ${r.editors} | ${r.actions} | ${r.callsPerAction.toFixed(2)} | ${r.emnify429} | ` +
    `${r.successPct.toFixed(2)} % | ${r.worstUserPct.toFixed(0)} % | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} | ${r.runawaySharePct.toFixed(1)} % | ${r.runawayAllowancePct.toFixed(0)} % | ` +
    `${Object.entries(r.failures).sort((a, b) => b[1] - a[1]).map(([code, n]) => `${code} ${n}`).join(', ') || '—'} |`)
  const largest = (target: string) => {
    const passing = results.filter((r) => r.target === target && r.passes).map((r) => r.editors)
    return passing.length === 0 ? 'none of those tried' : String(Math.max(...passing))
  }
  const targets = [...new Set(results.map((r) => r.target))]
  return [
    `${setup.minutes} simulated minutes per run at ${setup.speed}× speed; ${setup.orgs} organisations × ${setup.contacts} contacts; emnify's limit 2,000 per 5 min per IP; ` +
      `runaway ${args.runaway ? `on (${args['runaway-connections']} connections)` : 'off'}; per-session limit ${args['session-limit'] ? 'on' : 'off'}; ` +
      `BFF budget ${args.budget} per 5 min, burst ${args.burst}, queue timeout ${args['queue-timeout-ms']} ms (day time); ${cpus().length} CPUs, load average ${setup.load.toFixed(1)} at the end.`,
    '',
    '| target | editors | editor actions | upstream calls per action | emnify 429s | editors\' success | worst editor | p50 ms | p99 ms | runaway\'s share of upstream calls | runaway\'s calls / emnify\'s allowance | editors\' failures |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows,
    '',
    ...targets.map((t) => `Largest N with zero emnify 429s and ≥ 99 % success (${t}): ${largest(t)}.`)
  ].join('\n') + '\n'
}
