import t from 'tap'
import { LoginLockout } from '../../src/session/login-limiter.ts'

async function attempts (lockout: LoginLockout, username: string, times: number): Promise<number[]> {
  const waits: number[] = []
  for (let i = 0; i < times; i++) waits.push(await lockout.attempt(username))
  return waits
}

t.test('five attempts go ahead; the sixth within the window waits for the rest of it', async (t) => {
  const lockout = new LoginLockout()
  t.same(await attempts(lockout, 'alice', 5), [0, 0, 0, 0, 0])
  const wait = await lockout.attempt('alice')
  t.ok(wait > 15 * 60 - 5 && wait <= 15 * 60, `Retry-After is the rest of the 15-minute window (${wait} s)`)
  t.ok(await lockout.attempt('alice') > 0, 'and stays refused')
})

t.test('the window and the number of failures are configurable', async (t) => {
  const lockout = new LoginLockout({ maxFailures: 2, windowMs: 60_000 })
  t.same(await attempts(lockout, 'alice', 3), [0, 0, 60])
})

t.test('a success clears the count', async (t) => {
  const lockout = new LoginLockout()
  await attempts(lockout, 'alice', 4)
  await lockout.succeed('alice')
  t.equal(lockout.size, 0, 'nothing is remembered after a success')
  t.same(await attempts(lockout, 'alice', 5), [0, 0, 0, 0, 0], 'five new attempts go ahead again')
  t.ok(await lockout.attempt('alice') > 0, 'the sixth new one does not')
})

t.test('usernames are counted case-insensitively, and other usernames are unaffected', async (t) => {
  const lockout = new LoginLockout()
  await attempts(lockout, 'Alice', 3)
  await attempts(lockout, 'ALICE', 2)
  t.ok(await lockout.attempt('alice') > 0, '"Alice", "ALICE" and "alice" share one count')
  t.equal(await lockout.attempt('bob'), 0)
})

t.test('tracks at most maxUsers names; the one tracked longest ago is forgotten first', async (t) => {
  const lockout = new LoginLockout({ maxUsers: 100 })
  await attempts(lockout, 'first', 5)
  for (let i = 0; i < 1_000; i++) await lockout.attempt(`user${i}`)
  t.equal(lockout.size, 100)
  t.equal(lockout.capacity, 100)
  t.equal(await lockout.attempt('first'), 0, 'the oldest name was dropped and starts over')
})
