// The access line and audit record skip pino's generic path: they must still be the very line pino writes.
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import pino from 'pino'
import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { type AccessLine, type AuditRecord, accessFields, auditFields, auditMessage, fieldLines, lazyChildLogger, loggerOptions } from '../../src/logging/logger.ts'

function capture (level = 'info') {
  const lines: string[] = []
  const options = loggerOptions(level, { write: (line: string) => { lines.push(line) } })
  const logger = pino(options, options.stream) as unknown as FastifyBaseLogger
  return { lines, logger }
}

const FIELDS = [
  { request_id: 'r-1', method: 'PATCH', path: '/api/v1/organisation/1/contact/2', route: '/api/v1/organisation/:org_id/contact/:contact_id', status: 204, ms: 1.23, sub: 'local:alice', upstream_ms: 0.5, upstream_calls: 1, upstream_outcome: '2xx' },
  { request_id: 'r-2', method: 'GET', path: '/nope', route: undefined, status: 404, ms: 0.1, sub: undefined },
  { event: 'contact.updated', request_id: 'r-3', sub: 'oidc:ü "quoted" \\ back\nslash', org_id: '1', contact_id: null, fields: ['name', 'email'] },
  {}
]

t.test('byte for byte the line pino writes for the same fields and bindings', async (t) => {
  const realNow = Date.now
  Date.now = () => 1_796_160_743_804
  t.teardown(() => { Date.now = realNow })
  for (const bindings of [{}, { log_type: 'audit' }] as Array<Record<string, string>>) {
    for (const fields of FIELDS) {
      const ours = capture()
      fieldLines(ours.logger, bindings).info(fields, 'request completed')
      const theirs = capture()
      theirs.logger.child(bindings, { redact: { paths: [] } } as never).info(fields, 'request completed')
      t.equal(ours.lines.length, 1, 'one line')
      t.equal(ours.lines[0], theirs.lines[0], `same line for ${JSON.stringify(fields).slice(0, 40)} with ${JSON.stringify(bindings)}`)
      t.same(JSON.parse(ours.lines[0] as string).msg, 'request completed')
    }
  }
})

// What a caller can shape: any UTF-16, lone surrogates and control characters included.
const shaped = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('PATCH', '/api/v1/organisation/1/contact/2', 'local:alice', '"', '\\', '\u2028'))
const accessLines: fc.Arbitrary<AccessLine> = fc.record({
  request_id: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), fc.constant(randomUUID()), fc.constant('req-1')),
  method: shaped,
  path: shaped,
  route: fc.option(fc.oneof(shaped, fc.constant('/api/v1/organisation/:org_id/contact/:contact_id')), { nil: undefined }),
  status: fc.integer({ min: 100, max: 599 }),
  ms: fc.oneof(fc.double({ min: 0, max: 1e6 }), fc.constantFrom(0, 1.23, 1e21, Number.NaN, Number.POSITIVE_INFINITY)),
  sub: fc.option(shaped, { nil: undefined }),
  upstream_ms: fc.option(fc.double({ min: 0, max: 1e5 }), { nil: undefined }),
  upstream_calls: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
  upstream_outcome: fc.option(fc.constantFrom('2xx', '3xx', '4xx', '5xx', 'timeout', 'unreachable', 'reset'), { nil: undefined }),
  trace_id: fc.option(fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 32, maxLength: 32 }), { nil: undefined }),
  aborted: fc.option(fc.constant(true as const), { nil: undefined })
}, { requiredKeys: ['request_id', 'method', 'path', 'route', 'status', 'ms', 'sub'] })

