// `npm run bench:icount`: instructions per request under valgrind's callgrind, the floor,
// reply-from and the BFF (and, with --before, an earlier build) each on its own simulated CPU.
// CPU time per request moves with whatever else a shared machine does and with the host's
// cores; the count of instructions a request executes does not, so two builds can be compared
// at well under 1 % where `ab.ts` resolves about 5 %. What it cannot see: system time (the
// kernel's share, about a quarter of the floor's CPU), and cycles per instruction (cache misses,
// branch prediction), which is why it complements `npm run bench` rather than replacing it.
//
// Each target runs under callgrind (user-space instructions of every thread, counted apart) and is
// driven alone at a fixed number of connections: a warm-up long enough for V8 to finish tiering
// up under valgrind (its compilers run about 50 times slower there, so this takes tens of
// thousands of requests), then counters zeroed, a window of requests, a dump; several windows,
// whose spread says whether the count has settled. An idle window (no requests, after a pause)
// prices what the process does per second rather than per request (timers, samplers), which
// valgrind's slowness would otherwise charge to each request many times over; it is subtracted.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { LIST_LOAD, PATCH_LOAD, ROOT, benchSession, buildProduction, median, startBff, startProxy, startUpstream, upstreamToken, type Launch, type Load, type Proc } from './lib.ts'

const { values: args } = parseArgs({
  options: {
    // An earlier build (a folder holding dist/server.js), counted as a fourth target, bff-before.
    before: { type: 'string' },
    targets: { type: 'string', default: 'floor,reply-from,bff' },
    warmup: { type: 'string', default: '60000' },
    requests: { type: 'string', default: '5000' },
    windows: { type: 'string', default: '3' },
    idle: { type: 'string', default: '20' },
    settle: { type: 'string', default: '30' },
    connections: { type: 'string', default: '1' },
    load: { type: 'string', default: 'patch' },
    // N > 0: each target's N costliest functions (self instructions per request, last window),
    // JavaScript named from V8's perf map (node --perf-basic-prof), and the BFF's excess over
    // the floor by package.
    functions: { type: 'string', default: '0' },
    dir: { type: 'string', default: join(ROOT, 'bench', 'results', 'icount') },
    'skip-build': { type: 'boolean', default: false }
  }
})

if (spawnSync('valgrind', ['--version']).error !== undefined) {
  console.error('bench:icount needs valgrind (Debian: apt-get install -y valgrind)')
  process.exit(2)
}
if (args.load !== 'patch' && args.load !== 'list') throw new Error('--load must be patch or list')
const load: Load = args.load === 'list' ? LIST_LOAD : PATCH_LOAD
const [warmup, requests, windows, idleS, settleS, connections] = [args.warmup, args.requests, args.windows, args.idle, args.settle, args.connections].map(Number) as [number, number, number, number, number, number]
const targets = [...args.targets.split(','), ...(args.before === undefined ? [] : ['bff-before'])]
for (const target of targets) if (!['floor', 'reply-from', 'bff', 'bff-before'].includes(target)) throw new Error(`unknown target ${target}`)

const dir = args.dir
const functions = Number(args.functions)
rmSync(dir, { recursive: true, force: true })
mkdirSync(dir, { recursive: true })
if (!args['skip-build']) buildProduction()

interface Count { total: number, main: number }
interface TargetResult { target: string, windows: Count[], perRequest: Count, byFunction: Map<string, number>, refused: number, runtime: number }

/** The instructions of one dump, every thread's file summed (thread 1 is the main thread). */
function dumpCount (out: string, dump: number): Count {
  const files = readdirSync(dir).filter((name) => name.startsWith(`${out}.${dump}-`)).sort()
  if (files.length === 0) throw new Error(`no callgrind dump ${dump} for ${out} in ${dir}`)
  const counts = files.map((name) => Number(/^summary:\s*(\d+)/m.exec(readFileSync(join(dir, name), 'utf8'))?.[1] ?? Number.NaN))
  return { total: counts.reduce((a, b) => a + b, 0), main: counts[0] as number }
}

