// `npm run bench:profile`: the production BFF under autocannon load with `node --cpu-prof`, then
// where its CPU time went: by package and by function (self time). The .cpuprofile file it
// writes opens in Chrome DevTools or speedscope as a flame graph.
import { readdirSync, readFileSync, rmSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startRedis } from '../test/helpers/redis.ts'
import { LIST_LOAD, PATCH_LOAD, ROOT, benchSession, buildProduction, drive, startBff, startProxy, startUpstream, upstreamToken } from './lib.ts'

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '10' },
    top: { type: 'string', default: '40' },
    // floor or reply-from profile the references the same way, for a side-by-side reading.
    target: { type: 'string', default: 'bff' },
    // patch (default) or list: the contact list read, which the BFF answers from its cache.
    load: { type: 'string', default: 'patch' },
    // The BFF in fleet mode: REDIS_URL on a private redis-server started here.
    fleet: { type: 'boolean', default: false },
    'skip-build': { type: 'boolean', default: false }
  }
})

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, hitCount?: number }
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[] }

const dir = join(ROOT, 'bench', 'results', 'profile')
rmSync(dir, { recursive: true, force: true })
mkdirSync(dir, { recursive: true })
if (!args['skip-build']) buildProduction()

const upstream = await startUpstream(join(dir, 'upstream.log'))
const target = args.target as string
if (target !== 'bff' && target !== 'floor' && target !== 'reply-from') throw new Error('--target must be bff, floor or reply-from')
const profiling = ['--cpu-prof', '--cpu-prof-dir', dir]
const log = join(dir, `${target}.log`)
const redis = args.fleet ? await startRedis() : undefined
const proc = target === 'bff'
  ? await startBff(upstream.url, log, redis === undefined ? {} : { REDIS_URL: redis.url }, 'dist/server.js', profiling)
  : await startProxy(target, upstream.url, log, profiling)
const authorization = `Bearer ${target === 'bff' ? benchSession() : await upstreamToken(upstream.url)}`
if (args.load !== 'patch' && args.load !== 'list') throw new Error('--load must be patch or list')
const requests = args.load === 'list' ? LIST_LOAD : PATCH_LOAD
const load = (seconds: number) => drive(proc.url, authorization, seconds, Number(args.connections), requests)
try {
  await load(3)
  const result = await load(Number(args.duration))
  console.log(`${result.requests.total} requests, ${Math.round(result.requests.total / result.duration)} req/s, p99 ${result.latency.p99} ms, errors ${result.errors + result.non2xx}`)
} finally {
  await proc.stop()
  await upstream.stop()
  await redis?.close()
}

const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'))
if (file === undefined) throw new Error('no .cpuprofile written')
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile
const usPerSample = (profile.endTime - profile.startTime) / profile.samples.length

function packageOf (url: string, name: string): string {
  if (name === '(garbage collector)') return 'gc'
  if (name === '(idle)' || name === '(program)' || name === '(root)') return name
  if (url === '') return name.startsWith('(') ? name : 'v8 / native'
  if (url.startsWith('node:')) return 'node core'
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (match !== null) return match[1] as string
  if (url.includes('/dist/')) return 'emnify-bff (dist)'
  return url
}

const byPackage = new Map<string, number>()
const byFunction = new Map<string, number>()
let busy = 0
for (const node of profile.nodes) {
  const hits = node.hitCount ?? 0
  if (hits === 0) continue
  const { functionName, url, lineNumber } = node.callFrame
  const pkg = packageOf(url, functionName)
  if (pkg === '(idle)') continue
  busy += hits
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits)
  const key = `${functionName || '(anonymous)'}  ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${lineNumber + 1}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + hits)
}
const show = (title: string, map: Map<string, number>, limit: number) => {
  console.log(`\n${title} (self time, share of busy CPU)`)
  for (const [name, hits] of [...map].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    console.log(`${(100 * hits / busy).toFixed(1).padStart(5)} %  ${(hits * usPerSample / 1000).toFixed(0).padStart(6)} ms  ${name}`)
  }
}
show('by package', byPackage, 25)
show('by function', byFunction, Number(args.top))
console.log(`\nflame graph: ${join(dir, file)} (Chrome DevTools → Performance, or speedscope)`)
