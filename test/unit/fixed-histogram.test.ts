// The hot-path histogram must render exactly as prom-client's own would, for the same observations.
import { Histogram, Registry } from 'prom-client'
import t from 'tap'
import { FixedHistogram } from '../../src/metrics/fixed-histogram.ts'

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const OBSERVATIONS: Array<[string, string, string, number]> = [
  ['PATCH', '/api/v1/organisation/:org_id/contact/:contact_id', '204', 0.0012],
  ['PATCH', '/api/v1/organisation/:org_id/contact/:contact_id', '204', 0.005],
  ['PATCH', '/api/v1/organisation/:org_id/contact/:contact_id', '429', 0.0004],
  ['GET', 'not_found', '404', 0.0001],
  ['GET', '/api/v1/organisation/:org_id/contact', '200', 31],
  ['GET', '/api/v1/organisation/:org_id/contact', '200', 0.3],
  ['GET', '/with "quotes" and \\ back\nslash', '200', 2.5],
  ['PATCH', '/api/v1/organisation/:org_id/contact/:contact_id', '204', 10]
]

t.test('the same text as prom-client for the same observations, series in first-seen order', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const fixed = new FixedHistogram({ name: 'http_request_duration_seconds', help: 'Time to answer', labelNames: ['method', 'route', 'status_code'], buckets: BUCKETS, registers: [ours] })
  const reference = new Histogram({ name: 'http_request_duration_seconds', help: 'Time to answer', labelNames: ['method', 'route', 'status_code'], buckets: BUCKETS, registers: [theirs] })
  for (const [method, route, status, seconds] of OBSERVATIONS) {
    // The status code as the BFF has it, a number; prom-client is given its text.
    fixed.observe(seconds, method, route, Number(status))
    reference.labels(method, route, status).observe(seconds)
  }
  t.equal(await ours.metrics(), await theirs.metrics())
  t.same(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON(), 'and the same JSON')
  fixed.reset()
  reference.reset()
  t.equal(await ours.metrics(), await theirs.metrics(), 'reset empties both alike')
})

t.test('a value above every bucket counts only in +Inf, sum and count', async (t) => {
  const registry = new Registry()
  const fixed = new FixedHistogram({ name: 'h', help: 'h', labelNames: ['op'], buckets: [1, 2], registers: [registry] })
  fixed.observe(5, 'x')
  const text = await registry.metrics()
  t.match(text, /h_bucket\{le="1",op="x"\} 0\nh_bucket\{le="2",op="x"\} 0\nh_bucket\{le="\+Inf",op="x"\} 1\nh_sum\{op="x"\} 5\nh_count\{op="x"\} 1/)
})

t.test('series that share a label value stay apart, at every depth', async (t) => {
  const registry = new Registry()
  const fixed = new FixedHistogram({ name: 'h', help: 'h', labelNames: ['a', 'b'], buckets: [1], registers: [registry] })
  fixed.observe(0.5, 'x', 'y')
  fixed.observe(0.5, 'x', 'z')
  fixed.observe(2, 'y', 'x')
  fixed.observe(0.5, 'x', 'y')
  const text = await registry.metrics()
  t.match(text, /h_count\{a="x",b="y"\} 2\n/)
  t.match(text, /h_count\{a="x",b="z"\} 1\n/)
  t.match(text, /h_count\{a="y",b="x"\} 1\n/)
  t.equal(text.match(/h_count/g)?.length, 3, 'three series, no more')
})

t.test('one to three labels', async (t) => {
  t.throws(() => new FixedHistogram({ name: 'h0', help: 'h', labelNames: [], buckets: [1], registers: [] }))
  t.throws(() => new FixedHistogram({ name: 'h4', help: 'h', labelNames: ['a', 'b', 'c', 'd'], buckets: [1], registers: [] }))
})
