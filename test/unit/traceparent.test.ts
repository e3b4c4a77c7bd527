import t from 'tap'
import { upstreamContext, validTraceparent } from '../../src/upstream/context.ts'

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

t.test('a W3C version-00 traceparent is kept as is', async (t) => {
  t.equal(validTraceparent(VALID), VALID)
  t.equal(validTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00'), '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', 'not sampled is still valid')
})

t.test('anything else is dropped', async (t) => {
  for (const value of [
    undefined,
    '',
    [VALID, VALID],
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-',
    '00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01',
    '00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01',
    `${VALID}\n`
  ]) t.equal(validTraceparent(value), undefined, JSON.stringify(value))
})

t.test('an upstream context starts empty', async (t) => {
  t.same(upstreamContext('req-1'), { requestId: 'req-1', sub: '', traceparent: undefined, ms: 0, calls: 0, outcome: undefined })
  t.equal(upstreamContext('req-2', VALID).traceparent, VALID)
})
