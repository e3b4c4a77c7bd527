import t from 'tap'
import Fastify, { errorCodes, type FastifyError, type FastifyRequest } from 'fastify'
import errorsPlugin, { clientErrorResponse, failureSummary, problemBody, toProblem } from '../../src/errors/handler.ts'
import { Problem, PROBLEMS, problemType, type ProblemBody } from '../../src/errors/problems.ts'

const LEAKY = 'connect ECONNREFUSED 10.0.0.5:5432 password=hunter2 at /srv/app/db.js:12'

function fakeRequest (url: string, id = 'req-42'): FastifyRequest {
  return { url, id } as unknown as FastifyRequest
}

interface AjvIssue {
  keyword: string
  instancePath: string
  message?: string
  params: Record<string, unknown>
}

function validationError (issues: AjvIssue[], context = 'body'): FastifyError {
  return Object.assign(new Error('body/foo must NOT have additional properties'), {
    code: 'FST_ERR_VALIDATION',
    statusCode: 400,
    validation: issues,
    validationContext: context
  }) as unknown as FastifyError
}

t.test('toProblem', async (t) => {
  t.test('a Problem passes through unchanged', async (t) => {
    const problem = new Problem('UPSTREAM_TIMEOUT', { detail: 'slow' })
    t.equal(toProblem(problem), problem)
  })

  t.test('Fastify content-type parser errors map to their contract codes', async (t) => {
    const cases: Array<[FastifyError, string, number]> = [
      [new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), 'PAYLOAD_TOO_LARGE', 413],
      [new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE('text/plain'), 'UNSUPPORTED_MEDIA_TYPE', 415],
      [new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), 'MALFORMED_JSON', 400],
      [new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), 'MALFORMED_JSON', 400],
      [new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(), 'MALFORMED_JSON', 400]
    ]
    for (const [error, code, status] of cases) {
      const problem = toProblem(error)
      t.equal(problem.code, code, error.code)
      t.equal(problem.status, status, error.code)
    }
  })

  t.test('router errors become VALIDATION_FAILED without echoing the path', async (t) => {
    for (const error of [new errorCodes.FST_ERR_BAD_URL('/%E0%A4%A'), new errorCodes.FST_ERR_MAX_PARAM_LENGTH('1'.repeat(100))]) {
      const problem = toProblem(error)
      t.equal(problem.code, 'VALIDATION_FAILED', error.code)
      t.equal(problem.status, 400, error.code)
      t.notMatch(problem.detail, /%E0|1111/)
    }
  })

  t.test('a JSON SyntaxError with status 400 becomes MALFORMED_JSON', async (t) => {
    const error = Object.assign(new SyntaxError('Unexpected token } in JSON at position 7'), { statusCode: 400 })
    const problem = toProblem(error)
    t.equal(problem.code, 'MALFORMED_JSON')
    t.notMatch(problem.detail, /position 7/)
  })

  t.test('a SyntaxError from our own code is an internal error, not a client mistake', async (t) => {
    t.equal(toProblem(new SyntaxError('bad regexp')).code, 'INTERNAL_ERROR')
  })

  t.test('validation errors carry JSON pointers', async (t) => {
    const problem = toProblem(validationError([
      { keyword: 'additionalProperties', instancePath: '', params: { additionalProperty: 'foo' }, message: 'must NOT have additional properties' },
      { keyword: 'additionalProperties', instancePath: '/country', params: { additionalProperty: 'name' } },
      { keyword: 'required', instancePath: '/type', params: { missingProperty: 'id' }, message: "must have required property 'id'" },
      { keyword: 'minProperties', instancePath: '', params: { limit: 1 }, message: 'must NOT have fewer than 1 properties' },
      { keyword: 'type', instancePath: '/name', params: { type: 'string' }, message: 'must be string' },
      { keyword: 'maxLength', instancePath: '/city', params: { limit: 255 }, message: 'must NOT have more than 255 characters' },
      { keyword: 'pattern', instancePath: '/zipcode', params: { pattern: '^x$' }, message: 'must match pattern "^x$"' },
      { keyword: 'format', instancePath: '/email', params: { format: 'email' } }
    ]))
    t.equal(problem.code, 'VALIDATION_FAILED')
    t.equal(problem.status, 400)
    t.equal(problem.detail, 'The request body is invalid')
    t.same(problem.errors, [
      { pointer: '/foo', detail: 'is not an allowed property', in: 'body' },
      { pointer: '/country/name', detail: 'is not an allowed property', in: 'body' },
      { pointer: '/type/id', detail: 'is required', in: 'body' },
      { pointer: '', detail: 'must contain at least one property', in: 'body' },
      { pointer: '/name', detail: 'must be string', in: 'body' },
      { pointer: '/city', detail: 'must NOT have more than 255 characters', in: 'body' },
      { pointer: '/zipcode', detail: 'has the wrong format', in: 'body' },
      { pointer: '/email', detail: 'is invalid', in: 'body' }
    ])
  })

  t.test('property names are escaped as RFC 6901 pointer tokens', async (t) => {
    const problem = toProblem(validationError([
      { keyword: 'additionalProperties', instancePath: '', params: { additionalProperty: 'a/b~c' } },
      { keyword: 'required', instancePath: '', params: { missingProperty: '~/' } }
    ]))
    t.same(problem.errors?.map((e) => e.pointer), ['/a~1b~0c', '/~0~1'])
  })

  t.test('path parameter errors say so and point into the path', async (t) => {
    const problem = toProblem(validationError([{ keyword: 'pattern', instancePath: '/org_id', params: { pattern: '^[1-9][0-9]{0,17}$' } }], 'params'))
    t.equal(problem.code, 'VALIDATION_FAILED')
    t.equal(problem.detail, 'The path parameters are invalid')
    t.same(problem.errors, [{ pointer: '/org_id', detail: 'must be a positive decimal integer', in: 'path' }])
  })

  t.test('header errors point into the headers', async (t) => {
    const problem = toProblem(validationError([{ keyword: 'pattern', instancePath: '/x-request-id', params: {} }], 'headers'))
    t.equal(problem.errors?.[0]?.in, 'header')
  })

  t.test('at most 50 field errors are reported', async (t) => {
    const issues = Array.from({ length: 500 }, (_, i) => ({ keyword: 'additionalProperties', instancePath: '', params: { additionalProperty: `p${i}` } }))
    const problem = toProblem(validationError(issues))
    t.equal(problem.errors?.length, 50)
    t.equal(problem.errors?.[0]?.pointer, '/p0')
  })

  t.test('unknown errors become INTERNAL_ERROR and never show their message', async (t) => {
    const errors: Error[] = [
      new Error(LEAKY),
      new TypeError(LEAKY),
      new RangeError(LEAKY),
      Object.assign(new Error(LEAKY), { statusCode: 500 }),
      Object.assign(new Error(LEAKY), { code: 'ECONNREFUSED' })
    ]
    for (const error of errors) {
      const problem = toProblem(error)
      t.equal(problem.code, 'INTERNAL_ERROR', error.name)
      t.equal(problem.status, 500)
      t.notMatch(problem.detail, /ECONNREFUSED|10\.0\.0\.5|hunter2|db\.js/)
      t.equal(problem.detail, 'An unexpected error occurred')
      t.equal(problem.cause, error, 'the original stays available for the log')
    }
  })

  t.test('something thrown that is not an Error still becomes INTERNAL_ERROR', async (t) => {
    for (const thrown of [null, undefined, 'a string 10.0.0.5', 42, { message: LEAKY }]) {
      const problem = toProblem(thrown as unknown as Error)
      t.equal(problem.code, 'INTERNAL_ERROR', String(thrown))
      t.notMatch(problem.detail, /10\.0\.0\.5|hunter2/)
    }
  })

  t.test('other client errors keep their class without echoing the message', async (t) => {
    t.equal(toProblem(Object.assign(new Error(LEAKY), { statusCode: 404 })).code, 'NOT_FOUND')
    t.equal(toProblem(Object.assign(new Error(LEAKY), { statusCode: 429 })).code, 'RATE_LIMITED')
    for (const statusCode of [400, 405, 406, 414, 431]) {
      const problem = toProblem(Object.assign(new Error(LEAKY), { statusCode, code: 'FST_ERR_SOMETHING_NEW' }))
      t.equal(problem.code, 'VALIDATION_FAILED', String(statusCode))
      t.equal(problem.status, 400)
      t.notMatch(problem.detail, /hunter2|10\.0\.0\.5/)
    }
  })
})

