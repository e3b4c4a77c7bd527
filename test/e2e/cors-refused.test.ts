// A frontend on an origin that is not in CORS_ORIGINS gets no CORS header at all, and the refused
// preflight is logged with its origin, so that a wrong origin is visible to the operator.
import t from 'tap'
import { CONTACT, startStack } from '../helpers/stack.ts'

const ALLOWED = 'http://localhost:5173'
const CORS_HEADERS = ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-allow-methods', 'access-control-allow-headers', 'access-control-expose-headers', 'access-control-max-age']

const preflight = (origin: string) => ({
  origin,
  'access-control-request-method': 'PATCH',
  'access-control-request-headers': 'content-type, x-csrf'
})

t.test('a preflight from a refused origin gets none of the CORS headers and is logged with the origin', async (t) => {
  const stack = await startStack(t, { env: { CORS_ORIGINS: ALLOWED } })
  for (const origin of ['http://127.0.0.1:5173', 'https://evil.example', 'null', `${ALLOWED}/`]) {
    const reply = await stack.call('OPTIONS', CONTACT, { headers: preflight(origin) })
    for (const header of CORS_HEADERS) t.equal(reply.headers[header], undefined, `${origin}: no ${header}`)
    t.not(reply.status, 204, `${origin}: not a successful preflight`)
    const logged = stack.logs.records().filter((record) => record.event === 'cors.refused' && record.origin === origin)
    t.equal(logged.length, 1, `${origin}: one log line naming the refused origin`)
    t.equal(logged[0]?.level, 40)
  }
})

t.test('an actual request from a refused origin gets no CORS headers either', async (t) => {
  const stack = await startStack(t, { env: { CORS_ORIGINS: ALLOWED } })
  const reply = await stack.call('GET', '/health/live', { headers: { origin: 'https://evil.example' } })
  t.equal(reply.status, 200)
  for (const header of CORS_HEADERS) t.equal(reply.headers[header], undefined, `no ${header}`)
  t.match(reply.headers.vary, /Origin/i, 'Vary: Origin, so a cache never serves one origin\'s answer to another')
})

t.test('the configured origin still gets the full preflight answer, and nothing is logged', async (t) => {
  const stack = await startStack(t, { env: { CORS_ORIGINS: ALLOWED } })
  const reply = await stack.call('OPTIONS', CONTACT, { headers: preflight(ALLOWED) })
  t.equal(reply.status, 204)
  t.equal(reply.headers['access-control-allow-origin'], ALLOWED)
  t.equal(reply.headers['access-control-allow-credentials'], 'true')
  t.match(reply.headers['access-control-allow-methods'], /PATCH/)
  t.match(reply.headers['access-control-allow-headers'], /X-CSRF/i)
  const actual = await stack.call('GET', '/health/live', { headers: { origin: ALLOWED } })
  t.equal(actual.headers['access-control-allow-origin'], ALLOWED)
  t.equal(actual.headers['access-control-allow-credentials'], 'true')
  t.notOk(stack.logs.records().some((record) => record.event === 'cors.refused'))
})
