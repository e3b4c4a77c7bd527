// One contract for every store, run against both backends: in memory (one instance) and Redis.
import t, { type Test } from 'tap'
import type { SessionClaims } from '../../src/session/claims.ts'
import { SharedRedis } from '../../src/state/redis.ts'
import { MemoryTokenStore, RedisTokenStore } from '../../src/state/token-store.ts'
import type { SharedTokenStore } from '../../src/state/types.ts'
import { redisMissing, startRedis, type RunningRedis } from '../helpers/redis.ts'
import { instance, type Instance } from './instances.ts'

const NOW_S = Math.floor(Date.now() / 1000)

function session (overrides: Partial<SessionClaims> = {}): SessionClaims {
  return { sub: 'alice', orgs: [1], iat: NOW_S, exp: NOW_S + 600, iss: 'emnify-bff', aud: 'emnify-bff', jti: 'jti-1', ...overrides }
}

let counter = 0
/** A key prefix per test, so tests sharing one Redis never see each other's keys. */
const prefix = () => `contract-${process.pid}-${++counter}:`

const missing = redisMissing()
let redis: RunningRedis | undefined
const backends: Array<{ name: string, make: () => Promise<Instance> }> = [
  { name: 'memory', make: async () => await instance(undefined) }
]
if (missing === undefined) {
  backends.push({
    name: 'redis',
    make: async () => {
      redis ??= await startRedis()
      return await instance(redis.url, { prefix: prefix() })
    }
  })
} else {
  t.comment(`Redis backend skipped: ${missing}`)
}
t.teardown(async () => { await redis?.close() })

for (const backend of backends) {
  t.test(`${backend.name} backend`, async (t) => {
    const open = async () => {
      const made = await backend.make()
      t.teardown(() => made.app.close())
      return made.app.stores
    }

    t.test('is ready once it has answered', async (t) => {
      t.equal((await open()).ready, true)
    })

    t.test('a logout is honoured at once, and only for that session', async (t) => {
      const { revocations } = await open()
      revocations.revoke(session(), 'token')
      t.equal(revocations.has(session(), 'token'), true)
      t.equal(revocations.has(session({ jti: 'other' }), 'other'), false)
    })

    t.test('signing out everywhere ends every earlier session of the user', async (t) => {
      const { revocations } = await open()
      revocations.revokeAll('sub', 'alice', NOW_S)
      t.equal(revocations.has(session({ jti: 'any' }), 'x'), true)
      t.equal(revocations.has(session({ iat: NOW_S + 1 }), 'x'), false, 'a later sign-in works')
    })

    t.test('five failed logins lock the name, whatever its case; a success unlocks it', async (t) => {
      const { loginLockout } = await open()
      for (let i = 0; i < 5; i++) t.equal(await loginLockout.attempt('Bob'), 0, `attempt ${i + 1} may go ahead`)
      const wait = await loginLockout.attempt('bob')
      t.ok(wait > 14 * 60 && wait <= 15 * 60, `the sixth waits for the rest of the 15-minute window (${wait} s)`)
      t.equal(await loginLockout.attempt('carol'), 0, 'another name is unaffected')
      await loginLockout.succeed('BOB')
      t.equal(await loginLockout.attempt('bob'), 0, 'a success clears the count')
    })

    t.test('the per-session counter counts every hit within the minute', async (t) => {
      const { sessionCounter } = await open()
      sessionCounter.hit('sub:alice')
      const window = sessionCounter.hit('sub:alice')
      t.equal(window.count, 2)
      t.equal(sessionCounter.hit('sub:bob').count, 1)
      const left = sessionCounter.secondsLeft(window)
      t.ok(left >= 1 && left <= 60, 'resets within the minute')
    })

    t.test('a write announces the organisation to local listeners before publish returns', async (t) => {
      const { invalidation } = await open()
      const heard: string[] = []
      invalidation.subscribe((orgId) => heard.push(orgId))
      invalidation.publish('42')
      t.same(heard, ['42'])
    })

    t.test('an idempotency key is claimed once, replayed after, and refused with another body', async (t) => {
      const { idempotency } = await open()
      t.same(await idempotency.begin('alice', 'key-1', 'body-a', 60_000), { state: 'new' })
      t.same(await idempotency.begin('alice', 'key-1', 'body-a', 60_000), { state: 'in_flight' })
      t.same(await idempotency.begin('alice', 'key-1', 'body-b', 60_000), { state: 'mismatch' })
      t.same(await idempotency.begin('bob', 'key-1', 'body-b', 60_000), { state: 'new' }, 'keys are per sub')
      const answer = { status: 201, location: '/api/v1/organisation/1/contact/7', contactId: '7' }
      await idempotency.complete('alice', 'key-1', 'body-a', answer, 60_000)
      t.same(await idempotency.begin('alice', 'key-1', 'body-a', 60_000), { state: 'done', answer })
      await idempotency.release('alice', 'key-1')
      t.same(await idempotency.begin('alice', 'key-1', 'body-a', 60_000), { state: 'done', answer }, 'a settled answer is not released')
      await idempotency.release('bob', 'key-1')
      t.same(await idempotency.begin('bob', 'key-1', 'body-b', 60_000), { state: 'new' }, 'a claim never sent upstream can be retried')
      await idempotency.complete('bob', 'key-1', 'other-body', { status: 500 }, 60_000)
      t.same(await idempotency.begin('bob', 'key-1', 'body-b', 60_000), { state: 'in_flight' }, 'only the claim\'s own body settles it')
    })

    t.test('an idempotency record lapses after its TTL', async (t) => {
      const { idempotency } = await open()
      await idempotency.begin('alice', 'short', 'body', 30)
      await new Promise((resolve) => setTimeout(resolve, 60))
      t.same(await idempotency.begin('alice', 'short', 'body', 30), { state: 'new' })
    })
  })
}

