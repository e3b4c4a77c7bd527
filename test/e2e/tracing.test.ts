// Developer ergonomics (§8): W3C traceparent propagation and the upstream time and outcome on the
// access line.
import t from 'tap'
import { CONTACT, startStack, type Stack } from '../helpers/stack.ts'

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
const ROUTE = '/api/v1/organisation/:org_id/contact/:contact_id'

function accessLine (stack: Stack, requestId: string): Record<string, unknown> | undefined {
  return stack.logs.records().find((r) => r.msg === 'request completed' && r.request_id === requestId)
}

t.test('a valid traceparent is forwarded on the PATCH and the read-back, never on authenticate', async (t) => {
  const stack = await startStack(t)
  const reply = await stack.patch(CONTACT, { city: 'Berlin' }, { traceparent: VALID, prefer: 'return=representation', 'x-request-id': 'trace-1' })
  t.equal(reply.status, 200)
  t.equal(stack.sim.state.callsFor('patch_contact')[0]?.headers.traceparent, VALID, 'on the PATCH')
  t.equal(stack.sim.state.callsFor('get_contact')[0]?.headers.traceparent, VALID, 'on the read-back GET')
  t.equal(stack.sim.state.callsFor('authenticate')[0]?.headers.traceparent, undefined, 'not on authenticate')
  t.equal(accessLine(stack, 'trace-1')?.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736', 'the trace id is on the access line')
})

t.test('an invalid traceparent is dropped, not forwarded and not an error', async (t) => {
  const stack = await startStack(t)
  const invalid = [
    'garbage',
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // unknown version
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // all-zero trace id
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // all-zero parent id
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', // upper case
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7'
  ]
  for (const [i, traceparent] of invalid.entries()) {
    const reply = await stack.patch(CONTACT, { city: `City ${i}` }, { traceparent, 'x-request-id': `bad-${i}` })
    t.equal(reply.status, 204, `${JSON.stringify(traceparent)} does not fail the request`)
    t.equal(accessLine(stack, `bad-${i}`)?.trace_id, undefined, 'no trace id logged')
  }
  const calls = stack.sim.state.callsFor('patch_contact')
  t.equal(calls.length, invalid.length)
  t.ok(calls.every((call) => !('traceparent' in call.headers)), 'none was forwarded')
})

t.test('the access line carries request_id, the route template, upstream time, calls and outcome', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '1000' } })
  await stack.patch(CONTACT, { city: 'Berlin' }, { 'x-request-id': 'ok-1', prefer: 'return=representation' })
  stack.sim.setFault({ operation: 'patch_contact', kind: 'delay', ms: 3_000, times: 1 })
  await stack.patch(CONTACT, { city: 'Berlin' }, { 'x-request-id': 'slow-1' })
  stack.sim.setFault({ operation: 'patch_contact', kind: 'status', status: 500, times: 1 })
  await stack.patch(CONTACT, { city: 'Berlin' }, { 'x-request-id': 'failed-1' })
  await stack.patch(CONTACT, { colour: 'red' }, { 'x-request-id': 'invalid-1' })
  await stack.call('GET', '/health/live', { headers: { 'x-request-id': 'health-1' } })

  const ok = accessLine(stack, 'ok-1')
  t.match(ok, { request_id: 'ok-1', route: ROUTE, status: 200, upstream_calls: 2, upstream_outcome: '2xx' })
  t.ok(typeof ok?.upstream_ms === 'number' && ok.upstream_ms > 0 && ok.upstream_ms <= (ok.ms as number), 'upstream time within the request time')
  t.match(accessLine(stack, 'slow-1'), { status: 504, upstream_calls: 1, upstream_outcome: 'timeout' })
  t.ok((accessLine(stack, 'slow-1')?.upstream_ms as number) >= 950, 'the time waited for emnify')
  t.match(accessLine(stack, 'failed-1'), { status: 502, upstream_calls: 1, upstream_outcome: '5xx' })
  const invalid = accessLine(stack, 'invalid-1')
  t.match(invalid, { status: 400, route: ROUTE })
  t.equal(invalid?.upstream_ms, undefined, 'no upstream fields when nothing was called')
  t.equal(accessLine(stack, 'health-1')?.upstream_calls, undefined)
})
