// The static header block of a JSON API: the OWASP REST set with helmet's values, written once.
import fastifyHelmet from '@fastify/helmet'
import Fastify from 'fastify'
import t from 'tap'
import { headerStamp } from '../../src/http/response-headers.ts'
import { SECURITY_HEADERS, securityHeaders } from '../../src/protection/security-headers.ts'

const OWASP_REST = ['content-security-policy', 'strict-transport-security', 'x-content-type-options', 'x-frame-options', 'referrer-policy']
const DOCUMENT_ONLY = ['x-xss-protection', 'x-download-options', 'x-dns-prefetch-control', 'x-permitted-cross-domain-policies', 'origin-agent-cluster', 'cross-origin-opener-policy']

t.test('the block holds the OWASP REST set plus CORP, and nothing meant for HTML documents', async (t) => {
  t.same(Object.keys(SECURITY_HEADERS).sort(), [...OWASP_REST, 'cross-origin-resource-policy'].sort())
  for (const name of DOCUMENT_ONLY) t.notOk(name in SECURITY_HEADERS, `${name} is not sent`)
  t.match(SECURITY_HEADERS['content-security-policy'], /^default-src 'none';.*frame-ancestors 'none'/)
  t.ok(Object.isFrozen(SECURITY_HEADERS))
  t.equal(await securityHeaders(), SECURITY_HEADERS)
})

t.test('each value is what @fastify/helmet sends for it with the API options it used to have', async (t) => {
  const probe = Fastify()
  await probe.register(fastifyHelmet, {
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    hsts: { maxAge: 31_536_000, includeSubDomains: true }
  })
  probe.get('/', async () => '')
  const response = await probe.inject('/')
  await probe.close()
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) t.equal(value, response.headers[name], name)
})

t.test('the stamp puts the request id and the block on an answer, nosniff once', async (t) => {
  const app = Fastify({ genReqId: () => 'req-1' })
  const stamp = headerStamp(SECURITY_HEADERS)
  app.addHook('onRequest', (request, reply, done) => { stamp(request, reply); done() })
  app.get('/', async () => ({ ok: true }))
  const response = await app.inject('/')
  await app.close()
  t.equal(response.headers['x-request-id'], 'req-1')
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) t.equal(response.headers[name], value, name)
  t.equal(response.headers['x-content-type-options'], 'nosniff')
  const stampOnly = headerStamp({ 'x-frame-options': 'DENY' })
  const bare = Fastify()
  bare.addHook('onRequest', (request, reply, done) => { stampOnly(request, reply); done() })
  bare.get('/', async () => '')
  t.equal((await bare.inject('/')).headers['x-content-type-options'], 'nosniff', 'nosniff even when a block lacks it')
  await bare.close()
})
