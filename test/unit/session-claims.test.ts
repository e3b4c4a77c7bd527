import t from 'tap'
import { createHmac } from 'node:crypto'
import { createDecoder, createVerifier } from 'fast-jwt'
import {
  allowsOrganisation,
  hasCanonicalSignature,
  CLOCK_TOLERANCE_MS,
  MAX_SESSION_LIFETIME_S,
  isSessionClaims,
  newSessionPayload,
  sessionVerifyOptions,
  type SessionClaims
} from '../../src/session/claims.ts'
import { mintSession, parseOrgs } from '../../src/session/mint.ts'
import type { SessionConfig } from '../../src/config/config.ts'

const NOW_MS = 1_750_000_000_000
const NOW_S = NOW_MS / 1000
const MAX_SAFE = Number.MAX_SAFE_INTEGER // 9007199254740991

const config: SessionConfig = {
  SESSION_SECRET: 'claims-test-secret-0123456789-abcdefgh',
  SESSION_ISSUER: 'bff-issuer',
  SESSION_AUDIENCE: 'bff-audience',
  SESSION_TTL_S: 900
}

function payload (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: 'alice',
    orgs: [1, 2],
    iat: NOW_S,
    exp: NOW_S + 600,
    iss: config.SESSION_ISSUER,
    aud: config.SESSION_AUDIENCE,
    jti: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
    ...overrides
  }
}

function without (key: string): Record<string, unknown> {
  const copy = payload()
  delete copy[key]
  return copy
}

function claims (orgs: number[] | '*'): SessionClaims {
  return { sub: 'alice', orgs, iat: NOW_S, exp: NOW_S + 600, iss: 'i', aud: 'a' }
}

