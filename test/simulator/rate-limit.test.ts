import { get } from 'node:http'
import t from 'tap'
import { EMNIFY_RATE_LIMIT, RATE_LIMIT_SLOTS } from '../../simulator/simulator.ts'
import type { RateLimit } from '../../simulator/simulator.ts'
import { RateLimiter } from '../../simulator/rate-limit.ts'
import { APP_TOKEN, CONTACT_1, setup } from './harness.ts'
import type { Harness, Reply } from './harness.ts'

const SMALL: RateLimit = { requests: 5, authenticate: 3, windowMs: 1000 }
const START = Date.UTC(2026, 0, 1)

interface Clocked extends Harness {
  token: string
  at: (ms: number) => void
  get: () => Promise<Reply>
}

/** A simulator with a small limit and a clock the test moves; one authenticate already spent at START. */
async function limited (t: Parameters<typeof setup>[0], limit: Partial<RateLimit> = SMALL): Promise<Clocked> {
  let now = START
  const h = await setup(t, { rateLimit: limit, clock: () => now })
  const token = await h.authenticate()
  return {
    ...h,
    token,
    at: (ms) => { now = START + ms },
    get: () => h.call('GET', CONTACT_1, { token })
  }
}

async function statuses (count: number, send: () => Promise<Reply>): Promise<number[]> {
  const seen: number[] = []
  for (let i = 0; i < count; i++) seen.push((await send()).status)
  return seen
}

t.test('off by default: no number of requests is refused', async (t) => {
  const h = await setup(t)
  t.equal(h.sim.state.settings.rateLimit, false)
  const seen = await statuses(EMNIFY_RATE_LIMIT.authenticate + 5, () =>
    h.call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } }))
  t.same(new Set(seen), new Set([200]))
  t.equal(h.sim.state.counters.rate_limited, 0)
})

t.test('past the limit every request gets 429 TooManyRequests, without Retry-After, and is counted', async (t) => {
  const h = await limited(t)
  t.same(await statuses(4, h.get), [200, 200, 200, 200], 'authenticate and four reads make five')
  const refused = await h.get()
  t.equal(refused.status, 429)
  t.match(refused.headers['content-type'], /^application\/json/)
  t.same(refused.json(), { error_code: 1105, error_token: 'TooManyRequests', message: 'Too many requests' })
  t.equal(refused.headers['retry-after'], undefined, 'emnify documents no Retry-After')
  t.notOk(Object.keys(refused.headers).some((name) => name.startsWith('x-ratelimit')), 'nor X-RateLimit-*')
  t.match(h.sim.state.counters, { rate_limited: 1, get_contact: 5, total: 6 })
  t.equal(h.sim.state.callsFor('get_contact').length, 5, 'refused calls are still logged')
})

t.test('every path counts, known or not, and every one is refused once past the limit', async (t) => {
  const h = await limited(t)
  const token = h.token
  const paths = ['/api/v1/country', '/api/v1/organisation/1/contact', '/favicon.ico', '/api/v1/nothing']
  for (const path of paths) t.not((await h.call('GET', path, { token })).status, 429, path)
  for (const path of [...paths, '/api/v1/authenticate']) {
    t.equal((await h.call(path.endsWith('authenticate') ? 'POST' : 'GET', path, { token })).status, 429, path)
  }
  t.equal(h.sim.state.counters.rate_limited, 5)
})

t.test('refused requests count too, so a client that keeps its rate up stays refused', async (t) => {
  const h = await limited(t)
  await statuses(4, h.get)
  // Ten a second against a limit of five a second, for two whole windows.
  const seen: number[] = []
  for (let ms = 100; ms <= 2000; ms += 100) {
    h.at(ms)
    seen.push((await h.get()).status)
  }
  t.same(new Set(seen), new Set([429]), 'every request refused while the average rate is above the limit')
  h.at(3000)
  t.equal((await h.get()).status, 200, 'a quiet window later it is served again')
})

