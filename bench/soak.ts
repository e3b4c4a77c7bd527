// `npm run bench:soak`: the production BFF at a fixed request rate for 5 minutes after a 3-minute
// warm-up at the same rate (both configurable),
// RSS and heap sampled every 10 s, every in-memory store's size read from /metrics. Traffic is
// made to grow the stores: each request comes from one of many sessions (one rate-limit window
// each), and sessions are logged out all the time (one revocation each). After the warm-up, RSS
// must stay within +10 % and no store may pass its bound. Writes bench/results/soak.{json,md}.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { request } from 'undici'
import { ROOT, CONTACT_PATH, PATCH_BODY, benchSession, benchSessions, buildProduction, startBff, startUpstream, upstreamCounters, usage, median } from './lib.ts'

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '300' },
    // Before the measured minutes, at the same rate: under this churn V8 raised its committed heap
    // once, about 130 s in (heap total 110 → 175 MiB, heap used unchanged), in every run we made.
    warmup: { type: 'string', default: '180' },
    sample: { type: 'string', default: '10' },
    sessions: { type: 'string', default: '20000' },
    'logouts-per-second': { type: 'string', default: '20' },
    quick: { type: 'boolean', default: false },
    'skip-build': { type: 'boolean', default: false }
  }
})
const quick = args.quick
const rate = Number(args.rate)
const seconds = quick ? 20 : Number(args.seconds)
const warmup = quick ? 5 : Number(args.warmup)
const sampleEvery = quick ? 2 : Number(args.sample)
const sessionCount = quick ? 2_000 : Number(args.sessions)
const logoutsPerSecond = Number(args['logouts-per-second'])
const outDir = join(ROOT, 'bench', 'results')
mkdirSync(outDir, { recursive: true })

if (!args['skip-build']) buildProduction()

interface Sample {
  at: number
  rssMiB: number
  heapUsedMiB: number
  heapTotalMiB: number
  externalMiB: number
  stores: Record<string, number>
}

const STORES = ['revocations', 'session_rate_limit', 'login_lockout', 'upstream_token']

function gauge (text: string, name: string, labels = ''): number {
  const match = new RegExp(`^${name}${labels.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)
  return match === null ? Number.NaN : Number(match[1])
}

const upstream = await startUpstream(join(outDir, 'soak-upstream.log'))
const bff = await startBff(upstream.url, join(outDir, 'soak-bff.log'), { RATE_LIMIT_PER_MINUTE: '600' })
const pid = bff.child.pid as number

async function metrics (): Promise<string> {
  const response = await request(`${bff.url}/metrics`)
  return response.body.text()
}

async function sample (started: number): Promise<Sample> {
  const text = await metrics()
  return {
    at: Math.round((Date.now() - started) / 1000),
    rssMiB: usage(pid).rssBytes / 2 ** 20,
    heapUsedMiB: gauge(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
    heapTotalMiB: gauge(text, 'nodejs_heap_size_total_bytes') / 2 ** 20,
    externalMiB: gauge(text, 'nodejs_external_memory_bytes') / 2 ** 20,
    stores: Object.fromEntries(STORES.map((store) => [store, gauge(text, 'emnify_bff_store_entries', `{store="${store}"}`)]))
  }
}

// Many users: each session has its own sub, so each opens its own rate-limit window.
const sessions = benchSessions(sessionCount, 'soak-user-').map((token) => `Bearer ${token}`)
let next = 0
const capacities: Record<string, number> = {}

const samples: Sample[] = []
const started = Date.now()
let logouts = 0
let logoutFailures = 0
const logoutTimer = setInterval(() => {
  // Short-lived sessions, logged out at once: revocations are kept until exp + tolerance, then pruned.
  for (let i = 0; i < logoutsPerSecond / 10; i++) {
    const token = benchSession(`leaver-${logouts}`, 60)
    logouts++
    request(`${bff.url}/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
      .then(async (response) => {
        await response.body.dump()
        if (response.statusCode !== 204) logoutFailures++
      }, () => { logoutFailures++ })
  }
}, 100)
const sampler = setInterval(() => {
  sample(started).then((s) => {
    samples.push(s)
    console.log(`${String(s.at).padStart(4)} s  rss ${s.rssMiB.toFixed(1)} MiB  heap ${s.heapUsedMiB.toFixed(1)}/${s.heapTotalMiB.toFixed(1)} MiB  external ${s.externalMiB.toFixed(1)} MiB  ${STORES.map((store) => `${store} ${s.stores[store]}`).join('  ')}`)
  }, (error: unknown) => console.error(`sample failed: ${String(error)}`))
}, sampleEvery * 1000)

