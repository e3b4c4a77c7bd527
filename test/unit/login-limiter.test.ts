import t from 'tap'
import { LoginLimiter } from '../../src/session/login-limiter.ts'

const WINDOW_MS = 15 * 60_000

function clock (start = 1_700_000_000_000) {
  const state = { now: start }
  return { now: () => state.now, advance: (ms: number) => { state.now += ms } }
}

function failTimes (limiter: LoginLimiter, username: string, times: number) {
  for (let i = 0; i < times; i++) limiter.fail(username)
}

t.test('four failures leave the username free to try; the fifth blocks it', async (t) => {
  const limiter = new LoginLimiter({ now: clock().now })
  failTimes(limiter, 'alice', 4)
  t.equal(limiter.blockedFor('alice'), 0, 'not blocked after four failures')
  limiter.fail('alice')
  t.ok(limiter.blockedFor('alice') > 0, 'blocked after five failures')
})

t.test('the wait is what remains of the 15-minute window since the oldest counted failure', async (t) => {
  const c = clock()
  const limiter = new LoginLimiter({ now: c.now })
  limiter.fail('alice')
  c.advance(60_000)
  failTimes(limiter, 'alice', 4)
  t.equal(limiter.blockedFor('alice'), 15 * 60 - 60, 'right after the fifth failure: 15 minutes minus the minute since the first')
  c.advance(5 * 60_000 + 500)
  t.equal(limiter.blockedFor('alice'), Math.ceil((WINDOW_MS - 6 * 60_000 - 500) / 1000), 'counts down with the clock, rounded up')
})

t.test('the block ends when the window passes the oldest failure', async (t) => {
  const c = clock()
  const limiter = new LoginLimiter({ now: c.now })
  failTimes(limiter, 'alice', 5)
  c.advance(WINDOW_MS - 1)
  t.equal(limiter.blockedFor('alice'), 1, 'one millisecond before the end it still asks for a second')
  c.advance(1)
  t.equal(limiter.blockedFor('alice'), 0, 'free once the window has passed')
  limiter.fail('alice')
  t.equal(limiter.blockedFor('alice'), 0, 'the old failures no longer count: one new failure does not block')
  t.equal(limiter.size, 1)
})

t.test('failures spread over more than the window never block', async (t) => {
  const c = clock()
  const limiter = new LoginLimiter({ now: c.now })
  for (let i = 0; i < 20; i++) {
    limiter.fail('alice')
    c.advance(WINDOW_MS / 4)
    t.equal(limiter.blockedFor('alice'), 0, `failure ${i + 1}`)
  }
})

t.test('with more than five failures the wait follows the fifth newest', async (t) => {
  const c = clock()
  const limiter = new LoginLimiter({ now: c.now })
  for (let i = 0; i < 8; i++) {
    limiter.fail('alice')
    c.advance(60_000)
  }
  // Failures at minutes 0..7, now minute 8: the fifth newest was at minute 3.
  t.equal(limiter.blockedFor('alice'), 15 * 60 - 5 * 60)
})

t.test('a success clears the failures', async (t) => {
  const limiter = new LoginLimiter({ now: clock().now })
  failTimes(limiter, 'alice', 4)
  limiter.succeed('alice')
  t.equal(limiter.size, 0, 'nothing is remembered after a success')
  failTimes(limiter, 'alice', 4)
  t.equal(limiter.blockedFor('alice'), 0, 'four new failures after the success do not block')
  limiter.fail('alice')
  t.ok(limiter.blockedFor('alice') > 0, 'the fifth new one does')
})

t.test('usernames are counted case-insensitively, and other usernames are unaffected', async (t) => {
  const limiter = new LoginLimiter({ now: clock().now })
  limiter.fail('Alice')
  limiter.fail('ALICE')
  limiter.fail('alice')
  limiter.fail('aLiCe')
  limiter.fail('alicE')
  t.ok(limiter.blockedFor('alice') > 0, 'all spellings share one budget')
  t.ok(limiter.blockedFor('ALICE') > 0, 'and are all blocked')
  t.equal(limiter.blockedFor('bob'), 0, 'another user may still try')
  t.equal(limiter.size, 1)
  limiter.succeed('ALICE')
  t.equal(limiter.blockedFor('alice'), 0, 'a success in any spelling clears it')
})

t.test('memory stays bounded: at most maxUsers usernames, the least recently failed dropped first', async (t) => {
  const limiter = new LoginLimiter({ maxUsers: 100, now: clock().now })
  failTimes(limiter, 'victim', 5)
  for (let i = 0; i < 99; i++) limiter.fail(`spray${i}`)
  t.equal(limiter.size, 100)
  failTimes(limiter, 'victim', 1)
  t.ok(limiter.blockedFor('victim') > 0, 'a username that failed again recently is kept')
  for (let i = 0; i < 10_000; i++) limiter.fail(`other${i}`)
  t.equal(limiter.size, 100, 'never more than maxUsers')
  t.equal(limiter.blockedFor('spray0'), 0, 'old entries were dropped')
})

t.test('looking up a username that never failed stores nothing', async (t) => {
  const limiter = new LoginLimiter({ now: clock().now })
  for (let i = 0; i < 1_000; i++) t.equal(limiter.blockedFor(`u${i}`), 0)
  t.equal(limiter.size, 0)
})

t.test('expired failures are dropped when the username is seen again', async (t) => {
  const c = clock()
  const limiter = new LoginLimiter({ now: c.now })
  failTimes(limiter, 'alice', 3)
  c.advance(WINDOW_MS)
  t.equal(limiter.blockedFor('alice'), 0)
  t.equal(limiter.size, 0, 'the record is gone')
})
