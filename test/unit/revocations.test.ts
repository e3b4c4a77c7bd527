import t from 'tap'
import { CLOCK_TOLERANCE_MS, type SessionClaims } from '../../src/session/claims.ts'
import { Revocations } from '../../src/session/revocations.ts'

const START = 1_700_000_000_000
const START_S = START / 1000

/** A controllable clock in milliseconds. */
function clock (start = START) {
  const state = { now: start }
  return { now: () => state.now, advance: (ms: number) => { state.now += ms }, state }
}

function session (overrides: Partial<SessionClaims> = {}): SessionClaims {
  return { sub: 'alice', orgs: [1], iat: START_S, exp: START_S + 600, iss: 'emnify-bff', aud: 'emnify-bff', jti: 'jti-1', ...overrides }
}

t.test('a revoked session stays revoked while it could still be accepted, and the entry goes after that', async (t) => {
  const c = clock()
  const revocations = new Revocations({ now: c.now })
  const claims = session({ exp: START_S + 600 })
  revocations.revoke(claims, 'token-1')
  t.equal(revocations.has(claims, 'token-1'), true, 'revoked at once')

  c.advance(600_000)
  t.equal(revocations.has(claims, 'token-1'), true, 'still revoked at exp')
  // Verification accepts a token up to the clock tolerance after exp; revocation must last as long.
  c.advance(CLOCK_TOLERANCE_MS)
  t.equal(revocations.has(claims, 'token-1'), true, 'still revoked up to the last instant the clock tolerance accepts the token')

  c.advance(1)
  t.equal(revocations.has(claims, 'token-1'), false, 'no longer listed once the token can never be accepted again')
  c.advance(60_000)
  revocations.revoke(session({ jti: 'later', exp: Math.floor(c.now() / 1000) + 600 }), 'token-2')
  t.equal(revocations.size, 1, 'the expired entry was pruned; only the new one is kept')
})

t.test('revoking by jti covers any token carrying that jti, and no other', async (t) => {
  const revocations = new Revocations({ now: clock().now })
  revocations.revoke(session({ jti: 'a' }), 'token-a')
  t.equal(revocations.has(session({ jti: 'a' }), 'token-a'), true)
  t.equal(revocations.has(session({ jti: 'a' }), 'another-encoding-of-a'), true, 'keyed by jti, not by token text')
  t.equal(revocations.has(session({ jti: 'b' }), 'token-b'), false, 'another session is unaffected')
  t.equal(revocations.has(session({ jti: undefined }), 'token-a'), false, 'a token without jti is not matched by jti entries')
})

t.test('a session without jti is revoked by a hash of its token', async (t) => {
  const revocations = new Revocations({ now: clock().now })
  const external = session({ jti: undefined })
  revocations.revoke(external, 'external-token-1')
  t.equal(revocations.has(external, 'external-token-1'), true, 'the same token is revoked')
  t.equal(revocations.has(external, 'external-token-2'), false, 'another jti-less token with equal claims is not')
  t.equal(revocations.has(session({ jti: 'jti-1' }), 'external-token-1'), false, 'a session with a jti is looked up by jti')
  t.equal(revocations.size, 1)
})

t.test('revoking an already expired session stores nothing', async (t) => {
  const c = clock()
  const revocations = new Revocations({ now: c.now })
  c.advance(601_000 + CLOCK_TOLERANCE_MS)
  revocations.revoke(session({ exp: START_S + 600 }), 'old')
  t.equal(revocations.size, 0)
})

t.test('revoking the same session twice keeps one entry', async (t) => {
  const revocations = new Revocations({ now: clock().now })
  revocations.revoke(session(), 't')
  revocations.revoke(session(), 't')
  revocations.revoke(session({ jti: undefined }), 'x')
  revocations.revoke(session({ jti: undefined }), 'x')
  t.equal(revocations.size, 2)
})

