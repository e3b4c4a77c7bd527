import t from 'tap'
import { Problem } from '../../src/errors/problems.ts'
import { ClientGoneError } from '../../src/upstream/emnify-client.ts'
import { Value } from 'typebox/value'
import {
  BudgetStatusSchema, budgetStatus, createUpstreamBudget, describeBudget, TokenBucket,
  type BudgetRejection, type BudgetStore, type LeaseAnswer, type LeaseRequest, type UpstreamBudgetOptions
} from '../../src/upstream/budget.ts'
import { fakeClock, FakeInbound, flush, track, type FakeClock } from './budget-helpers.ts'

function budgetOn (clock: FakeClock, options: Partial<UpstreamBudgetOptions> & { perFiveMinutes: number, burst: number }) {
  const rejected: BudgetRejection[] = []
  const waited: number[] = []
  const budget = createUpstreamBudget({
    queueTimeoutMs: 2000,
    now: clock.now,
    timers: clock.timers,
    observer: { rejected: (reason) => rejected.push(reason), waited: (seconds) => waited.push(seconds) },
    ...options
  })
  return { budget, rejected, waited }
}

t.test('a burst goes out at once, then calls are refused until the bucket refills at its rate', async (t) => {
  const clock = fakeClock()
  // 300 per 5 minutes = one a second; no waiting, so every refusal is immediate.
  const { budget } = budgetOn(clock, { perFiveMinutes: 300, burst: 5, queueTimeoutMs: 0 })
  for (let i = 0; i < 5; i++) t.equal(budget.take('alice'), true, `call ${i + 1} of the burst`)
  const refused = track(budget.take('alice'))
  await flush()
  t.equal(refused.state, 'rejected', 'the sixth is refused')
  t.equal(refused.error?.code, 'UPSTREAM_BUDGET_EXHAUSTED')
  await clock.advance(999)
  t.equal(track(budget.take('alice')).state, 'waiting', 'not yet a token after 999 ms')
  await flush()
  await clock.advance(1)
  t.equal(budget.take('alice'), true, 'one token after one second')
  await clock.advance(60_000)
  t.equal(budget.snapshot().tokens, 5, 'a quiet minute fills it to its capacity, not beyond')
  t.same(budget.snapshot(), { tokens: 5, capacity: 5, perFiveMinutes: 300, waiting: 0, pausedForMs: 0, mode: 'local', instances: 1 })
})

t.test('over a long run no more than the burst plus the rate goes out, and waiting calls get every token', async (t) => {
  const clock = fakeClock()
  // 3000 per 5 minutes = 10 a second.
  const { budget, waited } = budgetOn(clock, { perFiveMinutes: 3000, burst: 10, queueTimeoutMs: 60_000, maxWaitingPerSub: 1000 })
  const calls = Array.from({ length: 200 }, (_, i) => track(budget.take(`user${i % 4}`)))
  await flush()
  const granted = () => calls.filter((c) => c.state === 'granted').length
  t.equal(granted(), 10, 'the burst at once')
  for (let second = 1; second <= 10; second++) {
    await clock.advance(1000)
    t.equal(granted(), 10 + 10 * second, `after ${second} s: burst + rate × time`)
  }
  t.equal(budget.snapshot().tokens, 0, 'none left over while calls wait')
  t.equal(waited.length, 100, 'each waited call reported its wait')
  t.equal(Math.max(...waited), 10, 'the last waited ten seconds')
  budget.close()
})

