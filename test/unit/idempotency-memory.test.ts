// The in-memory idempotency store with an injected clock: claim, in flight, settle, mismatch,
// release, TTL, keys per sub, and its bound.
import t from 'tap'
import { MAX_IDEMPOTENCY_KEYS, MemoryIdempotencyStore } from '../../src/state/idempotency-memory.ts'
import type { IdempotentAnswer } from '../../src/state/types.ts'

const TTL = 60_000
const CREATED: IdempotentAnswer = { status: 201, location: '/api/v1/organisation/1/contact/9', contactId: '9' }

function setup (capacity?: number) {
  let now = 5_000_000
  const store = new MemoryIdempotencyStore(capacity, () => now)
  return { store, advance: (ms: number) => { now += ms } }
}

t.test('the first claim is new, a second is in flight, and after settling it is done with the answer', async (t) => {
  const { store } = setup()
  t.same(await store.begin('alice', 'k', 'print', TTL), { state: 'new' })
  t.same(await store.begin('alice', 'k', 'print', TTL), { state: 'in_flight' })
  await store.complete('alice', 'k', 'print', CREATED, TTL)
  t.same(await store.begin('alice', 'k', 'print', TTL), { state: 'done', answer: CREATED })
})

t.test('another body under the same key is a mismatch, in flight or done', async (t) => {
  const { store } = setup()
  await store.begin('alice', 'k', 'print', TTL)
  t.same(await store.begin('alice', 'k', 'other', TTL), { state: 'mismatch' })
  await store.complete('alice', 'k', 'print', CREATED, TTL)
  t.same(await store.begin('alice', 'k', 'other', TTL), { state: 'mismatch' })
})

t.test('keys belong to their sub', async (t) => {
  const { store } = setup()
  await store.begin('alice', 'k', 'print', TTL)
  t.same(await store.begin('bob', 'k', 'other', TTL), { state: 'new' })
})

t.test('release frees a claim, so a retry may try again', async (t) => {
  const { store } = setup()
  await store.begin('alice', 'k', 'print', TTL)
  await store.release('alice', 'k')
  t.same(await store.begin('alice', 'k', 'other', TTL), { state: 'new' })
  t.equal(store.size, 1)
})

t.test('a record lives IDEMPOTENCY_TTL: the key is new again once it has passed', async (t) => {
  const { store, advance } = setup()
  await store.begin('alice', 'k', 'print', TTL)
  await store.complete('alice', 'k', 'print', CREATED, TTL)
  advance(TTL - 1)
  t.equal((await store.begin('alice', 'k', 'print', TTL)).state, 'done')
  advance(1)
  t.same(await store.begin('alice', 'k', 'other', TTL), { state: 'new' }, 'expired: another body may use it')
})

t.test('an abandoned claim expires too, so a key is never stuck in flight', async (t) => {
  const { store, advance } = setup()
  await store.begin('alice', 'k', 'print', TTL)
  advance(TTL)
  t.same(await store.begin('alice', 'k', 'print', TTL), { state: 'new' })
})

t.test('bounded: at capacity expired records go first, then the oldest', async (t) => {
  const { store, advance } = setup(3)
  t.equal(store.capacity, 3)
  await store.begin('s', 'a', 'p', TTL)
  advance(10)
  await store.begin('s', 'b', 'p', TTL)
  await store.begin('s', 'c', 'p', TTL)
  await store.begin('s', 'd', 'p', TTL)
  t.equal(store.size, 3, 'never above capacity')
  t.same(await store.begin('s', 'b', 'p', TTL), { state: 'in_flight' }, 'a newer one stays')
  t.equal(store.size, 3)
  t.equal(new MemoryIdempotencyStore().capacity, MAX_IDEMPOTENCY_KEYS, 'a default bound')
})
