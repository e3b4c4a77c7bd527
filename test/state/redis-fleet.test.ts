// What only a shared store can do: instances see each other's writes, survive restarts of the
// instance and of Redis, and carry on alone while Redis is away.
import { Redis } from 'ioredis'
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { INVALIDATION_WINDOW_MS } from '../../src/state/invalidation-redis.ts'
import type { SessionClaims } from '../../src/session/claims.ts'
import { StoreUnavailableError } from '../../src/state/types.ts'
import { redisMissing, startRedis, type RunningRedis } from '../helpers/redis.ts'
import { eventually, instance, type Instance } from './instances.ts'

const missing = redisMissing()
if (missing !== undefined) {
  t.comment(missing)
  t.pass('skipped: no redis-server')
} else {
  const NOW_S = Math.floor(Date.now() / 1000)
  const session = (overrides: Partial<SessionClaims> = {}): SessionClaims =>
    ({ sub: 'alice', orgs: [1], iat: NOW_S, exp: NOW_S + 600, iss: 'emnify-bff', aud: 'emnify-bff', jti: 'jti-1', ...overrides })

  let counter = 0
  const prefix = () => `fleet-${process.pid}-${++counter}:`

  const open = async (t: Test, redis: RunningRedis, shared: string, url = redis.url) => {
    const made = await instance(url, { prefix: shared })
    t.teardown(() => made.app.close())
    return made
  }

  /** What goes over the wire: every organisation whose key another connection wrote, as Redis's own tracking tells a bystander. */
  const wireTap = async (t: Test, redis: RunningRedis, shared: string): Promise<string[]> => {
    const wire: string[] = []
    const tap = new Redis(redis.url, { protocol: 2 })
    const tracker = new Redis(redis.url)
    t.teardown(() => { tap.disconnect(); tracker.disconnect() })
    const id = await tap.client('ID')
    tap.on('messageBuffer', (_channel: Buffer, keys: Buffer[] | null) => {
      // <prefix>invalidate:<instance>:<org>
      for (const key of keys ?? []) wire.push(key.toString().slice(`${shared}invalidate:`.length).replace(/^[^:]*:/, ''))
    })
    await tap.subscribe('__redis__:invalidate')
    await tracker.client('TRACKING', 'ON', 'REDIRECT', id, 'BCAST', 'PREFIX', `${shared}invalidate:`)
    return wire
  }

  /** Counts what reaches an instance's subscriber connection, by channel. */
  const received = (made: Instance): Map<string, number> => {
    const counts = new Map<string, number>()
    made.app.stores.redis?.subscriber.on('messageBuffer', (channel: Buffer) => {
      counts.set(channel.toString(), (counts.get(channel.toString()) ?? 0) + 1)
    })
    return counts
  }

  t.test('shared Redis', async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.close())

    t.test('a logout on one instance is honoured on another within 1 s, and by one started later', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      a.app.stores.revocations.revoke(session(), 'token')
      a.app.stores.revocations.revokeAll('sid', 'idp-1', NOW_S)
      t.ok(await eventually(() => b.app.stores.revocations.has(session(), 'token')), 'the other instance refuses it')
      t.ok(await eventually(() => b.app.stores.revocations.has(session({ jti: 'x', sid: 'idp-1' }), 'x')), 'and the IdP session ended everywhere')
      const c = await open(t, redis, shared)
      t.equal(c.app.stores.revocations.has(session(), 'token'), true, 'an instance started afterwards loads it before serving')
    })

    t.test('the login lockout counts failures on every instance together', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      for (let i = 0; i < 3; i++) t.equal(await a.app.stores.loginLockout.attempt('bob'), 0)
      for (let i = 0; i < 2; i++) t.equal(await b.app.stores.loginLockout.attempt('bob'), 0)
      t.ok(await a.app.stores.loginLockout.attempt('bob') > 0, 'the sixth attempt is refused, wherever it lands')
      await b.app.stores.loginLockout.succeed('bob')
      t.equal(await a.app.stores.loginLockout.attempt('bob'), 0, 'a success on one clears it for all')
    })

    t.test('per-session counts add up across instances without a round trip per request', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      for (let i = 0; i < 5; i++) a.app.stores.sessionCounter.hit('sub:alice')
      for (let i = 0; i < 3; i++) b.app.stores.sessionCounter.hit('sub:alice')
      t.ok(await eventually(() => a.app.stores.sessionCounter.hit('sub:alice').count >= 10), 'instance A sees B\'s hits')
    })

    t.test('a write on one instance drops the organisation\'s cached reads on the others', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      const heardA: string[] = []
      const heardB: string[] = []
      a.app.stores.invalidation.subscribe((orgId) => heardA.push(orgId))
      b.app.stores.invalidation.subscribe((orgId) => heardB.push(orgId))
      a.app.stores.invalidation.publish('7')
      t.ok(await eventually(() => heardB.includes('7')), 'the other instance hears it within 1 s')
      await new Promise((resolve) => setTimeout(resolve, 50))
      t.same(heardA, ['7'], 'the writer heard it once, not again from Redis')
    })

    t.test('the writer\'s own announcement does not come back to it: Redis tells only the others', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      t.equal(a.app.stores.redis?.tracking, true, 'Redis tracks the announcement keys for this instance')
      const toA = received(a)
      const toB = received(b)
      const heardB: string[] = []
      b.app.stores.invalidation.subscribe((orgId) => heardB.push(orgId))
      for (let i = 0; i < 5; i++) {
        a.app.stores.invalidation.publish('7')
        await new Promise((resolve) => setTimeout(resolve, 2 * INVALIDATION_WINDOW_MS))
      }
      t.ok(await eventually(() => heardB.filter((orgId) => orgId === '7').length >= 5), `the other instance heard ${heardB.length} announcements`)
      t.ok((toB.get('__redis__:invalidate') ?? 0) >= 5, 'by tracking')
      t.same([...toA], [], 'the writer\'s subscriber received nothing at all')
      t.equal(toB.get(`${shared}invalidate`), undefined, 'and nothing went by pub/sub')
    })

    t.test('two instances announcing one organisation in the same moment each hear the other', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      const heard = { a: [] as string[], b: [] as string[] }
      a.app.stores.invalidation.subscribe((orgId) => heard.a.push(orgId))
      b.app.stores.invalidation.subscribe((orgId) => heard.b.push(orgId))
      const admin = new Redis(redis.url)
      t.teardown(() => admin.disconnect())
      // Held back by the pause, both writes are then run in one turn of Redis's event loop.
      await admin.client('PAUSE', '300', 'WRITE')
      a.app.stores.invalidation.publish('7')
      b.app.stores.invalidation.publish('7')
      t.ok(await eventually(() => heard.a.length === 2 && heard.b.length === 2, 2000), `a heard ${heard.a.length}, b heard ${heard.b.length}: its own write and the other's`)
    })

    t.test('tracking is switched on again when either connection of an instance is cut', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      const heardB: string[] = []
      b.app.stores.invalidation.subscribe((orgId) => heardB.push(orgId))
      let missed = 0
      b.app.stores.invalidation.subscribeMissed(() => { missed++ })
      const admin = new Redis(redis.url)
      t.teardown(() => admin.disconnect())
      const heardAfterCut = async (orgId: string) => eventually(() => {
        a.app.stores.invalidation.publish(orgId)
        return heardB.includes(orgId)
      }, 3000)
      for (const connection of ['subscriber', 'client'] as const) {
        const target = b.app.stores.redis?.[connection]
        const closed = new Promise((resolve) => target?.once('close', resolve))
        // By address: a subscribed connection answers no CLIENT ID.
        await admin.client('KILL', 'ADDR', `127.0.0.1:${String(target?.stream.localPort)}`)
        await closed
        const missedBefore = missed
        t.ok(await heardAfterCut(`after-${connection}`), `b hears a's writes again once its ${connection} connection is back`)
        t.ok(missed > missedBefore, 'and has dropped what it cached, since writes meanwhile went unheard')
      }
      t.equal(a.app.stores.redis?.tracking, true, 'all by tracking, with no pub/sub fallback')
      t.equal(b.logs.filter((line) => String(line.event).startsWith('redis.tracking')).length, 0, 'and nothing to warn about')
    })

    t.test('a set-up that fails for a passing reason is tried again until tracking is on', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const admin = new Redis(redis.url)
      t.teardown(() => admin.disconnect())
      for (const connection of ['client', 'subscriber'] as const) {
        const b = await open(t, redis, shared)
        const heardB: string[] = []
        b.app.stores.invalidation.subscribe((orgId) => heardB.push(orgId))
        const target = b.app.stores.redis?.[connection]
        if (target === undefined) throw new Error('no Redis')
        // The next set-up command on this connection times out, once: the pipeline of
        // CLIENT TRACKING on the command connection, CLIENT ID on the subscriber.
        const timedOut = async () => { throw new Error('Command timed out') }
        if (connection === 'client') {
          const real = target.pipeline.bind(target)
          target.pipeline = ((...args: Parameters<typeof real>) => {
            target.pipeline = real
            const pipeline = real(...args)
            pipeline.exec = timedOut
            return pipeline
          }) as typeof target.pipeline
        } else {
          const real = target.client.bind(target) as (...args: unknown[]) => Promise<unknown>
          // ioredis names the connection through the same method on reconnecting: only ID fails.
          target.client = (async (...args: unknown[]) => {
            if (String(args[0]).toUpperCase() !== 'ID') return real(...args)
            target.client = real as unknown as typeof target.client
            return timedOut()
          }) as unknown as typeof target.client
        }
        const closed = new Promise((resolve) => target.once('close', resolve))
        await admin.client('KILL', 'ADDR', `127.0.0.1:${String(target.stream.localPort)}`)
        await closed
        t.ok(await eventually(() => b.logs.some((line) => line.event === 'redis.tracking_failed'), 3000), `${connection}: the failure is logged`)
        t.ok(await eventually(() => b.app.stores.redis?.tracking === true, 5000), `${connection}: tracking is on again after a retry`)
        t.ok(b.logs.some((line) => line.event === 'redis.tracking_on'), 'which is logged too')
        t.ok(await eventually(() => {
          a.app.stores.invalidation.publish(`after-${connection}`)
          return heardB.includes(`after-${connection}`)
        }, 3000), `${connection}: and b hears a again`)
      }
    })

    t.test('a burst of writes sends one message per organisation per window, the last one included', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      const wire = await wireTap(t, redis, shared)
      const heardB: string[] = []
      b.app.stores.invalidation.subscribe((orgId) => heardB.push(orgId))

      const started = performance.now()
      let writes = 0
      while (performance.now() - started < 100) {
        for (let i = 0; i < 20; i++, writes++) a.app.stores.invalidation.publish('7')
        await new Promise((resolve) => setImmediate(resolve))
      }
      const elapsed = performance.now() - started
      a.app.stores.invalidation.publish('8')
      t.ok(await eventually(() => heardB.includes('8')), 'the write after the burst reaches the other instance')
      t.ok(await eventually(() => wire.filter((orgId) => orgId === '7').length > 0))
      await new Promise((resolve) => setTimeout(resolve, 3 * INVALIDATION_WINDOW_MS))
      const sevens = wire.filter((orgId) => orgId === '7').length
      // One at the end of the first turn, one per window after it, one for the window the burst ended in.
      t.ok(sevens <= Math.floor(elapsed / INVALIDATION_WINDOW_MS) + 2, `${writes} writes in ${elapsed.toFixed(0)} ms sent ${sevens} messages`)
      t.equal(wire.filter((orgId) => orgId === '8').length, 1, 'the other organisation had its own message')
      t.ok(heardB.includes('7'), 'the burst reached the other instance')
    })

    t.test('what the current window gathered is sent when an instance shuts down', async (t) => {
      const shared = prefix()
      const b = await open(t, redis, shared)
      const heardB: string[] = []
      b.app.stores.invalidation.subscribe((orgId) => heardB.push(orgId))
      const a = await instance(redis.url, { prefix: shared })
      a.app.stores.invalidation.publish('1')
      await new Promise((resolve) => setImmediate(resolve))
      // Inside the window opened by the first message: held back until the window ends.
      a.app.stores.invalidation.publish('2')
      await a.app.close()
      t.ok(await eventually(() => heardB.includes('1') && heardB.includes('2')), `heard ${heardB.join(', ')}`)
    })

    t.test('an idempotency key claimed on one instance is in flight, then replayed, on another', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      const b = await open(t, redis, shared)
      t.same(await a.app.stores.idempotency.begin('alice', 'k', 'body', 60_000), { state: 'new' })
      t.same(await b.app.stores.idempotency.begin('alice', 'k', 'body', 60_000), { state: 'in_flight' })
      await a.app.stores.idempotency.complete('alice', 'k', 'body', { status: 201, contactId: '9' }, 60_000)
      t.same(await b.app.stores.idempotency.begin('alice', 'k', 'body', 60_000), { state: 'done', answer: { status: 201, contactId: '9' } })
    })

    t.test('nothing names a user, session or key in Redis', async (t) => {
      const shared = prefix()
      const a = await open(t, redis, shared)
      a.app.stores.revocations.revoke(session({ jti: 'secret-jti' }), 'token')
      await a.app.stores.loginLockout.attempt('secret-user')
      await a.app.stores.idempotency.begin('secret-sub', 'secret-key', 'body', 60_000)
      a.app.stores.sessionCounter.hit('sub:secret-sub')
      const client = a.app.stores.redis
      t.ok(client !== null)
      t.ok(await eventually(async () => (await client?.client.keys(`${shared}*`))?.some((key) => key.includes(':rl:')) === true))
      const keys = await client?.client.keys(`${shared}*`) ?? []
      t.ok(keys.length >= 4, `keys written: ${keys.length}`)
      for (const key of keys) t.notMatch(key, /secret/, `${key} carries no raw value`)
      const members = await client?.client.zrange(`${shared}revocations`, '0', '-1') ?? []
      for (const member of members) t.notMatch(member, /secret/)
    })
  })

  t.test('under the README\'s ACL user, and under one that may not track', async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.close())
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    const line = readme.split('\n').find((text) => text.startsWith('user bff on >'))
    t.ok(line, 'the README gives the ACL line')
    const rules = (line ?? '').split(/\s+/).slice(2).map((rule) => rule.startsWith('>') ? '>pw' : rule)
    const trackingRules = ['+client|id', '+client|tracking', '&__redis__:invalidate']
    for (const rule of trackingRules) t.ok(rules.includes(rule), `the line grants ${rule}`)
    const admin = new Redis(redis.url)
    t.teardown(() => admin.disconnect())
    await admin.acl('SETUSER', 'bff', ...rules)
    await admin.acl('SETUSER', 'older', ...rules.filter((rule) => !trackingRules.includes(rule)))
    await admin.acl('SETUSER', 'nochannel', ...rules.filter((rule) => rule !== '&__redis__:invalidate'))
    const as = (user: string) => redis.url.replace('redis://', `redis://${user}:pw@`)
    // The README's key and channel patterns name the default prefix.
    const shared = 'emnify-bff:'

    const a = await open(t, redis, shared, as('bff'))
    const b = await open(t, redis, shared, as('bff'))
    t.equal(a.app.stores.redis?.tracking, true, 'the README\'s user may track')
    const heardB: string[] = []
    b.app.stores.invalidation.subscribe((orgId) => heardB.push(orgId))
    a.app.stores.invalidation.publish('3')
    t.ok(await eventually(() => heardB.includes('3')), 'and instances hear each other')
    a.app.stores.revocations.revoke(session({ jti: 'acl' }), 'acl')
    t.ok(await eventually(() => b.app.stores.revocations.has(session({ jti: 'acl' }), 'acl')), 'logouts still travel')
    t.same(await a.app.stores.idempotency.begin('alice', 'k', 'body', 60_000), { state: 'new' }, 'idempotency records are written')

    const old = await open(t, redis, shared, as('older'))
    t.ok(await eventually(() => old.app.stores.redis?.tracking === false), 'a user without the tracking rules is refused')
    t.equal(old.logs.filter((entry) => entry.event === 'redis.tracking_refused').length, 1, 'which is said once')
    const partial = await open(t, redis, shared, as('nochannel'))
    t.ok(await eventually(() => partial.app.stores.redis?.tracking === false), 'so is one that may not listen where tracking reports')
    a.app.stores.revocations.revoke(session({ jti: 'later' }), 'later')
    for (const made of [old, partial]) {
      t.ok(await eventually(() => made.app.stores.revocations.has(session({ jti: 'later' }), 'later')), 'the refusal costs neither its other channels')
    }
    old.app.stores.invalidation.publish('4')
    t.ok(await eventually(() => heardB.includes('4')), 'it announces by pub/sub, and a tracking instance hears that too')
    const heardOld: string[] = []
    old.app.stores.invalidation.subscribe((orgId) => heardOld.push(orgId))
    const older = await open(t, redis, shared, as('older'))
    older.app.stores.invalidation.publish('5')
    t.ok(await eventually(() => heardOld.includes('5')), 'two instances that may not track hear each other')
  })

  t.test('when Redis goes away and comes back', async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.close())
    const shared = prefix()
    const a = await open(t, redis, shared)
    const b = await open(t, redis, shared)
    a.app.stores.revocations.revoke(session({ jti: 'before' }), 'before')
    t.ok(await eventually(() => b.app.stores.revocations.has(session({ jti: 'before' }), 'before')))

    await redis.stop(true)
    t.ok(await eventually(() => a.app.stores.redis?.up === false), 'the instance notices')
    t.equal(a.app.stores.ready, true, 'and stays ready')
    a.app.stores.revocations.revoke(session({ jti: 'during' }), 'during')
    t.equal(a.app.stores.revocations.has(session({ jti: 'during' }), 'during'), true, 'a logout meanwhile holds locally at once')
    t.equal(a.app.stores.pendingRevocations, 1, 'and is kept for Redis')
    t.equal(await a.app.stores.loginLockout.attempt('bob'), 0, 'logins are still limited, by this instance alone')
    const started = Date.now()
    await t.rejects(a.app.stores.idempotency.begin('alice', 'k', 'body', 60_000), StoreUnavailableError, 'an idempotent create cannot proceed')
    t.ok(Date.now() - started < 1000, 'and says so without waiting')
    t.equal(a.app.stores.sessionCounter.hit('sub:alice').count, 1, 'per-session counts go on locally')

    await redis.start()
    t.ok(await eventually(() => a.app.stores.pendingRevocations === 0, 5000), 'the logout is written once Redis is back')
    t.ok(await eventually(() => b.app.stores.revocations.has(session({ jti: 'during' }), 'during'), 5000), 'and reaches the other instance')
    const c = await open(t, redis, shared)
    t.equal(c.app.stores.revocations.has(session({ jti: 'before' }), 'before'), true, 'a logout from before the outage survived Redis restarting empty')
    t.equal(c.app.stores.revocations.has(session({ jti: 'during' }), 'during'), true)
    t.equal(a.logs.filter((line) => line.event === 'redis.down').length, 1, 'one log line for going down')
    t.equal(a.logs.filter((line) => line.event === 'redis.up').length, 2, 'one for each time it came up')
  })

  t.test('an instance that starts while Redis is unreachable is not ready until Redis answers', async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.close())
    await redis.stop(true)
    const a = await instance(redis.url, { prefix: prefix(), connectWaitMs: 100 })
    t.teardown(() => a.app.close())
    t.equal(a.app.stores.ready, false)
    await redis.start()
    t.ok(await eventually(() => a.app.stores.ready, 5000), 'ready once Redis answered')
    await redis.stop(true)
    t.ok(await eventually(() => a.app.stores.redis?.up === false))
    t.equal(a.app.stores.ready, true, 'a later outage does not make it unready')
  })
}