const silent = { info: () => {}, warn: () => {} }

/** Two instances' handles on one shared token: in memory, or two connections to one Redis. */
const tokenBackends: Array<{ name: string, pair: (t: Test) => Promise<[SharedTokenStore, SharedTokenStore]> }> = [
  {
    name: 'memory',
    pair: async () => {
      const store = new MemoryTokenStore()
      return [store, store.instance()]
    }
  }
]
if (missing === undefined) {
  tokenBackends.push({
    name: 'redis',
    pair: async (t) => {
      redis ??= await startRedis()
      const shared = prefix()
      const stores: SharedTokenStore[] = []
      for (let i = 0; i < 2; i++) {
        const connection = new SharedRedis({ url: redis.url, prefix: shared, log: silent, commandTimeoutMs: 300 })
        t.teardown(() => connection.close())
        stores.push(new RedisTokenStore(connection))
        await connection.connect()
      }
      return stores as [SharedTokenStore, SharedTokenStore]
    }
  })
}

const TOKEN = 'header.payload.signature'

for (const backend of tokenBackends) {
  t.test(`${backend.name} upstream token store`, async (t) => {
    t.test('one instance at a time holds the refresh lock; publishing frees it and wakes the waiters', async (t) => {
      const [a, b] = await backend.pair(t)
      t.equal(await a.read(), undefined, 'cold: no token')
      t.equal(await a.lock(5000), true, 'the first instance authenticates')
      t.equal(await b.lock(5000), false, 'the second waits')
      const woken = b.wait(5000)
      await a.publish(TOKEN, Date.now() + 60_000)
      await woken
      t.equal(await b.read(), TOKEN, 'the waiter reads the holder\'s token')
      t.equal(await b.lock(5000), true, 'the lock was freed by publishing')
    })

    t.test('a holder that dies frees the fleet when its lock runs out', async (t) => {
      const [a, b] = await backend.pair(t)
      // A lock long enough that a stalled test machine still asks b inside it.
      t.equal(await a.lock(400), true)
      t.equal(await b.lock(5000), false)
      await new Promise((resolve) => setTimeout(resolve, 450))
      t.equal(await b.lock(5000), true, 'taken over after the TTL')
      await a.publish(TOKEN, Date.now() + 60_000)
      t.equal(await a.lock(5000), false, 'the late holder did not free its successor\'s lock')
    })

    t.test('a failed authenticate is shared for its window and cleared by the next token', async (t) => {
      const [a, b] = await backend.pair(t)
      await a.lock(5000)
      const woken = b.wait(5000)
      await a.fail({ code: 'UPSTREAM_AUTH_FAILED', detail: 'refused', retryAfterS: 1 }, 5000)
      await woken
      t.same(await b.failure(), { code: 'UPSTREAM_AUTH_FAILED', detail: 'refused', retryAfterS: 1 })
      t.equal(await b.lock(5000), true, 'the failed holder freed the lock')
      await b.publish(TOKEN, Date.now() + 60_000)
      t.equal(await a.failure(), undefined)
    })

    t.test('a token is kept only until its expiry', async (t) => {
      const [a] = await backend.pair(t)
      await a.publish(TOKEN, Date.now() + 400)
      t.equal(await a.read(), TOKEN)
      await new Promise((resolve) => setTimeout(resolve, 450))
      t.equal(await a.read(), undefined)
    })

    t.test('a wait nobody ends returns after its timeout', async (t) => {
      const [a] = await backend.pair(t)
      await a.wait(20)
      t.pass('returned')
    })
  })
}
