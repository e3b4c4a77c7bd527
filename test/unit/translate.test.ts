import t, { type Test } from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import {
  problemForAuthenticate,
  problemForStatus,
  problemForTransport,
  retryAfterSeconds
} from '../../src/upstream/translate.ts'
import { TransportError, type UpstreamResponse } from '../../src/upstream/http.ts'
import { Problem } from '../../src/errors/problems.ts'

function response (status: number, body: unknown = '', headers: IncomingHttpHeaders = {}): UpstreamResponse {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  return { status, headers, body: Buffer.from(text) }
}

const SECRET_BODY = {
  error_code: 1001,
  error_token: 'internal_error',
  message: 'db at 10.1.2.3 failed, auth_token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdmMifQ.c2ln',
  stack: 'at Object.<anonymous> (/srv/app.js:1:1)'
}

/** A problem never carries upstream internals in what the frontend sees. */
function assertClean (t: Test, problem: Problem) {
  const visible = JSON.stringify({ detail: problem.detail, errors: problem.errors })
  t.notMatch(visible, /10\.1\.2\.3/, 'no upstream address')
  t.notMatch(visible, /eyJ/, 'no token')
  t.notMatch(visible, /\/srv\/app\.js/, 'no stack trace')
}

t.test('problemForStatus', async (t) => {
  t.test('upstream 400 with an emnify error body becomes 422 UPSTREAM_VALIDATION_FAILED with its field messages at their fields', async (t) => {
    const problem = problemForStatus(response(400, {
      error_code: 1100,
      error_token: 'validation_error',
      message: 'Validation failed',
      errors: [{ message: 'email is not a valid e-mail address', field: 'email' }, 'zipcode too long at https://cdn.emnify.net/x']
    }))
    t.equal(problem.code, 'UPSTREAM_VALIDATION_FAILED')
    t.equal(problem.status, 422)
    t.equal(problem.detail, 'Validation failed')
    t.same(problem.errors, [
      { pointer: '/email', detail: 'email is not a valid e-mail address', in: 'upstream' },
      { pointer: '/zipcode', detail: 'emnify rejected this value', in: 'upstream' }
    ])
  })

  t.test('upstream 422 with errors passes the field messages as problem errors', async (t) => {
    const problem = problemForStatus(response(422, { message: 'Invalid contact', errors: [{ message: 'name is too long' }] }))
    t.equal(problem.code, 'UPSTREAM_VALIDATION_FAILED')
    t.equal(problem.status, 422)
    t.equal(problem.detail, 'Invalid contact')
    t.same(problem.errors, [{ pointer: '/name', detail: 'name is too long', in: 'upstream' }])
  })

  t.test('upstream 422 whose only message names a field has it as detail and at the field', async (t) => {
    const problem = problemForStatus(response(422, { message: 'Country does not exist' }))
    t.equal(problem.code, 'UPSTREAM_VALIDATION_FAILED')
    t.equal(problem.detail, 'Country does not exist')
    t.same(problem.errors, [{ pointer: '/country', detail: 'Country does not exist', in: 'upstream' }])
  })

  t.test('upstream 422 with errors but no summary uses the first field message as detail', async (t) => {
    const problem = problemForStatus(response(422, { errors: ['phone is invalid', 'mobile is invalid'] }))
    t.equal(problem.detail, 'phone is invalid')
    t.equal(problem.errors?.length, 2)
  })

  t.test('upstream 400/422 with an empty or unparseable body still gets a generic detail', async (t) => {
    for (const body of ['', '<html>Bad Request</html>', 'null', '[]', '{"message":"Something odd happened"}']) {
      const problem = problemForStatus(response(422, body))
      t.equal(problem.code, 'UPSTREAM_VALIDATION_FAILED')
      t.equal(problem.detail, 'emnify rejected the change', `body ${JSON.stringify(body)}`)
      t.equal(problem.errors, undefined)
    }
  })

  t.test('upstream validation messages carrying infrastructure details are not shown', async (t) => {
    const problem = problemForStatus(response(400, { ...SECRET_BODY, errors: [SECRET_BODY.message] }))
    assertClean(t, problem)
    t.equal(problem.detail, 'emnify rejected the change')
    t.equal(problem.errors, undefined)
  })

  t.test('a configured secret in an upstream message is never echoed', async (t) => {
    const secret = 'app-token-q9'
    const problem = problemForStatus(response(422, { message: `name: ${secret}` }), 'CONTACT_NOT_FOUND', [secret])
    t.notMatch(JSON.stringify({ detail: problem.detail, errors: problem.errors }), secret)
    t.same(problem.errors, [{ pointer: '/name', detail: 'emnify rejected this value', in: 'upstream' }])
  })

  t.test('upstream 401 becomes 502 UPSTREAM_AUTH_FAILED', async (t) => {
    const problem = problemForStatus(response(401, SECRET_BODY))
    t.equal(problem.code, 'UPSTREAM_AUTH_FAILED')
    t.equal(problem.status, 502)
    assertClean(t, problem)
  })

  t.test('upstream 403 becomes 502 UPSTREAM_FORBIDDEN', async (t) => {
    const problem = problemForStatus(response(403, SECRET_BODY))
    t.equal(problem.code, 'UPSTREAM_FORBIDDEN')
    t.equal(problem.status, 502)
    assertClean(t, problem)
  })

  t.test('upstream 404 becomes CONTACT_NOT_FOUND', async (t) => {
    const problem = problemForStatus(response(404, SECRET_BODY))
    t.equal(problem.code, 'CONTACT_NOT_FOUND')
    t.equal(problem.status, 404)
    assertClean(t, problem)
  })

  t.test('upstream 409 becomes UPSTREAM_CONFLICT with a known summary or a safe field message, never other upstream text', async (t) => {
    const hostile = problemForStatus(response(409, { message: 'Contact was changed by https://portal.emnify.com/user/7' }))
    t.equal(hostile.code, 'UPSTREAM_CONFLICT')
    t.equal(hostile.status, 409)
    t.equal(hostile.detail, 'emnify reported a conflict')
    t.equal(problemForStatus(response(409, { message: 'Duplicated' })).detail, 'Duplicated')
    t.equal(problemForStatus(response(409, { message: 'email already exists' })).detail, 'email already exists')
    const bare = problemForStatus(response(409))
    t.equal(bare.code, 'UPSTREAM_CONFLICT')
    t.equal(bare.detail, 'emnify reported a conflict')
  })

  t.test('upstream 429 becomes 503 UPSTREAM_RATE_LIMITED with a Retry-After', async (t) => {
    const noHeader = problemForStatus(response(429))
    t.equal(noHeader.code, 'UPSTREAM_RATE_LIMITED')
    t.equal(noHeader.status, 503)
    t.ok(Number.isInteger(noHeader.retryAfter) && (noHeader.retryAfter ?? 0) >= 1 && (noHeader.retryAfter ?? 0) <= 300, 'a default Retry-After in 1..300')
    t.equal(noHeader.retryAfter, 60)
    t.equal(problemForStatus(response(429, '', { 'retry-after': '17' })).retryAfter, 17)
    t.equal(problemForStatus(response(429, '', { 'retry-after': '0' })).retryAfter, 1, 'clamped up to 1')
    t.equal(problemForStatus(response(429, '', { 'retry-after': '86400' })).retryAfter, 300, 'clamped down to 300')
    t.equal(problemForStatus(response(429, '', { 'retry-after': 'soon' })).retryAfter, 60, 'garbage falls back to the default')
  })

  t.test('upstream 429 with an HTTP-date Retry-After', async (t) => {
    const inTwoMinutes = new Date(Date.now() + 120_000).toUTCString()
    const retryAfter = problemForStatus(response(429, '', { 'retry-after': inTwoMinutes })).retryAfter ?? 0
    t.ok(retryAfter >= 118 && retryAfter <= 120, `about two minutes, got ${retryAfter}`)
    const farFuture = new Date(Date.now() + 86_400_000).toUTCString()
    t.equal(problemForStatus(response(429, '', { 'retry-after': farFuture })).retryAfter, 300)
    const past = new Date(Date.now() - 86_400_000).toUTCString()
    t.equal(problemForStatus(response(429, '', { 'retry-after': past })).retryAfter, 1)
  })

  t.test('upstream 503 becomes UPSTREAM_UNAVAILABLE with a Retry-After', async (t) => {
    const noHeader = problemForStatus(response(503, SECRET_BODY))
    t.equal(noHeader.code, 'UPSTREAM_UNAVAILABLE')
    t.equal(noHeader.status, 503)
    t.equal(noHeader.retryAfter, 5)
    assertClean(t, noHeader)
    t.equal(problemForStatus(response(503, '', { 'retry-after': '42' })).retryAfter, 42)
    t.equal(problemForStatus(response(503, '', { 'retry-after': '9999' })).retryAfter, 300)
    t.equal(problemForStatus(response(503, '', { 'retry-after': ['12', '99'] as unknown as string })).retryAfter, 12)
    const inOneMinute = new Date(Date.now() + 60_000).toUTCString()
    const retryAfter = problemForStatus(response(503, '', { 'retry-after': inOneMinute })).retryAfter ?? 0
    t.ok(retryAfter >= 58 && retryAfter <= 60, `about a minute, got ${retryAfter}`)
  })

  t.test('other upstream 5xx become 502 UPSTREAM_ERROR without the upstream body', async (t) => {
    for (const status of [500, 501, 502, 504, 599]) {
      const problem = problemForStatus(response(status, SECRET_BODY))
      t.equal(problem.code, 'UPSTREAM_ERROR', `status ${status}`)
      t.equal(problem.status, 502)
      t.equal(problem.retryAfter, undefined)
      assertClean(t, problem)
    }
  })

  t.test('upstream redirects become 502 UPSTREAM_ERROR', async (t) => {
    for (const status of [301, 302, 303, 304, 307, 308]) {
      const problem = problemForStatus(response(status, '', { location: 'https://10.0.0.9/elsewhere' }))
      t.equal(problem.code, 'UPSTREAM_ERROR', `status ${status}`)
      t.equal(problem.status, 502)
      t.match(problem.detail, /redirect/)
      t.notMatch(problem.detail, /10\.0\.0\.9|elsewhere/)
    }
  })

  t.test('odd upstream statuses become 502 UPSTREAM_ERROR', async (t) => {
    for (const status of [405, 406, 410, 412, 418, 451, 499]) {
      const problem = problemForStatus(response(status, SECRET_BODY))
      t.equal(problem.code, 'UPSTREAM_ERROR', `status ${status}`)
      t.equal(problem.status, 502)
      t.match(problem.detail, String(status))
      assertClean(t, problem)
    }
  })
})