t.test('a request is served again once the average rate is back within the limit', async (t) => {
  const h = await limited(t)
  await statuses(4, h.get)
  h.at(500)
  t.equal((await h.get()).status, 429)
  h.at(999)
  t.equal((await h.get()).status, 429, 'the burst is still inside the window')
  h.at(1000)
  t.equal((await h.get()).status, 200, 'the burst has left the window; two refused requests remain')
  t.same(await statuses(2, h.get), [200, 200])
  t.equal((await h.get()).status, 429, 'five again in the window')
})

t.test('authenticate has its own, smaller limit inside the general one', async (t) => {
  const h = await limited(t, { requests: 100, authenticate: 3, windowMs: 1000 })
  const authenticate = (): Promise<Reply> => h.call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })
  t.same(await statuses(3, authenticate), [200, 200, 429], 'the fourth authenticate of the window')
  t.match((await authenticate()).json(), { error_code: 1105 })
  t.equal((await h.get()).status, 200, 'other calls go on while authenticate is refused')
  h.at(1000)
  t.equal((await authenticate()).status, 200)
  t.match(h.sim.state.counters, { authenticate: 6, rate_limited: 2 })
})

/** A GET from another loopback address (undici's agent cannot pick the local address; node:http can). */
function getFrom (localAddress: string, url: string, token: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = get(url, { localAddress, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.once('error', () => resolve(undefined))
  })
}

t.test('the limit is per client IP', async (t) => {
  const h = await limited(t)
  await statuses(4, h.get)
  t.equal((await h.get()).status, 429)
  const fromOther = await getFrom('127.0.0.2', `${h.sim.url}${CONTACT_1}`, h.token)
  if (fromOther === undefined) {
    t.pass('skipped: cannot bind 127.0.0.2 here')
    return
  }
  t.equal(fromOther, 200, 'another address has its own allowance')
  t.equal((await h.get()).status, 429, 'and the first is still refused')
})

t.test('the limit comes before faults, and control requests are neither counted nor refused', async (t) => {
  const h = await limited(t)
  await statuses(3, h.get)
  h.sim.setFault({ operation: 'any', kind: 'status', status: 503, times: 1 })
  t.equal((await h.get()).status, 503, 'the fifth request reaches the fault')
  h.sim.setFault({ operation: 'any', kind: 'status', status: 503, times: 1 })
  t.equal((await h.get()).status, 429)
  t.same(h.sim.state.faults.map((f) => f.times), [1], 'the refused request did not use the fault up')
  for (let i = 0; i < 10; i++) t.equal((await h.call('GET', '/_sim/calls')).status, 200)
})

t.test('lean mode is limited too', async (t) => {
  const now = START
  const h = await setup(t, { lean: true, rateLimit: { requests: 2 }, clock: () => now })
  const token = await h.authenticate()
  t.equal((await h.call('PATCH', CONTACT_1, { token, body: {} })).status, 204)
  t.equal((await h.call('PATCH', CONTACT_1, { token, body: {} })).status, 429)
})

t.test('switched and scaled at runtime', async (t) => {
  t.test('by configure, which starts the window afresh', async (t) => {
    const h = await limited(t)
    await statuses(4, h.get)
    t.equal((await h.get()).status, 429)
    h.sim.configure({ rateLimit: { requests: 2, windowMs: 500 } })
    t.same(h.sim.state.settings.rateLimit, { requests: 2, authenticate: 100, windowMs: 500 }, 'missing figures are emnify\'s')
    t.same(await statuses(3, h.get), [200, 200, 429])
    h.sim.configure({ rateLimit: false })
    t.same(await statuses(3, h.get), [200, 200, 200])
  })

  t.test('over HTTP: POST /_sim/settings turns it on with emnify\'s figures, then off', async (t) => {
    const h = await setup(t)
    const token = await h.authenticate()
    const on = await h.call('POST', '/_sim/settings', { body: { rateLimit: true } })
    t.equal(on.status, 200)
    t.same((on.json() as { rateLimit: unknown }).rateLimit, EMNIFY_RATE_LIMIT)
    await h.call('POST', '/_sim/settings', { body: { rateLimit: { requests: 1, windowMs: 60_000 } } })
    t.same(await statuses(2, () => h.call('GET', CONTACT_1, { token })), [200, 429])
    t.match((await h.call('GET', '/_sim/calls')).json(), { counters: { rate_limited: 1 } })
    await h.call('POST', '/_sim/settings', { body: { rateLimit: false } })
    t.equal((await h.call('GET', CONTACT_1, { token })).status, 200)
  })

  t.test('reset starts the window afresh and keeps the limit on', async (t) => {
    const h = await limited(t)
    await statuses(5, h.get)
    t.equal((await h.get()).status, 429)
    t.equal((await h.call('POST', '/_sim/reset')).status, 204)
    t.same(h.sim.state.settings.rateLimit, SMALL)
    t.same(await statuses(6, h.get), [200, 200, 200, 200, 200, 429])
  })
})

