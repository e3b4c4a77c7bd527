// `npm run bench`: the BFF against the raw floor and @fastify/reply-from, each its own process,
// all in front of one lean emnify simulator, driven by autocannon in interleaved rounds.
// Prints a table and the ratios; writes bench/results/latest.{json,md}. `--quick` is a smoke run.
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs'
import { cpus, totalmem, release } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type autocannon from 'autocannon'
import {
  ROOT, benchSession, buildProduction, drive, median, resetUpstream,
  startBff, startProxy, startUpstream, upstreamCounters, upstreamToken, usage, type Proc
} from './lib.ts'

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '5' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(ROOT, 'bench', 'results') },
    'skip-build': { type: 'boolean', default: false },
    // Another checkout of this project, built (npm ci && npm run build there): its BFF runs as a
    // fourth target, "bff-before", for a before/after comparison under the same conditions.
    compare: { type: 'string' }
  }
})

const quick = args.quick
const connections = quick ? 10 : Number(args.connections)
const duration = quick ? 1 : Number(args.duration)
const warmup = quick ? 0.5 : Number(args.warmup)
const rounds = quick ? 1 : Number(args.rounds)
for (const [name, value] of Object.entries({ connections, duration, warmup, rounds })) {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`)
}
const outDir = args.out
mkdirSync(outDir, { recursive: true })
const log = (name: string) => join(outDir, `${name}.log`)

interface Measurement {
  target: string
  round: number
  requests: number
  reqPerS: number
  p50: number
  p99: number
  p999: number
  errors: number
  cpuUsPerReq: number
  rssMiB: number
}

interface Target {
  name: string
  proc: Proc
  authorization: string
}

function failures (result: autocannon.Result): number {
  return result.errors + result.timeouts + result.non2xx
}

async function measure (target: Target, round: number): Promise<Measurement> {
  await drive(target.proc.url, target.authorization, warmup, connections)
  const pid = target.proc.child.pid as number
  const before = usage(pid)
  const result = await drive(target.proc.url, target.authorization, duration, connections)
  const after = usage(pid)
  const requests = result.requests.total
  return {
    target: target.name,
    round,
    requests,
    reqPerS: requests / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    p999: result.latency.p99_9,
    errors: failures(result),
    cpuUsPerReq: (after.cpuUs - before.cpuUs) / Math.max(requests, 1),
    rssMiB: after.rssBytes / 2 ** 20
  }
}

function versionOf (name: string): string {
  return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
}

const spread = (values: number[]) => ({ median: median(values), min: Math.min(...values), max: Math.max(...values) })
const fmt = (value: number, digits = 1) => value.toFixed(digits)
const ratioText = (r: { median: number, min: number, max: number }) => `${fmt(r.median, 2)}× (${fmt(r.min, 2)}–${fmt(r.max, 2)})`

if (!args['skip-build']) buildProduction()

const procs: Proc[] = []
const stopAll = () => Promise.all(procs.splice(0).map((proc) => proc.stop()))
process.once('SIGINT', () => { stopAll().then(() => process.exit(130)) })

try {
  const upstream = await startUpstream(log('upstream'))
  procs.push(upstream)
  const authToken = await upstreamToken(upstream.url)
  const floor = await startProxy('floor', upstream.url, log('floor'))
  procs.push(floor)
  const replyFrom = await startProxy('reply-from', upstream.url, log('reply-from'))
  procs.push(replyFrom)
  // The BFF starts cold: no auth_token yet, so its first warm-up is the cold start at full concurrency.
  await resetUpstream(upstream.url)
  const bff = await startBff(upstream.url, log('bff'))
  procs.push(bff)

  const targets: Target[] = [
    { name: 'floor', proc: floor, authorization: `Bearer ${authToken}` },
    { name: 'reply-from', proc: replyFrom, authorization: `Bearer ${authToken}` },
    { name: 'bff', proc: bff, authorization: `Bearer ${benchSession()}` }
  ]
  if (args.compare !== undefined) {
    const before = await startBff(upstream.url, log('bff-before'), {}, join(args.compare, 'dist', 'server.js'))
    procs.push(before)
    targets.push({ name: 'bff-before', proc: before, authorization: targets[2]!.authorization })
  }

  const measurements: Measurement[] = []
  for (let round = 1; round <= rounds; round++) {
    for (const target of targets) {
      const m = await measure(target, round)
      measurements.push(m)
      console.log(`round ${round} ${m.target.padEnd(10)} ${fmt(m.reqPerS, 0).padStart(6)} req/s  p50 ${fmt(m.p50, 2)} ms  p99 ${fmt(m.p99, 2)} ms  p99.9 ${fmt(m.p999, 2)} ms  cpu ${fmt(m.cpuUsPerReq)} µs/req  rss ${fmt(m.rssMiB)} MiB  errors ${m.errors}`)
    }
  }
  const bffCounters = await upstreamCounters(upstream.url)

  // Cold start at a much higher concurrency, on a fresh BFF process.
  await resetUpstream(upstream.url)
  const burstConnections = Math.max(256, connections * 4)
  const coldBff = await startBff(upstream.url, log('bff-cold'))
  procs.push(coldBff)
  const burst = await drive(coldBff.url, targets[2]!.authorization, quick ? 1 : 2, burstConnections)
  const burstCounters = await upstreamCounters(upstream.url)
  await coldBff.stop()

  // Short token lifetime: the BFF must refresh ahead of expiry, never through a 401.
  const lifetimeS = quick ? 2 : 5
  const refreshSeconds = quick ? 4 : Math.max(20, duration * 2)
  const shortUpstream = await startUpstream(log('upstream-short'), { SIM_TOKEN_LIFETIME_S: String(lifetimeS) })
  procs.push(shortUpstream)
  const refreshBff = await startBff(shortUpstream.url, log('bff-refresh'))
  procs.push(refreshBff)
  // Warmed up like the others, so its p99.9 compares with theirs; the counts start after.
  await drive(refreshBff.url, targets[2]!.authorization, warmup, connections)
  await resetUpstream(shortUpstream.url)
  const refresh = await drive(refreshBff.url, targets[2]!.authorization, refreshSeconds, connections)
  const refreshCounters = await upstreamCounters(shortUpstream.url)

  const of = (name: string) => measurements.filter((m) => m.target === name)
  const summary = Object.fromEntries(targets.map(({ name }) => {
    const ms = of(name)
    return [name, {
      reqPerS: median(ms.map((m) => m.reqPerS)),
      p50: median(ms.map((m) => m.p50)),
      p99: median(ms.map((m) => m.p99)),
      p999: median(ms.map((m) => m.p999)),
      cpuUsPerReq: median(ms.map((m) => m.cpuUsPerReq)),
      rssMiB: Math.max(...ms.map((m) => m.rssMiB)),
      errors: ms.reduce((sum, m) => sum + m.errors, 0)
    }]
  })) as Record<string, Omit<Measurement, 'target' | 'round' | 'requests'>>

  // Ratios are taken within a round (same drift for all three), then summarised across rounds.
  const perRound = (a: string, b: string, key: 'cpuUsPerReq' | 'p99' | 'reqPerS') =>
    spread(of(a).map((m, i) => m[key] / (of(b)[i] as Measurement)[key]))
  const ratios = {
    bffToFloor: { cpu: perRound('bff', 'floor', 'cpuUsPerReq'), p99: perRound('bff', 'floor', 'p99'), throughput: perRound('bff', 'floor', 'reqPerS') },
    replyFromToFloor: { cpu: perRound('reply-from', 'floor', 'cpuUsPerReq'), p99: perRound('reply-from', 'floor', 'p99'), throughput: perRound('reply-from', 'floor', 'reqPerS') },
    bffToReplyFrom: { cpu: perRound('bff', 'reply-from', 'cpuUsPerReq'), p99: perRound('bff', 'reply-from', 'p99'), throughput: perRound('bff', 'reply-from', 'reqPerS') }
  }

  const bffProcesses = args.compare === undefined ? 1 : 2
  const bffRequests = of('bff').reduce((sum, m) => sum + m.requests, 0)
  const tokens = {
    coldStart: { connections, authenticateCalls: bffCounters.authenticate, unauthorized: bffCounters.unauthorized, requests: bffRequests },
    coldBurst: { connections: burstConnections, authenticateCalls: burstCounters.authenticate, unauthorized: burstCounters.unauthorized, requests: burst.requests.total, errors: failures(burst) },
    shortLifetime: {
      lifetimeS,
      seconds: refreshSeconds,
      requests: refresh.requests.total,
      errors: failures(refresh),
      authenticateCalls: refreshCounters.authenticate,
      unauthorized: refreshCounters.unauthorized,
      upstreamPatches: refreshCounters.patch_contact,
      p99: refresh.latency.p99,
      p999: refresh.latency.p99_9,
      p999ToSteady: refresh.latency.p99_9 / (summary.bff?.p999 ?? 1)
    }
  }

  const errors = measurements.reduce((sum, m) => sum + m.errors, 0) + tokens.coldBurst.errors + tokens.shortLifetime.errors
  const checks = {
    zeroErrors: errors === 0,
    // One per BFF process: with --compare, the before-BFF shares the upstream.
    oneAuthenticateOnColdStart: tokens.coldStart.authenticateCalls === bffProcesses && tokens.coldBurst.authenticateCalls === 1,
    refreshWithout401: tokens.shortLifetime.unauthorized === 0 && tokens.coldStart.unauthorized === 0 && tokens.coldBurst.unauthorized === 0,
    // At most `connections` requests are in flight when autocannon stops, twice: those of the
    // warm-up may land after the counters were reset, those of the run are not counted as done.
    noResentPatch: tokens.shortLifetime.upstreamPatches <= tokens.shortLifetime.requests + 2 * connections,
    cpuGoal: ratios.bffToFloor.cpu.median <= 1.25,
    p99Goal: ratios.bffToFloor.p99.median <= 1.3
  }

  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version
  }
  const versions = Object.fromEntries(['fastify', 'undici', '@fastify/reply-from', '@fastify/jwt', 'fast-jwt', 'pino', 'autocannon'].map((name) => [name, versionOf(name)]))
  const options = { connections, duration, warmup, rounds, quick }

  const rows = targets.map(({ name }) => {
    const s = summary[name]!
    return `| ${name} | ${fmt(s.reqPerS, 0)} | ${fmt(s.p50, 2)} | ${fmt(s.p99, 2)} | ${fmt(s.p999, 2)} | ${s.errors} | **${fmt(s.cpuUsPerReq)}** | ${fmt(s.rssMiB)} |`
  })
  const markdown = [
    `Run ${new Date().toISOString()} · ${machine.cores}× ${machine.cpu} · Node ${machine.node} · ${connections} connections · ${rounds} rounds × ${duration} s (after ${warmup} s warm-up each), interleaved`,
    '',
    '| target | req/s | p50 ms | p99 ms | p99.9 ms | errors | CPU µs/req | max RSS MiB |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    '| ratio (median of per-round ratios, min–max) | CPU/req | p99 | req/s |',
    '|---|---:|---:|---:|',
    `| bff ÷ floor | ${ratioText(ratios.bffToFloor.cpu)} | ${ratioText(ratios.bffToFloor.p99)} | ${ratioText(ratios.bffToFloor.throughput)} |`,
    `| reply-from ÷ floor | ${ratioText(ratios.replyFromToFloor.cpu)} | ${ratioText(ratios.replyFromToFloor.p99)} | ${ratioText(ratios.replyFromToFloor.throughput)} |`,
    `| bff ÷ reply-from | ${ratioText(ratios.bffToReplyFrom.cpu)} | ${ratioText(ratios.bffToReplyFrom.p99)} | ${ratioText(ratios.bffToReplyFrom.throughput)} |`,
    ...(args.compare === undefined
      ? []
      : [`| bff ÷ bff-before | ${ratioText(perRound('bff', 'bff-before', 'cpuUsPerReq'))} | ${ratioText(perRound('bff', 'bff-before', 'p99'))} | ${ratioText(perRound('bff', 'bff-before', 'reqPerS'))} |`,
          `| bff-before ÷ floor | ${ratioText(perRound('bff-before', 'floor', 'cpuUsPerReq'))} | ${ratioText(perRound('bff-before', 'floor', 'p99'))} | ${ratioText(perRound('bff-before', 'floor', 'reqPerS'))} |`]),
    '',
    '| token behaviour | result |',
    '|---|---|',
    `| cold start, ${connections} connections | ${tokens.coldStart.authenticateCalls} authenticate call${bffProcesses > 1 ? `s (one per BFF process, ${bffProcesses} processes)` : ''} for ${tokens.coldStart.requests} requests, ${tokens.coldStart.unauthorized} upstream 401s |`,
    `| cold start, ${burstConnections} connections at once | ${tokens.coldBurst.authenticateCalls} authenticate call for ${tokens.coldBurst.requests} requests, ${tokens.coldBurst.errors} errors |`,
    `| ${lifetimeS} s token lifetime for ${refreshSeconds} s | ${tokens.shortLifetime.authenticateCalls} authenticate calls, ${tokens.shortLifetime.unauthorized} upstream 401s, ${tokens.shortLifetime.upstreamPatches} upstream PATCHes for ${tokens.shortLifetime.requests} requests, p99 ${fmt(tokens.shortLifetime.p99, 2)} ms, p99.9 ${fmt(tokens.shortLifetime.p999, 2)} ms (${fmt(tokens.shortLifetime.p999ToSteady, 2)}× the steady p99.9) |`,
    '',
    `Goal CPU/req ≤ 1.25× floor: ${checks.cpuGoal ? 'met' : 'NOT met'} · p99 ≤ 1.3× floor: ${checks.p99Goal ? 'met' : 'NOT met'} · errors: ${errors}`
  ].join('\n')

  writeFileSync(join(outDir, 'latest.json'), JSON.stringify({ at: new Date().toISOString(), machine, versions, options, measurements, summary, ratios, tokens, checks }, null, 2) + '\n')
  writeFileSync(join(outDir, 'latest.md'), markdown + '\n')
  console.log(`\n${markdown}\n\nwritten: ${join(outDir, 'latest.json')}, ${join(outDir, 'latest.md')}`)

  const broken = Object.entries(checks).filter(([name, ok]) => !ok && name !== 'cpuGoal' && name !== 'p99Goal')
  if (broken.length > 0) {
    console.error(`bench: failed checks: ${broken.map(([name]) => name).join(', ')}`)
    process.exitCode = 1
  }
} finally {
  await stopAll()
}