t.test('isSessionClaims', async (t) => {
  t.test('accepts well-formed claims', async (t) => {
    t.ok(isSessionClaims(payload(), NOW_MS))
    t.ok(isSessionClaims(payload({ orgs: '*' }), NOW_MS), 'orgs "*" means every organisation')
    t.ok(isSessionClaims(payload({ orgs: [1] }), NOW_MS))
    t.ok(isSessionClaims(payload({ orgs: [MAX_SAFE, 1, 42] }), NOW_MS), 'the largest safe integer is an org id')
    t.ok(isSessionClaims(without('jti'), NOW_MS), 'jti is optional for externally minted sessions')
    t.ok(isSessionClaims(payload({ aud: ['bff-audience', 'other'] }), NOW_MS))
  })

  t.test('rejects orgs that are not positive safe integers or "*"', async (t) => {
    const bad: Array<[string, unknown]> = [
      ['a string id', ['1']],
      ['mixed numbers and strings', [1, '2']],
      ['zero', [0]],
      ['a negative id', [-1]],
      ['a negative zero', [-0]],
      ['a float', [1.5]],
      ['NaN', [Number.NaN]],
      ['Infinity', [Number.POSITIVE_INFINITY]],
      ['2^53 (not safe)', [2 ** 53]],
      ['a huge number', [1e21]],
      ['duplicates', [1, 2, 1]],
      ['null inside', [1, null]],
      ['a boolean inside', [true]],
      ['a nested array', [[1]]],
      ['an object inside', [{ id: 1 }]],
      ['a bare number', 1],
      ['a comma string', '1,2'],
      ['another wildcard spelling', 'all'],
      ['a double wildcard', '**'],
      ['a wildcard in an array', ['*']],
      ['an object', { 1: true }],
      ['null', null],
      ['missing', undefined],
      ['more than 10000 ids', Array.from({ length: 10_001 }, (_, i) => i + 1)]
    ]
    for (const [name, orgs] of bad) {
      t.notOk(isSessionClaims(payload({ orgs }), NOW_MS), name)
    }
    t.notOk(isSessionClaims(without('orgs'), NOW_MS), 'orgs absent')
    t.ok(isSessionClaims(payload({ orgs: Array.from({ length: 10_000 }, (_, i) => i + 1) }), NOW_MS), '10000 ids are fine')
  })

  t.test('rejects a missing, empty, overlong or non-string sub', async (t) => {
    t.notOk(isSessionClaims(without('sub'), NOW_MS))
    for (const sub of ['', 'x'.repeat(257), 42, null, ['alice'], { name: 'alice' }]) {
      t.notOk(isSessionClaims(payload({ sub }), NOW_MS), JSON.stringify(sub)?.slice(0, 20))
    }
    t.ok(isSessionClaims(payload({ sub: 'x'.repeat(256) }), NOW_MS), '256 characters are allowed')
  })

  t.test('rejects missing or non-numeric iat and exp', async (t) => {
    t.notOk(isSessionClaims(without('iat'), NOW_MS))
    t.notOk(isSessionClaims(without('exp'), NOW_MS))
    t.notOk(isSessionClaims(payload({ iat: String(NOW_S) }), NOW_MS))
    t.notOk(isSessionClaims(payload({ exp: String(NOW_S + 600) }), NOW_MS))
    t.notOk(isSessionClaims(payload({ iat: null }), NOW_MS))
    t.notOk(isSessionClaims(payload({ iat: Number.NaN }), NOW_MS))
  })

  t.test('rejects a non-finite exp (JSON 1e999 parses to Infinity)', async (t) => {
    t.equal(JSON.parse('{"exp":1e999}').exp, Number.POSITIVE_INFINITY)
    t.notOk(isSessionClaims(payload({ exp: Number.POSITIVE_INFINITY }), NOW_MS))
    t.notOk(isSessionClaims(payload({ exp: Number.NaN }), NOW_MS))
  })

  t.test('rejects a lifetime longer than a year (exp 1e300 cannot even be shown as a date)', async (t) => {
    t.notOk(isSessionClaims(payload({ exp: 1e300 }), NOW_MS), 'exp 1e300')
    t.notOk(isSessionClaims(payload({ iat: -1e300 }), NOW_MS), 'iat -1e300')
    t.notOk(isSessionClaims(payload({ exp: NOW_S + MAX_SESSION_LIFETIME_S + 1 }), NOW_MS), 'a second past a year')
    t.ok(isSessionClaims(payload({ exp: NOW_S + MAX_SESSION_LIFETIME_S }), NOW_MS), 'exactly the longest lifetime')
  })

  t.test('rejects exp at or before iat', async (t) => {
    t.notOk(isSessionClaims(payload({ exp: NOW_S }), NOW_MS), 'exp equal to iat')
    t.notOk(isSessionClaims(payload({ exp: NOW_S - 1 }), NOW_MS), 'exp before iat')
    t.ok(isSessionClaims(payload({ exp: NOW_S + 1 }), NOW_MS))
  })

  t.test('rejects an iat in the future beyond the clock tolerance', async (t) => {
    const tolerance = CLOCK_TOLERANCE_MS / 1000
    t.ok(CLOCK_TOLERANCE_MS <= 60_000, 'the tolerance is at most 60 s')
    t.ok(isSessionClaims(payload({ iat: NOW_S + tolerance, exp: NOW_S + 3600 }), NOW_MS), 'exactly at the tolerance')
    t.notOk(isSessionClaims(payload({ iat: NOW_S + tolerance + 1, exp: NOW_S + 3600 }), NOW_MS), 'one second beyond')
    t.notOk(isSessionClaims(payload({ iat: NOW_S + 86_400, exp: NOW_S + 90_000 }), NOW_MS), 'a day ahead')
    t.ok(isSessionClaims(payload({ iat: NOW_S - 86_400, exp: NOW_S + 60 }), NOW_MS), 'an old iat is fine')
  })

  t.test('rejects a jti that is not a short non-empty string', async (t) => {
    for (const jti of ['', 'j'.repeat(129), 7, null, ['a'], { id: 'a' }]) {
      t.notOk(isSessionClaims(payload({ jti }), NOW_MS), JSON.stringify(jti)?.slice(0, 20))
    }
    t.ok(isSessionClaims(payload({ jti: 'j'.repeat(128) }), NOW_MS), '128 characters are allowed')
  })

  t.test('rejects payloads that are not objects', async (t) => {
    for (const value of [null, undefined, 'alice', 42, true, [payload()]]) {
      t.notOk(isSessionClaims(value, NOW_MS), String(value))
    }
  })
})

t.test('allowsOrganisation', async (t) => {
  t.test('"*" allows every organisation', async (t) => {
    for (const id of ['1', '42', '9007199254740991', '999999999999999999']) t.ok(allowsOrganisation(claims('*'), id), id)
  })

  t.test('a list allows exactly its members', async (t) => {
    const session = claims([1, 2, 500])
    t.ok(allowsOrganisation(session, '1'))
    t.ok(allowsOrganisation(session, '2'))
    t.ok(allowsOrganisation(session, '500'))
    t.notOk(allowsOrganisation(session, '3'))
    t.notOk(allowsOrganisation(session, '5000'))
    t.notOk(allowsOrganisation(session, '50'))
    t.notOk(allowsOrganisation(claims([]), '1'), 'an empty list allows nothing')
  })

  t.test('17–18 digit ids that round to nearby doubles never match a safe-integer org', async (t) => {
    const session = claims([MAX_SAFE, 12_345_678_901_234])
    t.ok(allowsOrganisation(session, '9007199254740991'), 'the largest safe integer itself')
    for (const id of ['9007199254740992', '9007199254740993', '9007199254740994', '90071992547409910', '90071992547409911', '900719925474099100']) {
      t.not(Number(id), Number.NaN)
      t.notOk(allowsOrganisation(session, id), `${id} (Number: ${Number(id)}) does not match`)
    }
    // 123456789012345678 rounds to 123456789012345680: no safe org can equal either.
    t.notOk(allowsOrganisation(claims([MAX_SAFE]), '123456789012345678'))
    t.notOk(allowsOrganisation(claims([12_345_678_901_234]), '123456789012340'), 'a prefix is not a match')
  })
})

