import t from 'tap'
import { SharedWindowCounter, WindowCounter } from '../../src/protection/rate-limit.ts'

t.test('counts hits per key within a window and starts a new window when it has passed', async (t) => {
  let now = 1_000
  const counter = new WindowCounter(60_000, 100, () => now)
  t.equal(counter.hit('a').count, 1)
  t.equal(counter.hit('a').count, 2)
  t.equal(counter.hit('b').count, 1, 'keys are counted apart')
  t.equal(counter.secondsLeft(counter.hit('a')), 60)
  now += 59_001
  t.equal(counter.hit('a').count, 4, 'still the same window 59 s later')
  t.equal(counter.secondsLeft(counter.hit('a')), 1, 'never less than one second')
  now += 1_000
  const fresh = counter.hit('a')
  t.equal(fresh.count, 1, 'a new window once the old one has ended')
  t.equal(fresh.resetAt, now + 60_000)
})

t.test('stays within its capacity by dropping the window that started first', async (t) => {
  let now = 0
  const counter = new WindowCounter(60_000, 3, () => now)
  for (const key of ['a', 'b', 'c']) {
    counter.hit(key)
    now += 10
  }
  counter.hit('a') // a repeat hit does not make "a" younger: its window still started first
  counter.hit('d')
  t.equal(counter.size, 3)
  t.equal(counter.hit('a').count, 1, '"a" was dropped and starts over')
  t.equal(counter.size, 3)
  t.equal(counter.hit('c').count, 2, '"c" was kept')
  for (let i = 0; i < 10_000; i++) counter.hit(`k${i}`)
  t.equal(counter.size, 3, 'a flood of keys never grows it')
})

/** A stand-in for the shared connection: INCRBY answers from a map, or every exec fails. */
function fakeRedis () {
  const totals = new Map<string, number>()
  const state = { up: true, failing: false, execs: 0 }
  const redis = {
    get up () { return state.up },
    key: (name: string) => `p:${name}`,
    client: {
      pipeline () {
        const queued: Array<() => [Error | null, unknown]> = []
        const pipeline = {
          incrby (key: string, by: number) {
            queued.push(() => {
              totals.set(key, (totals.get(key) ?? 0) + by)
              return [null, totals.get(key)]
            })
            return pipeline
          },
          pexpireat () { queued.push(() => [null, 1]); return pipeline },
          async exec () {
            state.execs++
            if (state.failing) throw new Error('connection is closed')
            return queued.map((command) => command())
          }
        }
        return pipeline
      }
    }
  }
  return { redis: redis as unknown as ConstructorParameters<typeof SharedWindowCounter>[0], totals, state }
}

t.test('a shared counter answers every hit at once and learns the fleet total at each sync', async (t) => {
  const now = 120_000
  const { redis, totals, state } = fakeRedis()
  const counter = new SharedWindowCounter(redis, { windowMs: 60_000, syncMs: 60_000, now: () => now })
  t.teardown(() => counter.close())
  t.equal(counter.hit('sub:a').count, 1)
  t.equal(counter.hit('sub:a').resetAt, 180_000, 'windows are aligned to the clock, the same on every instance')
  const [key] = [...totals.keys()]
  t.equal(key, undefined, 'nothing is sent per hit')
  await counter.sync()
  t.equal(state.execs, 1, 'one pipeline for all keys')
  const name = [...totals.keys()][0] as string
  t.notMatch(name, /sub:a/, 'the key reaches Redis as a hash')
  totals.set(name, 10) // other instances' hits
  counter.hit('sub:a')
  await counter.sync()
  t.equal(counter.hit('sub:a').count, 12, 'the fleet\'s hits count, plus this one')
})

t.test('a shared counter keeps the hits a failed sync could not add, and adds them next time', async (t) => {
  const { redis, totals, state } = fakeRedis()
  const counter = new SharedWindowCounter(redis, { syncMs: 60_000, now: () => 0 })
  t.teardown(() => counter.close())
  counter.hit('k')
  counter.hit('k')
  state.failing = true
  await counter.sync()
  state.failing = false
  state.up = false
  await counter.sync()
  t.equal(state.execs, 1, 'no attempt while Redis is down')
  t.equal(counter.hit('k').count, 3, 'counted alone meanwhile')
  state.up = true
  await counter.sync()
  t.same([...totals.values()].at(-1), 3, 'every hit reached Redis once it answered')
})

t.test('a shared counter stays within its capacity', async (t) => {
  const { redis } = fakeRedis()
  const counter = new SharedWindowCounter(redis, { capacity: 3, syncMs: 60_000, now: () => 0 })
  t.teardown(() => counter.close())
  for (let i = 0; i < 100; i++) counter.hit(`k${i}`)
  t.equal(counter.size, 3)
  t.equal(counter.capacity, 3)
})