async function count (target: string, upstreamUrl: string, upstreamBearer: string): Promise<TargetResult> {
  const out = `cg.${target}`
  const vgdbPrefix = join(dir, `vgdb.${target}`)
  const launch: Launch = {
    wrapper: ['valgrind', '--tool=callgrind', '--separate-threads=yes', '--smc-check=all-non-file', `--vgdb-prefix=${vgdbPrefix}`, `--callgrind-out-file=${join(dir, out)}`],
    startupMs: 600_000
  }
  const log = join(dir, `${target}.log`)
  // Under valgrind a request takes milliseconds and a compilation can hold the loop for seconds;
  // the delay guard (still sampling: its cost per second is what the idle window prices) would
  // shed load that is not there.
  const slow = { MAX_EVENT_LOOP_DELAY_MS: '0' }
  const nodeArgs = functions > 0 ? ['--perf-basic-prof'] : []
  const bff = target === 'bff' || target === 'bff-before'
  const proc: Proc = bff
    ? await startBff(upstreamUrl, log, slow, target === 'bff' ? 'dist/server.js' : join(args.before as string, 'dist', 'server.js'), nodeArgs, 'file', launch)
    : await startProxy(target as 'floor' | 'reply-from', upstreamUrl, log, nodeArgs, launch)
  const pid = String(proc.child.pid)
  // callgrind_control finds the process by the vgdb prefix; the names under it also carry USER and HOST, so it gets the target's environment.
  const control = (action: string) => execFileSync('callgrind_control', [`--vgdb-prefix=${vgdbPrefix}`, action, pid], { env: { PATH: process.env.PATH ?? '', ...(bff ? { HOST: '127.0.0.1' } : {}) }, stdio: 'ignore' })
  const authorization = `Bearer ${bff ? benchSession() : upstreamBearer}`
  const headers = load.body === undefined ? { authorization } : { authorization, 'content-type': 'application/json' }
  const pool = new Pool(proc.url, { connections })
  const drive = async (total: number): Promise<number> => {
    let sent = 0
    let refused = 0
    await Promise.all(Array.from({ length: connections }, async () => {
      while (sent++ < total) {
        const answer = await pool.request({ method: load.method, path: load.path, headers, ...(load.body === undefined ? {} : { body: load.body }) })
        await answer.body.dump()
        if (answer.statusCode < 200 || answer.statusCode > 299) refused++
      }
    }))
    return refused
  }
  let dumps = 0
  try {
    await drive(warmup)
    const counted: Count[] = []
    const seconds: number[] = []
    let refused = 0
    for (let w = 0; w < windows; w++) {
      control('--zero')
      const started = process.hrtime.bigint()
      // An answer that is not 2xx took another path: counted, reported, never hidden.
      refused += await drive(requests)
      seconds.push(Number(process.hrtime.bigint() - started) / 1e9)
      control('--dump')
      counted.push(dumpCount(out, ++dumps))
    }
    const runtime = runtimePerRequest(join(dir, `${out}.${dumps}-01`), requests)
    const byFunction = functions > 0 ? selfByFunction(join(dir, `${out}.${dumps}-01`), `/tmp/perf-${pid}.map`, requests) : new Map<string, number>()
    // The idle window starts after a pause: when requests stop, V8's memory reducer runs full
    // collections for some seconds, work that belongs to no second of steady load.
    await sleep(settleS * 1000)
    control('--zero')
    const idleStart = process.hrtime.bigint()
    await sleep(idleS * 1000)
    control('--dump')
    const idleSeconds = Number(process.hrtime.bigint() - idleStart) / 1e9
    const idle = dumpCount(out, ++dumps)
    const idlePerS = { total: idle.total / idleSeconds, main: idle.main / idleSeconds }
    const perWindow = counted.map((c, i) => ({
      total: (c.total - idlePerS.total * (seconds[i] as number)) / requests,
      main: (c.main - idlePerS.main * (seconds[i] as number)) / requests
    }))
    const result: TargetResult = {
      target,
      windows: perWindow,
      perRequest: { total: median(perWindow.map((c) => c.total)), main: median(perWindow.map((c) => c.main)) },
      byFunction,
      refused,
      runtime
    }
    // The raw counts, so that a reading can be redone another way.
    writeFileSync(join(dir, `${target}.json`), JSON.stringify({ target, requests, connections, warmup, windows: counted.map((c, i) => ({ ...c, seconds: seconds[i] })), idle: { ...idle, seconds: idleSeconds }, refused }, null, 2) + '\n')
    const k = (n: number) => `${(n / 1000).toFixed(1)}k`
    console.log(`${target}: ${perWindow.map((c) => k(c.total)).join(' · ')} instructions per request (all threads, idle ${k(idlePerS.total)}/s subtracted), main thread ${perWindow.map((c) => k(c.main)).join(' · ')}${refused > 0 ? `; ${refused} answers not 2xx (see ${log})` : ''}`)
    return result
  } finally {
    await pool.close()
    proc.child.kill('SIGKILL')
    // V8 writes its perf map to /tmp; kept beside the dumps (for callgrind_annotate --tree=caller by hand), not left in /tmp.
    if (existsSync(`/tmp/perf-${pid}.map`)) {
      copyFileSync(`/tmp/perf-${pid}.map`, join(dir, `${target}.perf.map`))
      rmSync(`/tmp/perf-${pid}.map`)
    }
  }
}

