// Session verification, transport rules and CSRF, end to end: whatever a request presents, a
// rejected one must never cost an authenticate call or reach the contact endpoint upstream.
import { createServer } from 'node:http'
import t from 'tap'
import type { Test } from 'tap'
import { CONTACT, SECRET, claims, forge, session, startStack, type Stack } from '../helpers/stack.ts'

interface Answer {
  status: number
  headers: Record<string, unknown>
  json: () => any
}

interface Send {
  headers?: Record<string, string>
  url?: string
  body?: unknown
}

const HS256 = { alg: 'HS256', typ: 'JWT' }
const now = () => Math.floor(Date.now() / 1000)
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** A contact PATCH through the whole app; real HTTP adds nothing to header-only rules. */
async function send (stack: Stack, { headers = {}, url = CONTACT, body = { name: 'Ada Lovelace' } }: Send = {}): Promise<Answer> {
  const response = await stack.app.inject({
    method: 'PATCH',
    url,
    headers: { 'content-type': 'application/json', ...headers },
    payload: JSON.stringify(body)
  })
  return { status: response.statusCode, headers: response.headers, json: () => response.json() }
}

/** The problem answer, and proof that emnify saw nothing: no patch, not even an authenticate. */
function assertRejected (t: Test, stack: Stack, answer: Answer, status: number, code: string) {
  t.equal(answer.status, status, `answers ${status}`)
  t.match(answer.headers['content-type'], /^application\/problem\+json/, 'as problem+json')
  const body = answer.json()
  t.equal(body.code, code, `with code ${code}`)
  t.equal(body.status, status)
  if (status === 401) t.equal(answer.headers['www-authenticate'], 'Bearer', 'names the Bearer scheme')
  const counters = stack.sim.state.counters
  t.equal(counters.patch_contact, 0, 'no PATCH reached emnify')
  t.equal(counters.authenticate, 0, 'no authenticate call was made')
  t.equal(counters.total, 0, 'no call of any kind reached emnify')
  stack.sim.reset()
}

/** A 204 that really went through: emnify received exactly one PATCH. */
function assertAccepted (t: Test, stack: Stack, answer: Answer) {
  t.equal(answer.status, 204, 'answers 204')
  t.equal(stack.sim.state.counters.patch_contact, 1, 'the PATCH reached emnify')
  stack.sim.reset()
}

// Rejections run against a BFF that never forwarded anything, so its token cache stays cold and
// any authenticate call would show; accepted requests use their own stack.
const reject = await startStack(t)
const accept = await startStack(t)
const rejected = (t: Test, answer: Answer, code = 'UNAUTHENTICATED', status = 401) => assertRejected(t, reject, answer, status, code)

t.test('a request without any credentials gets 401 with WWW-Authenticate: Bearer', async (t) => {
  rejected(t, await send(reject))
})

t.test('an Authorization header with another scheme is refused', async (t) => {
  const token = session()
  for (const authorization of [`Basic ${Buffer.from('alice:secret').toString('base64')}`, `Token ${token}`, token, 'Bearer', 'Bearer ']) {
    rejected(t, await send(reject, { headers: { authorization } }))
  }
})

t.test('a token that is not a JWT is refused', async (t) => {
  for (const token of ['garbage', 'a.b.c', 'not.a.jwt.at.all', `${session()}x`, session().split('.').slice(0, 2).join('.')]) {
    rejected(t, await send(reject, { headers: bearer(token) }))
  }
})

t.test('an unsigned token (alg none) is refused', async (t) => {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const unsigned = `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claims())}`
  rejected(t, await send(reject, { headers: bearer(`${unsigned}.`) }))
  rejected(t, await send(reject, { headers: bearer(`${encode({ alg: 'none' })}.${encode(claims())}.${forge(HS256, claims()).split('.')[2]}`) }))
})

t.test('HS384 and HS512 tokens are refused even when signed with the right secret', async (t) => {
  rejected(t, await send(reject, { headers: bearer(forge({ alg: 'HS384', typ: 'JWT' }, claims(), { hash: 'sha384' })) }))
  rejected(t, await send(reject, { headers: bearer(forge({ alg: 'HS512', typ: 'JWT' }, claims(), { hash: 'sha512' })) }))
})

t.test('an RS256-labelled token carrying an HMAC signature is refused (algorithm confusion)', async (t) => {
  rejected(t, await send(reject, { headers: bearer(forge({ alg: 'RS256', typ: 'JWT' }, claims())) }))
  rejected(t, await send(reject, { headers: bearer(forge({ alg: 'hs256', typ: 'JWT' }, claims())) }))
})