t.test('retryAfterSeconds', async (t) => {
  const now = Date.parse('2025-01-01T12:00:00Z')
  t.equal(retryAfterSeconds(undefined, 7, now), 7)
  t.equal(retryAfterSeconds('', 7, now), 7)
  t.equal(retryAfterSeconds('   ', 7, now), 7)
  t.equal(retryAfterSeconds(' 30 ', 7, now), 30)
  t.equal(retryAfterSeconds('0', 7, now), 1)
  t.equal(retryAfterSeconds('301', 7, now), 300)
  t.equal(retryAfterSeconds('Wed, 01 Jan 2025 12:01:30 GMT', 7, now), 90)
  t.equal(retryAfterSeconds('Wed, 01 Jan 2025 13:00:00 GMT', 7, now), 300)
  t.equal(retryAfterSeconds('Wed, 01 Jan 2025 11:00:00 GMT', 7, now), 1)
  t.equal(retryAfterSeconds('not a date', 7, now), 7)
  t.equal(retryAfterSeconds(['45'], 7, now), 45)
  for (const odd of ['-5', '5.5', '1e3', 'Infinity']) {
    const seconds = retryAfterSeconds(odd, 7, now)
    t.ok(Number.isInteger(seconds) && seconds >= 1 && seconds <= 300, `${odd} gives a clamped whole number, got ${seconds}`)
  }
})