t.test('problemBody', async (t) => {
  t.test('is an RFC 9457 body with code and request id', async (t) => {
    const body = problemBody(new Problem('CONTACT_NOT_FOUND', { detail: 'No such contact' }), fakeRequest('/api/v1/organisation/1/contact/2', 'abc-123'))
    t.same(body, {
      type: problemType('CONTACT_NOT_FOUND'),
      title: PROBLEMS.CONTACT_NOT_FOUND.title,
      status: 404,
      detail: 'No such contact',
      instance: '/api/v1/organisation/1/contact/2',
      code: 'CONTACT_NOT_FOUND',
      request_id: 'abc-123'
    })
    t.notOk('errors' in body, 'no errors member unless there are field errors')
  })

  t.test('instance drops the query string', async (t) => {
    t.equal(problemBody(new Problem('NOT_FOUND'), fakeRequest('/x/y?token=secret&a=b')).instance, '/x/y')
    t.equal(problemBody(new Problem('NOT_FOUND'), fakeRequest('/x/y?')).instance, '/x/y')
    t.equal(problemBody(new Problem('NOT_FOUND'), fakeRequest('/?a=1?b=2')).instance, '/')
  })

  t.test('includes field errors when present', async (t) => {
    const errors = [{ pointer: '/foo', detail: 'is not an allowed property', in: 'body' as const }]
    const body = problemBody(new Problem('VALIDATION_FAILED', { errors }), fakeRequest('/p'))
    t.same(body.errors, errors)
  })

  t.test('uses the default title as detail when none is given', async (t) => {
    const body = problemBody(new Problem('UPSTREAM_TIMEOUT'), fakeRequest('/p'))
    t.equal(body.detail, PROBLEMS.UPSTREAM_TIMEOUT.title)
    t.equal(body.status, 504)
    t.equal(body.type, 'urn:emnify-bff:problem:upstream-timeout')
  })
})