t.test('a token signed with another secret is refused', async (t) => {
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims(), { key: `${SECRET}-but-not-quite` })) }))
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims(), { key: '' })) }))
})

t.test('a token for another issuer or audience is refused', async (t) => {
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ iss: 'someone-else' }))) }))
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ aud: 'someone-else' }))) }))
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ aud: ['someone-else'] }))) }))
})

t.test('a token missing any required claim is refused', async (t) => {
  for (const claim of ['sub', 'orgs', 'iat', 'exp', 'iss', 'aud']) {
    t.test(`without ${claim}`, async (t) => {
      rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ [claim]: undefined }))) }))
    })
  }
})

t.test('a token expired beyond the clock tolerance is refused', async (t) => {
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ iat: now() - 700, exp: now() - 120 }))) }))
  // The contract caps the tolerance at 60 s.
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ iat: now() - 700, exp: now() - 62 }))) }))
})

t.test('a token expired a few seconds ago is still accepted (clock tolerance)', async (t) => {
  assertAccepted(t, accept, await send(accept, { headers: bearer(forge(HS256, claims({ iat: now() - 600, exp: now() - 5 }))) }))
})

t.test('a token not yet valid (nbf or iat in the future) is refused', async (t) => {
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ nbf: now() + 120 }))) }))
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ iat: now() + 120, exp: now() + 720 }))) }))
})

t.test('a token whose orgs are not positive safe integers or "*" is refused', async (t) => {
  const cases: Record<string, unknown> = {
    strings: ['1', '2'],
    negatives: [1, -2],
    floats: [1, 1.5],
    zero: [0, 1],
    'beyond 2^53': [1, 2 ** 53],
    huge: [1, 1e20],
    duplicates: [1, 1],
    'a string other than "*"': 'all',
    'a digit string': '1',
    'an object': { 1: true },
    null: null,
    'nested arrays': [[1]]
  }
  for (const [label, orgs] of Object.entries(cases)) {
    t.test(label, async (t) => {
      rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ orgs }))) }))
    })
  }
})

t.test('a token over 8 KiB is refused while one just under the limit is accepted', async (t) => {
  // Padding grows the token unevenly (base64), so find the last size under and the first over 8192.
  let under = ''
  let over = ''
  for (let pad = 5_500; over === ''; pad++) {
    const token = forge(HS256, claims({ pad: 'x'.repeat(pad) }))
    if (token.length <= 8192) under = token
    else over = token
  }
  t.ok(under.length > 8180 && over.length <= 8194, `boundary tokens of ${under.length} and ${over.length} characters`)
  // Real HTTP: the limit must be the BFF's own, not Node's header size limit.
  const call = (stack: Stack, token: string) => stack.call('PATCH', CONTACT, {
    headers: { ...bearer(token), 'content-type': 'application/json' },
    body: { name: 'Ada' }
  })
  rejected(t, await call(reject, over))
  assertAccepted(t, accept, await call(accept, under))
})

t.test('a token with a crit header is refused', async (t) => {
  rejected(t, await send(reject, { headers: bearer(forge({ ...HS256, crit: ['exp'] }, claims())) }))
  rejected(t, await send(reject, { headers: bearer(forge({ ...HS256, crit: ['x-custom'], 'x-custom': true }, claims())) }))
  rejected(t, await send(reject, { headers: bearer(forge({ ...HS256, crit: [] }, claims())) }))
})

t.test('kid, jku and x5u headers are ignored: nothing is fetched and the secret still decides', async (t) => {
  const fetched: string[] = []
  const keyServer = createServer((req, res) => { fetched.push(req.url ?? ''); res.end('{"keys":[]}') })
  await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => keyServer.close(() => resolve())))
  const address = keyServer.address()
  const origin = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const header = { ...HS256, kid: 'other-key', jku: `${origin}/jwks.json`, x5u: `${origin}/cert.pem` }

  assertAccepted(t, accept, await send(accept, { headers: bearer(forge(header, claims())) }))
  rejected(t, await send(reject, { headers: bearer(forge(header, claims(), { key: 'attacker-controlled-key-0123456789abcdef' })) }))
  t.same(fetched, [], 'no key URL was fetched')
})

t.test('a request carrying both a Bearer token and a session cookie is refused', async (t) => {
  const token = session()
  rejected(t, await send(reject, { headers: { ...bearer(token), cookie: `__Host-session=${token}`, 'x-csrf': '1' } }))
  rejected(t, await send(reject, { headers: { ...bearer(token), cookie: `__Host-session=${session('bob')}`, 'x-csrf': '1' } }))
})

