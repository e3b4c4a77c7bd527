import t from 'tap'
import { WindowCounter } from '../../src/protection/rate-limit.ts'

t.test('counts hits per key within a window and starts a new window when it has passed', async (t) => {
  let now = 1_000
  const counter = new WindowCounter(60_000, 100, () => now)
  t.equal(counter.hit('a').count, 1)
  t.equal(counter.hit('a').count, 2)
  t.equal(counter.hit('b').count, 1, 'keys are counted apart')
  t.equal(counter.secondsLeft(counter.hit('a')), 60)
  now += 59_001
  t.equal(counter.hit('a').count, 4, 'still the same window 59 s later')
  t.equal(counter.secondsLeft(counter.hit('a')), 1, 'never less than one second')
  now += 1_000
  const fresh = counter.hit('a')
  t.equal(fresh.count, 1, 'a new window once the old one has ended')
  t.equal(fresh.resetAt, now + 60_000)
})

t.test('stays within its capacity by dropping the window that started first', async (t) => {
  let now = 0
  const counter = new WindowCounter(60_000, 3, () => now)
  for (const key of ['a', 'b', 'c']) {
    counter.hit(key)
    now += 10
  }
  counter.hit('a') // a repeat hit does not make "a" younger: its window still started first
  counter.hit('d')
  t.equal(counter.size, 3)
  t.equal(counter.hit('a').count, 1, '"a" was dropped and starts over')
  t.equal(counter.size, 3)
  t.equal(counter.hit('c').count, 2, '"c" was kept')
  for (let i = 0; i < 10_000; i++) counter.hit(`k${i}`)
  t.equal(counter.size, 3, 'a flood of keys never grows it')
})