t.test('the errors plugin answers problem+json', async (t) => {
  const app = Fastify({
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: true } }
  })
  t.teardown(() => app.close())
  await app.register(errorsPlugin)
  app.get('/boom', async () => { throw new Error(LEAKY) })
  // eslint-disable-next-line no-throw-literal -- the point: a thrown non-Error must not break the handler
  app.get('/null', async () => { throw null })
  app.get('/busy', async () => { throw new Problem('UPSTREAM_RATE_LIMITED', { retryAfter: 17 }) })
  app.get('/who', async () => { throw new Problem('UNAUTHENTICATED') })
  app.post('/contact', {
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        properties: {
          name: { type: 'string' },
          type: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } }
        }
      }
    }
  }, async () => ({ ok: true }))
  await app.ready()

  const problemOf = (body: string) => JSON.parse(body) as ProblemBody

  t.test('an unexpected error is a 500 without its message', async (t) => {
    const response = await app.inject({ url: '/boom?x=1' })
    t.equal(response.statusCode, 500)
    t.match(response.headers['content-type'], /^application\/problem\+json/)
    t.notMatch(response.body, /hunter2|10\.0\.0\.5|ECONNREFUSED|db\.js|stack/)
    const body = problemOf(response.body)
    t.equal(body.code, 'INTERNAL_ERROR')
    t.equal(body.instance, '/boom')
    t.type(body.request_id, 'string')
    t.ok(body.request_id.length > 0)
  })

  t.test('even a thrown null is answered as problem+json', async (t) => {
    const response = await app.inject({ url: '/null' })
    t.equal(response.statusCode, 500)
    t.match(response.headers['content-type'], /^application\/problem\+json/)
    t.equal(problemOf(response.body).code, 'INTERNAL_ERROR')
  })

  t.test('Retry-After is sent when the problem has one', async (t) => {
    const response = await app.inject({ url: '/busy' })
    t.equal(response.statusCode, 503)
    t.equal(response.headers['retry-after'], '17')
    t.equal(problemOf(response.body).code, 'UPSTREAM_RATE_LIMITED')
  })

  t.test('UNAUTHENTICATED carries WWW-Authenticate: Bearer', async (t) => {
    const response = await app.inject({ url: '/who' })
    t.equal(response.statusCode, 401)
    t.equal(response.headers['www-authenticate'], 'Bearer')
  })

  t.test('an unknown route is NOT_FOUND', async (t) => {
    const response = await app.inject({ url: '/nowhere?q=1' })
    t.equal(response.statusCode, 404)
    t.match(response.headers['content-type'], /^application\/problem\+json/)
    const body = problemOf(response.body)
    t.equal(body.code, 'NOT_FOUND')
    t.equal(body.instance, '/nowhere')
  })

  t.test('real Fastify validation errors get pointers', async (t) => {
    const unknown = problemOf((await app.inject({ method: 'POST', url: '/contact', payload: { name: 'x', nickname: 'y' } })).body)
    t.equal(unknown.code, 'VALIDATION_FAILED')
    t.same(unknown.errors, [{ pointer: '/nickname', detail: 'is not an allowed property', in: 'body' }])

    const nested = problemOf((await app.inject({ method: 'POST', url: '/contact', payload: { type: {} } })).body)
    t.same(nested.errors, [{ pointer: '/type/id', detail: 'is required', in: 'body' }])

    const empty = problemOf((await app.inject({ method: 'POST', url: '/contact', payload: {} })).body)
    t.same(empty.errors, [{ pointer: '', detail: 'must contain at least one property', in: 'body' }])

    const wrongType = await app.inject({ method: 'POST', url: '/contact', payload: { name: 5 } })
    t.equal(wrongType.statusCode, 400)
    t.same(problemOf(wrongType.body).errors, [{ pointer: '/name', detail: 'must be string', in: 'body' }])
  })

  t.test('real Fastify body errors map to their codes', async (t) => {
    const cases: Array<[string, string | undefined, number, string]> = [
      ['{"name":', 'application/json', 400, 'MALFORMED_JSON'],
      ['{"__proto__":{"name":"x"}}', 'application/json', 400, 'MALFORMED_JSON'],
      ['', 'application/json', 400, 'MALFORMED_JSON'],
      ['name=x', 'application/x-www-form-urlencoded', 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }), 'application/json', 413, 'PAYLOAD_TOO_LARGE']
    ]
    for (const [payload, contentType, status, code] of cases) {
      const response = await app.inject({ method: 'POST', url: '/contact', payload, headers: contentType === undefined ? {} : { 'content-type': contentType } })
      t.equal(response.statusCode, status, code)
      t.equal(problemOf(response.body).code, code)
    }
  })
})

