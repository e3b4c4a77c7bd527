import t from 'tap'
import { Redis } from 'ioredis'
import { redisMissing, startRedis } from '../helpers/redis.ts'
import { createUpstreamBudget, type UpstreamBudget, type UpstreamBudgetOptions } from '../../src/upstream/budget.ts'
import { createRedisBudgetStore } from '../../src/upstream/budget-redis.ts'
import { flush, track } from './budget-helpers.ts'

t.test('an answer the lease script cannot have given is a store failure, not a grant', async (t) => {
  const answers: unknown[] = [['1', '2'], [-1, 0, 0, 0, 1], 'OK']
  const fake = {
    status: 'ready',
    defineCommand (name: string) {
      (fake as unknown as Record<string, unknown>)[name] = async () => answers.shift()
    }
  }
  const store = createRedisBudgetStore(fake as unknown as Redis, { prefix: 'x:' })
  t.equal(store.reachable, true)
  const request = { want: 1, capacity: 1, perFiveMinutes: 1, pauseMs: 0, instance: 'i' }
  await t.rejects(store.lease(request), /unexpected answer/)
  await t.rejects(store.lease(request), /unexpected answer/)
  await t.rejects(store.lease(request), /unexpected answer/)
  fake.status = 'reconnecting'
  t.equal(store.reachable, false, 'reachable follows the client')
})

const missing = redisMissing()
if (missing !== undefined) {
  t.comment(missing)
  t.pass('skipped: no redis-server')
} else {
  const redis = await startRedis()
  t.teardown(() => redis.close())

  /** An instance's client as the fleet runs it: no offline queue, short timeouts, quick reconnects. */
  function client (): Redis {
    const connection = new Redis(redis.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 500,
      retryStrategy: () => 50
    })
    connection.on('error', () => {})
    t.teardown(() => { connection.disconnect() })
    return connection
  }

  async function ready (connection: Redis): Promise<void> {
    if (connection.status !== 'ready') await new Promise((resolve) => connection.once('ready', resolve))
  }

  let prefixes = 0
  function budgets (count: number, options: Partial<UpstreamBudgetOptions> & { perFiveMinutes: number, burst: number }) {
    const prefix = `test${++prefixes}:`
    return Promise.all(Array.from({ length: count }, async () => {
      const connection = client()
      await ready(connection)
      const budget = createUpstreamBudget({ queueTimeoutMs: 300, heartbeatMs: 50, store: createRedisBudgetStore(connection, { prefix }), ...options })
      t.teardown(() => budget.close())
      return { budget, connection }
    }))
  }

  async function until (condition: () => boolean, what: string, ms = 8000): Promise<void> {
    const deadline = Date.now() + ms
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  async function settle (budget: UpstreamBudget, sub: string, calls: number) {
    const outcomes = Array.from({ length: calls }, () => track(budget.take(sub)))
    await until(() => outcomes.every((o) => o.state !== 'waiting'), 'every call settled')
    return outcomes.filter((o) => o.state === 'granted').length
  }

  t.test('two instances on one Redis share one bucket: together they spend its burst once', async (t) => {
    // 3 per 5 minutes: nothing refills while the test runs.
    const [one, two] = await budgets(2, { perFiveMinutes: 3, burst: 10, maxWaitingPerSub: 20 })
    const [a, b] = await Promise.all([settle(one!.budget, 'alice', 10), settle(two!.budget, 'bob', 10)])
    t.equal(a + b, 10, `the burst of 10, split ${a} + ${b}`)
    await until(() => one!.budget.snapshot().instances === 2, 'both instances are counted')
    t.equal(one!.budget.snapshot().mode, 'shared')
    t.equal(two!.budget.snapshot().tokens, 0)
  })

  t.test('two instances share the rate: a second instance adds no capacity', async (t) => {
    // 6000 per 5 minutes = 20 a second; burst 5.
    const [one, two] = await budgets(2, { perFiveMinutes: 6000, burst: 5, queueTimeoutMs: 1000, maxWaitingPerSub: 100 })
    const started = Date.now()
    const [a, b] = await Promise.all([settle(one!.budget, 'alice', 40), settle(two!.budget, 'bob', 40)])
    const seconds = (Date.now() - started) / 1000
    t.ok(a + b <= 5 + Math.ceil(20 * seconds) + 2, `${a + b} granted in ${seconds.toFixed(2)} s: burst + rate (+ the two instances' leases ahead)`)
    t.ok(a > 0 && b > 0, 'both instances were served')
  })

  t.test('an emnify 429 seen by one instance pauses the other', async (t) => {
    const [one, two] = await budgets(2, { perFiveMinutes: 6000, burst: 20 })
    one!.budget.pause(3000)
    await until(() => two!.budget.snapshot().pausedForMs > 2000, 'the other instance sees the pause')
    const refused = track(two!.budget.take('bob'))
    await until(() => refused.state !== 'waiting', 'refused')
    t.equal(refused.error?.code, 'UPSTREAM_BUDGET_EXHAUSTED', 'refused at once: the pause outlasts the queue timeout')
  })

  t.test('while Redis is stopped each instance spends its own share, and it returns to the shared bucket when Redis is back', async (t) => {
    const transitions: boolean[] = []
    const [one, two] = await budgets(2, { perFiveMinutes: 3, burst: 10, maxWaitingPerSub: 20, observer: { shared: (up) => { transitions.push(up) } } })
    await until(() => one!.budget.snapshot().instances === 2, 'both instances are counted')
    await redis.stop()
    await until(() => one!.connection.status !== 'ready', 'the client noticed')
    const served = await settle(one!.budget, 'alice', 10)
    t.equal(one!.budget.snapshot().mode, 'fallback')
    t.ok(served >= 5 && served <= 6, `its half of the burst (5), plus a leased token at most (${served})`)
    t.same(transitions.slice(0, 1), [false])

    await redis.start()
    await until(() => one!.budget.snapshot().mode === 'shared' && two!.budget.snapshot().mode === 'shared', 'both are back on the shared bucket')
    t.equal(transitions.at(-1), true)
    // A restarted Redis is empty: the bucket starts full again and is shared as before.
    const [a, b] = await Promise.all([settle(one!.budget, 'alice', 10), settle(two!.budget, 'bob', 10)])
    t.ok(a + b >= 8 && a + b <= 10, `shared again: ${a} + ${b} of the burst of 10 (a lease ahead may be left unspent)`)
    await flush()
  })

  t.test('the bucket keys expire once they say nothing an absent key would not', async (t) => {
    const [one] = await budgets(1, { perFiveMinutes: 300_000, burst: 2 })
    await settle(one!.budget, 'alice', 2)
    const keys = await one!.connection.keys(`test${prefixes}:*`)
    t.same(keys.sort(), [`test${prefixes}:{upstream-budget}`, `test${prefixes}:{upstream-budget}:instances`])
    const ttl = await one!.connection.pttl(`test${prefixes}:{upstream-budget}`)
    t.ok(ttl > 0 && ttl <= 1100, `the bucket expires once it could have refilled (${ttl} ms)`)
    t.ok(await one!.connection.pttl(`test${prefixes}:{upstream-budget}:instances`) > 0, 'the instance list expires too')
  })
}
