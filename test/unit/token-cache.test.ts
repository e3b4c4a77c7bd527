import t, { type Test } from 'tap'
import { TokenCache, tokenTimes, type TokenCacheOptions } from '../../src/upstream/token-cache.ts'
import { Problem } from '../../src/errors/problems.ts'
import { MemoryTokenStore } from '../../src/state/token-store.ts'

const START = 1_700_000_000_000
const START_S = START / 1000

interface Deferred {
  resolve: (token: string) => void
  reject: (error: unknown) => void
}

interface Settled<T> {
  settled: boolean
  value?: T
  error?: unknown
}

/** Observes a promise without awaiting it, so a rejection is never unhandled. */
function track<T> (promise: Promise<T>): Settled<T> {
  const state: Settled<T> = { settled: false }
  promise.then(
    (value) => { state.settled = true; state.value = value },
    (error: unknown) => { state.settled = true; state.error = error }
  )
  return state
}

/** Lets every pending promise callback run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve))

/** An unsigned JWT-shaped token carrying the given claims; the cache only reads timing from it. */
function jwt (claims: Record<string, unknown>, marker = 'sig'): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.${marker}`
}

/** A token issued now with the given lifetime in seconds. */
function tokenFor (lifetimeS: number, issuedAtS = START_S, marker = 'sig'): string {
  return jwt({ iat: issuedAtS, exp: issuedAtS + lifetimeS }, marker)
}

function harness (options: Partial<TokenCacheOptions> = {}, randomValue = 0) {
  const clock = { now: START }
  const fetches: Deferred[] = []
  const events: Array<{ ok: boolean, expiresAt?: number }> = []
  const cache = new TokenCache({
    fetchToken: () => new Promise<string>((resolve, reject) => { fetches.push({ resolve, reject }) }),
    now: () => clock.now,
    random: () => randomValue,
    onRefresh: (event) => { events.push(event) },
    ...options
  })
  const last = (): Deferred => {
    const pending = fetches.at(-1)
    if (pending === undefined) throw new Error('no authenticate call was made')
    return pending
  }
  return {
    cache,
    clock,
    fetches,
    events,
    last,
    advance (ms: number) { clock.now += ms },
    /** Completes the latest authenticate call with `token` and lets callers see it. */
    async succeed (token: string) {
      last().resolve(token)
      await flush()
    },
    async fail (error: unknown = new Problem('UPSTREAM_TIMEOUT')) {
      last().reject(error)
      await flush()
    }
  }
}

type Harness = ReturnType<typeof harness>

async function problemOf (promise: Promise<unknown>): Promise<Problem> {
  try {
    await promise
  } catch (error) {
    if (error instanceof Problem) return error
    throw error
  }
  throw new Error('expected the promise to reject with a Problem')
}

/** Brings a fresh cache into the failed state with one failed authenticate call. */
async function failOnce (h: Harness, error: unknown = new Problem('UPSTREAM_TIMEOUT')): Promise<Problem> {
  const outcome = problemOf(h.cache.get())
  await h.fail(error)
  return outcome
}

/**
 * Asserts that the backoff window after the latest failure is exactly `ms`: one millisecond before
 * its end requests still fail fast without an authenticate call; at its end one attempt is made.
 * Returns that attempt, still pending.
 */
async function expectWindow (t: Test, h: Harness, ms: number): Promise<Settled<string>> {
  const failedAt = h.clock.now
  const before = h.fetches.length
  h.clock.now = failedAt + ms - 1
  const early = await problemOf(h.cache.get())
  t.equal(h.fetches.length, before, `no authenticate call ${ms - 1} ms into a ${ms} ms window`)
  t.equal(early.retryAfter, 1, 'the last millisecond of the window still asks for a 1 s wait')
  h.clock.now = failedAt + ms
  const attempt = track(h.cache.get())
  t.equal(h.fetches.length, before + 1, `one authenticate call once ${ms} ms have passed`)
  return attempt
}

t.test('tokenTimes', async (t) => {
  t.test('a 240-minute token is refreshed 60 s before it expires', async (t) => {
    const times = tokenTimes(tokenFor(240 * 60), START, 300_000)
    t.equal(times.expiresAt, START + 240 * 60_000)
    t.equal(times.refreshAt, START + 240 * 60_000 - 60_000)
  })

  t.test('a 5-minute token is refreshed 30 s (10 % of its lifetime) before it expires', async (t) => {
    const times = tokenTimes(tokenFor(300), START, 999_999)
    t.equal(times.expiresAt, START + 300_000)
    t.equal(times.refreshAt, START + 270_000)
  })

  t.test('the lifetime is measured from iat, not from when the token arrived', async (t) => {
    // 300 s lifetime, received 200 s after issue: skew is still 30 s.
    const times = tokenTimes(jwt({ iat: START_S - 200, exp: START_S + 100 }), START, 999_999)
    t.equal(times.expiresAt, START + 100_000)
    t.equal(times.refreshAt, START + 70_000)
  })

  t.test('without iat the lifetime is measured from now', async (t) => {
    const times = tokenTimes(jwt({ exp: START_S + 100 }), START, 999_999)
    t.equal(times.expiresAt, START + 100_000)
    t.equal(times.refreshAt, START + 90_000)
  })

  t.test('an iat at or after exp is ignored', async (t) => {
    const times = tokenTimes(jwt({ iat: START_S + 500, exp: START_S + 100 }), START, 999_999)
    t.equal(times.expiresAt, START + 100_000)
    t.equal(times.refreshAt, START + 90_000)
  })

  t.test('a token that arrives inside its own skew window is due for refresh at once, never earlier', async (t) => {
    const times = tokenTimes(jwt({ iat: START_S - 3600, exp: START_S + 10 }), START, 999_999)
    t.equal(times.expiresAt, START + 10_000)
    t.equal(times.refreshAt, START)
  })

  const unreadable: Record<string, string> = {
    'an opaque token (not a JWT)': 'opaque-application-session-4711',
    'an empty token': '',
    'a payload that is not base64': 'aaa.!!!$$$***.sig',
    'a payload that is not JSON': `aaa.${Buffer.from('not json').toString('base64url')}.sig`,
    'a JSON null payload': `aaa.${Buffer.from('null').toString('base64url')}.sig`,
    'a JSON array payload': `aaa.${Buffer.from('[1700000000]').toString('base64url')}.sig`,
    'a payload without exp': jwt({ iat: START_S }),
    'an exp that is a string': jwt({ exp: String(START_S + 3600) }),
    'an exp that is null': jwt({ exp: null }),
    'an exp in the past': jwt({ iat: START_S - 7200, exp: START_S - 3600 }),
    'an exp equal to now': jwt({ exp: START_S })
  }
  for (const [name, token] of Object.entries(unreadable)) {
    t.test(`${name} is kept for the fallback lifetime`, async (t) => {
      t.same(tokenTimes(token, START, 123_000), { expiresAt: START + 123_000, refreshAt: START + 123_000 })
    })
  }
})

t.test('a cold cache makes exactly one authenticate call for 50 concurrent requests', async (t) => {
  const h = harness()
  const waiting = Array.from({ length: 50 }, () => track(h.cache.get()))
  t.equal(h.fetches.length, 1)
  await flush()
  t.notOk(waiting.some((w) => w.settled), 'nobody gets an answer before authenticate completes')
  const token = tokenFor(3600)
  await h.succeed(token)
  t.ok(waiting.every((w) => w.value === token), 'all 50 callers receive the one token')
  t.equal(h.fetches.length, 1)
})

t.test('peek on a cold cache answers undefined and does not authenticate', async (t) => {
  const h = harness()
  t.equal(h.cache.peek(), undefined)
  t.equal(h.fetches.length, 0)
})

t.test('a cached token is served without further authenticate calls until its refresh time', async (t) => {
  const h = harness()
  const token = tokenFor(240 * 60)
  const first = track(h.cache.get())
  await h.succeed(token)
  t.equal(first.value, token)
  for (const offset of [0, 60_000, 3_600_000, 240 * 60_000 - 60_001]) {
    h.clock.now = START + offset
    t.equal(await h.cache.get(), token)
    t.equal(h.cache.peek(), token)
  }
  t.equal(h.fetches.length, 1)
})

t.test('a 240-minute token starts one background refresh exactly 60 s before exp', async (t) => {
  const h = harness()
  const old = tokenFor(240 * 60)
  const first = track(h.cache.get())
  await h.succeed(old)
  t.equal(first.value, old)
  const exp = START + 240 * 60_000

  h.clock.now = exp - 60_001
  t.equal(await h.cache.get(), old)
  t.equal(h.fetches.length, 1, 'no refresh 60.001 s before exp')

  h.clock.now = exp - 60_000
  t.equal(await h.cache.get(), old, 'the still-valid token is answered at once')
  t.equal(h.fetches.length, 2, 'the refresh started 60 s before exp')
})

t.test('a 5-minute token starts one background refresh exactly 30 s before exp', async (t) => {
  const h = harness()
  const old = tokenFor(300)
  const first = track(h.cache.get())
  await h.succeed(old)
  t.equal(first.value, old)

  h.clock.now = START + 269_999
  t.equal(h.cache.peek(), old)
  t.equal(h.fetches.length, 1, 'no refresh 30.001 s before exp')

  h.clock.now = START + 270_000
  t.equal(h.cache.peek(), old)
  t.equal(h.fetches.length, 2, 'the refresh started 30 s before exp')
})

t.test('inside the skew window get and peek answer the still-valid token while exactly one refresh runs', async (t) => {
  const h = harness()
  const old = tokenFor(300)
  const first = track(h.cache.get())
  await h.succeed(old)
  t.equal(first.value, old)

  h.clock.now = START + 280_000
  const answers = Array.from({ length: 20 }, () => track(h.cache.get()))
  const peeks = Array.from({ length: 20 }, () => h.cache.peek())
  await flush()
  t.ok(answers.every((a) => a.settled && a.value === old), 'every get answers the old token without waiting')
  t.ok(peeks.every((p) => p === old), 'every peek answers the old token')
  t.equal(h.fetches.length, 2, 'exactly one background refresh')

  const fresh = tokenFor(300, START_S + 280, 'fresh')
  await h.succeed(fresh)
  t.equal(await h.cache.get(), fresh, 'the refreshed token replaces the old one')
  t.equal(h.fetches.length, 2)
  t.same(h.events.map((e) => e.ok), [true, true])
})

t.test('a token that expires while its background refresh is in flight makes callers wait for that same refresh', async (t) => {
  const h = harness()
  const first = track(h.cache.get())
  await h.succeed(tokenFor(300))
  t.ok(first.settled)
  h.clock.now = START + 290_000
  h.cache.peek()
  t.equal(h.fetches.length, 2)

  h.clock.now = START + 300_000
  t.equal(h.cache.peek(), undefined, 'an expired token is never handed out')
  const waiting = Array.from({ length: 10 }, () => track(h.cache.get()))
  await flush()
  t.notOk(waiting.some((w) => w.settled))
  t.equal(h.fetches.length, 2, 'no second refresh')
  const fresh = tokenFor(300, START_S + 300, 'fresh')
  await h.succeed(fresh)
  t.ok(waiting.every((w) => w.value === fresh))
})

t.test('after expiry callers wait for a new token', async (t) => {
  const h = harness()
  const old = tokenFor(300)
  const first = track(h.cache.get())
  await h.succeed(old)
  t.equal(first.value, old)

  h.clock.now = START + 300_000
  t.equal(h.cache.peek(), undefined)
  const waiting = [track(h.cache.get()), track(h.cache.get())]
  await flush()
  t.equal(h.fetches.length, 2, 'one new authenticate call')
  t.notOk(waiting.some((w) => w.settled), 'callers wait instead of receiving the expired token')
  const fresh = tokenFor(300, START_S + 300, 'fresh')
  await h.succeed(fresh)
  t.same(waiting.map((w) => w.value), [fresh, fresh])
})

t.test('a token without a readable exp is kept for the fallback lifetime, then fetched again', async (t) => {
  for (const token of ['opaque-token', jwt({ iat: START_S }), jwt({ exp: START_S - 10 }), 'a.%%%.c']) {
    const h = harness({ fallbackLifetimeMs: 120_000 })
    const first = track(h.cache.get())
    await h.succeed(token)
    t.equal(first.value, token)
    h.clock.now = START + 119_999
    t.equal(await h.cache.get(), token, `${token} is still served just before the fallback lifetime ends`)
    t.equal(h.fetches.length, 1)
    h.clock.now = START + 120_000
    const next = track(h.cache.get())
    t.equal(h.fetches.length, 2, `${token} is replaced after the fallback lifetime`)
    await h.succeed('replacement')
    t.equal(next.value, 'replacement')
  }
})

t.test('the default fallback lifetime is five minutes', async (t) => {
  const h = harness()
  const first = track(h.cache.get())
  await h.succeed('opaque')
  t.equal(first.value, 'opaque')
  h.clock.now = START + 299_999
  t.equal(h.cache.peek(), 'opaque')
  h.clock.now = START + 300_000
  t.equal(h.cache.peek(), undefined)
})

t.test('a failed authenticate rejects every waiting caller with that failure', async (t) => {
  const h = harness()
  const waiting = Array.from({ length: 5 }, () => problemOf(h.cache.get()))
  t.equal(h.fetches.length, 1)
  await h.fail(new Problem('UPSTREAM_UNAVAILABLE', { retryAfter: 5 }))
  for (const problem of await Promise.all(waiting)) {
    t.equal(problem.code, 'UPSTREAM_UNAVAILABLE')
    t.equal(problem.status, 503)
  }
  t.same(h.events, [{ ok: false }])
})

t.test('an authenticate failure that is not a Problem becomes UPSTREAM_AUTH_FAILED', async (t) => {
  const h = harness()
  const problem = await failOnce(h, new TypeError('socket hang up at 10.0.0.7'))
  t.equal(problem.code, 'UPSTREAM_AUTH_FAILED')
  t.equal(problem.status, 502)
  t.notMatch(problem.detail, /10\.0\.0\.7/)
  const again = await problemOf(h.cache.get())
  t.equal(again.code, 'UPSTREAM_AUTH_FAILED', 'the fail-fast answer repeats the translated failure')
})

t.test('backoff windows start at 1 s, double per failure and are capped at 60 s (random = 0)', async (t) => {
  const h = harness({}, 0)
  const first = await failOnce(h)
  t.equal(first.retryAfter, 1, 'the failing caller learns the window length')
  const expected = [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]
  for (const [i, ms] of expected.entries()) {
    const attempt = await expectWindow(t, h, ms)
    await h.fail()
    const problem = attempt.error
    t.ok(problem instanceof Problem)
    t.equal((problem as Problem).retryAfter, Math.ceil((expected[i + 1] ?? 60_000) / 1000), 'Retry-After of the failed attempt is the next window')
  }
  t.equal(h.fetches.length, expected.length + 1, 'exactly one authenticate call per window')
})

t.test('jitter only lengthens the backoff window and keeps it bounded (random ≈ 1)', async (t) => {
  const h = harness({}, 0.999_999)
  await failOnce(h)
  for (const base of [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]) {
    const failedAt = h.clock.now
    const before = h.fetches.length
    h.clock.now = failedAt + base
    const atBase = await problemOf(h.cache.get())
    t.equal(h.fetches.length, before, `still blocked at the unjittered ${base} ms`)
    t.ok(atBase.retryAfter !== undefined && atBase.retryAfter >= 1)
    h.clock.now = failedAt + base * 1.5
    const attempt = track(h.cache.get())
    t.equal(h.fetches.length, before + 1, `an attempt is allowed at ${base * 1.5} ms`)
    await h.fail()
    t.ok(attempt.error instanceof Problem)
  }
})

t.test('after enough failures the window is at least 60 s', async (t) => {
  const h = harness({}, 0)
  await failOnce(h)
  for (let i = 0; i < 6; i++) {
    h.advance(120_000)
    const attempt = track(h.cache.get())
    await h.fail()
    t.ok(attempt.error instanceof Problem)
  }
  const failedAt = h.clock.now
  const before = h.fetches.length
  h.clock.now = failedAt + 59_999
  const problem = await problemOf(h.cache.get())
  t.equal(h.fetches.length, before, 'still no authenticate call 59.999 s after the 7th failure')
  t.equal(problem.retryAfter, 1)
})

t.test('calls inside the window fail fast with the last failure and the remaining window as Retry-After', async (t) => {
  const h = harness({}, 0)
  await failOnce(h, new Problem('UPSTREAM_TIMEOUT'))
  let attempt = await expectWindow(t, h, 1000)
  await h.fail(new Problem('UPSTREAM_TIMEOUT'))
  t.ok(attempt.error instanceof Problem)
  attempt = await expectWindow(t, h, 2000)
  // Third failure: a different code; the fail-fast answers must follow the latest one.
  await h.fail(new Problem('UPSTREAM_UNAVAILABLE', { detail: 'emnify could not be reached' }))
  t.ok(attempt.error instanceof Problem)

  const failedAt = h.clock.now
  const before = h.fetches.length
  const probes: Array<[number, number]> = [[0, 4], [1, 4], [999, 4], [1000, 3], [1500, 3], [2001, 2], [3000, 1], [3999, 1]]
  for (const [offset, retryAfter] of probes) {
    h.clock.now = failedAt + offset
    const problem = await problemOf(h.cache.get())
    t.equal(problem.code, 'UPSTREAM_UNAVAILABLE', `code at +${offset} ms`)
    t.equal(problem.status, 503, `status at +${offset} ms`)
    t.equal(problem.detail, 'emnify could not be reached')
    t.equal(problem.retryAfter, retryAfter, `Retry-After at +${offset} ms is the remaining window rounded up`)
  }
  t.equal(h.fetches.length, before, 'no authenticate call inside the window')
})

t.test('after the window, concurrent callers share exactly one new attempt', async (t) => {
  const h = harness({}, 0)
  await failOnce(h)
  h.advance(1000)
  const waiting = Array.from({ length: 30 }, () => track(h.cache.get()))
  t.equal(h.fetches.length, 2)
  const token = tokenFor(3600, START_S + 1)
  await h.succeed(token)
  t.ok(waiting.every((w) => w.value === token))
})

t.test('a success resets the backoff', async (t) => {
  const h = harness({}, 0)
  await failOnce(h)
  let attempt = await expectWindow(t, h, 1000)
  await h.fail()
  t.ok(attempt.error instanceof Problem)
  attempt = await expectWindow(t, h, 2000)
  await h.fail()
  t.ok(attempt.error instanceof Problem)
  attempt = await expectWindow(t, h, 4000)
  const token = tokenFor(300, Math.floor(h.clock.now / 1000))
  await h.succeed(token)
  t.equal(attempt.value, token)
  t.equal(h.events.at(-1)?.ok, true)

  // Let the token expire, then fail again: the window is back at 1 s.
  h.advance(300_000)
  const failed = await failOnce(h)
  t.equal(failed.retryAfter, 1)
  await expectWindow(t, h, 1000)
})

t.test('an upstream Retry-After longer than the backoff window lengthens it', async (t) => {
  const h = harness({}, 0)
  const first = await failOnce(h, new Problem('UPSTREAM_RATE_LIMITED', { retryAfter: 120 }))
  t.equal(first.code, 'UPSTREAM_RATE_LIMITED')
  t.equal(first.retryAfter, 120)
  h.advance(60_000)
  const inside = await problemOf(h.cache.get())
  t.equal(inside.code, 'UPSTREAM_RATE_LIMITED')
  t.equal(inside.retryAfter, 60)
  t.equal(h.fetches.length, 1, 'no authenticate call before the upstream allows it')
  h.clock.now = START
  await expectWindow(t, h, 120_000)
})

t.test('an upstream Retry-After shorter than the backoff window does not shorten it', async (t) => {
  const h = harness({}, 0)
  await failOnce(h)
  let attempt = await expectWindow(t, h, 1000)
  await h.fail()
  t.ok(attempt.error instanceof Problem)
  attempt = await expectWindow(t, h, 2000)
  await h.fail(new Problem('UPSTREAM_RATE_LIMITED', { retryAfter: 1 }))
  t.equal((attempt.error as Problem).retryAfter, 4)
  await expectWindow(t, h, 4000)
})

t.test('a failed refresh keeps serving the still-valid token', async (t) => {
  const h = harness({}, 0)
  const old = tokenFor(300)
  const first = track(h.cache.get())
  await h.succeed(old)
  t.equal(first.value, old)

  h.clock.now = START + 270_000
  t.equal(await h.cache.get(), old)
  t.equal(h.fetches.length, 2)
  await h.fail(new Problem('UPSTREAM_UNAVAILABLE'))
  t.same(h.events.map((e) => e.ok), [true, false])

  t.equal(await h.cache.get(), old, 'the old token is still served after the failed refresh')
  t.equal(h.cache.peek(), old)
  h.clock.now = START + 270_999
  t.equal(await h.cache.get(), old)
  t.equal(h.fetches.length, 2, 'no refresh attempt inside the backoff window')

  h.clock.now = START + 271_000
  t.equal(await h.cache.get(), old)
  t.equal(h.fetches.length, 3, 'one new background attempt once the window has passed')
  await h.fail(new Problem('UPSTREAM_UNAVAILABLE', { detail: 'still down', retryAfter: 60 }))

  // The token expires inside the new 60 s backoff window (until +331 s): now callers fail fast.
  h.clock.now = START + 299_999
  t.equal(await h.cache.get(), old, 'served until the last millisecond of its life')
  h.clock.now = START + 300_000
  const problem = await problemOf(h.cache.get())
  t.equal(problem.code, 'UPSTREAM_UNAVAILABLE')
  t.equal(problem.detail, 'still down')
  t.equal(problem.retryAfter, 31)
  t.equal(h.fetches.length, 3)
})

t.test('reject', async (t) => {
  t.test('drops the current token so the next get re-authenticates', async (t) => {
    const h = harness()
    const token = tokenFor(3600)
    const first = track(h.cache.get())
    await h.succeed(token)
    t.equal(first.value, token)
    h.advance(2000)
    t.equal(h.cache.reject(token), true)
    t.equal(h.cache.peek(), undefined)
    t.equal(h.cache.expiresInSeconds(), 0)
    const next = track(h.cache.get())
    t.equal(h.fetches.length, 2)
    const fresh = tokenFor(3600, START_S + 2, 'fresh')
    await h.succeed(fresh)
    t.equal(next.value, fresh)
  })

  t.test('answers true for a stale token without dropping the current one', async (t) => {
    const h = harness()
    const current = tokenFor(3600)
    const first = track(h.cache.get())
    await h.succeed(current)
    t.equal(first.value, current)
    h.advance(10_000)
    t.equal(h.cache.reject(tokenFor(3600, START_S - 60, 'stale')), true)
    t.equal(h.cache.reject('some-other-token'), true)
    t.equal(h.cache.peek(), current)
    t.equal(h.fetches.length, 1)
  })

  t.test('a fresh token that replaced a rejected one and is rejected again answers false and is kept', async (t) => {
    const h = harness()
    const first = track(h.cache.get())
    await h.succeed(tokenFor(3600))
    t.ok(first.settled)
    h.advance(60_000)
    t.equal(h.cache.reject(tokenFor(3600)), true)
    const replacement = tokenFor(3600, START_S + 60, 'replacement')
    const next = track(h.cache.get())
    await h.succeed(replacement)
    t.equal(next.value, replacement)

    h.advance(4999)
    t.equal(h.cache.reject(replacement), false, 'a replacement rejected at once points at the credential, not the token')
    t.equal(h.cache.peek(), replacement, 'and is kept, so no authenticate storm follows')
    t.equal(await h.cache.get(), replacement)
    t.equal(h.fetches.length, 2)

    h.advance(1)
    t.equal(h.cache.reject(replacement), true, 'once it is old enough, a rejection drops it again')
    t.equal(h.cache.peek(), undefined)
  })

  t.test('a young token that did not replace a rejected one is dropped when rejected', async (t) => {
    const h = harness()
    const token = tokenFor(3600)
    const first = track(h.cache.get())
    await h.succeed(token)
    t.equal(first.value, token)
    t.equal(h.cache.reject(token), true, 'the very first token may simply have been revoked')
    t.equal(h.cache.peek(), undefined)

    // A proactive refresh is not a replacement either.
    const h2 = harness()
    const initial = track(h2.cache.get())
    await h2.succeed(tokenFor(300))
    t.ok(initial.settled)
    h2.clock.now = START + 280_000
    h2.cache.peek()
    const refreshed = tokenFor(300, START_S + 280, 'refreshed')
    await h2.succeed(refreshed)
    t.equal(h2.cache.peek(), refreshed)
    t.equal(h2.cache.reject(refreshed), true)
    t.equal(h2.cache.peek(), undefined)
  })

  t.test('honours a configured minReauthAgeMs', async (t) => {
    const h = harness({ minReauthAgeMs: 10_000 })
    const first = track(h.cache.get())
    await h.succeed(tokenFor(3600))
    t.ok(first.settled)
    t.equal(h.cache.reject(tokenFor(3600)), true)
    const token = tokenFor(3600, START_S, 'replacement')
    const next = track(h.cache.get())
    await h.succeed(token)
    t.equal(next.value, token)
    h.advance(9999)
    t.equal(h.cache.reject(token), false)
    h.advance(1)
    t.equal(h.cache.reject(token), true)
    t.equal(h.cache.peek(), undefined)
  })

  t.test('a replacement that has served a successful call earns a re-authentication on a later 401', async (t) => {
    const h = harness()
    const first = track(h.cache.get())
    await h.succeed(tokenFor(3600))
    t.ok(first.settled)
    t.equal(h.cache.reject(tokenFor(3600)), true, 'the 401 storm drops the first token')
    const replacement = tokenFor(3600, START_S, 'replacement')
    const next = track(h.cache.get())
    await h.succeed(replacement)
    t.equal(next.value, replacement)
    h.cache.confirm(replacement)
    h.advance(1000)
    t.equal(h.cache.reject(replacement), true, 'revoked upstream a second later: one re-authentication, not 502 for 5 s')
    t.equal(h.cache.peek(), undefined)
    const again = track(h.cache.get())
    t.equal(h.fetches.length, 3, 'exactly one new authenticate call')
    await h.succeed(tokenFor(3600, START_S + 1, 'third'))
    t.equal(again.value, tokenFor(3600, START_S + 1, 'third'))
  })

  t.test('confirming a token other than the current one changes nothing', async (t) => {
    const h = harness()
    const first = track(h.cache.get())
    await h.succeed(tokenFor(3600))
    t.ok(first.settled)
    h.cache.reject(tokenFor(3600))
    const replacement = tokenFor(3600, START_S, 'replacement')
    const next = track(h.cache.get())
    await h.succeed(replacement)
    t.ok(next.settled)
    h.cache.confirm(tokenFor(3600))
    t.equal(h.cache.reject(replacement), false, 'an unproven replacement rejected at once still points at the credential')
  })

  t.test('on an empty cache answers true', async (t) => {
    const h = harness()
    t.equal(h.cache.reject('anything'), true)
    t.equal(h.fetches.length, 0)
  })
})

t.test('expiresInSeconds follows the cached token', async (t) => {
  const h = harness()
  t.equal(h.cache.expiresInSeconds(), 0, 'no token, nothing left')
  const first = track(h.cache.get())
  await h.succeed(tokenFor(300))
  t.ok(first.settled)
  t.equal(h.cache.expiresInSeconds(), 300)
  h.advance(100_500)
  t.equal(h.cache.expiresInSeconds(), 199.5)
  h.advance(500_000)
  t.equal(h.cache.expiresInSeconds(), 0, 'never negative after expiry')
})

t.test('onRefresh reports successes with the expiry and failures without one', async (t) => {
  const h = harness()
  const first = track(h.cache.get())
  await h.succeed(tokenFor(600))
  t.ok(first.settled)
  h.clock.now = START + 600_000
  await failOnce(h)
  t.same(h.events, [{ ok: true, expiresAt: START + 600_000 }, { ok: false }])
})

/** `instances` caches sharing one token store, each counting its own authenticate calls. */
function fleet (instances: number, options: { lockTtlMs?: number, fetch?: (i: number) => Promise<string> } = {}) {
  const store = new MemoryTokenStore()
  const authenticates: number[] = []
  const caches = Array.from({ length: instances }, (_, i) => new TokenCache({
    fetchToken: async () => {
      authenticates.push(i)
      return await (options.fetch?.(i) ?? Promise.resolve(jwt({ iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600 }, `by-${i}-${authenticates.length}`)))
    },
    shared: { store: i === 0 ? store : store.instance(), lockTtlMs: options.lockTtlMs ?? 1000 }
  }))
  return { store, caches, authenticates }
}

t.test('in a fleet', async (t) => {
  t.test('a cold start of three instances makes one authenticate call, and all use its token', async (t) => {
    const f = fleet(3)
    const tokens = await Promise.all(f.caches.flatMap((cache) => [cache.get(), cache.get()]))
    t.equal(f.authenticates.length, 1)
    t.equal(new Set(tokens).size, 1, 'every instance serves the same token')
  })

  t.test('a token rejected upstream is replaced once for the fleet, not taken back from the store', async (t) => {
    const f = fleet(3)
    const first = await Promise.all(f.caches.map((cache) => cache.get()))
    const rejected = first[0] as string
    for (const cache of f.caches) t.equal(cache.reject(rejected), true)
    const next = await Promise.all(f.caches.map((cache) => cache.get()))
    t.equal(f.authenticates.length, 2, 'one authenticate for the replacement')
    t.equal(new Set(next).size, 1)
    t.not(next[0], rejected)
  })

  t.test('a holder that dies blocks the others no longer than the lock TTL', async (t) => {
    const survivor = tokenFor(3600, Math.floor(Date.now() / 1000), 'survivor')
    const f = fleet(2, { lockTtlMs: 50, fetch: (i) => i === 0 ? new Promise(() => {}) : Promise.resolve(survivor) })
    f.caches[0]?.get().catch(() => {})
    await flush()
    const started = Date.now()
    const token = await f.caches[1]?.get()
    t.equal(token, survivor, 'the survivor authenticated itself once the lock ran out')
    t.same(f.authenticates, [0, 1])
    t.ok(Date.now() - started < 2000, 'well within two lock TTLs plus scheduling')
  })

  t.test('a failed authenticate makes the waiting instances fail alike, without calls of their own', async (t) => {
    let fail: (error: unknown) => void = () => {}
    const f = fleet(3, { fetch: () => new Promise((_resolve, reject) => { fail = reject }) })
    const outcomes = f.caches.map((cache) => problemOf(cache.get()))
    await flush()
    fail(new Problem('UPSTREAM_AUTH_FAILED', { detail: 'emnify refused the application token' }))
    const problems = await Promise.all(outcomes)
    t.equal(f.authenticates.length, 1)
    t.same(problems.map((problem) => problem.code), ['UPSTREAM_AUTH_FAILED', 'UPSTREAM_AUTH_FAILED', 'UPSTREAM_AUTH_FAILED'])
    t.ok(problems.every((problem) => (problem.retryAfter ?? 0) >= 1), 'each with a Retry-After')
  })

  t.test('when the shared store fails, each instance authenticates on its own', async (t) => {
    const broken = new MemoryTokenStore()
    broken.read = async () => { throw new Error('connection is closed') }
    let calls = 0
    const cache = new TokenCache({ fetchToken: async () => { calls++; return tokenFor(3600, START_S, 'alone') }, shared: { store: broken, lockTtlMs: 1000 } })
    t.equal(await cache.get(), tokenFor(3600, START_S, 'alone'))
    t.equal(calls, 1)
  })

  t.test('a proactive refresh takes a newer fleet token instead of authenticating again', async (t) => {
    const clock = { now: START }
    const store = new MemoryTokenStore({ now: () => clock.now })
    let calls = 0
    const make = (marker: string, s: MemoryTokenStore) => new TokenCache({
      fetchToken: async () => { calls++; return tokenFor(300, Math.floor(clock.now / 1000), `${marker}${calls}`) },
      now: () => clock.now,
      shared: { store: s, lockTtlMs: 1000 }
    })
    const a = make('a', store)
    const b = make('b', store.instance())
    const first = await a.get()
    t.equal(await b.get(), first)
    clock.now = START + 275_000 // inside the 30 s skew of a 5-minute token
    a.peek()
    await flush()
    await flush()
    t.equal(calls, 2, 'one refresh for the fleet')
    b.peek()
    await flush()
    await flush()
    t.equal(calls, 2, 'the other instance took the refreshed token from the fleet')
    t.equal(b.peek(), a.peek())
  })
})