t.test('parseOrgs', async (t) => {
  t.test('parses "*" and comma-separated positive integers', async (t) => {
    t.equal(parseOrgs('*'), '*')
    t.equal(parseOrgs(' * '), '*')
    t.same(parseOrgs('1'), [1])
    t.same(parseOrgs('1,2,3'), [1, 2, 3])
    t.same(parseOrgs(' 1 , 2 ,3 '), [1, 2, 3])
    t.same(parseOrgs('9007199254740991'), [MAX_SAFE])
  })

  t.test('removes duplicates', async (t) => {
    t.same(parseOrgs('3,1,3,2,1'), [3, 1, 2])
  })

  t.test('throws on anything else', async (t) => {
    for (const value of ['', ' ', '0', '-1', '1.5', '1e3', '0x10', 'a', '1,a', '1,,2', '1,', ',1', '01', '+1', '*,1', '**', '9007199254740992', '12345678901234567', '1 2']) {
      t.throws(() => parseOrgs(value), /--orgs must be/, JSON.stringify(value))
    }
  })

  t.test('its results are valid session orgs', async (t) => {
    for (const value of ['*', '1,2,3', '9007199254740991', '5,5']) {
      t.ok(isSessionClaims(payload({ orgs: parseOrgs(value) }), NOW_MS), value)
    }
  })
})

t.test('newSessionPayload adds a fresh jti', async (t) => {
  const a = newSessionPayload({ sub: 'alice', orgs: [1] })
  const b = newSessionPayload({ sub: 'alice', orgs: [1] })
  t.same({ sub: a.sub, orgs: a.orgs }, { sub: 'alice', orgs: [1] })
  t.match(a.jti, /^[0-9a-f-]{36}$/)
  t.not(a.jti, b.jti)
})

t.test('mintSession', async (t) => {
  const verify = createVerifier({ ...sessionVerifyOptions(config), key: config.SESSION_SECRET, complete: true })

  t.test('produces an HS256 token the BFF verifier accepts, with every required claim', async (t) => {
    const before = Math.floor(Date.now() / 1000)
    const { token, expiresAt } = mintSession(config, { sub: 'alice', orgs: [1, 2] })
    const after = Math.ceil(Date.now() / 1000)
    const { header, payload: claimsOut } = verify(token) as { header: Record<string, unknown>, payload: Record<string, unknown> }
    t.equal(header.alg, 'HS256')
    t.equal(claimsOut.sub, 'alice')
    t.same(claimsOut.orgs, [1, 2])
    t.equal(claimsOut.iss, config.SESSION_ISSUER)
    t.equal(claimsOut.aud, config.SESSION_AUDIENCE)
    t.type(claimsOut.jti, 'string')
    t.ok((claimsOut.jti as string).length > 0)
    t.type(claimsOut.iat, 'number')
    t.type(claimsOut.exp, 'number')
    const iat = claimsOut.iat as number
    const exp = claimsOut.exp as number
    t.ok(iat >= before && iat <= after, 'iat is now')
    t.equal(exp - iat, config.SESSION_TTL_S, 'the default lifetime is SESSION_TTL_S')
    t.ok(Math.abs(expiresAt.getTime() - exp * 1000) <= 1000, 'expiresAt agrees with exp')
    t.ok(isSessionClaims(claimsOut, Date.now()), 'the BFF accepts its claims')
  })

  t.test('honours an explicit ttl', async (t) => {
    for (const ttlS of [60, 120, 86_400]) {
      const { token, expiresAt } = mintSession(config, { sub: 'bob', orgs: '*', ttlS })
      const { payload: claimsOut } = verify(token) as { payload: { iat: number, exp: number, orgs: unknown } }
      t.equal(claimsOut.exp - claimsOut.iat, ttlS, `ttl ${ttlS}`)
      t.equal(claimsOut.orgs, '*')
      t.ok(Math.abs(expiresAt.getTime() - (Date.now() + ttlS * 1000)) < 2000)
    }
  })

  t.test('every minted session has its own jti', async (t) => {
    const decode = createDecoder()
    const jtis = new Set(Array.from({ length: 20 }, () => (decode(mintSession(config, { sub: 'alice', orgs: [1] }).token) as { jti: string }).jti))
    t.equal(jtis.size, 20)
  })

  t.test('is rejected by a verifier with another secret, issuer or audience', async (t) => {
    const { token } = mintSession(config, { sub: 'alice', orgs: [1] })
    t.throws(() => createVerifier({ ...sessionVerifyOptions(config), key: 'another-secret-0123456789-abcdefghijkl' })(token))
    t.throws(() => createVerifier({ ...sessionVerifyOptions({ ...config, SESSION_ISSUER: 'someone-else' }), key: config.SESSION_SECRET })(token))
    t.throws(() => createVerifier({ ...sessionVerifyOptions({ ...config, SESSION_AUDIENCE: 'someone-else' }), key: config.SESSION_SECRET })(token))
  })

  t.test('an expired minted session is rejected by the verifier', async (t) => {
    const { token } = mintSession(config, { sub: 'alice', orgs: [1], ttlS: 60 })
    const later = createVerifier({ ...sessionVerifyOptions(config), key: config.SESSION_SECRET, clockTimestamp: Date.now() + 60_000 + CLOCK_TOLERANCE_MS + 1000 })
    t.throws(() => later(token), { code: 'FAST_JWT_EXPIRED' })
  })
})

