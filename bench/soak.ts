// `npm run bench:soak`: the production BFF (dist/server.js) at a fixed request rate for 5 minutes
// after a 3-minute warm-up at the same rate (both configurable), RSS and heap sampled every 10 s,
// every in-memory store's size and bound read from /metrics. After the warm-up RSS must stay
// within +10 %, no store may pass its bound, and every answer must be the expected one.
//
// Traffic: an open-loop driver (undici Pool) sends requests on a fixed schedule, whether or not the
// earlier ones have answered, so the total rate is held. The operations are interleaved by smooth
// weighted round-robin; at the default 300 req/s, per second (shares of the total):
//
//   list     120  (40 %)   GET …/organisation/{1|2}/contact, half of them with If-None-Match: 200 or 304
//   get       90  (30 %)   GET …/contact/{id}: the seed contacts (1, 2, 3 of org 1; 10 of org 2), every
//                          fifth the newest contact this soak created; half conditional: 200 or 304
//   country    4 (1.3 %)   GET /api/v1/country, the editor's country picker: 200 or 304
//   patch     45  (15 %)   PATCH a seed contact: 204
//   create    10 (3.3 %)   POST …/contact with a fresh random Idempotency-Key: 201
//   replay     1 (0.3 %)   every 10th create sent again, same session, key and body, once it has
//                          answered: the same status (and Location), with Idempotency-Replayed: true
//   delete    10 (3.3 %)   DELETE the oldest contact this soak created, once more than 20 are alive:
//                          204 (so organisations hold ~20 soak contacts, never fill up)
//   logout    20 (6.7 %)   POST /auth/logout of a fresh 60-second session: 204
//
// Reads are 71 % (the BFF keeps them CONTACT_CACHE_TTL_MS, 5 s by default, but every write drops
// its organisation's kept reads), writes 22 %. `--rate` scales the whole mix, `--mix
// get=60,patch=75` changes weights. Every contact request comes from the next of 20,000 sessions
// (one rate-limit window each; a session sends about one request a minute, far under
// RATE_LIMIT_PER_MINUTE=600, so 429 is a failure), a replay from the session of its first create.
// Logouts use their own short-lived sessions: logging out one of the 20,000 would answer 401 to
// its every later request, and a 60 s session's revocation is pruned 30 s after it expires, so
// revocations are written and pruned all the time. A replay or delete slot with nothing to act on
// yet (the first seconds) sends a single-contact read instead, counted as a substitution.
// Answers are counted by status per operation; anything but the expected ones is a failure and
// makes the exit code 1. Writes bench/results/soak.{json,md}.
import { randomUUID } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Pool, request } from 'undici'
import { ROOT, PATCH_BODY, benchSession, benchSessions, buildProduction, startBff, startUpstream, upstreamCounters, usage } from './lib.ts'

const OPS = ['list', 'get', 'country', 'patch', 'create', 'replay', 'delete', 'logout'] as const
type Op = typeof OPS[number]
const DEFAULT_MIX: Record<Op, number> = { list: 120, get: 90, country: 4, patch: 45, create: 10, replay: 1, delete: 10, logout: 20 }
/** What each operation may answer; anything else is a failure. */
const EXPECTED: Record<Op, readonly number[]> = {
  list: [200, 304], get: [200, 304], country: [200, 304], patch: [204], create: [201], replay: [201], delete: [204], logout: [204]
}
/** Created contacts kept alive before deletes begin taking the oldest. */
const KEEP_CREATED = 20
const SEED_CONTACTS: ReadonlyArray<readonly [number, number]> = [[1, 1], [1, 2], [1, 3], [2, 10]]
const COUNTRY_IDS = [74, 205, 222, 73, 14]

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '300' },
    // Before the measured minutes, at the same rate: under this churn V8 raised its committed heap
    // once, about 130 s in (heap total 110 → 175 MiB, heap used unchanged), in every run we made.
    warmup: { type: 'string', default: '180' },
    sample: { type: 'string', default: '10' },
    sessions: { type: 'string', default: '20000' },
    mix: { type: 'string', default: '' },
    connections: { type: 'string', default: '64' },
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
const connections = Number(args.connections)
const weights: Record<Op, number> = { ...DEFAULT_MIX }
for (const part of args.mix.split(',').filter((p) => p.trim() !== '')) {
  const [name, value] = part.split('=').map((s) => s.trim())
  if (!OPS.includes(name as Op) || value === undefined || !(Number(value) >= 0)) {
    throw new Error(`--mix: expected op=weight with op one of ${OPS.join(', ')}, got ${JSON.stringify(part)}`)
  }
  weights[name as Op] = Number(value)
}
const weightSum = OPS.reduce((sum, op) => sum + weights[op], 0)
if (!(rate > 0) || !(weightSum > 0)) throw new Error('--rate and the mix must be positive')
/** Requests per second of each operation at `rate`. */
const perSecond = Object.fromEntries(OPS.map((op) => [op, rate * weights[op] / weightSum])) as Record<Op, number>
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

