import t from 'tap'
import { Metrics } from '../../src/metrics/metrics.ts'
import { createUpstreamBudget } from '../../src/upstream/budget.ts'
import { sample } from '../e2e/ops-helpers.ts'
import { fakeClock, track } from './budget-helpers.ts'

t.test('the budget reports its tokens, the waits of calls that had to wait, and its refusals by reason', async (t) => {
  const metrics = new Metrics()
  const before = await metrics.exposition()
  t.equal(sample(before, 'emnify_bff_upstream_budget_tokens'), 0, 'no budget watched yet: 0')
  for (const reason of ['timeout', 'queue_full', 'paused']) {
    t.equal(sample(before, 'emnify_bff_upstream_budget_rejected_total', { reason }), 0, `${reason} counted from the first scrape`)
  }

  const clock = fakeClock()
  // One token a second, burst 3.
  const budget = createUpstreamBudget({
    perFiveMinutes: 300, burst: 3, queueTimeoutMs: 1500, maxWaitingPerSub: 2, now: clock.now, timers: clock.timers, observer: metrics.budgetObserver
  })
  metrics.watchBudget(budget)
  t.equal(sample(await metrics.exposition(), 'emnify_bff_upstream_budget_tokens'), 3, 'a full bucket')
  budget.take('alice')
  budget.take('alice')
  budget.take('alice')
  t.equal(sample(await metrics.exposition(), 'emnify_bff_upstream_budget_tokens'), 0, 'read at scrape time')
  const waits = [track(budget.take('alice')), track(budget.take('alice')), track(budget.take('alice'))]
  await clock.advance(1000)
  await clock.advance(1000)
  t.same(waits.map((w) => w.state), ['granted', 'rejected', 'rejected'])
  budget.pause(10_000)
  track(budget.take('bob'))
  await clock.advance(0)

  const text = await metrics.exposition()
  t.equal(sample(text, 'emnify_bff_upstream_budget_wait_seconds_count'), 1, 'only the call that waited and was granted')
  t.equal(sample(text, 'emnify_bff_upstream_budget_wait_seconds_sum'), 1)
  t.equal(sample(text, 'emnify_bff_upstream_budget_rejected_total', { reason: 'queue_full' }), 1)
  t.equal(sample(text, 'emnify_bff_upstream_budget_rejected_total', { reason: 'timeout' }), 1)
  t.equal(sample(text, 'emnify_bff_upstream_budget_rejected_total', { reason: 'paused' }), 1)
  budget.close()
})