/**
 * What the main thread spent inside V8's runtime functions, entered from JavaScript (the
 * inclusive cost of the CEntry builtins that call them, not those of C++ builtins such as
 * JSON.stringify: property definitions, map transitions and other slow paths). V8's inline
 * caches and tiering depend on timing, and valgrind's slowness can leave one process with a
 * call site on a slow path that the same build at native speed does not take (seen: Node's
 * nextTick defining its object literal's symbol keys through the runtime, ≈ 40k instructions a
 * request in one BFF process and none in another); a count with a large share here should be
 * checked with a sampling profiler at native speed before it is believed.
 */
function runtimePerRequest (dump: string, requests: number): number {
  let sum = 0
  for (const { ir, name } of annotate(dump, true).rows) if (/Builtins_CEntry_\w*NoBuiltinExit\b/.test(name)) sum += ir
  return sum / requests
}

/**
 * callgrind_annotate's table of one dump: instructions and `file:function [object]` per row,
 * self cost or (inclusive) with callees, and the dump's total.
 */
function annotate (dump: string, inclusive: boolean): { total: number, rows: Array<{ ir: number, name: string }> } {
  const text = execFileSync('callgrind_annotate', [`--inclusive=${inclusive ? 'yes' : 'no'}`, '--threshold=100', dump], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
  const rows: Array<{ ir: number, name: string }> = []
  let total = 0
  let table = false
  for (const line of text.split('\n')) {
    const match = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line)
    if (match === null) { table ||= line.includes('file:function'); continue }
    const ir = Number((match[1] as string).replaceAll(',', ''))
    if (match[2] === 'PROGRAM TOTALS') total = ir
    else if (table) rows.push({ ir, name: match[2] as string })
  }
  return { total, rows }
}

/** V8's perf map (`start size name` per line, later lines for the same start winning), sorted for lookup. */
function perfMap (file: string): { starts: number[], ends: number[], names: string[] } {
  const byStart = new Map<number, { end: number, name: string }>()
  if (existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const match = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line)
      if (match === null) continue
      const start = Number.parseInt(match[1] as string, 16)
      byStart.set(start, { end: start + Number.parseInt(match[2] as string, 16), name: match[3] as string })
    }
  }
  const starts = [...byStart.keys()].sort((a, b) => a - b)
  return { starts, ends: starts.map((start) => byStart.get(start)!.end), names: starts.map((start) => byStart.get(start)!.name) }
}

/** Where a JavaScript function lives: its package, or emnify-bff for this build, node core, or V8. */
function packageOf (name: string): string {
  const module = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(name)
  if (module !== null) return module[1] as string
  if (name.includes('/dist/')) return 'emnify-bff'
  if (name.includes('/bench/')) return 'bench target'
  if (/ node:/.test(name)) return 'node core (JS)'
  if (name.startsWith('JS:') || name.startsWith('LazyCompile') || name.startsWith('Function')) return 'other JS'
  return 'V8 and native'
}

/**
 * Self instructions per request by function, from one thread's dump: callgrind_annotate names
 * what has symbols (node's C++, V8's builtins, libc); JIT code, which has none, is looked up in
 * V8's perf map and named `<function> <file>:<line>`.
 */