t.test('problemForAuthenticate', async (t) => {
  t.test('authenticate rejected with 4xx becomes 502 UPSTREAM_AUTH_FAILED', async (t) => {
    for (const status of [400, 401, 403, 404, 409, 422]) {
      const problem = problemForAuthenticate(response(status, SECRET_BODY))
      t.equal(problem.code, 'UPSTREAM_AUTH_FAILED', `status ${status}`)
      t.equal(problem.status, 502)
      t.equal(problem.retryAfter, undefined)
      assertClean(t, problem)
    }
  })

  t.test('authenticate failing with 5xx (other than 503) or a redirect becomes UPSTREAM_AUTH_FAILED', async (t) => {
    for (const status of [500, 502, 504, 302]) {
      const problem = problemForAuthenticate(response(status, SECRET_BODY))
      t.equal(problem.code, 'UPSTREAM_AUTH_FAILED', `status ${status}`)
      t.equal(problem.status, 502)
      assertClean(t, problem)
    }
  })

  t.test('authenticate answered 429 becomes 503 UPSTREAM_RATE_LIMITED with Retry-After', async (t) => {
    const problem = problemForAuthenticate(response(429, '', { 'retry-after': '120' }))
    t.equal(problem.code, 'UPSTREAM_RATE_LIMITED')
    t.equal(problem.status, 503)
    t.equal(problem.retryAfter, 120)
    t.ok((problemForAuthenticate(response(429)).retryAfter ?? 0) >= 1)
  })

  t.test('authenticate answered 503 becomes UPSTREAM_UNAVAILABLE with Retry-After', async (t) => {
    const problem = problemForAuthenticate(response(503))
    t.equal(problem.code, 'UPSTREAM_UNAVAILABLE')
    t.equal(problem.status, 503)
    t.ok((problem.retryAfter ?? 0) >= 1)
    t.equal(problemForAuthenticate(response(503, '', { 'retry-after': '30' })).retryAfter, 30)
  })

  t.test('authenticate answered 200 with an unusable body becomes UPSTREAM_AUTH_FAILED', async (t) => {
    for (const body of ['', 'not json', '{"token":"x"}', '{"auth_token":12}']) {
      const problem = problemForAuthenticate(response(200, body))
      t.equal(problem.code, 'UPSTREAM_AUTH_FAILED')
      t.equal(problem.status, 502)
      t.match(problem.detail, /auth_token/)
    }
  })
})