t.test('the denylist never grows past max, however many sessions are revoked', async (t) => {
  const c = clock()
  const revocations = new Revocations({ max: 100, now: c.now })
  let largest = 0
  for (let i = 0; i < 5_000; i++) {
    revocations.revoke(session({ jti: `j${i}`, exp: START_S + 600 + i }), `t${i}`)
    largest = Math.max(largest, revocations.size)
    if (i % 50 === 0) c.advance(10)
  }
  t.equal(largest, 100, 'fills up to max and no further')
  t.equal(revocations.size, 100)
  t.equal(revocations.has(session({ jti: 'j4999', exp: START_S + 600 + 4999 }), 't4999'), true, 'the newest revocation is kept')
  t.equal(revocations.has(session({ jti: 'j0', exp: START_S + 600 }), 't0'), false, 'the one closest to expiry went first')
})

t.test('at the cap, expired entries are pruned before anything still valid is evicted', async (t) => {
  const c = clock()
  const revocations = new Revocations({ max: 10, now: c.now })
  for (let i = 0; i < 5; i++) revocations.revoke(session({ jti: `short${i}`, exp: START_S + 60 }), `s${i}`)
  for (let i = 0; i < 5; i++) revocations.revoke(session({ jti: `long${i}`, exp: START_S + 3600 }), `l${i}`)
  t.equal(revocations.size, 10)
  c.advance(60_000 + CLOCK_TOLERANCE_MS + 1)
  revocations.revoke(session({ jti: 'new', exp: START_S + 3600 }), 'n')
  t.equal(revocations.size, 6, 'the five expired entries were dropped, nothing valid was evicted')
  for (let i = 0; i < 5; i++) t.equal(revocations.has(session({ jti: `long${i}`, exp: START_S + 3600 }), `l${i}`), true, `long${i} still revoked`)
})

t.test('expired entries are pruned even when the cap is never reached', async (t) => {
  const c = clock()
  const revocations = new Revocations({ max: 100_000, now: c.now })
  for (let i = 0; i < 1_000; i++) revocations.revoke(session({ jti: `j${i}`, exp: START_S + 60 }), `t${i}`)
  for (let i = 0; i < 1_000; i++) revocations.revoke(session({ jti: undefined, exp: START_S + 60 }), `h${i}`)
  t.equal(revocations.size, 2_000)
  c.advance(10 * 60_000)
  revocations.revoke(session({ jti: 'fresh', exp: Math.floor(c.now() / 1000) + 60 }), 'fresh')
  t.equal(revocations.size, 1, 'only the fresh entry remains')
  t.equal(revocations.has(session({ jti: undefined, exp: START_S + 60 }), 'h1'), false)
})

t.test('with the hash-revoked entries gone, tokens without jti are no longer reported revoked', async (t) => {
  const c = clock()
  const revocations = new Revocations({ max: 2, now: c.now })
  const external = session({ jti: undefined, exp: START_S + 60 })
  revocations.revoke(external, 'external')
  // Two longer-lived jti revocations push the hash entry out (closest to expiry goes first).
  revocations.revoke(session({ jti: 'a', exp: START_S + 600 }), 'a')
  revocations.revoke(session({ jti: 'b', exp: START_S + 600 }), 'b')
  t.equal(revocations.size, 2)
  t.equal(revocations.has(external, 'external'), false, 'the evicted hash entry is gone')
  revocations.revoke(session({ jti: undefined, exp: START_S + 6000 }), 'external-2')
  t.equal(revocations.has(session({ jti: undefined, exp: START_S + 6000 }), 'external-2'), true, 'hash revocation still works after an eviction')
})

t.test('revokeAll by sub ends every session of that user issued up to the cut-off, and none issued later', async (t) => {
  const revocations = new Revocations({ now: clock().now })
  revocations.revokeAll('sub', 'alice', START_S + 10)
  t.equal(revocations.has(session({ jti: 'a1', iat: START_S }), 'x'), true, 'an earlier session of alice has ended')
  t.equal(revocations.has(session({ jti: 'a2', iat: START_S + 10 }), 'y'), true, 'one issued in the cut-off second has ended too')
  t.equal(revocations.has(session({ jti: undefined, iat: START_S }), 'z'), true, 'a jti-less session of alice has ended as well')
  t.equal(revocations.has(session({ jti: 'a3', iat: START_S + 11 }), 'w'), false, 'a session signed in afterwards works')
  t.equal(revocations.has(session({ sub: 'bob', iat: START_S }), 'b'), false, 'another user is unaffected')
  t.equal(revocations.size, 1, 'one record, however many sessions it covers')
})