t.test('a modest session is served within a round while another floods the queue', async (t) => {
  const clock = fakeClock()
  // One token a second, so the order of grants is the order of service.
  const { budget } = budgetOn(clock, { perFiveMinutes: 300, burst: 1, queueTimeoutMs: 120_000, maxWaitingPerSub: 100 })
  t.equal(budget.take('runaway'), true)
  const flood = Array.from({ length: 60 }, () => track(budget.take('runaway')))
  await clock.advance(500)
  const alice = track(budget.take('alice'))
  const bob = track(budget.take('bob'))
  await clock.advance(3000)
  t.equal(alice.state, 'granted', 'alice waited behind 60 of the runaway\'s calls for at most one round')
  t.equal(bob.state, 'granted')
  t.equal(flood.filter((c) => c.state === 'granted').length, 1, 'the runaway got one token of the three')
  t.ok(alice.order < bob.order, 'subs are served in the order they began waiting')
  // alice keeps coming back: each call waits at most one token per other waiting sub.
  for (let i = 0; i < 5; i++) {
    const again = track(budget.take('alice'))
    await clock.advance(2000)
    t.equal(again.state, 'granted', `alice's call ${i + 2} was served within two tokens`)
  }
  t.equal(flood.filter((c) => c.state === 'granted').length, 6, 'the runaway had the rest')
  budget.close()
})

t.test('a call that finds no token within the queue timeout is refused with UPSTREAM_BUDGET_EXHAUSTED and a Retry-After', async (t) => {
  const clock = fakeClock()
  const { budget, rejected } = budgetOn(clock, { perFiveMinutes: 30, burst: 1, queueTimeoutMs: 2000 })
  t.equal(budget.take('alice'), true)
  const late = track(budget.take('alice'))
  await clock.advance(1999)
  t.equal(late.state, 'waiting', 'still waiting just before the timeout')
  await clock.advance(1)
  t.equal(late.state, 'rejected')
  t.ok(late.error instanceof Problem)
  t.equal(late.error?.code, 'UPSTREAM_BUDGET_EXHAUSTED')
  t.equal(late.error?.status, 503)
  t.equal(late.error?.retryAfter, 10, 'about when a token will be free (one per 10 s)')
  t.match(late.error?.message, /nothing was sent/)
  t.same(rejected, ['timeout'])
  t.equal(budget.snapshot().waiting, 0, 'its place is gone')
  t.equal(clock.pending, 0, 'no timer is left behind')
})

t.test('the queue is bounded per sub and in total; when full, the longest queue gives way to a newcomer', async (t) => {
  const clock = fakeClock()
  const { budget, rejected } = budgetOn(clock, { perFiveMinutes: 300, burst: 1, queueTimeoutMs: 10_000, maxWaiting: 4, maxWaitingPerSub: 3 })
  budget.take('runaway')
  const runaway = Array.from({ length: 3 }, () => track(budget.take('runaway')))
  const overSub = track(budget.take('runaway'))
  await flush()
  t.equal(overSub.state, 'rejected', 'a fourth call of one sub is refused at once')
  t.equal(overSub.error?.code, 'UPSTREAM_BUDGET_EXHAUSTED')
  t.match(overSub.error?.message, /too many requests are waiting/)
  const alice = track(budget.take('alice'))
  await flush()
  t.equal(budget.snapshot().waiting, 4, 'the queue is full')
  const bob = track(budget.take('bob'))
  await flush()
  t.equal(bob.state, 'waiting', 'bob gets a place although the queue was full')
  t.equal(runaway[2]?.state, 'rejected', 'the runaway\'s newest call gave its place up')
  t.equal(runaway[0]?.state, 'waiting', 'its older calls keep theirs')
  const carol = track(budget.take('carol'))
  await flush()
  t.equal(carol.state, 'waiting', 'the runaway still had the longest queue')
  const dave = track(budget.take('dave'))
  await flush()
  t.equal(dave.state, 'rejected', 'every queue is as short as a newcomer\'s would be: the newcomer is refused')
  t.equal(budget.snapshot().waiting, 4)
  t.same(rejected, ['queue_full', 'queue_full', 'queue_full', 'queue_full'])
  await clock.advance(4000)
  t.same([runaway[0]?.state, alice.state, bob.state, carol.state], ['granted', 'granted', 'granted', 'granted'])
  t.equal(clock.pending, 0)
})