t.test('with secure cookies (default) the session travels in __Host-session; a plain "session" cookie is ignored', async (t) => {
  const token = session()
  rejected(t, await send(reject, { headers: { cookie: `session=${token}`, 'x-csrf': '1' } }))
  assertAccepted(t, accept, await send(accept, { headers: { cookie: `__Host-session=${token}`, 'x-csrf': '1' } }))
})

t.test('with SESSION_COOKIE_SECURE=false the session travels in "session"; __Host-session is ignored', async (t) => {
  const insecure = await startStack(t, { env: { SESSION_COOKIE_SECURE: 'false' } })
  const token = session()
  assertRejected(t, insecure, await send(insecure, { headers: { cookie: `__Host-session=${token}`, 'x-csrf': '1' } }), 401, 'UNAUTHENTICATED')
  assertAccepted(t, insecure, await send(insecure, { headers: { cookie: `session=${token}`, 'x-csrf': '1' } }))
})

t.test('a cookie-authenticated PATCH must carry X-CSRF: 1', async (t) => {
  const cookie = `__Host-session=${session()}`
  rejected(t, await send(reject, { headers: { cookie } }), 'CSRF_HEADER_REQUIRED', 403)
  for (const value of ['0', 'true', '', '11']) {
    rejected(t, await send(reject, { headers: { cookie, 'x-csrf': value } }), 'CSRF_HEADER_REQUIRED', 403)
  }
  assertAccepted(t, accept, await send(accept, { headers: { cookie, 'x-csrf': '1' } }))
})

t.test('a cookie with an invalid session is 401 whether or not X-CSRF is sent', async (t) => {
  const cookie = `__Host-session=${forge(HS256, claims(), { key: 'wrong-secret-wrong-secret-wrong-secret' })}`
  rejected(t, await send(reject, { headers: { cookie, 'x-csrf': '1' } }))
  rejected(t, await send(reject, { headers: { cookie } }))
})

t.test('a Bearer-authenticated PATCH needs no X-CSRF header', async (t) => {
  assertAccepted(t, accept, await send(accept, { headers: bearer(session()) }))
})

t.test('an organisation outside the session orgs is 403 ORGANISATION_FORBIDDEN', async (t) => {
  // Organisation 2 and its contact 10 exist upstream: only the session stands in the way.
  const answer = await send(reject, { headers: bearer(session('alice', [1])), url: '/api/v1/organisation/2/contact/10' })
  rejected(t, answer, 'ORGANISATION_FORBIDDEN', 403)
  assertAccepted(t, accept, await send(accept, { headers: bearer(session('alice', [1, 2])), url: '/api/v1/organisation/2/contact/10' }))
})

t.test('orgs "*" allows any organisation', async (t) => {
  const token = session('root', '*')
  assertAccepted(t, accept, await send(accept, { headers: bearer(token), url: '/api/v1/organisation/2/contact/10' }))
  assertAccepted(t, accept, await send(accept, { headers: bearer(token) }))
  // Authorisation passes for an organisation emnify does not know; emnify's own 404 comes back.
  const unknown = await send(accept, { headers: bearer(token), url: '/api/v1/organisation/987654321/contact/1' })
  t.equal(unknown.status, 404)
  t.equal(unknown.json().code, 'CONTACT_NOT_FOUND')
  t.equal(accept.sim.state.counters.patch_contact, 1, 'the PATCH was forwarded')
  accept.sim.reset()
})

t.test('a 17–18 digit organisation id never matches a nearby safe-integer org by rounding', async (t) => {
  const max = Number.MAX_SAFE_INTEGER // 9007199254740991
  const token = session('alice', [max])
  for (const org of ['9007199254740992', '9007199254740993', '90071992547409910', '900719925474099100', '900719925474099199']) {
    t.equal(Number(org) === max, false)
    rejected(t, await send(reject, { headers: bearer(token), url: `/api/v1/organisation/${org}/contact/1` }), 'ORGANISATION_FORBIDDEN', 403)
  }
  // The exact id passes authorisation (emnify does not know it and answers 404).
  const exact = await send(accept, { headers: bearer(token), url: `/api/v1/organisation/${max}/contact/1` })
  t.equal(exact.json().code, 'CONTACT_NOT_FOUND')
  t.equal(accept.sim.state.calls.at(-1)?.path, `/api/v1/organisation/${max}/contact/1`, 'forwarded for the exact id')
  accept.sim.reset()
})
