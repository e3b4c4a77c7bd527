// The read cache on its own, with an injected clock: coalescing, TTL, per-organisation invalidation
// (in-flight reads included), failures never kept, and its bounds in entries and bytes.
import t from 'tap'
import { ReadCache, type CacheResult } from '../../src/contacts/read-cache.ts'
import { represent, type Representation } from '../../src/contacts/representation.ts'
import { LocalInvalidationBus } from '../../src/state/invalidation-memory.ts'

function deferred<T> () {
  const { promise, resolve, reject } = Promise.withResolvers<T>()
  return { promise, resolve, reject }
}

function setup (options: { ttlMs?: number, maxEntries?: number, maxBytes?: number } = {}) {
  let now = 1_000_000
  const results: CacheResult[] = []
  const cache = new ReadCache({ ttlMs: options.ttlMs ?? 5000, maxEntries: options.maxEntries, maxBytes: options.maxBytes, now: () => now, onResult: (r) => results.push(r) })
  let loads = 0
  const load = (value: unknown) => () => { loads++; return Promise.resolve(represent(value)) }
  return { cache, results, load, loads: () => loads, advance: (ms: number) => { now += ms } }
}

t.test('concurrent reads of one key share one load', async (t) => {
  const { cache, results } = setup()
  const pending = deferred<Representation>()
  let loads = 0
  const load = () => { loads++; return pending.promise }
  const reads = [cache.read('1', '/a', load), cache.read('1', '/a', load), cache.read('1', '/a', load)]
  pending.resolve(represent({ id: 1 }))
  const reps = await Promise.all(reads)
  t.equal(loads, 1)
  t.ok(reps.every((rep) => rep === reps[0]), 'the same representation for all')
  t.same(results, ['miss', 'coalesced', 'coalesced'])
})

t.test('an answer is kept ttlMs, then loaded again', async (t) => {
  const { cache, results, load, loads, advance } = setup({ ttlMs: 1000 })
  await cache.read('1', '/a', load({ id: 1 }))
  advance(999)
  await cache.read('1', '/a', load({ id: 1 }))
  t.equal(loads(), 1, 'still fresh 1 ms before the end')
  advance(1)
  await cache.read('1', '/a', load({ id: 1 }))
  t.equal(loads(), 2, 'expired at ttlMs')
  t.same(results, ['miss', 'hit', 'miss'])
  t.equal(cache.size, 1, 'the expired entry was replaced, not added')
})

t.test('ttlMs 0 keeps nothing but still coalesces', async (t) => {
  const { cache, load, loads } = setup({ ttlMs: 0 })
  await Promise.all([cache.read('1', '/a', load({ id: 1 })), cache.read('1', '/a', load({ id: 1 }))])
  t.equal(loads(), 1)
  await cache.read('1', '/a', load({ id: 1 }))
  t.equal(loads(), 2)
  t.equal(cache.size, 0)
})

t.test('a failed load is shared by those who joined it and not kept', async (t) => {
  const { cache, load, loads } = setup()
  const failing = () => Promise.reject(new Error('upstream down'))
  const both = [cache.read('1', '/a', failing), cache.read('1', '/a', failing)]
  for (const read of both) await t.rejects(read, /upstream down/)
  await cache.read('1', '/a', load({ id: 1 }))
  t.equal(loads(), 1, 'the next read loads again')
})

t.test('invalidate drops an organisation\'s entries only', async (t) => {
  const { cache, load, loads } = setup()
  await cache.read('1', '/org/1/a', load({ id: 1 }))
  await cache.read('1', '/org/1/b', load({ id: 2 }))
  await cache.read('2', '/org/2/a', load({ id: 3 }))
  cache.invalidate('1')
  t.equal(cache.size, 1)
  await cache.read('2', '/org/2/a', load({ id: 3 }))
  t.equal(loads(), 3, 'organisation 2 still a hit')
  await cache.read('1', '/org/1/a', load({ id: 1 }))
  t.equal(loads(), 4, 'organisation 1 loaded again')
})