t.test('sessionVerifyOptions', async (t) => {
  const options = sessionVerifyOptions(config)

  t.test('allows HS256 only', async (t) => {
    t.same(options.algorithms, ['HS256'])
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    const body = payload({ iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 })
    const sign = (alg: string, hash: 'sha256' | 'sha384' | 'sha512') => {
      const input = `${encode({ alg, typ: 'JWT' })}.${encode(body)}`
      return `${input}.${createHmac(hash, config.SESSION_SECRET).update(input).digest('base64url')}`
    }
    const verify = createVerifier({ ...options, key: config.SESSION_SECRET })
    t.ok(verify(sign('HS256', 'sha256')), 'HS256 is accepted')
    t.throws(() => verify(sign('HS384', 'sha384')), 'HS384 is rejected')
    t.throws(() => verify(sign('HS512', 'sha512')), 'HS512 is rejected')
    const unsigned = `${encode({ alg: 'none', typ: 'JWT' })}.${encode(body)}.`
    t.throws(() => verify(unsigned), 'alg none is rejected')
  })

  t.test('requires the claims of the contract and a tolerance of at most 60 s', async (t) => {
    for (const claim of ['sub', 'orgs', 'iat', 'exp', 'iss', 'aud']) t.ok(options.requiredClaims.includes(claim), claim)
    t.ok(options.clockTolerance > 0 && options.clockTolerance <= 60_000)
    t.equal(options.allowedIss, config.SESSION_ISSUER)
    t.equal(options.allowedAud, config.SESSION_AUDIENCE)
  })
})

t.test('the canonical-signature check agrees with decoding and re-encoding, for any string', async (t) => {
  const fc = (await import('fast-check')).default
  const roundTrip = (signature: string) => Buffer.from(signature, 'base64url').toString('base64url') === signature
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const base64urlish = fc.array(fc.constantFrom(...alphabet, '=', '+', '/', '.', ' ', 'é'), { maxLength: 90 }).map((chars) => chars.join(''))
  const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31)
  t.comment(`seed ${seed}`)
  // A signature segment never holds a dot: the token's last dot starts it.
  const segment = fc.oneof(base64urlish, fc.string({ maxLength: 60 })).filter((s) => !s.includes('.'))
  fc.assert(fc.property(segment, (signature) => {
    return hasCanonicalSignature(`aaa.bbb.${signature}`) === roundTrip(signature)
  }), { seed, numRuns: 20_000 })
  // Every spelling of a real HS256 signature: exactly one is canonical.
  const signature = createHmac('sha256', 'k').update('x').digest('base64url')
  const spellings = [...alphabet].map((last) => signature.slice(0, -1) + last).filter((s) => Buffer.from(s, 'base64url').equals(Buffer.from(signature, 'base64url')))
  t.equal(spellings.length, 4)
  t.same(spellings.filter((s) => hasCanonicalSignature(`a.b.${s}`)), [signature])
})
