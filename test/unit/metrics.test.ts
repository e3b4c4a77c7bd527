import t from 'tap'
import { Metrics } from '../../src/metrics/metrics.ts'
import { sample } from '../e2e/ops-helpers.ts'

t.test('each Metrics has its own series; process metrics are shared and appear once per exposition', async (t) => {
  const one = new Metrics()
  const two = new Metrics()
  one.request('GET', '/x', 200, 0.01)
  one.upstreamCall('patch_contact', '2xx', 42)
  one.tokenRefresh({ ok: false })
  one.session('logout')
  const text = await one.exposition()
  t.equal(sample(text, 'http_request_duration_seconds_count', { method: 'GET', route: '/x', status_code: '200' }), 1)
  t.equal(sample(text, 'emnify_bff_upstream_request_duration_seconds_sum', { operation: 'patch_contact', outcome: '2xx' }), 0.042, 'milliseconds become seconds')
  t.equal(sample(text, 'emnify_bff_upstream_authenticate_total', { outcome: 'failed' }), 1)
  t.equal(sample(text, 'emnify_bff_sessions_total', { event: 'logout' }), 1)
  t.equal(text.match(/^# TYPE process_cpu_user_seconds_total /gm)?.length, 1, 'process metrics once')

  const other = await two.exposition()
  t.equal(sample(other, 'http_request_duration_seconds_count', { method: 'GET', route: '/x', status_code: '200' }), undefined, 'the other app saw nothing')
  t.equal(sample(other, 'emnify_bff_sessions_total', { event: 'logout' }), 0)
  t.match(one.contentType, /^text\/plain; version=0\.0\.4/)
})

t.test('the token gauge reads the token cache at scrape time', async (t) => {
  const metrics = new Metrics()
  t.equal(sample(await metrics.exposition(), 'emnify_bff_upstream_token_expires_in_seconds'), 0, 'no source: 0')
  let seconds = 1234.5
  metrics.watchToken(() => seconds)
  t.equal(sample(await metrics.exposition(), 'emnify_bff_upstream_token_expires_in_seconds'), 1234.5)
  seconds = 10
  t.equal(sample(await metrics.exposition(), 'emnify_bff_upstream_token_expires_in_seconds'), 10)
})