t.test('by default one sub may have waiting only what the rate could serve it within the timeout', async (t) => {
  const clock = fakeClock()
  // 6 a second × 2 s = 12.
  const { budget } = budgetOn(clock, { perFiveMinutes: 1800, burst: 1 })
  budget.take('runaway')
  const calls = Array.from({ length: 20 }, () => track(budget.take('runaway')))
  await flush()
  t.equal(calls.filter((c) => c.state === 'waiting').length, 12)
  t.equal(calls.filter((c) => c.state === 'rejected').length, 8)
  budget.close()
})

t.test('a client that leaves while waiting gives its place up, and nothing of it is kept', async (t) => {
  const clock = fakeClock()
  const { budget } = budgetOn(clock, { perFiveMinutes: 300, burst: 1, queueTimeoutMs: 10_000 })
  budget.take('alice')
  const inbound = new FakeInbound()
  const gone = track(budget.take('alice', inbound))
  const next = track(budget.take('bob', new FakeInbound()))
  t.equal(inbound.listenerCount('close'), 1)
  inbound.leave()
  await flush()
  t.equal(gone.state, 'rejected')
  t.ok(gone.error instanceof ClientGoneError)
  t.equal(inbound.listenerCount('close'), 0, 'its listener is removed')
  t.equal(budget.snapshot().waiting, 1)
  await clock.advance(1000)
  t.equal(next.state, 'granted', 'the next caller has the token the leaver would have had')

  const stays = new FakeInbound()
  const served = track(budget.take('carol', stays))
  await clock.advance(1000)
  t.equal(served.state, 'granted')
  t.equal(stays.listenerCount('close'), 0, 'a granted call leaves no listener behind')

  const already = new FakeInbound()
  already.destroyed = true
  const refused = track(budget.take('dave', already))
  await flush()
  t.ok(refused.error instanceof ClientGoneError, 'a client already gone does not queue')
  t.equal(clock.pending, 0)
})

t.test('emnify\'s 429 empties the bucket and pauses spending; calls meanwhile wait or are refused at once', async (t) => {
  const clock = fakeClock()
  const { budget, rejected } = budgetOn(clock, { perFiveMinutes: 6000, burst: 50, queueTimeoutMs: 2000 })
  t.equal(budget.take('alice'), true)
  budget.pause(3000)
  t.equal(budget.snapshot().tokens, 0, 'the bucket is empty')
  t.equal(budget.snapshot().pausedForMs, 3000)
  const refused = track(budget.take('alice'))
  await flush()
  t.equal(refused.state, 'rejected', 'a pause longer than the queue timeout refuses at once')
  t.equal(refused.error?.retryAfter, 4, 'Retry-After covers the pause')
  t.same(rejected, ['paused'])
  await clock.advance(1500)
  const waits = track(budget.take('bob'))
  await clock.advance(1499)
  t.equal(waits.state, 'waiting', 'nothing is spent while paused')
  await clock.advance(51)
  t.equal(waits.state, 'granted', 'the first token after the pause (one per 50 ms)')
  t.equal(budget.snapshot().tokens, 0, 'refilling starts at the end of the pause, from empty')

  budget.pause(Number.NaN)
  t.equal(budget.snapshot().pausedForMs, 5000, 'no usable Retry-After: 5 s')
  budget.pause(1000)
  t.equal(budget.snapshot().pausedForMs, 5000, 'a shorter pause does not cut a longer one')
  budget.close()
})

t.test('a zero queue timeout refuses at once; a paused budget says why', async (t) => {
  const clock = fakeClock()
  const { budget, rejected } = budgetOn(clock, { perFiveMinutes: 300, burst: 1, queueTimeoutMs: 0 })
  budget.take('alice')
  budget.pause(500)
  const refused = track(budget.take('alice'))
  await flush()
  t.equal(refused.error?.code, 'UPSTREAM_BUDGET_EXHAUSTED')
  t.same(rejected, ['paused'])
})