t.test('the access line written field by field is the line JSON.stringify of its object gives', async (t) => {
  const realNow = Date.now
  Date.now = () => 1_796_160_743_804
  t.teardown(() => { Date.now = realNow })
  const routes = new Map<string, string>()
  let compared = 0
  fc.assert(fc.property(accessLines, fc.constantFrom('request completed', 'request timed out'), (line, msg) => {
    const ours = capture()
    fieldLines(ours.logger).written(accessFields(line, routes), JSON.stringify(msg))
    const theirs = capture()
    fieldLines(theirs.logger).info(line, msg)
    compared++
    return ours.lines.length === 1 && ours.lines[0] === theirs.lines[0] && JSON.parse(ours.lines[0] as string).request_id === line.request_id
  }), { numRuns: 2000 })
  t.equal(compared, 2000, 'every generated line compared')
  t.ok(routes.size > 0 && routes.size <= 2000, 'route templates are written once each')
  const quiet = capture('warn')
  fieldLines(quiet.logger).written(',"a":1', '"hidden"')
  t.same(quiet.lines, [], 'the level threshold holds for lines written from fields too')
})

const digits = fc.stringMatching(/^[1-9][0-9]{0,17}$/)
const auditRecords: fc.Arbitrary<AuditRecord> = fc.record({
  event: fc.constantFrom('contact.created' as const, 'contact.updated' as const, 'contact.deleted' as const),
  request_id: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), fc.constant(randomUUID())),
  sub: fc.option(shaped, { nil: undefined }),
  org_id: digits,
  contact_id: fc.option(digits, { nil: null }),
  fields: fc.array(fc.oneof(fc.constantFrom('name', 'email', 'phone', 'street'), shaped), { maxLength: 6 })
})

t.test('the audit record written field by field is the record JSON.stringify of its object gives', async (t) => {
  const realNow = Date.now
  Date.now = () => 1_796_160_743_804
  t.teardown(() => { Date.now = realNow })
  let compared = 0
  fc.assert(fc.property(auditRecords, (record) => {
    const ours = capture()
    fieldLines(ours.logger, { log_type: 'audit' }).written(auditFields(record), auditMessage(record.event))
    const theirs = capture()
    fieldLines(theirs.logger, { log_type: 'audit' }).info(record, record.event.replace('.', ' '))
    compared++
    return ours.lines.length === 1 && ours.lines[0] === theirs.lines[0]
  }), { numRuns: 2000 })
  t.equal(compared, 2000, 'every generated record compared')
})

t.test('the level threshold holds, including a level changed while running', async (t) => {
  const quiet = capture('warn')
  const lines = fieldLines(quiet.logger)
  lines.info({ a: 1 }, 'hidden')
  t.same(quiet.lines, [], 'info is below warn: nothing written')
  quiet.logger.level = 'info'
  lines.info({ a: 1 }, 'shown')
  t.equal(quiet.lines.length, 1, 'written once the level allows it')
  t.match(JSON.parse(quiet.lines[0] as string), { level: 30, service: 'emnify-bff', a: 1, msg: 'shown' })
})

t.test('the per-request logger: no child until the request logs, then the child Fastify would have made', async (t) => {
  const realNow = Date.now
  Date.now = () => 1_796_160_743_804
  t.teardown(() => { Date.now = realNow })
  const ours = capture()
  const theirs = capture()
  let children = 0
  const counting = new Proxy(ours.logger, {
    get (target, property, receiver) {
      if (property === 'child') return (...args: Parameters<FastifyBaseLogger['child']>) => { children++; return target.child(...args) }
      return Reflect.get(target, property, receiver)
    }
  })
  const lazy = lazyChildLogger(counting, { request_id: 'r-9' }, {})
  t.equal(lazy.level, 'info', 'the level is read without making the child')
  t.equal(children, 0, 'nothing made while the request logs nothing')
  lazy.warn({ code: 'UPSTREAM_TIMEOUT', token: 'secret' }, 'representation read failed')
  lazy.info('plain message %s', 'with an argument')
  t.equal(children, 1, 'one child, at the first line')
  const real = theirs.logger.child({ request_id: 'r-9' })
  real.warn({ code: 'UPSTREAM_TIMEOUT', token: 'secret' }, 'representation read failed')
  real.info('plain message %s', 'with an argument')
  t.same(ours.lines, theirs.lines, 'the same lines, redaction included')
  t.match(ours.lines[0], /"token":"\[redacted\]"/)
  t.ok(lazy.child({ more: 1 }), 'children of its own')
})