function gauge (text: string, name: string, labels = ''): number {
  const match = new RegExp(`^${name}${labels.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)
  return match === null ? Number.NaN : Number(match[1])
}

/** Every `name{store="…"} value` line: the stores are whatever the BFF reports, not a list kept here. */
function byStore (text: string, name: string): Record<string, number> {
  const found: Record<string, number> = {}
  for (const match of text.matchAll(new RegExp(`^${name}\\{store="([^"]+)"\\} (\\S+)$`, 'gm'))) found[match[1] as string] = Number(match[2])
  return found
}

const upstream = await startUpstream(join(outDir, 'soak-upstream.log'))
const bff = await startBff(upstream.url, join(outDir, 'soak-bff.log'), { RATE_LIMIT_PER_MINUTE: '600' })
const pid = bff.child.pid as number

async function metrics (): Promise<string> {
  const response = await request(`${bff.url}/metrics`)
  return response.body.text()
}

/** The highest capacity reported per store; a store's bound is checked against each sample's own. */
const capacities: Record<string, number> = {}
const overBound: string[] = []
const storeNames: string[] = []

async function sample (started: number): Promise<Sample> {
  const text = await metrics()
  const stores = byStore(text, 'emnify_bff_store_entries')
  const bounds = byStore(text, 'emnify_bff_store_capacity')
  const at = Math.round((Date.now() - started) / 1000)
  for (const [store, entries] of Object.entries(stores)) {
    if (!storeNames.includes(store)) storeNames.push(store)
    const bound = bounds[store]
    if (bound === undefined) {
      overBound.push(`${store} reports no capacity at ${at} s`)
      continue
    }
    capacities[store] = Math.max(capacities[store] ?? 0, bound)
    if (entries > bound) overBound.push(`${store} held ${entries} > ${bound} at ${at} s`)
  }
  return {
    at,
    rssMiB: usage(pid).rssBytes / 2 ** 20,
    heapUsedMiB: gauge(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
    heapTotalMiB: gauge(text, 'nodejs_heap_size_total_bytes') / 2 ** 20,
    externalMiB: gauge(text, 'nodejs_external_memory_bytes') / 2 ** 20,
    stores
  }
}

// --- the traffic ---

// Many users: each session has its own sub, so each opens its own rate-limit window.
const sessions = benchSessions(sessionCount, 'soak-user-').map((token) => `Bearer ${token}`)
let nextSession = 0
const session = (): string => sessions[nextSession++ % sessions.length] as string

interface Created { org: number, id: string }
interface ReplayCandidate { authorization: string, org: number, key: string, body: string, status: number, location: string | undefined }
/** Soak contacts alive upstream, oldest first. */
const created: Created[] = []
/** Creates that have answered and wait for their replay, oldest first. */
const replays: ReplayCandidate[] = []
/** The ETag last answered per read path, for If-None-Match. */
const etags = new Map<string, string>()

const statuses = Object.fromEntries(OPS.map((op) => [op, {} as Record<string, number>])) as Record<Op, Record<string, number>>
const latencies = Object.fromEntries(OPS.map((op) => [op, [] as number[]])) as Record<Op, number[]>
const substitutions: Partial<Record<Op, number>> = {}
const failures: Record<string, number> = {}
const sentCounts = Object.fromEntries(OPS.map((op) => [op, 0])) as Record<Op, number>
let creates = 0
let gets = 0
let lists = 0
let logouts = 0
let maxDispatchLagMs = 0

function fail (reason: string): void {
  failures[reason] = (failures[reason] ?? 0) + 1
}

function count (op: Op, status: number | 'error'): void {
  statuses[op][status] = (statuses[op][status] ?? 0) + 1
  if (status === 'error' || !EXPECTED[op].includes(status)) fail(`${op} ${status}`)
}

const pool = new Pool(bff.url, { connections, pipelining: 1 })
const pending = new Set<Promise<void>>()

interface Call { op: Op, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, headers: Record<string, string>, body?: string }

function call ({ op, method, path, headers, body }: Call, due: number, onAnswer?: (status: number, headers: Record<string, string | string[] | undefined>) => void): void {
  sentCounts[op]++
  const promise = (async () => {
    try {
      const answer = await pool.request({ method, path, headers, body })
      await answer.body.dump()
      latencies[op].push(performance.now() - due)
      count(op, answer.statusCode)
      onAnswer?.(answer.statusCode, answer.headers)
    } catch {
      count(op, 'error')
    }
  })()
  pending.add(promise)
  promise.finally(() => pending.delete(promise)).catch(() => {})
}

function conditional (path: string, authorization: string, withTag: boolean): Record<string, string> {
  const tag = withTag ? etags.get(path) : undefined
  return tag === undefined ? { authorization } : { authorization, 'if-none-match': tag }
}

function keepTag (path: string) {
  return (status: number, headers: Record<string, string | string[] | undefined>): void => {
    if (status === 200 && typeof headers.etag === 'string') etags.set(path, headers.etag)
  }
}

function sendGet (due: number): void {
  const op: Op = 'get'
  gets++
  const newest = created[created.length - 1]
  if (gets % 5 === 0 && newest !== undefined) {
    call({ op, method: 'GET', path: `/api/v1/organisation/${newest.org}/contact/${newest.id}`, headers: { authorization: session() } }, due)
    return
  }
  const [org, id] = SEED_CONTACTS[gets % SEED_CONTACTS.length] as readonly [number, number]
  const path = `/api/v1/organisation/${org}/contact/${id}`
  call({ op, method: 'GET', path, headers: conditional(path, session(), gets % 2 === 0) }, due, keepTag(path))
}

function createBody (n: number): string {
  const type = 1 + (n % 6)
  return JSON.stringify({
    type: { id: type },
    name: `Soak contact ${n}`,
    email: `soak-${n}@example.com`,
    phone: `+49 30 ${String(1_000_000 + n)}`,
    city: 'Berlin',
    country: { id: COUNTRY_IDS[n % COUNTRY_IDS.length] },
    ...(type === 6 ? { purchase_order_number: `PO-${n}` } : {})
  })
}

function send (op: Op, due: number): void {
  switch (op) {
    case 'list': {
      lists++
      const path = `/api/v1/organisation/${1 + (lists % 2)}/contact`
      call({ op, method: 'GET', path, headers: conditional(path, session(), lists % 4 >= 2) }, due, keepTag(path))
      return
    }
    case 'get':
      sendGet(due)
      return
    case 'country': {
      const path = '/api/v1/country'
      call({ op, method: 'GET', path, headers: conditional(path, session(), sentCounts.country % 2 === 0) }, due, keepTag(path))
      return
    }
    case 'patch': {
      const [org, id] = SEED_CONTACTS[sentCounts.patch % SEED_CONTACTS.length] as readonly [number, number]
      call({ op, method: 'PATCH', path: `/api/v1/organisation/${org}/contact/${id}`, headers: { authorization: session(), 'content-type': 'application/json' }, body: PATCH_BODY }, due)
      return
    }
    case 'create': {
      const n = creates++
      const org = 1 + (n % 2)
      const authorization = session()
      const key = randomUUID()
      const body = createBody(n)
      const headers = { authorization, 'content-type': 'application/json', 'idempotency-key': key }
      call({ op, method: 'POST', path: `/api/v1/organisation/${org}/contact`, headers, body }, due, (status, answer) => {
        const location = typeof answer.location === 'string' ? answer.location : undefined
        const id = location === undefined ? undefined : /\/contact\/(\d+)$/.exec(location)?.[1]
        if (status === 201 && id !== undefined) created.push({ org, id })
        else if (status === 201) fail('create 201 without a Location naming the contact')
        if (n % 10 === 0) replays.push({ authorization, org, key, body, status, location })
      })
      return
    }
    case 'replay': {
      const first = replays.shift()
      if (first === undefined) break
      const headers = { authorization: first.authorization, 'content-type': 'application/json', 'idempotency-key': first.key }
      call({ op, method: 'POST', path: `/api/v1/organisation/${first.org}/contact`, headers, body: first.body }, due, (status, answer) => {
        if (status !== first.status) fail(`replay answered ${status} where the first create answered ${first.status}`)
        if (answer['idempotency-replayed'] !== 'true') fail('replay without Idempotency-Replayed: true')
        if (answer.location !== first.location) fail('replay with another Location than the first create')
      })
      return
    }
    case 'delete': {
      if (created.length <= KEEP_CREATED) break
      const { org, id } = created.shift() as Created
      call({ op, method: 'DELETE', path: `/api/v1/organisation/${org}/contact/${id}`, headers: { authorization: session() } }, due)
      return
    }
    case 'logout': {
      // Short-lived sessions, logged out at once: revocations are kept until exp + tolerance, then pruned.
      const token = benchSession(`leaver-${logouts++}`, 60)
      call({ op, method: 'POST', path: '/auth/logout', headers: { authorization: `Bearer ${token}` } }, due)
      return
    }
  }
  // A replay or delete with nothing to act on yet: a read keeps the rate.
  substitutions[op] = (substitutions[op] ?? 0) + 1
  sendGet(due)
}

/** Smooth weighted round-robin: each operation gets its share, spread evenly over every second. */
const current = Object.fromEntries(OPS.map((op) => [op, 0])) as Record<Op, number>
function nextOp (): Op {
  let best: Op = 'list'
  for (const op of OPS) {
    current[op] += weights[op]
    if (current[op] > current[best]) best = op
  }
  current[best] -= weightSum
  return best
}

/** Open loop: request n leaves at start + n / rate, whether or not the earlier ones have answered. */
async function drive (totalSeconds: number): Promise<{ sent: number, elapsedS: number }> {
  const total = Math.round(rate * totalSeconds)
  let sent = 0
  const start = performance.now()
  while (sent < total) {
    const now = performance.now()
    const due = Math.min(total, Math.floor((now - start) * rate / 1000) + 1)
    while (sent < due) {
      const at = start + sent * 1000 / rate
      maxDispatchLagMs = Math.max(maxDispatchLagMs, now - at)
      send(nextOp(), at)
      sent++
    }
    await new Promise<void>((resolve) => setTimeout(resolve, 1))
  }
  const elapsedS = (performance.now() - start) / 1000
  await Promise.all([...pending])
  return { sent, elapsedS }
}

console.log(`Mix at ${rate} req/s: ${OPS.map((op) => `${op} ${perSecond[op].toFixed(1)}/s`).join(', ')}; ${sessionCount} sessions; ${warmup} s warm-up + ${seconds} s measured`)

const samples: Sample[] = []
const started = Date.now()
const sampler = setInterval(() => {
  sample(started).then((s) => {
    samples.push(s)
    console.log(`${String(s.at).padStart(4)} s  rss ${s.rssMiB.toFixed(1)} MiB  heap ${s.heapUsedMiB.toFixed(1)}/${s.heapTotalMiB.toFixed(1)} MiB  external ${s.externalMiB.toFixed(1)} MiB  ${Object.entries(s.stores).map(([store, n]) => `${store} ${n}`).join('  ')}`)
  }, (error: unknown) => console.error(`sample failed: ${String(error)}`))
}, sampleEvery * 1000)

let run: { sent: number, elapsedS: number }
let readCache: Record<string, number>
try {
  run = await drive(warmup + seconds)
  clearInterval(sampler)
  samples.push(await sample(started))
  const text = await metrics()
  readCache = Object.fromEntries(['hit', 'miss', 'coalesced'].map((result) => [result, gauge(text, 'emnify_bff_read_cache_total', `{result="${result}"}`)]))
} finally {
  clearInterval(sampler)
  await pool.close()
}
const counters = await upstreamCounters(upstream.url) as unknown as Record<string, number>
await bff.stop()
await upstream.stop()

// --- the verdict ---

// V8 sizes its heap in steps and gives memory back in steps: under this mix the committed heap
// rises for about two minutes and falls back by 100 MiB or more at a major GC, again and again,
// while heap used returns to the same floor each time. A single sample, or a short median, then
// says where in that cycle it fell, not whether memory grows. So "flat" is read on the envelope:
// the baseline is the highest RSS of the last ENVELOPE_S seconds of the warm-up (longer than one
// such cycle), and growth is the highest RSS after the warm-up above it; the last ENVELOPE_S
// seconds' highest is reported beside it, so a rise towards the end shows too.
const ENVELOPE_S = Math.min(150, warmup)
const afterWarmup = samples.filter((s) => s.at >= warmup)
const lateWarmup = samples.filter((s) => s.at < warmup && s.at >= warmup - ENVELOPE_S)
const baseline = Math.max(...(lateWarmup.length > 0 ? lateWarmup : afterWarmup.slice(0, 1)).map((s) => s.rssMiB))
const peakRss = Math.max(...afterWarmup.map((s) => s.rssMiB))
const lastEnd = samples[samples.length - 1]?.at ?? 0
const lateRss = Math.max(...afterWarmup.filter((s) => s.at >= lastEnd - ENVELOPE_S).map((s) => s.rssMiB))
const endRss = samples[samples.length - 1]?.rssMiB ?? Number.NaN
const growth = peakRss / baseline - 1
const lateGrowth = lateRss / baseline - 1
const peaks = Object.fromEntries(storeNames.map((store) => [store, Math.max(...samples.map((s) => s.stores[store] ?? 0))]))
const heapUsedMax = Math.max(...afterWarmup.map((s) => s.heapUsedMiB))
const heapTotalMax = Math.max(...afterWarmup.map((s) => s.heapTotalMiB))
const answered = (op: Op, status: number): number => statuses[op][status] ?? 0
// Each fresh create reaches emnify once, each replay never: the upstream saw exactly the fresh ones.
const freshCreates = sentCounts.create
const failureCount = Object.values(failures).reduce((sum, n) => sum + n, 0)
const achievedRate = run.sent / run.elapsedS
const checks = {
  rssWithin10Percent: growth <= 0.10 && lateGrowth <= 0.10,
  storesBounded: overBound.length === 0 && storeNames.length > 0,
  noUnexpectedAnswers: failureCount === 0,
  rateHeld: achievedRate >= rate * 0.98,
  replaysNeverReachedEmnify: counters.create_contact === freshCreates,
  oneAuthenticate: counters.authenticate === 1
}

const percentile = (values: number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}
const latency = Object.fromEntries(OPS.map((op) => [op, { p50: percentile(latencies[op], 0.5), p99: percentile(latencies[op], 0.99), max: percentile(latencies[op], 1) }]))
const statusText = (op: Op): string => Object.entries(statuses[op]).map(([status, n]) => `${status}: ${n}`).join(', ') || '—'
const opRows = OPS.map((op) => `| ${op} | ${perSecond[op].toFixed(1)} | ${(100 * weights[op] / weightSum).toFixed(1)} % | ${sentCounts[op]} | ${statusText(op)} | ${EXPECTED[op].join(', ')} | ${latency[op]?.p50.toFixed(1)} | ${latency[op]?.p99.toFixed(1)} |`)
const storeRows = storeNames.map((store) => `| ${store} | ${peaks[store]} | ${capacities[store]} | ${(100 * (peaks[store] as number) / (capacities[store] as number)).toFixed(1)} % |`)
const sampleRows = samples.map((s) => `| ${s.at}${s.at < warmup ? ' (warm-up)' : ''} | ${s.rssMiB.toFixed(1)} | ${s.heapUsedMiB.toFixed(1)} | ${s.heapTotalMiB.toFixed(1)} | ${s.externalMiB.toFixed(1)} | ${storeNames.map((store) => s.stores[store] ?? '').join(' | ')} |`)
const substituted = Object.entries(substitutions).map(([op, n]) => `${n} ${op}`).join(', ') || 'none'
const upstreamText = Object.entries(counters).filter(([, n]) => n > 0).map(([operation, n]) => `${operation} ${n}`).join(', ')
const cacheReads = (readCache.hit ?? 0) + (readCache.miss ?? 0) + (readCache.coalesced ?? 0)
const markdown = [
  `Soak ${new Date().toISOString()} · ${rate} req/s for ${warmup} s of warm-up, then ${seconds} s measured · ${run.sent} requests from ${sessionCount} sessions (+ ${logouts} short-lived sessions logged out) in ${run.elapsedS.toFixed(1)} s = ${achievedRate.toFixed(1)} req/s`,
  '',
  '| operation | req/s | share | sent | answers | expected | p50 ms | p99 ms |',
  '|---|---:|---:|---:|---|---|---:|---:|',
  ...opRows,
  '',
  `Replays: ${answered('replay', 201)} of ${sentCounts.replay} answered 201 as their first create · deletes ${answered('delete', 204)} of ${sentCounts.delete}, ${created.length} soak contacts left alive · substituted by a read (nothing to act on yet): ${substituted}`,
  `Reads through the BFF's caches: ${cacheReads} (hit ${readCache.hit}, coalesced ${readCache.coalesced}, miss ${readCache.miss}: ${(100 * ((readCache.hit ?? 0) + (readCache.coalesced ?? 0)) / cacheReads).toFixed(1)} % answered without emnify) · upstream calls: ${upstreamText}`,
  '',
  '| store | max entries | bound | max / bound |',
  '|---|---:|---:|---:|',
  ...storeRows,
  '',
  `| s | RSS MiB | heap used MiB | heap total MiB | external MiB | ${storeNames.join(' | ')} |`,
  `|---:|---:|---:|---:|---:|${storeNames.map(() => '---:').join('|')}|`,
  ...sampleRows,
  `| **bound** | | | | | ${storeNames.map((store) => capacities[store]).join(' | ')} |`,
  '',
  `RSS envelope (highest of the warm-up's last ${ENVELOPE_S} s): ${baseline.toFixed(1)} MiB · highest after warm-up ${peakRss.toFixed(1)} MiB (${(100 * growth).toFixed(1)} %, limit +10 %) · highest of the last ${ENVELOPE_S} s ${lateRss.toFixed(1)} MiB (${(100 * lateGrowth).toFixed(1)} %) · last ${endRss.toFixed(1)} MiB · heap used ≤ ${heapUsedMax.toFixed(1)} MiB, heap total ≤ ${heapTotalMax.toFixed(1)} MiB after warm-up · scheduler lag ≤ ${maxDispatchLagMs.toFixed(1)} ms · authenticate calls ${counters.authenticate}`,
  `Failures: ${failureCount === 0 ? 'none' : Object.entries(failures).map(([reason, n]) => `${reason} ×${n}`).join('; ')}${overBound.length === 0 ? '' : ` · over bound: ${overBound.join('; ')}`}`,
  `Checks: ${Object.entries(checks).map(([name, ok]) => `${name} ${ok ? 'ok' : 'FAILED'}`).join(', ')}`
].join('\n')
writeFileSync(join(outDir, 'soak.json'), JSON.stringify({
  at: new Date().toISOString(),
  options: { rate, seconds, warmup, sampleEvery, sessionCount, connections, mix: weights, perSecond, keepCreated: KEEP_CREATED },
  samples,
  stores: storeNames,
  capacities,
  peaks,
  overBound,
  envelopeS: ENVELOPE_S,
  rssBaselineMiB: baseline,
  rssPeakSampleMiB: peakRss,
  rssLateMiB: lateRss,
  rssEndMiB: endRss,
  growth,
  lateGrowth,
  heapUsedMaxMiB: heapUsedMax,
  heapTotalMaxMiB: heapTotalMax,
  sent: run.sent,
  elapsedS: run.elapsedS,
  achievedRate,
  maxDispatchLagMs,
  requests: sentCounts,
  statuses,
  expected: EXPECTED,
  latency,
  substitutions,
  failures,
  logouts,
  createdLeftAlive: created.length,
  readCache,
  counters,
  checks
}, null, 2) + '\n')
writeFileSync(join(outDir, 'soak.md'), markdown + '\n')
console.log(`\n${markdown}`)
if (!Object.values(checks).every(Boolean)) process.exitCode = 1