t.test('a budget of 0 is unlimited: every call goes at once and nothing is counted', async (t) => {
  const budget = createUpstreamBudget({ perFiveMinutes: 0, burst: 1, queueTimeoutMs: 0 })
  for (let i = 0; i < 10_000; i++) if (budget.take('runaway') !== true) t.fail('refused')
  budget.pause(60_000)
  t.equal(budget.take('alice'), true, 'no pause either')
  t.same(budget.snapshot(), { tokens: 0, capacity: 0, perFiveMinutes: 0, waiting: 0, pausedForMs: 0, mode: 'unlimited', instances: 1 })
  t.equal(describeBudget(budget.snapshot()), 'unlimited')
  budget.close()
})

t.test('closing refuses every waiting call and leaves no timer', async (t) => {
  const clock = fakeClock()
  const { budget } = budgetOn(clock, { perFiveMinutes: 300, burst: 1, queueTimeoutMs: 10_000 })
  budget.take('alice')
  const waiting = [track(budget.take('alice')), track(budget.take('bob'))]
  budget.close()
  budget.close()
  await flush()
  t.same(waiting.map((w) => w.error?.code), ['UPSTREAM_BUDGET_EXHAUSTED', 'UPSTREAM_BUDGET_EXHAUSTED'])
  t.equal(clock.pending, 0)
  const after = track(budget.take('carol'))
  await flush()
  t.equal(after.state, 'rejected', 'nothing is queued after close')
  t.equal(describeBudget({ tokens: 0, capacity: 60, perFiveMinutes: 1800, waiting: 0, pausedForMs: 0, mode: 'local', instances: 1 }), '1800 per 5 min, burst 60')
  t.equal(describeBudget({ tokens: 0, capacity: 60, perFiveMinutes: 1800, waiting: 0, pausedForMs: 0, mode: 'shared', instances: 3 }), '1800 per 5 min, burst 60, shared by 3 instance(s)')
})

t.test('the readiness body shows the budget as it is now', async (t) => {
  const clock = fakeClock()
  const { budget } = budgetOn(clock, { perFiveMinutes: 1800, burst: 60 })
  budget.take('alice')
  budget.pause(1500)
  const status = budgetStatus(budget.snapshot())
  t.same(status, { mode: 'local', per_five_minutes: 1800, capacity: 60, tokens: 0, waiting: 0, paused_for_ms: 1500, instances: 1 })
  t.ok(Value.Check(BudgetStatusSchema, status), 'matches its schema')
  t.ok(Value.Check(BudgetStatusSchema, budgetStatus(createUpstreamBudget({ perFiveMinutes: 0, burst: 1, queueTimeoutMs: 0 }).snapshot())), 'unlimited too')
  budget.close()
})

t.test('a flood of subs and calls leaves nothing behind once it has passed', async (t) => {
  const clock = fakeClock()
  const { budget } = budgetOn(clock, { perFiveMinutes: 1800, burst: 10, queueTimeoutMs: 500, maxWaiting: 200 })
  const calls = []
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 300; i++) calls.push(track(budget.take(`sub${round * 300 + i}`, new FakeInbound())))
    t.ok(budget.snapshot().waiting <= 200, 'never more waiting than the bound')
    await clock.advance(100)
  }
  await clock.advance(1000)
  t.equal(budget.snapshot().waiting, 0)
  t.equal(calls.filter((c) => c.state === 'waiting').length, 0, 'every call was settled')
  t.equal(clock.pending, 0, 'no timer is left')
  t.equal(budget.take('late'), true, 'and a token is free for the next caller')
})

t.test('the bucket counts whole tokens at fractional rates', async (t) => {
  // 100 per 5 minutes: one every 3 seconds.
  const bucket = new TokenBucket(100, 2, 0)
  t.equal(bucket.tryTake(0), true)
  t.equal(bucket.tryTake(0), true)
  t.equal(bucket.tryTake(0), false)
  t.equal(bucket.msUntilNext(0), 3000)
  t.equal(bucket.tryTake(2999), false)
  t.equal(bucket.tryTake(3000), true)
  t.equal(bucket.tokens(100_000), 2)
  bucket.drain(100_000)
  t.equal(bucket.tokens(100_000), 0)
})

