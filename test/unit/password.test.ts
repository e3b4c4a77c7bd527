import t from 'tap'
import { DEFAULT_PARAMS, MAX_WORK, hashPassword, parseHash, verifyPassword } from '../../src/users/password.ts'

// Low cost keeps the suite fast; the format and the checks do not depend on it.
const FAST = { ln: 10, r: 8, p: 1 }
const B64_NO_PAD = /^[A-Za-z0-9+/]+$/
const KEY = 'A'.repeat(43)
const SALT = 'c2FsdHNhbHRzYWx0c2FsdA'

t.test('a hash is PHC scrypt with its parameters, a 16-byte salt and a 32-byte key in unpadded standard base64', async (t) => {
  const hash = await hashPassword('correct horse battery staple')
  const parts = hash.split('$')
  t.equal(parts.length, 5, '$scrypt$params$salt$key')
  t.equal(parts[0], '')
  t.equal(parts[1], 'scrypt')
  t.equal(parts[2], `ln=${DEFAULT_PARAMS.ln},r=${DEFAULT_PARAMS.r},p=${DEFAULT_PARAMS.p}`, 'default parameters are written into the hash')
  t.equal(parts[2], 'ln=15,r=8,p=1', 'the default cost is ln=15, r=8, p=1')
  t.match(parts[3], B64_NO_PAD, 'salt is standard base64 without padding')
  t.match(parts[4], B64_NO_PAD, 'key is standard base64 without padding')
  t.equal(Buffer.from(parts[3] as string, 'base64').length, 16, 'salt is 16 bytes')
  t.equal(Buffer.from(parts[4] as string, 'base64').length, 32, 'key is 32 bytes')
  t.equal((parts[4] as string).length, 43, '32 bytes are 43 unpadded base64 characters')

  const parsed = parseHash(hash)
  t.same({ ln: parsed.ln, r: parsed.r, p: parsed.p }, DEFAULT_PARAMS)
  t.equal(parsed.key.length, 32)
})

t.test('the parameters given to hashPassword are the ones written into the hash and used to verify', async (t) => {
  const hash = await hashPassword('correct horse battery staple', { ln: 11, r: 4, p: 2 })
  t.match(hash, /^\$scrypt\$ln=11,r=4,p=2\$/)
  const parsed = parseHash(hash)
  t.same({ ln: parsed.ln, r: parsed.r, p: parsed.p }, { ln: 11, r: 4, p: 2 })
  t.equal(await verifyPassword('correct horse battery staple', parsed), true)
})

t.test('two hashes of one password differ (random salt) and both verify', async (t) => {
  const a = await hashPassword('correct horse battery staple', FAST)
  const b = await hashPassword('correct horse battery staple', FAST)
  t.not(a, b)
  t.not(a.split('$')[3], b.split('$')[3], 'salts differ')
  t.equal(await verifyPassword('correct horse battery staple', parseHash(a)), true)
  t.equal(await verifyPassword('correct horse battery staple', parseHash(b)), true)
})

t.test('the right password verifies, any other does not', async (t) => {
  const hash = parseHash(await hashPassword('correct horse battery staple', FAST))
  t.equal(await verifyPassword('correct horse battery staple', hash), true, 'right password')
  t.equal(await verifyPassword('correct horse battery stapl', hash), false, 'one character short')
  t.equal(await verifyPassword('correct horse battery staple ', hash), false, 'one character more')
  t.equal(await verifyPassword('Correct horse battery staple', hash), false, 'case matters')
  t.equal(await verifyPassword('', hash), false, 'empty password')
})

t.test('a password verifies whether its accents are composed or decomposed (NFC)', async (t) => {
  const composed = 'caf\u00e9-passphrase-1'
  const decomposed = 'cafe\u0301-passphrase-1'
  const hash = parseHash(await hashPassword(composed, FAST))
  t.equal(await verifyPassword(decomposed, hash), true)
})

