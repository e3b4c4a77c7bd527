import t from 'tap'
import { fieldMessage, summaryMessage, UNSHOWN, upstreamMessages } from '../../src/upstream/sanitise.ts'

const body = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value))
const APPLICATION_TOKEN = 'test-application-token-5f2c'

/** What the outside review got back verbatim before the allow-list. */
const INFRASTRUCTURE = [
  'Connection to db-primary.emnify.de:5432 refused',
  'NullPointerException at com.emnify.contact.ContactService.update(ContactService.java:123)',
  'dbuser:s3cr3t@mysql-prod/contacts',
  '/var/lib/app/config/application-prod.yml not found',
  'Bearer abcdef0123456789abcdef',
  `application token ${APPLICATION_TOKEN} invalid`,
  'redirected to http://10.0.0.5:8080/internal',
  'upstream 10.1.2.3 failed',
  'connect to [2001:db8::1]:443 refused',
  'key AKIAIOSFODNN7EXAMPLE',
  'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzdmMifQ.c2ln'
]

t.test('infrastructure details, credentials and stack traces never come back, whether alone or after a field name', async (t) => {
  for (const message of INFRASTRUCTURE) {
    for (const variant of [message, `name: ${message}`, `country.id ${message}`]) {
      const shown = upstreamMessages(body({ message: variant, errors: [variant, { message: variant }] }), [APPLICATION_TOKEN])
      const visible = JSON.stringify(shown)
      for (const fragment of ['db-primary', '5432', 'ContactService', 's3cr3t', 'mysql', '/var/lib', 'abcdef0123', APPLICATION_TOKEN, '10.0.0.5', '10.1.2.3', '2001', 'AKIA', 'eyJ']) {
        t.notOk(visible.includes(fragment), `${variant}: ${fragment} not shown (${visible})`)
      }
    }
  }
})

t.test('a message that names a known field is shown at that field\'s pointer', async (t) => {
  const cases: Array<[string, string]> = [
    ['country: unknown country id 99999', '/country'],
    ['country.id: unknown country id 99999', '/country/id'],
    ['type: unknown contact type id 9', '/type'],
    ['email: must be a well-formed email address', '/email'],
    ['purchase_order_number: size must be between 0 and 50', '/purchase_order_number'],
    ['purchaseOrderNumber must not be longer than 50 characters', '/purchase_order_number'],
    ['secondaryAddress is too long', '/secondary_address'],
    ['Name must not be empty', '/name'],
    ['zipcode: "12345" is too long', '/zipcode']
  ]
  for (const [message, pointer] of cases) {
    t.same(fieldMessage(message, undefined), { pointer, detail: message, in: 'upstream' }, message)
  }
})

t.test('a field emnify names next to the message places it, when the message itself is safe', async (t) => {
  t.same(fieldMessage('must not be blank', 'city'), { pointer: '/city', detail: 'must not be blank', in: 'upstream' })
  t.same(fieldMessage('must be a positive number', 'country.id'), { pointer: '/country/id', detail: 'must be a positive number', in: 'upstream' })
  t.equal(fieldMessage('must not be blank', 'password'), undefined, 'an unknown field is no pointer')
  t.equal(fieldMessage('must not be blank', 'name.first'), undefined, 'only type and country have a sub-field (id)')
})

t.test('a message about a known field whose text is not safe keeps the pointer with a fixed text', async (t) => {
  for (const message of ['email: alice@example.com is taken', 'name: see /etc/passwd', 'city: Bearer abc', `phone: ${APPLICATION_TOKEN}`, 'street: line\u0000two at x.y']) {
    t.same(fieldMessage(message, undefined, [APPLICATION_TOKEN]), { pointer: message.startsWith('email') ? '/email' : `/${message.split(':')[0] as string}`, detail: UNSHOWN, in: 'upstream' }, message)
  }
})

t.test('messages that name no known field are dropped, however harmless they look', async (t) => {
  for (const message of ['Something went wrong', 'Validation failed', 'Please try again', 'Class::method failed', 'password must be longer']) {
    t.equal(fieldMessage(message, undefined), undefined, message)
  }
})

t.test('a configured secret is never echoed, in any case', async (t) => {
  t.equal(fieldMessage('name: ends with SUPER-secret', undefined, ['super-SECRET'])?.detail, UNSHOWN)
  t.equal(fieldMessage('name: ends with super', undefined, ['super-secret'])?.detail, 'name: ends with super', 'a word of the secret alone is harmless')
})

t.test('only emnify\'s known summaries are used as the detail', async (t) => {
  for (const summary of ['Validation failed', 'Bad request', 'Input validation failed.', 'Duplicated']) t.equal(summaryMessage(summary), summary)
  for (const other of ['Rejected by db-1', 'Validation failed at 10.0.0.1', 'Something else', 42, null]) t.equal(summaryMessage(other), undefined, String(other))
})

t.test('upstreamMessages: summary as detail, field messages as errors, nothing else', async (t) => {
  const shown = upstreamMessages(body({
    error_code: 1400,
    error_token: 'InputValidationFailed',
    message: 'Validation failed',
    errors: [
      { message: 'country: unknown country id 99999' },
      { message: 'Validation failed' },
      { message: 'NullPointerException at com.emnify.x(X.java:1)' },
      'email: must be a well-formed email address',
      null,
      42,
      { message: 'x'.repeat(5000) }
    ]
  }))
  t.same(shown, {
    detail: 'Validation failed',
    errors: [
      { pointer: '/country', detail: 'country: unknown country id 99999', in: 'upstream' },
      { pointer: '/email', detail: 'email: must be a well-formed email address', in: 'upstream' }
    ]
  })
  t.same(upstreamMessages(body({ errors: ['phone: is invalid'] })).detail, 'phone: is invalid', 'no summary: the first shown field message')
  t.same(upstreamMessages(body({ errors: ['phone: /tmp/x'] })), { errors: [{ pointer: '/phone', detail: UNSHOWN, in: 'upstream' }] }, 'a fixed text is no detail')
})

t.test('upstreamMessages shows nothing for empty, non-JSON, non-object or huge bodies', async (t) => {
  for (const value of ['', 'not json', '<html>400 Bad Request</html>', 'null', '[]', '"text"', '{"message":null,"errors":{}}']) {
    t.same(upstreamMessages(body(value)), { errors: [] }, JSON.stringify(value))
  }
  t.same(upstreamMessages(Buffer.alloc(300 * 1024, 0x20)), { errors: [] })
})

t.test('at most 20 upstream errors are read, and repeated ones are shown once', async (t) => {
  const errors = Array.from({ length: 10_000 }, (_, i) => `name: too long (${i})`)
  t.equal(upstreamMessages(body({ errors })).errors.length, 20)
  t.equal(upstreamMessages(body({ message: 'name: too long', errors: ['name: too long', 'name: too long'] })).errors.length, 1)
})

t.test('a prototype-polluting body does not pollute', async (t) => {
  upstreamMessages(body('{"__proto__":{"polluted":true},"message":"name: x"}'))
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})
