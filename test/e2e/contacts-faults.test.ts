// End to end over real HTTP: the fault matrix for every contact and country operation, with exact
// upstream call counts — a GET is re-sent once after a reset or 502/503, POST/PATCH/DELETE never
// once they may have arrived; every operation is re-sent once after a connect failure (nothing sent).
import t, { type Test } from 'tap'
import type { Fault, FaultKind } from '../../simulator/simulator.ts'
import { startStack, type Stack } from '../helpers/stack.ts'
import { assertProblem, countingServer, failOnStrayErrors, upstreamAttempts } from './upstream-helpers.ts'
import { assertCalls, LIST, metric, ONE, send } from './contacts-helpers.ts'

failOnStrayErrors(t)

type Op = 'list_contacts' | 'get_contact' | 'list_countries' | 'create_contact' | 'patch_contact' | 'delete_contact'

interface Target {
  op: Op
  method: string
  path: string
  body?: unknown
  /** A GET, which may be re-sent once after a reset or a 502/503. */
  idempotent: boolean
  success: number
  /** Calls a success makes besides the operation itself (the create's read-back). */
  alsoOnSuccess?: Partial<Record<Op, number>>
}

const TARGETS: Target[] = [
  { op: 'list_contacts', method: 'GET', path: LIST, idempotent: true, success: 200 },
  { op: 'get_contact', method: 'GET', path: ONE, idempotent: true, success: 200 },
  { op: 'list_countries', method: 'GET', path: '/api/v1/country', idempotent: true, success: 200 },
  { op: 'create_contact', method: 'POST', path: LIST, body: { type: { id: 2 }, name: 'Fault Matrix' }, idempotent: false, success: 201, alsoOnSuccess: { get_contact: 1 } },
  { op: 'patch_contact', method: 'PATCH', path: ONE, body: { city: 'Fault City' }, idempotent: false, success: 204 },
  { op: 'delete_contact', method: 'DELETE', path: `${LIST}/2`, idempotent: false, success: 204 }
]

// No kept answers: every request is an upstream call.
const NO_CACHE = { CONTACT_CACHE_TTL_MS: '0', COUNTRY_CACHE_TTL_S: '0' }

function request (stack: Stack, target: Target) {
  return send(stack, target.method, target.path, { body: target.body })
}

interface Case {
  name: string
  faults: FaultKind[]
  /** What a GET gets, and how many times it is sent. */
  get: { status: number, code?: string, calls: number }
  /** What a POST/PATCH/DELETE gets, and how many times it is sent. */
  write: { status: number, code?: string, calls: number }
  authenticate?: number
  env?: Record<string, string>
  retryAfter?: boolean
}