t.test('a load in flight during an invalidation is neither joined afterwards nor kept', async (t) => {
  const { cache, load, loads } = setup()
  const stale = deferred<Representation>()
  const early = cache.read('1', '/a', () => stale.promise)
  cache.invalidate('1')
  const late = await cache.read('1', '/a', load({ id: 1, city: 'new' }))
  t.equal(loads(), 1, 'a read after the write started its own load')
  stale.resolve(represent({ id: 1, city: 'old' }))
  t.equal((await early).text, '{"id":1,"city":"old"}', 'the early reader gets what it asked for')
  const after = await cache.read('1', '/a', load({ id: 1, city: 'newer' }))
  t.equal(after, late, 'the stale answer did not overwrite the fresh one')
})

t.test('a stale load finishing after an invalidation does not fill the cache', async (t) => {
  const { cache, load, loads } = setup()
  const stale = deferred<Representation>()
  const early = cache.read('1', '/a', () => stale.promise)
  cache.invalidate('1')
  stale.resolve(represent({ id: 1, city: 'old' }))
  await early
  t.equal(cache.size, 0)
  await cache.read('1', '/a', load({ id: 1 }))
  t.equal(loads(), 1)
})

t.test('follow(bus): a published write invalidates', async (t) => {
  const { cache, load, loads } = setup()
  const bus = new LocalInvalidationBus()
  cache.follow(bus)
  await cache.read('7', '/a', load({ id: 1 }))
  bus.publish('7')
  await cache.read('7', '/a', load({ id: 1 }))
  t.equal(loads(), 2)
})

t.test('follow(bus): when the bus may have missed writes, nothing cached or in flight is kept', async (t) => {
  const { cache, load, loads } = setup()
  const bus = new LocalInvalidationBus()
  cache.follow(bus)
  await cache.read('7', '/org/7', load({ id: 1 }))
  await cache.read('8', '/org/8', load({ id: 2 }))
  const stale = deferred<Representation>()
  const early = cache.read('9', '/org/9', () => stale.promise)
  bus.missed()
  t.equal(cache.size, 0, 'every organisation dropped')
  t.equal(cache.bytes, 0)
  stale.resolve(represent({ id: 3, city: 'old' }))
  await early
  t.equal(cache.size, 0, 'a load in flight across it is not kept')
  await cache.read('7', '/org/7', load({ id: 1 }))
  await cache.read('9', '/org/9', load({ id: 3 }))
  t.equal(loads(), 4, 'both read again from upstream')
  await cache.read('7', '/org/7', load({ id: 1 }))
  t.equal(loads(), 4, 'and cached again afterwards')
})

t.test('forgetting the write counts of many organisations does not let a stale load fill the cache', async (t) => {
  const { cache } = setup({ maxEntries: 2 })
  const stale = deferred<Representation>()
  const early = cache.read('3', '/org/3', () => stale.promise)
  // The third organisation's write takes the counts past their bound, and they are forgotten.
  for (const org of ['1', '2', '3']) cache.invalidate(org)
  stale.resolve(represent({ id: 3, city: 'old' }))
  await early
  t.equal(cache.size, 0, 'the answer replaced by the write is not kept')
})

t.test('bounded in entries: the oldest go first', async (t) => {
  const { cache, load, loads } = setup({ maxEntries: 2 })
  await cache.read('1', '/a', load({ id: 1 }))
  await cache.read('1', '/b', load({ id: 2 }))
  await cache.read('1', '/c', load({ id: 3 }))
  t.equal(cache.size, 2)
  t.equal(cache.capacity, 2)
  await cache.read('1', '/c', load({ id: 3 }))
  await cache.read('1', '/b', load({ id: 2 }))
  t.equal(loads(), 3, '/b and /c still kept')
  await cache.read('1', '/a', load({ id: 1 }))
  t.equal(loads(), 4, '/a was evicted')
})

t.test('bounded in bytes: a representation larger than the bound is never kept, and the total stays under it', async (t) => {
  const { cache, load, loads } = setup({ maxBytes: 200 })
  await cache.read('1', '/huge', load({ id: 1, name: 'x'.repeat(500) }))
  t.equal(cache.size, 0)
  t.equal(cache.bytes, 0)
  for (const key of ['/a', '/b', '/c', '/d']) await cache.read('1', key, load({ id: 1, name: 'y'.repeat(40) }))
  t.ok(cache.bytes <= 200, `bytes ${cache.bytes} within the bound`)
  t.ok(cache.size < 4, 'something was evicted')
  cache.invalidate('1')
  t.equal(cache.bytes, 0, 'bytes are returned on invalidation')
  t.equal(loads(), 5)
})
