// Session verification, transport rules and CSRF, end to end: whatever a request presents, a
// rejected one must never cost an authenticate call or reach the contact endpoint upstream.
import { createHmac } from 'node:crypto'
import { createServer } from 'node:http'
import t from 'tap'
import type { Test } from 'tap'
import { CLOCK_TOLERANCE_MS } from '../../src/session/claims.ts'
import { mintSession } from '../../src/session/mint.ts'
import { CONTACT, SECRET, claims, forge, session, startStack, testConfig, type Stack } from '../helpers/stack.ts'
import { failOnStrayErrors } from './upstream-helpers.ts'

failOnStrayErrors(t)

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
const b64url = (text: string) => Buffer.from(text).toString('base64url')

/** Signs raw segments with the real secret, for payloads that are not JSON objects at all. */
function signRaw (headerSegment: string, payloadSegment: string): string {
  const input = `${headerSegment}.${payloadSegment}`
  return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`
}

/** A token with its signature segment replaced. */
const withSignature = (token: string, signature: string) => `${token.slice(0, token.lastIndexOf('.'))}.${signature}`

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * The same signature bytes spelt differently: a 32-byte HMAC takes 43 characters, whose last one
 * carries 2 unused bits; `flip` sets them otherwise.
 */
function respelt (token: string, flip: 1 | 2 | 3): string {
  const signature = token.slice(token.lastIndexOf('.') + 1)
  const last = BASE64URL.indexOf(signature.at(-1) as string)
  return withSignature(token, signature.slice(0, -1) + BASE64URL[last ^ flip])
}

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

t.test('a correctly signed token whose payload is not a JSON object is refused', async (t) => {
  const header = b64url(JSON.stringify(HS256))
  const payloads: Record<string, string> = {
    'a JSON array holding valid claims': JSON.stringify([claims()]),
    'an empty JSON array': '[]',
    'a JSON string': '"alice"',
    'a JSON number': '42',
    'JSON null': 'null',
    'JSON true': 'true',
    'not JSON at all': 'sub=alice&orgs=*',
    'claims followed by garbage': `${JSON.stringify(claims())}x`,
    'an empty payload': ''
  }
  for (const [label, payload] of Object.entries(payloads)) {
    t.test(label, async (t) => {
      rejected(t, await send(reject, { headers: bearer(signRaw(header, b64url(payload))) }))
    })
  }
})

t.test('an HS256 token with an empty or truncated signature is refused', async (t) => {
  const token = forge(HS256, claims({ sub: 'truncated' }))
  const signature = token.split('.')[2] as string
  const cut: Record<string, string> = {
    empty: '',
    'its last character dropped': signature.slice(0, -1),
    'its last four characters dropped': signature.slice(0, -4),
    'only its first half': signature.slice(0, 22),
    'only its first character': signature.slice(0, 1)
  }
  for (const [label, truncated] of Object.entries(cut)) {
    t.test(label, async (t) => {
      rejected(t, await send(reject, { headers: bearer(withSignature(token, truncated)) }))
    })
  }
  // The whole signature passes, so the cut alone made the difference.
  assertAccepted(t, accept, await send(accept, { headers: bearer(token) }))
})

t.test('a signature spelt non-canonically (other unused bits in its last character) is refused', async (t) => {
  const token = forge(HS256, claims({ sub: 'respelt' }))
  const signatureOf = (jwt: string) => Buffer.from(jwt.split('.')[2] as string, 'base64url')
  for (const flip of [1, 2, 3] as const) {
    const variant = respelt(token, flip)
    t.not(variant, token)
    t.same(signatureOf(variant), signatureOf(token), 'the very same signature bytes')
    rejected(t, await send(reject, { headers: bearer(variant) }))
  }
  assertAccepted(t, accept, await send(accept, { headers: bearer(token) }))
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

t.test('a session minted for another deployment (other audience or issuer, same secret) is refused', async (t) => {
  const elsewhere: Array<Record<string, string>> = [
    { SESSION_AUDIENCE: 'billing-bff' },
    { SESSION_ISSUER: 'billing-bff' },
    { SESSION_AUDIENCE: 'billing-bff', SESSION_ISSUER: 'billing-bff' }
  ]
  for (const env of elsewhere) {
    const { token } = mintSession(testConfig(env), { sub: 'alice', orgs: [1, 2] })
    rejected(t, await send(reject, { headers: bearer(token) }))
  }
  // Minted the same way for this deployment it passes: only iss and aud decided.
  assertAccepted(t, accept, await send(accept, { headers: bearer(mintSession(testConfig(), { sub: 'alice', orgs: [1, 2] }).token) }))
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

t.test('time claims get the clock tolerance (at most 60 s): just inside is accepted, just outside refused', async (t) => {
  const tolerance = CLOCK_TOLERANCE_MS / 1000
  t.ok(tolerance > 3 && tolerance <= 60, `a tolerance of ${tolerance} s`)
  // 3 s either side of the edge: far from it for a test run, close for any clock.
  const inside = tolerance - 3
  const outside = tolerance + 3
  const cases: Array<{ label: string, claims: () => Record<string, unknown>, accepted: boolean }> = [
    { label: `exp ${inside} s ago`, claims: () => ({ iat: now() - 600, exp: now() - inside }), accepted: true },
    { label: `exp ${outside} s ago`, claims: () => ({ iat: now() - 600, exp: now() - outside }), accepted: false },
    { label: `nbf in ${inside} s`, claims: () => ({ nbf: now() + inside }), accepted: true },
    { label: `nbf in ${outside} s`, claims: () => ({ nbf: now() + outside }), accepted: false },
    { label: `iat in ${inside} s`, claims: () => ({ iat: now() + inside, exp: now() + 600 }), accepted: true },
    { label: `iat in ${outside} s`, claims: () => ({ iat: now() + outside, exp: now() + 600 }), accepted: false }
  ]
  for (const { label, claims: timeClaims, accepted } of cases) {
    t.test(`${label}: ${accepted ? 'accepted' : 'refused'}`, async (t) => {
      const token = forge(HS256, claims(timeClaims()))
      if (accepted) assertAccepted(t, accept, await send(accept, { headers: bearer(token) }))
      else rejected(t, await send(reject, { headers: bearer(token) }))
    })
  }
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
  let connections = 0
  const keyServer = createServer((req, res) => { fetched.push(req.url ?? ''); res.end('{"keys":[]}') })
  // Counts any connection, so a TLS attempt (https jku/x5u) that never becomes a request shows too.
  keyServer.on('connection', () => { connections++ })
  await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => keyServer.close(() => resolve())))
  const address = keyServer.address()
  const origin = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const header = { ...HS256, kid: 'other-key', jku: `${origin}/jwks.json`, x5u: `${origin}/cert.pem` }

  assertAccepted(t, accept, await send(accept, { headers: bearer(forge(header, claims())) }))
  const attackerKey = 'attacker-controlled-key-0123456789abcdef'
  rejected(t, await send(reject, { headers: bearer(forge(header, claims(), { key: attackerKey })) }))
  const tls = { ...HS256, kid: 'other-key', jku: `https://127.0.0.1:${new URL(origin).port}/jwks.json`, x5u: `https://127.0.0.1:${new URL(origin).port}/cert.pem` }
  rejected(t, await send(reject, { headers: bearer(forge(tls, claims(), { key: attackerKey })) }))
  // An embedded key (jwk) is no more trusted than a linked one.
  const embedded = { ...HS256, jwk: { kty: 'oct', k: b64url(attackerKey) } }
  rejected(t, await send(reject, { headers: bearer(forge(embedded, claims(), { key: attackerKey })) }))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(fetched, [], 'no key URL was fetched')
  t.equal(connections, 0, 'not even a connection was opened')
})

