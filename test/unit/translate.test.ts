import t, { type Test } from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import {
  parseErrorBody,
  problemForAuthenticate,
  problemForStatus,
  problemForTransport,
  retryAfterSeconds,
  sanitiseMessage
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
  t.test('upstream 400 with an emnify error body becomes 422 UPSTREAM_VALIDATION_FAILED with sanitised messages', async (t) => {
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
      { pointer: '', detail: 'email is not a valid e-mail address', in: 'upstream' },
      { pointer: '', detail: 'zipcode too long at [url]', in: 'upstream' }
    ])
  })

  t.test('upstream 422 with errors passes them as problem errors', async (t) => {
    const problem = problemForStatus(response(422, { message: 'Invalid contact', errors: [{ message: 'name is too long' }] }))
    t.equal(problem.code, 'UPSTREAM_VALIDATION_FAILED')
    t.equal(problem.status, 422)
    t.equal(problem.detail, 'Invalid contact')
    t.same(problem.errors, [{ pointer: '', detail: 'name is too long', in: 'upstream' }])
  })

  t.test('upstream 422 without errors has a detail and no errors member', async (t) => {
    const problem = problemForStatus(response(422, { message: 'Country does not exist' }))
    t.equal(problem.code, 'UPSTREAM_VALIDATION_FAILED')
    t.equal(problem.detail, 'Country does not exist')
    t.equal(problem.errors, undefined)
  })

  t.test('upstream 422 with errors but no message uses the first error as detail', async (t) => {
    const problem = problemForStatus(response(422, { errors: ['phone is invalid', 'mobile is invalid'] }))
    t.equal(problem.detail, 'phone is invalid')
    t.equal(problem.errors?.length, 2)
  })

  t.test('upstream 400/422 with an empty or unparseable body still gets a generic detail', async (t) => {
    for (const body of ['', '<html>Bad Request</html>', 'null', '[]']) {
      const problem = problemForStatus(response(422, body))
      t.equal(problem.code, 'UPSTREAM_VALIDATION_FAILED')
      t.equal(problem.detail, 'emnify rejected the change', `body ${JSON.stringify(body)}`)
      t.equal(problem.errors, undefined)
    }
  })

  t.test('upstream validation messages are sanitised', async (t) => {
    const problem = problemForStatus(response(400, { ...SECRET_BODY, errors: [SECRET_BODY.message] }))
    assertClean(t, problem)
    t.match(problem.detail, /\[address\]/)
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

  t.test('upstream 409 becomes UPSTREAM_CONFLICT with the sanitised upstream message', async (t) => {
    const withMessage = problemForStatus(response(409, { message: 'Contact was changed by https://portal.emnify.com/user/7' }))
    t.equal(withMessage.code, 'UPSTREAM_CONFLICT')
    t.equal(withMessage.status, 409)
    t.equal(withMessage.detail, 'Contact was changed by [url]')
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

t.test('sanitiseMessage', async (t) => {
  t.test('keeps ordinary messages unchanged', async (t) => {
    for (const message of ['name must not exceed 255 characters', 'e.g. the field "zipcode" is invalid', 'Contact not found']) {
      t.equal(sanitiseMessage(message), message)
    }
  })

  t.test('answers undefined for non-strings and for nothing left', async (t) => {
    for (const value of [undefined, null, 42, {}, ['x'], true]) t.equal(sanitiseMessage(value), undefined)
    t.equal(sanitiseMessage(''), undefined)
    t.equal(sanitiseMessage('  \n\t '), undefined)
  })

  t.test('strips URLs', async (t) => {
    const cases: Record<string, string> = {
      'see https://cdn.emnify.net/api/v1/authenticate?token=abc for details': 'see [url] for details',
      'redirected to http://10.0.0.5:8080/internal': 'redirected to [url]',
      'broker amqp://user:pass@mq:5672/vhost failed': 'broker [url] failed',
      'HTTPS://EXAMPLE.ORG/X': '[url]'
    }
    for (const [input, output] of Object.entries(cases)) t.equal(sanitiseMessage(input), output)
  })

  t.test('strips IPv4 addresses, with or without port', async (t) => {
    t.equal(sanitiseMessage('connect ECONNREFUSED 10.0.0.5:443'), 'connect ECONNREFUSED [address]')
    t.equal(sanitiseMessage('from 192.168.1.20 and 8.8.8.8'), 'from [address] and [address]')
  })

  t.test('strips IPv6 addresses in full and compressed form', async (t) => {
    const cases = [
      '2001:0db8:85a3:0000:0000:8a2e:0370:7334',
      '2001:db8::1',
      '[2001:db8::1]:443',
      'fe80::1',
      'fe80::1ff:fe23:4567:890a',
      '::1',
      '[::1]:8080'
    ]
    for (const address of cases) {
      t.equal(sanitiseMessage(`connect to ${address} refused`), 'connect to [address] refused', address)
    }
    t.equal(sanitiseMessage('Class::method failed'), 'Class::method failed', 'a scope operator is not an address')
  })

  t.test('strips host names', async (t) => {
    const cases: Record<string, string> = {
      'backend api.internal.emnify.net:8443 timed out': 'backend [host] timed out',
      'cdn.emnify.net refused': '[host] refused',
      'node ip-10-0-0-1.eu-west-1.compute.internal is down': 'node [host] is down',
      'db.svc.cluster.local unreachable': '[host] unreachable',
      'bucket my-bucket.s3.amazonaws.com denied': 'bucket [host] denied',
      'gateway edge.example.io failed': 'gateway [host] failed'
    }
    for (const [input, output] of Object.entries(cases)) t.equal(sanitiseMessage(input), output)
  })

  t.test('strips JWT-looking strings', async (t) => {
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZXJ2aWNlIiwiZXhwIjoxfQ.Zm9vYmFy-_sig'
    t.equal(sanitiseMessage(`token ${token} expired`), 'token [redacted] expired')
    t.equal(sanitiseMessage(`Bearer ${token}`), 'Bearer [redacted]')
    t.equal(sanitiseMessage('header eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.'), 'header [redacted]', 'an unsigned token too')
  })

  t.test('replaces control characters and collapses whitespace', async (t) => {
    t.equal(sanitiseMessage('line one\r\nline two\u0000\u001b[31mred\u007f\u2028end\u0085'), 'line one line two [31mred end')
    t.equal(sanitiseMessage('  lots   of\t\tspace  '), 'lots of space')
  })

  t.test('truncates long messages to 300 characters with an ellipsis', async (t) => {
    const result = sanitiseMessage('word '.repeat(1000)) ?? ''
    t.equal(result.length, 300)
    t.ok(result.endsWith('…'))
    t.ok(result.startsWith('word word'))
    t.equal(sanitiseMessage('y'.repeat(300)), 'y'.repeat(300), 'exactly 300 characters are kept whole')
    t.equal(sanitiseMessage('y'.repeat(301))?.length, 300)
  })

  t.test('redacts before truncating, so a secret near the end of the shown text is not half shown', async (t) => {
    const token = 'eyJ' + 'a'.repeat(100) + '.' + 'b'.repeat(100) + '.' + 'c'.repeat(50)
    t.equal(sanitiseMessage(`${'m'.repeat(250)} ${token}`), `${'m'.repeat(250)} [redacted]`)
  })

  t.test('an address cut by the input bound is dropped, not half shown', async (t) => {
    // 30 URLs shrink to "[url] " each, so text from beyond the first kilobyte would become visible.
    const urls = 'https://a.b/' + 'x'.repeat(20) + ' '
    const prefix = urls.repeat(30)
    const message = prefix + 'z'.repeat(1024 - prefix.length - 7) + ' 10.20.30.40 tail'
    const result = sanitiseMessage(message) ?? ''
    t.notMatch(result, /10\.20|20\.3/, result)
    t.match(result, /^\[url\] \[url\].*zzz$/)
  })

  t.test('a single enormous token is dropped rather than cut', async (t) => {
    t.equal(sanitiseMessage('x'.repeat(5000)), undefined)
  })

  t.test('pathological 256 KiB messages are handled in bounded time', async (t) => {
    const size = 256 * 1024
    const started = performance.now()
    for (const unit of ['a.', 'a', 'ab:', '1.', 'eyJ.', 'a.b@', 'a-b.']) {
      const spaced = (unit.repeat(Math.ceil(1020 / unit.length)) + ' ').repeat(Math.ceil(size / 1024))
      sanitiseMessage(spaced)
      sanitiseMessage(unit.repeat(size / unit.length))
    }
    const elapsed = performance.now() - started
    t.ok(elapsed < 2000, `took ${Math.round(elapsed)} ms`)
  })

  t.test('keeps e-mail addresses readable', async (t) => {
    const cases = [
      'contact alice@example.com already exists',
      'alice@mail.example.com is not allowed',
      'bob.smith+billing@eu.corp.example.org bounced',
      'ops@emnify.net is reserved',
      'email must be an address like name@domain.io'
    ]
    for (const message of cases) t.equal(sanitiseMessage(message), message)
  })

  t.test('still strips host names next to e-mail addresses', async (t) => {
    t.equal(sanitiseMessage('alice@example.com via mx1.mail.example.net'), 'alice@example.com via [host]')
  })
})

t.test('parseErrorBody', async (t) => {
  const parse = (value: unknown) => parseErrorBody(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)))

  t.test('reads the emnify error shape', async (t) => {
    t.same(parse({ error_code: 1100, error_token: 'validation_error', message: 'Validation failed', errors: [{ message: 'a' }, 'b'] }), {
      message: 'Validation failed',
      errors: ['a', 'b']
    })
  })

  t.test("reads the gateway's bare {message}", async (t) => {
    t.same(parse({ message: 'Too Many Requests' }), { message: 'Too Many Requests', errors: [] })
  })

  t.test('answers no message and no errors for empty, non-JSON and non-object bodies', async (t) => {
    for (const body of ['', 'not json', '<html></html>', 'null', '42', '"a string"', 'true', '[{"message":"x"}]', '[]']) {
      t.same(parse(body), { errors: [] }, JSON.stringify(body))
    }
  })

  t.test('ignores message and errors of the wrong type', async (t) => {
    t.same(parse({ message: null, errors: null }), { errors: [] })
    t.same(parse({ message: 42, errors: 'not a list' }), { errors: [] })
    t.same(parse({ message: { nested: true }, errors: { message: 'x' } }), { errors: [] })
  })

  t.test('skips error entries without a readable message', async (t) => {
    t.same(parse({ errors: [null, 3, { message: null }, {}, [], { message: 'kept' }, 'also kept', ''] }).errors, ['kept', 'also kept'])
  })

  t.test('caps a huge errors list at 20', async (t) => {
    const errors = Array.from({ length: 10_000 }, (_, i) => ({ message: `error ${i}` }))
    const parsed = parse({ message: 'many', errors })
    t.equal(parsed.errors.length, 20)
    t.equal(parsed.errors[0], 'error 0')
    t.equal(parsed.errors[19], 'error 19')
  })

  t.test('sanitises message and errors', async (t) => {
    const parsed = parse({ message: 'at https://10.0.0.1/x', errors: ['host cdn.emnify.net'] })
    t.same(parsed, { message: 'at [url]', errors: ['host [host]'] })
  })

  t.test('a prototype-polluting body does not pollute', async (t) => {
    const parsed = parse('{"__proto__":{"polluted":true},"message":"m"}')
    t.equal(parsed.message, 'm')
    t.equal(({} as Record<string, unknown>).polluted, undefined)
  })
})
