import t from 'tap'
import { PROBLEMS } from '../../src/errors/problems.ts'
import { BODY_PROBLEMS, COMMON_PROBLEMS, problemResponses } from '../../src/schemas/responses.ts'

t.test('codes are grouped by status, listed in the description and as an enum on `code`', async (t) => {
  const responses = problemResponses(['UPSTREAM_UNAVAILABLE', 'OVERLOADED', 'VALIDATION_FAILED', 'MALFORMED_JSON', 'VALIDATION_FAILED'], { instance: '/x' })
  t.same(Object.keys(responses).sort(), ['400', '503'])
  const bad = responses['400']
  t.same(bad?.content['application/problem+json']?.schema.properties.code, { type: 'string', enum: ['VALIDATION_FAILED', 'MALFORMED_JSON'], description: 'stable machine-readable error code' }, 'duplicates collapse')
  t.match(bad?.description, /`VALIDATION_FAILED`: Request validation failed; `MALFORMED_JSON`/)
  t.equal(bad?.headers, undefined, 'a 400 has no Retry-After')
  t.same(Object.keys(responses['503']?.headers ?? {}), ['Retry-After'])
})

t.test('every code has an example that is a complete problem for the route', async (t) => {
  const responses = problemResponses(['VALIDATION_FAILED', 'RATE_LIMITED'], { instance: '/api/v1/organisation/1/contact/2' })
  const example = responses['400']?.content['application/problem+json']?.examples.VALIDATION_FAILED?.value
  t.match(example, {
    type: 'urn:emnify-bff:problem:validation-failed',
    title: PROBLEMS.VALIDATION_FAILED.title,
    status: 400,
    instance: '/api/v1/organisation/1/contact/2',
    code: 'VALIDATION_FAILED',
    request_id: String,
    errors: [{ pointer: '/email', in: 'body' }]
  })
  t.same(Object.keys(responses['429']?.headers ?? {}).sort(), [
    'RateLimit', 'RateLimit-Policy', 'Retry-After'
  ], 'a 429 documents the rate-limit headers')
  t.equal(problemResponses(['NOT_FOUND'])['404']?.content['application/problem+json']?.examples.NOT_FOUND?.value.instance, '/', 'a neutral instance by default')
})

t.test('the shared lists name load shedding and the body errors', async (t) => {
  t.ok(COMMON_PROBLEMS.includes('OVERLOADED'))
  t.same(BODY_PROBLEMS, ['MALFORMED_JSON', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'])
  t.equal(PROBLEMS.OVERLOADED.status, 503)
})