t.test('problemForTransport', async (t) => {
  t.test('a timeout becomes 504 UPSTREAM_TIMEOUT', async (t) => {
    const problem = problemForTransport(new TransportError('timeout'))
    t.equal(problem.code, 'UPSTREAM_TIMEOUT')
    t.equal(problem.status, 504)
  })

  t.test('an unreachable upstream becomes 503 UPSTREAM_UNAVAILABLE with Retry-After', async (t) => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' })
    const problem = problemForTransport(new TransportError('unreachable', cause))
    t.equal(problem.code, 'UPSTREAM_UNAVAILABLE')
    t.equal(problem.status, 503)
    t.ok(Number.isInteger(problem.retryAfter) && (problem.retryAfter ?? 0) >= 1)
    t.notMatch(problem.detail, /10\.0\.0\.1|ECONNREFUSED/)
  })

  t.test('a reset and an oversized answer become 502 UPSTREAM_ERROR', async (t) => {
    for (const kind of ['reset', 'too_large'] as const) {
      const problem = problemForTransport(new TransportError(kind, new Error('other side closed')))
      t.equal(problem.code, 'UPSTREAM_ERROR', kind)
      t.equal(problem.status, 502)
      t.equal(problem.retryAfter, undefined)
    }
  })

  t.test('the transport error is kept as the cause for logs', async (t) => {
    const error = new TransportError('timeout')
    t.equal(problemForTransport(error).cause, error)
  })
})