t.test('requests Node refuses before routing still get problem+json with the security headers', async (t) => {
  const headers = { 'x-frame-options': 'DENY', 'x-content-type-options': 'nosniff' }
  const parse = (raw: string) => {
    const [head = '', body = ''] = raw.split('\r\n\r\n')
    return { head, problem: JSON.parse(body) }
  }
  const cases = [
    { error: { code: 'HPE_INVALID_HEADER_TOKEN', rawPacket: Buffer.from('PATCH /api/v1/organisation/1/contact/2?x=1 HTTP/1.1\r\nauthorization: Bearer secret-token\r\nx-bad: \x01\r\n') }, status: 400, code: 'VALIDATION_FAILED', instance: '/api/v1/organisation/1/contact/2' },
    { error: { code: 'ERR_HTTP_REQUEST_TIMEOUT' }, status: 408, code: 'REQUEST_TIMEOUT', instance: '/' },
    { error: { code: 'HPE_HEADER_OVERFLOW', rawPacket: Buffer.from('GARBAGE') }, status: 431, code: 'HEADERS_TOO_LARGE', instance: '/' }
  ]
  for (const { error, status, code, instance } of cases) {
    const raw = clientErrorResponse(error, headers)
    if (raw === undefined) throw new Error('expected an answer')
    const { head, problem } = parse(raw)
    t.match(head, new RegExp(`^HTTP/1\\.1 ${status} `))
    t.match(head, /\r\ncontent-type: application\/problem\+json; charset=utf-8\r\n/)
    t.match(head, /\r\nconnection: close\r\n/)
    t.match(head, /\r\nx-frame-options: DENY/)
    t.equal(head.match(/x-content-type-options/g)?.length, 1, 'nosniff once')
    t.equal(Number(/content-length: (\d+)/.exec(head)?.[1]), Buffer.byteLength(JSON.stringify(problem)))
    t.match(problem, { status, code, instance, type: `urn:emnify-bff:problem:${code.toLowerCase().replaceAll('_', '-')}` })
    t.match(problem.request_id, /^[0-9a-f-]{36}$/)
    t.notMatch(raw, /secret-token/, 'nothing after the request line is echoed')
  }
  t.equal(clientErrorResponse({ code: 'ECONNRESET' }, headers), undefined, 'nothing is written to a client that reset')
})

t.test('an unparseable request whose first line is not a request line gets instance "/", never a path from a later line', async (t) => {
  for (const packet of [
    'GARBAGE\r\nGET /from-a-later-line HTTP/1.1\r\n\r\n',
    'GET /a b c HTTP/1.1\r\nGET /smuggled HTTP/1.1\r\n\r\n',
    '\r\nPATCH /api/v1/organisation/1/contact/1 HTTP/1.1\r\n\r\n'
  ]) {
    const raw = clientErrorResponse({ code: 'HPE_INVALID_METHOD', rawPacket: Buffer.from(packet, 'latin1') }, {}) ?? ''
    const problem = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as ProblemBody
    t.equal(problem.instance, '/', JSON.stringify(packet))
  }
  const first = clientErrorResponse({ code: 'HPE_INVALID_HEADER_TOKEN', rawPacket: Buffer.from('GET /health/live HTTP/1.1\r\nbad header\r\n\r\n', 'latin1') }, {}) ?? ''
  t.equal((JSON.parse(first.slice(first.indexOf('\r\n\r\n') + 4)) as ProblemBody).instance, '/health/live', 'the first line still names the path')
})

t.test('failureSummary names an error and its causes in one line, without a stack', async (t) => {
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' })
  const summary = failureSummary(new Error('upstream unreachable', { cause }))
  t.same(summary, { failure: 'Error: upstream unreachable <- Error: connect ECONNREFUSED 127.0.0.1:9' })
  t.same(failureSummary(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), { failure: 'Error: socket hang up (ECONNRESET)' })
  t.same(failureSummary(undefined), {})
  t.notMatch(JSON.stringify(summary), /\n\s+at /)
})