const CASES: Case[] = [
  { name: 'a reset before the answer', faults: [{ kind: 'reset_before_headers' }], get: { status: 0, calls: 2 }, write: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 } },
  { name: 'an upstream 502', faults: [{ kind: 'status', status: 502 }], get: { status: 0, calls: 2 }, write: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 } },
  { name: 'an upstream 503', faults: [{ kind: 'status', status: 503 }], get: { status: 0, calls: 2 }, write: { status: 503, code: 'UPSTREAM_UNAVAILABLE', calls: 1 }, retryAfter: true },
  { name: 'two upstream 502s', faults: [{ kind: 'status', status: 502 }, { kind: 'status', status: 502 }], get: { status: 502, code: 'UPSTREAM_ERROR', calls: 2 }, write: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 } },
  { name: 'two upstream 503s', faults: [{ kind: 'status', status: 503 }, { kind: 'status', status: 503 }], get: { status: 503, code: 'UPSTREAM_UNAVAILABLE', calls: 2 }, write: { status: 503, code: 'UPSTREAM_UNAVAILABLE', calls: 1 }, retryAfter: true },
  { name: 'a reset, then a 502', faults: [{ kind: 'reset_before_headers' }, { kind: 'status', status: 502 }], get: { status: 502, code: 'UPSTREAM_ERROR', calls: 2 }, write: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 } },
  { name: 'an upstream 500', faults: [{ kind: 'status', status: 500 }], get: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 }, write: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 } },
  { name: 'an upstream 504', faults: [{ kind: 'status', status: 504 }], get: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 }, write: { status: 502, code: 'UPSTREAM_ERROR', calls: 1 } },
  { name: 'no answer in time', faults: [{ kind: 'hang' }], get: { status: 504, code: 'UPSTREAM_TIMEOUT', calls: 1 }, write: { status: 504, code: 'UPSTREAM_TIMEOUT', calls: 1 }, env: { UPSTREAM_TIMEOUT_MS: '300' } },
  { name: 'an upstream 429', faults: [{ kind: 'status', status: 429 }], get: { status: 503, code: 'UPSTREAM_RATE_LIMITED', calls: 1 }, write: { status: 503, code: 'UPSTREAM_RATE_LIMITED', calls: 1 }, retryAfter: true },
  { name: 'an upstream 403', faults: [{ kind: 'status', status: 403 }], get: { status: 502, code: 'UPSTREAM_FORBIDDEN', calls: 1 }, write: { status: 502, code: 'UPSTREAM_FORBIDDEN', calls: 1 } },
  { name: 'one upstream 401', faults: [{ kind: 'unauthorized_empty' }], get: { status: 0, calls: 2 }, write: { status: 0, calls: 2 }, authenticate: 2 },
  { name: 'a gateway 401, twice', faults: [{ kind: 'gateway_unauthorized' }, { kind: 'gateway_unauthorized' }], get: { status: 502, code: 'UPSTREAM_AUTH_FAILED', calls: 2 }, write: { status: 502, code: 'UPSTREAM_AUTH_FAILED', calls: 2 }, authenticate: 2 }
]

/** The case's answer and its exact upstream calls, on a stack whose token is already warm. */
async function runCase (t: Test, stack: Stack, target: Target, c: Case, warm: boolean): Promise<void> {
  const expected = target.idempotent ? c.get : c.write
  const succeeds = expected.status === 0
  stack.sim.reset()
  stack.sim.state.restoreData()
  stack.sim.setFault(c.faults.map((fault) => ({ ...fault, operation: target.op, times: 1 }) as Fault))
  const reply = await request(stack, target)
  if (succeeds) {
    t.equal(reply.status, target.success, `${target.success} after the retry`)
  } else {
    assertProblem(t, stack, reply, { status: expected.status, code: expected.code as string, path: target.path, retryAfter: c.retryAfter })
  }
  const authenticate = (c.authenticate ?? 1) - (warm ? 1 : 0)
  await assertCalls(t, stack, { authenticate, [target.op]: expected.calls, ...(succeeds ? target.alsoOnSuccess : {}) })
}

const caseName = (target: Target, c: Case) => {
  const expected = target.idempotent ? c.get : c.write
  return `${c.name} → ${expected.status === 0 ? target.success : `${expected.status} ${expected.code}`}, ${expected.calls} ${target.op} call(s) upstream`
}

for (const target of TARGETS) {
  t.test(`${target.op}: the fault matrix`, async (t) => {
    // One stack for the cases that leave the token usable; the one that ends in UPSTREAM_AUTH_FAILED gets its own.
    const stack = await startStack(t, { env: { ...NO_CACHE, UPSTREAM_TIMEOUT_MS: '1000' } })
    t.equal((await send(stack, 'GET', `${LIST}/3`)).status, 200, 'a token first')
    for (const c of CASES) {
      const alone = c.get.code === 'UPSTREAM_AUTH_FAILED'
      await t.test(caseName(target, c), async (t) => {
        if (!alone) return runCase(t, stack, target, c, true)
        const own = await startStack(t, { env: NO_CACHE })
        return runCase(t, own, target, c, false)
      })
    }

    await t.test('a reset after the change was applied is never re-sent', { skip: target.idempotent ? 'a GET changes nothing' : false }, async (t) => {
      stack.sim.reset()
      stack.sim.state.restoreData()
      stack.sim.setFault({ operation: target.op, kind: 'reset_before_headers', afterCommit: true, times: 1 })
      assertProblem(t, stack, await request(stack, target), { status: 502, code: 'UPSTREAM_ERROR', path: target.path })
      await assertCalls(t, stack, { [target.op]: 1 })
    })

    await t.test('a redirect is not followed → 502 UPSTREAM_ERROR', async (t) => {
      stack.sim.reset()
      stack.sim.state.restoreData()
      const elsewhere = await countingServer(t)
      stack.sim.setFault({ operation: target.op, kind: 'redirect', status: 307, location: `${elsewhere.url}/steal`, times: 1 })
      assertProblem(t, stack, await request(stack, target), { status: 502, code: 'UPSTREAM_ERROR', path: target.path }, [elsewhere.url])
      t.equal(elsewhere.hits(), 0, 'nothing reached the redirect target')
      await assertCalls(t, stack, { [target.op]: 1 })
    })

    await t.test('a connect failure is re-sent once (nothing was sent), then 503 UPSTREAM_UNAVAILABLE', async (t) => {
      await stack.sim.close()
      // Give the BFF's pool a moment to notice its kept-alive socket is gone, so the call meets a closed port.
      await new Promise((resolve) => setTimeout(resolve, 100))
      const reply = await request(stack, target)
      assertProblem(t, stack, reply, { status: 503, code: 'UPSTREAM_UNAVAILABLE', path: target.path, retryAfter: true })
      t.equal(await upstreamAttempts(stack, target.op, 'unreachable'), 2, 'two attempts, both refused at connect')
    })
  })
}

