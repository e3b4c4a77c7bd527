// `node bench/ab.ts --a <dir> [--b <dir>]`: one lever at a time. Two builds of the BFF (each a
// folder holding dist/server.js; B defaults to this checkout's dist) and the floor, loaded at
// the same moment by one autocannon each, for many short rounds: on a shared machine, whatever
// else runs slows all three alike within a round, so the per-round ratio of CPU per request
// holds where the absolute figures swing. This is how each row of BENCHMARKS.md's "what each
// change bought" table was measured.
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startRedis, type RunningRedis } from '../test/helpers/redis.ts'
import { LIST_LOAD, PATCH_LOAD, ROOT, benchSession, driveTogether, median, startBff, startProxy, startUpstream, upstreamToken, type Proc } from './lib.ts'

const { values: args } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string', default: ROOT },
    connections: { type: 'string', default: '25' },
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '12' },
    load: { type: 'string', default: 'patch' },
    // B in fleet mode (REDIS_URL on a private redis-server): with --a and --b the same build, what fleet mode costs.
    'fleet-b': { type: 'boolean', default: false },
    // Both in fleet mode, on one redis-server under separate key prefixes: a fleet-only lever.
    fleet: { type: 'boolean', default: false }
  }
})
if (args.a === undefined) throw new Error('--a <folder with dist/server.js> is required')
const load = args.load === 'list' ? LIST_LOAD : PATCH_LOAD
const [connections, duration, warmup, rounds] = [args.connections, args.duration, args.warmup, args.rounds].map(Number) as [number, number, number, number]

const dir = join(ROOT, 'bench', 'results')
const procs: Proc[] = []
let redis: RunningRedis | undefined
const stopAll = async () => {
  await Promise.all(procs.splice(0).map((proc) => proc.stop()))
  await redis?.close()
}
process.once('SIGINT', () => { stopAll().then(() => process.exit(130)) })
try {
  const upstream = await startUpstream(join(dir, 'ab-upstream.log'))
  procs.push(upstream)
  const token = await upstreamToken(upstream.url)
  const floor = await startProxy('floor', upstream.url, join(dir, 'ab-floor.log'))
  procs.push(floor)
  if (args['fleet-b'] || args.fleet) redis = await startRedis()
  const fleetEnv = (prefix: string): Record<string, string> => redis === undefined ? {} : { REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix }
  const a = await startBff(upstream.url, join(dir, 'ab-a.log'), args.fleet ? fleetEnv('ab-a:') : {}, join(args.a, 'dist', 'server.js'))
  procs.push(a)
  const b = await startBff(upstream.url, join(dir, 'ab-b.log'), fleetEnv('ab-b:'), join(args.b, 'dist', 'server.js'))
  procs.push(b)
  const session = `Bearer ${benchSession()}`
  const targets = [{ name: 'floor', proc: floor, authorization: `Bearer ${token}` }, { name: 'A', proc: a, authorization: session }, { name: 'B', proc: b, authorization: session }]
  const cpu: Record<string, number[]> = { floor: [], A: [], B: [] }
  await driveTogether(targets, warmup, connections, load)
  for (let round = 1; round <= rounds; round++) {
    const runs = await driveTogether(targets, duration, connections, load)
    const line = targets.map((target, i) => {
      const { result, cpuUsPerReq } = runs[i]!
      cpu[target.name]?.push(cpuUsPerReq)
      return `${target.name} ${(result.requests.total / result.duration).toFixed(0)} req/s ${cpuUsPerReq.toFixed(1)} µs/req${result.errors + result.non2xx > 0 ? ` ERRORS ${result.errors + result.non2xx}` : ''}`
    })
    console.log(`round ${round}: ${line.join(' · ')}`)
  }
  const ratio = (x: string, y: string) => (cpu[x] as number[]).map((v, i) => v / (cpu[y] as number[])[i]!)
  const text = (values: number[]) => `${median(values).toFixed(3)} (${Math.min(...values).toFixed(3)}–${Math.max(...values).toFixed(3)})`
  console.log(`\nCPU µs/req median: floor ${median(cpu.floor!).toFixed(1)}, A ${median(cpu.A!).toFixed(1)}, B ${median(cpu.B!).toFixed(1)}`)
  console.log(`A ÷ floor ${text(ratio('A', 'floor'))} · B ÷ floor ${text(ratio('B', 'floor'))} · B ÷ A ${text(ratio('B', 'A'))}`)
} finally {
  await stopAll()
}