function selfByFunction (dump: string, mapFile: string, requests: number): Map<string, number> {
  const { total, rows } = annotate(dump, false)
  const map = perfMap(mapFile)
  const lookup = (address: number): string | undefined => {
    let [lo, hi] = [0, map.starts.length - 1]
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if ((map.starts[mid] as number) <= address) lo = mid + 1
      else hi = mid - 1
    }
    return hi >= 0 && address < (map.ends[hi] as number) ? map.names[hi] : undefined
  }
  const costs = new Map<string, number>()
  for (const row of rows) {
    // The frames on the stack when the counters were zeroed (main, the event loop's caller) come
    // out of a mid-run dump carrying the whole window's count; they are not self cost.
    if (row.ir >= total * 0.999) continue
    const ir = row.ir / requests
    let name = row.name.replace(/\s*\[[^\]]*\]$/, '')
    const jit = /^\?\?\?:0x([0-9a-f]+)/.exec(name)
    if (jit !== null) name = lookup(Number.parseInt(jit[1] as string, 16)) ?? 'JIT code not in the perf map'
    else name = name.replace(/^[^:]*:(?=[A-Za-z_(~])/, '')
    costs.set(name, (costs.get(name) ?? 0) + ir)
  }
  return costs
}

function functionReport (result: TargetResult, floor: TargetResult | undefined): void {
  const rows = [...result.byFunction].sort((a, b) => b[1] - a[1])
  const total = rows.reduce((sum, [, ir]) => sum + ir, 0)
  const lines = [`${result.target}: self instructions per request by function (main thread, last window; ${(total / 1000).toFixed(1)}k in all)`]
  for (const [name, ir] of rows.slice(0, functions)) lines.push(`${ir.toFixed(0).padStart(8)}  ${name}`)
  const byPackage = (costs: Map<string, number>) => {
    const sums = new Map<string, number>()
    for (const [name, ir] of costs) sums.set(packageOf(name), (sums.get(packageOf(name)) ?? 0) + ir)
    return sums
  }
  const mine = byPackage(result.byFunction)
  const theirs = floor === undefined || floor === result ? new Map<string, number>() : byPackage(floor.byFunction)
  lines.push('', `by package${theirs.size > 0 ? ', and the excess over the floor' : ''}:`)
  for (const name of [...new Set([...mine.keys(), ...theirs.keys()])].sort((a, b) => ((mine.get(b) ?? 0) - (theirs.get(b) ?? 0)) - ((mine.get(a) ?? 0) - (theirs.get(a) ?? 0)))) {
    const [m, t] = [mine.get(name) ?? 0, theirs.get(name) ?? 0]
    lines.push(`${m.toFixed(0).padStart(8)}${theirs.size > 0 ? ` ${(m - t >= 0 ? '+' : '') + (m - t).toFixed(0)}`.padStart(9) : ''}  ${name}`)
  }
  writeFileSync(join(dir, `${result.target}.functions.txt`), lines.join('\n') + '\n')
  console.log(`\n${lines.slice(0, 1).join('')} → ${join(dir, `${result.target}.functions.txt`)}`)
  console.log(lines.slice(lines.indexOf('') + 1).join('\n'))
}

const upstream = await startUpstream(join(dir, 'upstream.log'))
try {
  const bearer = await upstreamToken(upstream.url)
  console.log(`${targets.join(', ')} under callgrind, ${load.method} at ${connections} connection(s): ${warmup} requests of warm-up, then ${windows} windows of ${requests}`)
  const results = await Promise.all(targets.map((target) => count(target, upstream.url, bearer)))
  const floor = results.find((r) => r.target === 'floor')
  console.log('\n| target | instructions per request (median of windows) | spread of windows | ÷ floor | main thread alone | ÷ floor | in V8\'s runtime functions, entered from JS (last window) | answers not 2xx |')
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of results) {
    const totals = r.windows.map((c) => c.total)
    const spread = (Math.max(...totals) - Math.min(...totals)) / r.perRequest.total
    const ratio = (of: keyof Count) => floor === undefined ? '—' : `${(r.perRequest[of] / floor.perRequest[of]).toFixed(3)}×`
    console.log(`| ${r.target} | ${(r.perRequest.total / 1000).toFixed(1)}k | ${(spread * 100).toFixed(1)} % | ${ratio('total')} | ${(r.perRequest.main / 1000).toFixed(1)}k | ${ratio('main')} | ${(r.runtime / 1000).toFixed(1)}k | ${r.refused} |`)
  }
  if (functions > 0) for (const r of results) functionReport(r, floor)
  const bff = results.find((r) => r.target === 'bff')
  const before = results.find((r) => r.target === 'bff-before')
  if (bff !== undefined && before !== undefined) console.log(`\nbff ÷ bff-before: ${(bff.perRequest.total / before.perRequest.total).toFixed(3)}× (main thread ${(bff.perRequest.main / before.perRequest.main).toFixed(3)}×)`)
} finally {
  await upstream.stop()
}