t.test('a delete that emnify applied before its answer was lost leaves the contact deleted and is not sent again', async (t) => {
  const stack = await startStack(t)
  stack.sim.setFault({ operation: 'delete_contact', kind: 'status', status: 502, afterCommit: true, times: 1 })
  assertProblem(t, stack, await send(stack, 'DELETE', `${LIST}/2`), { status: 502, code: 'UPSTREAM_ERROR', path: `${LIST}/2` })
  t.notOk(stack.sim.state.hasContact(1, 2), 'deleted at emnify')
  await assertCalls(t, stack, { authenticate: 1, delete_contact: 1 })
})

t.test('after a 401 storm, a replacement token that served a call gets one re-auth on a later 401, every time', async (t) => {
  const stack = await startStack(t, { env: NO_CACHE })
  t.equal((await send(stack, 'GET', LIST)).status, 200)
  for (let round = 1; round <= 3; round++) {
    // emnify revokes the token in use; many frontends hit it at once.
    stack.sim.revokeAllTokens()
    const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => send(stack, 'GET', i % 2 === 0 ? LIST : ONE)))
    t.same(replies.map((reply) => reply.status), Array(6).fill(200), `round ${round}: every request served after one re-auth`)
    t.equal(stack.sim.state.counters.authenticate, 1 + round, `round ${round}: exactly one authenticate for the storm`)
  }
})

t.test('a revocation right after the replacement token served a write also earns a re-auth', async (t) => {
  const stack = await startStack(t, { env: NO_CACHE })
  stack.sim.revokeAllTokens()
  t.equal((await send(stack, 'GET', ONE)).status, 200)
  stack.sim.revokeAllTokens()
  t.equal((await stack.patch(ONE, { city: 'Revoked Twice' })).status, 204, 'the PATCH is retried once after the re-auth')
  stack.sim.revokeAllTokens()
  t.equal((await send(stack, 'DELETE', `${LIST}/3`)).status, 204)
  t.equal(stack.sim.state.counters.authenticate, 3)
  t.equal(stack.sim.state.counters.patch_contact, 2, 'the refused PATCH and its retry')
})

t.test('every upstream call spends one budget token, a retry included; a kept answer spends none', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_BUDGET_PER_5MIN: '1', UPSTREAM_BUDGET_BURST: '10', CONTACT_CACHE_TTL_MS: '600000' } })
  const tokens = async () => Math.floor(await metric(stack, 'emnify_bff_upstream_budget_tokens'))
  t.equal(await tokens(), 10, 'a full bucket')
  stack.sim.setFault({ operation: 'list_contacts', kind: 'status', status: 502, times: 1 })
  t.equal((await send(stack, 'GET', LIST)).status, 200)
  t.equal(await tokens(), 8, 'the call and its re-send (authenticate is not counted)')
  t.equal((await send(stack, 'GET', LIST)).status, 200)
  t.equal(await tokens(), 8, 'a cache hit is free')
})