let result: autocannon.Result
try {
  result = await autocannon({
    url: bff.url + CONTACT_PATH,
    connections: 16,
    overallRate: rate,
    duration: warmup + seconds,
    requests: [{
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: PATCH_BODY,
      setupRequest: (req: autocannon.Request) => {
        req.headers = { ...req.headers, authorization: sessions[next++ % sessions.length] as string }
        return req
      }
    }]
  })
  clearInterval(logoutTimer)
  clearInterval(sampler)
  samples.push(await sample(started))
  const text = await metrics()
  for (const store of STORES) capacities[store] = gauge(text, 'emnify_bff_store_capacity', `{store="${store}"}`)
} finally {
  clearInterval(logoutTimer)
  clearInterval(sampler)
}
const counters = await upstreamCounters(upstream.url)
await bff.stop()
await upstream.stop()

// V8 sizes its heap in steps and gives memory back in steps, so single samples jump by tens of
// MiB either way: the level is the median of three neighbouring samples (30 s by default), the
// baseline the first such level after the warm-up, and growth the highest level above it.
const afterWarmup = samples.filter((s) => s.at >= warmup)
const levels = afterWarmup.slice(0, -2).map((_, i) => median(afterWarmup.slice(i, i + 3).map((s) => s.rssMiB)))
const baseline = levels[0] ?? median(afterWarmup.map((s) => s.rssMiB))
const peakLevel = Math.max(baseline, ...levels)
const peakRss = Math.max(...afterWarmup.map((s) => s.rssMiB))
const growth = peakLevel / baseline - 1
const peaks = Object.fromEntries(STORES.map((store) => [store, Math.max(...samples.map((s) => s.stores[store] ?? 0))]))
const errors = result.errors + result.timeouts + result.non2xx
const checks = {
  rssWithin10Percent: growth <= 0.10,
  storesBounded: STORES.every((store) => (peaks[store] as number) <= (capacities[store] as number)),
  zeroErrors: errors === 0 && logoutFailures === 0,
  oneAuthenticate: counters.authenticate === 1
}

const rows = samples.map((s) => `| ${s.at}${s.at < warmup ? ' (warm-up)' : ''} | ${s.rssMiB.toFixed(1)} | ${s.heapUsedMiB.toFixed(1)} | ${s.heapTotalMiB.toFixed(1)} | ${s.externalMiB.toFixed(1)} | ${STORES.map((store) => s.stores[store]).join(' | ')} |`)
const markdown = [
  `Soak ${new Date().toISOString()} · ${rate} req/s for ${warmup} s of warm-up, then ${seconds} s measured (${result.requests.total} PATCHes from ${sessionCount} sessions, ${logouts} logouts)`,
  '',
  `| s | RSS MiB | heap used MiB | heap total MiB | external MiB | ${STORES.join(' | ')} |`,
  `|---:|---:|---:|---:|---:|${STORES.map(() => '---:').join('|')}|`,
  ...rows,
  `| **bound** | | | | | ${STORES.map((store) => capacities[store]).join(' | ')} |`,
  '',
  `RSS level after warm-up (median of 3 samples): ${baseline.toFixed(1)} MiB, highest level ${peakLevel.toFixed(1)} MiB (${(100 * growth).toFixed(1)} %, limit +10 %), highest single sample ${peakRss.toFixed(1)} MiB · p99 ${result.latency.p99} ms · errors ${errors} · logout failures ${logoutFailures} · authenticate calls ${counters.authenticate}`,
  `Checks: ${Object.entries(checks).map(([name, ok]) => `${name} ${ok ? 'ok' : 'FAILED'}`).join(', ')}`
].join('\n')
writeFileSync(join(outDir, 'soak.json'), JSON.stringify({ at: new Date().toISOString(), options: { rate, seconds, warmup, sampleEvery, sessionCount, logoutsPerSecond }, samples, capacities, peaks, rssBaselineMiB: baseline, rssPeakLevelMiB: peakLevel, growth, latency: result.latency, errors, logouts, logoutFailures, counters, checks }, null, 2) + '\n')
writeFileSync(join(outDir, 'soak.md'), markdown + '\n')
console.log(`\n${markdown}`)
if (!Object.values(checks).every(Boolean)) process.exitCode = 1