t.test('a hash with another key does not verify the password', async (t) => {
  const hash = parseHash(await hashPassword('correct horse battery staple', FAST))
  const tampered = { ...hash, key: Buffer.from(hash.key) }
  tampered.key[0] = (tampered.key[0] as number) ^ 1
  t.equal(await verifyPassword('correct horse battery staple', tampered), false)
})

t.test('parseHash accepts a well-formed hash from the cheapest cost up to the default cost', async (t) => {
  for (const params of ['ln=10,r=1,p=1', 'ln=15,r=8,p=1', 'ln=14,r=16,p=1', 'ln=13,r=8,p=4']) {
    const parsed = parseHash(`$scrypt$${params}$${SALT}$${KEY}`)
    t.equal(parsed.key.length, 32, params)
  }
})

t.test('a hash costing more CPU or memory than the default is refused, so one sign-in attempt stays bounded', async (t) => {
  for (const params of ['ln=17,r=16,p=4', 'ln=16,r=8,p=1', 'ln=15,r=16,p=1', 'ln=15,r=8,p=2', 'ln=14,r=16,p=2']) {
    t.throws(() => parseHash(`$scrypt$${params}$${SALT}$${KEY}`), /above the most this service allows \(ln=15,r=8,p=1/, params)
  }
  t.equal(MAX_WORK, 2 ** 15 * 8, 'the bound is the default cost')
})

t.test('parseHash rejects malformed hashes', async (t) => {
  const malformed: Record<string, string> = {
    empty: '',
    'other algorithm': `$argon2id$ln=15,r=8,p=1$${SALT}$${KEY}`,
    'missing parameters': `$scrypt$${SALT}$${KEY}`,
    'parameters out of order': `$scrypt$r=8,ln=15,p=1$${SALT}$${KEY}`,
    'missing salt': `$scrypt$ln=15,r=8,p=1$$${KEY}`,
    'salt too short': `$scrypt$ln=15,r=8,p=1$c2FsdA$${KEY}`,
    'padded salt': `$scrypt$ln=15,r=8,p=1$${SALT}==$${KEY}`,
    'base64url salt': `$scrypt$ln=15,r=8,p=1$c2Fsd-_zYWx0c2FsdHNhbHQ$${KEY}`,
    'padded key': `$scrypt$ln=15,r=8,p=1$${SALT}$${KEY}=`,
    'key of 31 bytes': `$scrypt$ln=15,r=8,p=1$${SALT}$${'A'.repeat(42)}`,
    'key of 33 bytes': `$scrypt$ln=15,r=8,p=1$${SALT}$${'A'.repeat(44)}`,
    'base64url key': `$scrypt$ln=15,r=8,p=1$${SALT}$${'_'.repeat(43)}`,
    'trailing data': `$scrypt$ln=15,r=8,p=1$${SALT}$${KEY}$`,
    'trailing newline': `$scrypt$ln=15,r=8,p=1$${SALT}$${KEY}\n`,
    'non-numeric parameter': `$scrypt$ln=x,r=8,p=1$${SALT}$${KEY}`,
    'plain text password': 'correct horse battery staple'
  }
  for (const [label, value] of Object.entries(malformed)) {
    t.throws(() => parseHash(value), /password_hash/, label)
  }
})

t.test('parseHash rejects costs outside ln 10–20, r 1–32, p 1–16', async (t) => {
  for (const params of ['ln=9,r=8,p=1', 'ln=18,r=8,p=1', 'ln=100,r=8,p=1', 'ln=15,r=0,p=1', 'ln=15,r=17,p=1', 'ln=15,r=8,p=0', 'ln=15,r=8,p=5']) {
    t.throws(() => parseHash(`$scrypt$${params}$${SALT}$${KEY}`), /password_hash/, params)
  }
  t.throws(() => parseHash(`$scrypt$ln=9,r=8,p=1$${SALT}$${KEY}`), /out of range/, 'says the parameters are out of range')
})