t.test('a revoked session (logout, then reuse) is refused and reaches nothing upstream', async (t) => {
  const logout = async (token: string) => {
    const out = await reject.app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(token) })
    t.equal(out.statusCode, 204, 'logged out')
  }
  const minted = session('revoked-minted')
  await logout(minted)
  rejected(t, await send(reject, { headers: bearer(minted) }))
  rejected(t, await send(reject, { headers: { cookie: `__Host-session=${minted}`, 'x-csrf': '1' } }))

  // The jti is what is revoked: another token carrying it is refused too.
  await logout(forge(HS256, claims({ sub: 'revoked-jti', jti: 'revoked-session-1' })))
  rejected(t, await send(reject, { headers: bearer(forge(HS256, claims({ sub: 'revoked-jti', jti: 'revoked-session-1', iat: now() - 1 }))) }))

  // Without a jti the token itself is revoked, and re-spelling its signature does not bring it back.
  const external = forge(HS256, claims({ sub: 'revoked-external' }))
  await logout(external)
  rejected(t, await send(reject, { headers: bearer(external) }))
  for (const flip of [1, 2, 3] as const) {
    rejected(t, await send(reject, { headers: bearer(respelt(external, flip)) }))
  }
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

t.test('a token verified before is read by the same Authorization rule in any spelling', async (t) => {
  const token = session('speller')
  // Verified and remembered; what follows may be answered from the verification cache.
  assertAccepted(t, accept, await send(accept, { headers: bearer(token) }))
  for (const authorization of [`bearer ${token}`, `BEARER   ${token}  `, `Bearer ${token}`]) {
    assertAccepted(t, accept, await send(accept, { headers: { authorization } }))
  }
  for (const authorization of [`Token ${token}`, `Bearer ${token},x`, `Bearer ${token} x`, `Bearer${token}`, token]) {
    const answer = await send(accept, { headers: { authorization } })
    t.equal(answer.status, 401, `${authorization.slice(0, 8)}… is refused`)
    t.equal(answer.json().code, 'UNAUTHENTICATED')
    t.equal(accept.sim.state.counters.patch_contact, 0, 'and nothing reaches emnify')
  }
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
