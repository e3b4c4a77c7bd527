import t from 'tap'
import { startStack } from '../helpers/stack.ts'
import { sample } from '../e2e/ops-helpers.ts'

const CONTACT = '/api/v1/organisation/1/contact/1'
// One token per 5 minutes and no waiting: the second call that needs emnify finds none.
const ONE_TOKEN = { UPSTREAM_BUDGET_PER_5MIN: '1', UPSTREAM_BUDGET_BURST: '1', UPSTREAM_QUEUE_TIMEOUT_MS: '0' }

t.test('with the budget spent, a change is refused with 503 UPSTREAM_BUDGET_EXHAUSTED and nothing reaches emnify', async (t) => {
  const stack = await startStack(t, { env: ONE_TOKEN })
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).status, 204)
  t.equal(stack.sim.state.counters.patch_contact, 1)
  const refused = await stack.patch(CONTACT, { city: 'Hamburg' })
  t.equal(refused.status, 503)
  t.equal(refused.json().code, 'UPSTREAM_BUDGET_EXHAUSTED')
  t.ok(Number(refused.headers['retry-after']) >= 1, 'with a Retry-After')
  t.equal(stack.sim.state.counters.patch_contact, 1, 'the second change was not sent')
  const metrics = await stack.call('GET', '/metrics')
  t.equal(sample(metrics.text, 'emnify_bff_upstream_budget_rejected_total', { reason: 'timeout' }), 1)
  t.equal(sample(metrics.text, 'emnify_bff_upstream_budget_tokens'), 0)
})

t.test('a cached read takes no token from the budget', async (t) => {
  const stack = await startStack(t, { env: { ...ONE_TOKEN, CONTACT_CACHE_TTL_MS: '60000' } })
  const auth = { authorization: `Bearer ${stack.token}` }
  t.equal((await stack.call('GET', CONTACT, { headers: auth })).status, 200, 'the first read spends the one token')
  for (let i = 0; i < 5; i++) t.equal((await stack.call('GET', CONTACT, { headers: auth })).status, 200, `read ${i + 2} comes from the cache`)
  t.equal(stack.sim.state.counters.get_contact, 1)
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' })).json().code, 'UPSTREAM_BUDGET_EXHAUSTED', 'and the budget really was spent')
})

t.test('after emnify answers 429, nothing is sent until its pause is over', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_BUDGET_PER_5MIN: '1800', UPSTREAM_BUDGET_BURST: '60', UPSTREAM_QUEUE_TIMEOUT_MS: '2000' } })
  stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 429, body: { error_code: 1105, error_token: 'TooManyRequests', message: 'Too many requests' }, times: 1 })
  const limited = await stack.patch(CONTACT, { city: 'Berlin' })
  t.equal(limited.json().code, 'UPSTREAM_RATE_LIMITED')
  const paused = await stack.patch(CONTACT, { city: 'Hamburg' })
  t.equal(paused.status, 503)
  t.equal(paused.json().code, 'UPSTREAM_BUDGET_EXHAUSTED', 'refused at once: the 5 s pause outlasts the 2 s wait')
  t.ok(Number(paused.headers['retry-after']) >= 4, 'Retry-After covers the pause')
  t.equal(stack.sim.state.counters.patch_contact, 1, 'emnify saw only the call it refused')
})