/** The fleet's bucket in memory, with the Redis script's arithmetic, and switches to make it fail. */
class MemoryStore implements BudgetStore {
  reachable = true
  hang = false
  fail = false
  leases: LeaseRequest[] = []
  readonly #bucket: TokenBucket
  readonly #now: () => number
  instances = 1
  constructor (clock: FakeClock, perFiveMinutes: number, burst: number) {
    this.#now = clock.now
    this.#bucket = new TokenBucket(perFiveMinutes, burst, clock.now())
  }

  async lease (request: LeaseRequest): Promise<LeaseAnswer> {
    this.leases.push(request)
    if (this.hang) return await new Promise<never>(() => {})
    if (this.fail) throw new Error('connection refused')
    const now = this.#now()
    if (request.pauseMs > 0) this.#bucket.pause(request.pauseMs, now)
    let granted = 0
    while (granted < request.want && this.#bucket.tryTake(now)) granted++
    const tokens = this.#bucket.tokens(now)
    return { granted, tokens, waitMs: tokens > 0 ? 0 : this.#bucket.msUntilNext(now), pausedForMs: this.#bucket.pausedFor(now), instances: this.instances }
  }
}

t.test('in a fleet, tokens are leased ahead so most calls take one without waiting for the store', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore(clock, 3000, 20)
  const { budget } = budgetOn(clock, { perFiveMinutes: 3000, burst: 20, store, leaseAhead: 3, heartbeatMs: 1000 })
  const first = track(budget.take('alice'))
  await flush()
  t.equal(first.state, 'granted', 'the first call waited for the first lease')
  let immediate = 0
  for (let i = 0; i < 10; i++) {
    if (budget.take('alice') === true) immediate++
    await flush()
  }
  t.equal(immediate, 10, 'later calls found a leased token')
  t.ok(store.leases.every((l) => l.want <= 20), 'a lease never asks for more than the burst')
  t.equal(budget.snapshot().mode, 'shared')
  budget.close()
  t.equal(clock.pending, 0, 'closing stops the heartbeat')
})

t.test('in a fleet, the lease is topped up once half of it is spent, not after every call', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore(clock, 3_000_000, 1000)
  const { budget } = budgetOn(clock, { perFiveMinutes: 3_000_000, burst: 1000, store, leaseAhead: 100, heartbeatMs: 60_000 })
  await flush()
  t.equal(store.leases.length, 1, 'one lease at start')
  for (let i = 0; i < 49; i++) t.equal(budget.take('alice'), true, `call ${i + 1} takes a leased token`)
  await flush()
  t.equal(store.leases.length, 1, 'no lease while more than half is left')
  t.equal(budget.take('alice'), true)
  await flush()
  t.equal(store.leases.length, 2, 'the 50th call tops it up')
  t.equal(store.leases[1]?.want, 50, 'by what was spent')
  for (let i = 0; i < 200; i++) {
    t.equal(budget.take('alice'), true)
    if (i % 10 === 0) await flush()
  }
  await flush()
  t.ok(store.leases.length <= 2 + 200 / 40, `a few leases for 200 calls (${store.leases.length})`)
  budget.close()
})

t.test('in a fleet, waiting calls are served as the shared bucket refills, without a lease storm', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore(clock, 300, 2)
  const { budget } = budgetOn(clock, { perFiveMinutes: 300, burst: 2, store, queueTimeoutMs: 10_000, maxWaitingPerSub: 20, heartbeatMs: 60_000 })
  await flush()
  const calls = Array.from({ length: 6 }, () => track(budget.take('alice')))
  await flush()
  t.equal(calls.filter((c) => c.state === 'granted').length, 2, 'the shared burst')
  const leasesBefore = store.leases.length
  await clock.advance(4000)
  t.equal(calls.filter((c) => c.state === 'granted').length, 6, 'then one a second')
  t.ok(store.leases.length - leasesBefore <= 8, `about one lease per token while short (${store.leases.length - leasesBefore})`)
  budget.close()
})

