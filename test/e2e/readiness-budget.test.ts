import t from 'tap'
import { startStack } from '../helpers/stack.ts'

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('readiness shows the upstream budget in its body, and stays 200 while the budget is spent', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_BUDGET_PER_5MIN: '30', UPSTREAM_BUDGET_BURST: '2', UPSTREAM_QUEUE_TIMEOUT_MS: '0', CONTACT_CACHE_TTL_MS: '0' } })
  const fresh = await stack.call('GET', '/health/ready')
  t.equal(fresh.status, 200)
  t.match(fresh.json(), { status: 'ready', upstream_budget: { mode: 'local', per_five_minutes: 30, capacity: 2, tokens: 2, waiting: 0, paused_for_ms: 0, instances: 1 } })

  // Two calls spend the burst; the third finds no token and is refused at once (no queue wait configured).
  for (const id of ['1', '2']) t.equal((await stack.call('GET', `/api/v1/organisation/1/contact/${id}`, { headers: bearer(stack.token) })).status, 200)
  const refused = await stack.call('GET', '/api/v1/organisation/1/contact/3', { headers: bearer(stack.token) })
  t.equal(refused.status, 503)
  t.equal(refused.json().code, 'UPSTREAM_BUDGET_EXHAUSTED')
  const spent = await stack.call('GET', '/health/ready')
  t.equal(spent.status, 200, 'an exhausted budget is information, not unreadiness')
  t.equal(spent.json().upstream_budget.tokens, 0)
})

t.test('with the budget off, readiness says unlimited', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_BUDGET_PER_5MIN: '0' } })
  t.match((await stack.call('GET', '/health/ready')).json(), { status: 'ready', upstream_budget: { mode: 'unlimited', per_five_minutes: 0 } })
})