t.test('revokeAll by sid ends the sessions of that IdP session only', async (t) => {
  const revocations = new Revocations({ now: clock().now })
  revocations.revokeAll('sid', 'idp-session-1', START_S + 5)
  t.equal(revocations.has(session({ sid: 'idp-session-1' }), 'x'), true)
  t.equal(revocations.has(session({ sid: 'idp-session-2' }), 'x'), false, 'another IdP session of the same user still works')
  t.equal(revocations.has(session({ sid: undefined }), 'x'), false, 'a session without sid is not matched')
  t.equal(revocations.has(session({ sid: 'idp-session-1', iat: START_S + 6 }), 'x'), false, 'a later session is not matched')
})

t.test('a revokeAll record is kept until the longest session lifetime past its cut-off has passed', async (t) => {
  const c = clock()
  const revocations = new Revocations({ now: c.now, maxSessionLifetimeMs: 3_600_000 })
  revocations.revokeAll('sub', 'alice', START_S)
  const old = session({ iat: START_S, exp: START_S + 3600 })
  c.advance(3_600_000 + CLOCK_TOLERANCE_MS)
  t.equal(revocations.has(old, 'x'), true, 'still honoured at the last instant a covered session could be accepted')
  c.advance(1)
  t.equal(revocations.has(old, 'x'), false, 'gone once no covered session can be accepted')
  revocations.revoke(session({ jti: 'fresh', exp: Math.floor(c.now() / 1000) + 600 }), 'fresh')
  c.advance(60_000)
  revocations.revoke(session({ jti: 'fresh2', exp: Math.floor(c.now() / 1000) + 600 }), 'fresh2')
  t.equal(revocations.size, 2, 'the spent record was pruned')
})

t.test('a later revokeAll widens the cut-off; an earlier one does not narrow it', async (t) => {
  const revocations = new Revocations({ now: clock().now })
  revocations.revokeAll('sub', 'alice', START_S + 10)
  revocations.revokeAll('sub', 'alice', START_S + 5)
  t.equal(revocations.has(session({ iat: START_S + 8 }), 'x'), true, 'the wider cut-off stands')
  revocations.revokeAll('sub', 'alice', START_S + 20)
  t.equal(revocations.has(session({ iat: START_S + 15 }), 'x'), true)
  t.equal(revocations.size, 1)
})

t.test('what one instance revokes reaches another through records, without echoing back', async (t) => {
  const here = new Revocations({ now: clock().now })
  const there = new Revocations({ now: clock().now })
  const sent: unknown[] = []
  here.onRecord((record) => { sent.push(record); there.apply(record) })
  there.onRecord(() => t.fail('applying a record must not re-announce it'))
  here.revoke(session({ jti: 'shared' }), 't')
  here.revokeAll('sid', 'idp-1', START_S)
  here.revoke(session({ jti: 'shared' }), 't')
  t.equal(sent.length, 2, 'a repeated revocation is not announced twice')
  t.equal(there.has(session({ jti: 'shared' }), 't'), true)
  t.equal(there.has(session({ jti: 'other', sid: 'idp-1' }), 't'), true)
  t.same([...there.records()].length, 2, 'records() lists what is in force')
  for (const record of sent as Array<{ key: string }>) {
    t.notMatch(record.key, /shared|idp-1|alice/, 'no raw jti, sid or sub in what travels')
  }
})

t.test('a record that has already run out is not taken in', async (t) => {
  const revocations = new Revocations({ now: clock().now })
  t.equal(revocations.apply({ key: 'j:x', until: START - 1 }), false)
  t.equal(revocations.size, 0)
})

t.test('at the cap a revokeAll record outlives token entries closer to expiry', async (t) => {
  const revocations = new Revocations({ max: 2, now: clock().now })
  revocations.revokeAll('sub', 'alice', START_S)
  revocations.revoke(session({ jti: 'a', exp: START_S + 60 }), 'a')
  revocations.revoke(session({ jti: 'b', exp: START_S + 600 }), 'b')
  t.equal(revocations.size, 2)
  t.equal(revocations.has(session({ jti: 'z', iat: START_S }), 'z'), true, 'the sub-wide record is kept')
  t.equal(revocations.has(session({ sub: 'bob', jti: 'a', exp: START_S + 60 }), 'a'), false, 'the soonest-to-expire entry went')
})