t.test('emnify\'s figures: 100 authenticate calls and 2,000 requests per IP per 5 minutes', async (t) => {
  t.test('over HTTP, the 101st authenticate of the window is refused', async (t) => {
    const now = START
    const h = await setup(t, { rateLimit: true, clock: () => now })
    const seen = await statuses(101, () => h.call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } }))
    t.equal(seen.filter((s) => s === 200).length, 100)
    t.equal(seen.at(-1), 429)
  })

  t.test('the 2,001st request of the window is refused; five minutes later it is served', async (t) => {
    const limiter = new RateLimiter(EMNIFY_RATE_LIMIT)
    let refused = 0
    for (let i = 0; i < 2000; i++) if (limiter.refuse('203.0.113.7', 'get_contact', START + i)) refused++
    t.equal(refused, 0)
    t.ok(limiter.refuse('203.0.113.7', 'get_contact', START + 2000))
    t.notOk(limiter.refuse('203.0.113.7', 'get_contact', START + 300_000 + 2000))
  })
})

t.test('the window in detail', async (t) => {
  t.test('a request leaves the window between windowMs minus one slot and windowMs after it came', async (t) => {
    const limit = { requests: 1, authenticate: 1, windowMs: 6000 }
    const slotMs = limit.windowMs / RATE_LIMIT_SLOTS
    const first = new RateLimiter(limit)
    t.notOk(first.refuse('a', 'other', START), 'at the start of a slot')
    t.ok(first.refuse('a', 'other', START + limit.windowMs - 1), 'still there a millisecond before windowMs')
    t.notOk(new RateLimiter(limit).refuse('a', 'other', START + limit.windowMs), 'a fresh limiter serves anyone')
    const last = new RateLimiter(limit)
    t.notOk(last.refuse('a', 'other', START + slotMs - 1), 'at the end of a slot')
    t.ok(last.refuse('a', 'other', START + limit.windowMs - slotMs), 'still there windowMs minus one slot later')
    t.notOk(last.refuse('a', 'other', START + 2 * limit.windowMs), 'gone once the window has passed')
    const edge = new RateLimiter(limit)
    edge.refuse('a', 'other', START + slotMs - 1)
    t.notOk(edge.refuse('a', 'other', START + limit.windowMs), 'gone at the next slot edge after windowMs - slotMs + 1 ms')
  })

  t.test('a clock that steps back counts into the newest slot instead of reviving old ones', async (t) => {
    const limiter = new RateLimiter({ requests: 2, authenticate: 2, windowMs: 1000 })
    limiter.refuse('a', 'other', START + 5000)
    t.notOk(limiter.refuse('a', 'other', START))
    t.ok(limiter.refuse('a', 'other', START + 5000), 'both counted in the window ending at +5000')
  })

  t.test('remembers at most 10,000 clients, forgetting the least recently seen', async (t) => {
    const limiter = new RateLimiter({ requests: 1, authenticate: 1, windowMs: 1000 })
    limiter.refuse('kept', 'other', START)
    for (let i = 0; i < 9_999; i++) limiter.refuse(`c${i}`, 'other', START)
    limiter.refuse('kept', 'other', START)
    limiter.refuse('newcomer', 'other', START)
    t.equal(limiter.clients, 10_000)
    t.ok(limiter.refuse('kept', 'other', START), 'the recently seen client is still limited')
    t.notOk(limiter.refuse('c0', 'other', START), 'the least recently seen was forgotten')
  })
})