t.test('in a fleet, a 429 pauses every instance through the shared bucket', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore(clock, 6000, 10)
  const one = budgetOn(clock, { perFiveMinutes: 6000, burst: 10, store, heartbeatMs: 100 }).budget
  const two = budgetOn(clock, { perFiveMinutes: 6000, burst: 10, store, heartbeatMs: 100 }).budget
  await flush()
  one.pause(3000)
  t.equal(one.snapshot().pausedForMs, 3000)
  await flush()
  t.equal(store.leases.some((l) => l.pauseMs === 3000), true, 'the pause went to the shared bucket')
  await clock.advance(200)
  t.ok(two.snapshot().pausedForMs > 2500, 'the other instance learnt of it at its next report')
  const refused = track(two.take('bob'))
  await flush()
  t.equal(refused.error?.code, 'UPSTREAM_BUDGET_EXHAUSTED')
  await clock.advance(3000)
  const later = track(two.take('bob'))
  await clock.advance(100)
  t.equal(later.state, 'granted', 'spending resumes after the pause')
  one.close()
  two.close()
})

t.test('in a fleet, an unreachable store makes each instance spend its own share, and the store is used again once it answers', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore(clock, 3000, 20)
  store.instances = 2
  const transitions: boolean[] = []
  const observer = { shared: (up: boolean) => { transitions.push(up) } }
  const { budget } = budgetOn(clock, { perFiveMinutes: 3000, burst: 20, store, heartbeatMs: 1000, queueTimeoutMs: 0, observer })
  await flush()
  t.equal(budget.snapshot().instances, 2)
  store.fail = true
  // The pool runs dry, the next lease fails: the instance carries on with half the budget.
  const results = []
  for (let i = 0; i < 30; i++) {
    results.push(track(budget.take('alice')))
    await flush()
  }
  t.equal(budget.snapshot().mode, 'fallback')
  t.same(transitions, [false])
  const served = results.filter((r) => r.state === 'granted').length
  t.ok(served >= 10 && served <= 10 + 3, `its share of the burst, 10, plus what it had leased (${served})`)
  t.equal(budget.snapshot().tokens, 0)
  await clock.advance(200)
  t.equal(budget.snapshot().tokens, 1, 'its share refills at half the rate (5 a second)')

  store.fail = false
  store.reachable = false
  await clock.advance(1000)
  t.equal(budget.snapshot().mode, 'fallback', 'a store that says it is down is not even tried')
  store.reachable = true
  await clock.advance(1000)
  t.equal(budget.snapshot().mode, 'shared', 'the next probe found it again')
  t.same(transitions, [false, true])
  budget.close()
})

t.test('in a fleet, a store that hangs counts as unreachable after the store timeout', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore(clock, 3000, 20)
  store.hang = true
  const { budget } = budgetOn(clock, { perFiveMinutes: 3000, burst: 20, store, storeTimeoutMs: 300, queueTimeoutMs: 2000 })
  const call = track(budget.take('alice'))
  await clock.advance(299)
  t.equal(call.state, 'waiting')
  await clock.advance(1)
  t.equal(call.state, 'granted', 'served from the local share once the store timed out')
  t.equal(budget.snapshot().mode, 'fallback')
  budget.close()
  t.equal(clock.pending, 0)
})

t.test('in a fleet, a pause made while the store is unreachable holds locally', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore(clock, 3000, 20)
  store.reachable = false
  const { budget } = budgetOn(clock, { perFiveMinutes: 3000, burst: 20, store, queueTimeoutMs: 0 })
  await flush()
  t.equal(budget.snapshot().mode, 'fallback')
  t.equal(budget.take('alice'), true)
  budget.pause(2000)
  const refused = track(budget.take('alice'))
  await flush()
  t.equal(refused.state, 'rejected')
  t.equal(budget.snapshot().pausedForMs, 2000)
  budget.close()
})
