// The session verification cache: a repeat costs a map lookup, yet time claims and revocation
// are still judged on every request, and the cache stays bounded.
import t from 'tap'
import { CLOCK_TOLERANCE_MS, type SessionClaims } from '../../src/session/claims.ts'
import { VERIFIED_TOKEN_MAX_LENGTH, VerifiedSessions } from '../../src/session/verification-cache.ts'
import { metric } from '../e2e/contacts-helpers.ts'
import { CONTACT, session, startStack } from '../helpers/stack.ts'

const NOW = 1_800_000_000_000
const claims = (extra: Partial<SessionClaims> & { nbf?: number } = {}): SessionClaims => ({
  sub: 'alice', orgs: [1], iat: NOW / 1000 - 10, exp: NOW / 1000 + 60, iss: 'emnify-bff', aud: 'emnify-bff', ...extra
})

t.test('a verified token is answered from the cache with the same claims', async (t) => {
  const cache = new VerifiedSessions()
  const verified = claims()
  cache.set('token-a', verified)
  t.equal(cache.get('token-a', NOW), verified)
  t.equal(cache.get('token-b', NOW), undefined, 'another token is not')
  t.equal(cache.size, 1)
})

t.test('tokens that end alike are never taken for each other (the map is keyed by the end of the signature)', async (t) => {
  const cache = new VerifiedSessions(2)
  const tail = '.0123456789abcdefghijklmnopqrstuvwxyzABCDEFG'
  const [first, second] = [claims({ sub: 'first' }), claims({ sub: 'second' })]
  cache.set(`header.first${tail}`, first)
  t.equal(cache.get(`header.forged${tail}`, NOW), undefined, 'a token with the same end but another body is not a hit')
  t.notOk(cache.has(`header.forged${tail}`), 'nor remembered')
  t.ok(cache.has(`header.first${tail}`), 'the remembered one is')
  cache.set(`header.second${tail}`, second)
  t.equal(cache.get(`header.second${tail}`, NOW), second, 'a second token with that end takes the place')
  t.equal(cache.get(`header.first${tail}`, NOW), undefined, 'and the first is verified again next time, never answered with the other claims')
  t.equal(cache.size, 1)
  cache.set('header.other.token-of-its-own', first)
  cache.set('header.third.token-of-its-own-too', first)
  t.equal(cache.size, 2, 'the bound still holds')
})

t.test('a cached session stops being accepted when it expires, with the same clock tolerance as fast-jwt', async (t) => {
  const cache = new VerifiedSessions()
  const verified = claims()
  cache.set('token', verified)
  const lastValid = verified.exp * 1000 + CLOCK_TOLERANCE_MS
  t.equal(cache.get('token', lastValid), verified, 'valid up to exp + tolerance')
  t.equal(cache.get('token', lastValid + 1), undefined, 'expired one millisecond later')
  t.equal(cache.size, 0, 'and forgotten')
})

t.test('a cached session with nbf is accepted only from nbf − tolerance', async (t) => {
  const cache = new VerifiedSessions()
  cache.set('token', claims({ nbf: NOW / 1000 + 100 }))
  t.equal(cache.get('token', NOW + 100_000 - CLOCK_TOLERANCE_MS - 1), undefined, 'not yet')
  cache.set('token', claims({ nbf: NOW / 1000 + 100 }))
  t.ok(cache.get('token', NOW + 100_000 - CLOCK_TOLERANCE_MS), 'from nbf − tolerance')
})

t.test('the cache is bounded: past its capacity the token verified first goes, and long tokens are never kept', async (t) => {
  const cache = new VerifiedSessions(3)
  for (const token of ['a', 'b', 'c', 'd']) cache.set(token, claims())
  t.equal(cache.size, 3)
  t.equal(cache.capacity, 3)
  t.equal(cache.get('a', NOW), undefined, 'the oldest went')
  t.ok(cache.get('d', NOW))
  cache.set('x'.repeat(VERIFIED_TOKEN_MAX_LENGTH + 1), claims())
  t.equal(cache.get('x'.repeat(VERIFIED_TOKEN_MAX_LENGTH + 1), NOW), undefined, 'a token over the length bound is verified every time')
})

t.test('a session answered from the cache is refused once logged out, and nothing more reaches emnify', async (t) => {
  const stack = await startStack(t)
  const token = session('cached-then-revoked')
  const auth = { authorization: `Bearer ${token}` }
  t.equal((await stack.patch(CONTACT, { city: 'Berlin' }, auth)).status, 204)
  t.equal((await stack.patch(CONTACT, { city: 'Bonn' }, auth)).status, 204, 'served again (from the cache)')
  t.ok(await metric(stack, 'emnify_bff_store_entries', { store: 'verified_sessions' }) >= 1, 'the cache is a store gauge')
  t.equal(await metric(stack, 'emnify_bff_store_capacity', { store: 'verified_sessions' }), 10_000)
  t.equal((await stack.call('POST', '/auth/logout', { headers: auth })).status, 204)
  const after = await stack.patch(CONTACT, { city: 'Celle' }, auth)
  t.equal(after.status, 401)
  t.equal(after.json().code, 'UNAUTHENTICATED')
  t.equal(stack.sim.state.counters.patch_contact, 2, 'the refused PATCH never reached emnify')
})
