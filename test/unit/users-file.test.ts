import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { hashPassword, verifyPassword } from '../../src/users/password.ts'
import { canonicalUsername, parseUsers, UserDirectory, UsersFileError } from '../../src/users/users-file.ts'

const PATH = '/etc/bff/users.json'
const HASH = await hashPassword('correct horse battery staple', { ln: 10, r: 8, p: 1 })
const OTHER_HASH = await hashPassword('another long passphrase', { ln: 10, r: 8, p: 1 })

const file = (users: unknown[]) => JSON.stringify({ users })
const alice = { username: 'alice', password_hash: HASH, orgs: [1, 2] }

/** Asserts parseUsers refuses the text with a UsersFileError whose message contains every fragment. */
function refuses (t: Test, text: string, fragments: string[], label: string) {
  let error: unknown
  try {
    parseUsers(text, PATH)
  } catch (caught) {
    error = caught
  }
  t.type(error, UsersFileError, `${label}: refused with UsersFileError`)
  const message = (error as Error | undefined)?.message ?? ''
  t.match(message, PATH, `${label}: names the file`)
  for (const fragment of fragments) t.ok(message.includes(fragment), `${label}: message contains ${JSON.stringify(fragment)} (${message})`)
}

t.test('a valid file yields every user with orgs and a parsed hash', async (t) => {
  const users = parseUsers(file([alice, { username: 'ops@example.com', password_hash: OTHER_HASH, orgs: '*' }]), PATH)
  t.equal(users.size, 2)
  t.same(users.get('alice')?.orgs, [1, 2])
  t.equal(users.get('ops@example.com')?.orgs, '*')
  const hash = users.get('alice')?.hash
  t.ok(hash !== undefined && await verifyPassword('correct horse battery staple', hash), 'the parsed hash verifies the password')
  t.equal(users.get('Alice'), undefined, 'the map is keyed by the canonical (lower-case) name')
})

t.test('a file that is not JSON is refused and says so', async (t) => {
  refuses(t, '{"users": [', ['not valid JSON'], 'truncated JSON')
  refuses(t, '', ['not valid JSON'], 'empty file')
})

t.test('a file without a users array is refused', async (t) => {
  refuses(t, '{}', ['{"users": [...]}'], 'no users')
  refuses(t, '{"users": {}}', ['{"users": [...]}'], 'users is an object')
  refuses(t, '[]', ['{"users": [...]}'], 'top-level array')
  refuses(t, 'null', ['{"users": [...]}'], 'null')
})

t.test('a bad username is refused naming the entry by index and username', async (t) => {
  refuses(t, file([alice, { ...alice, username: 'bob smith' }]), ['users[1]', '"bob smith"', 'username'], 'space in username')
  refuses(t, file([alice, { ...alice, username: '' }]), ['users[1]', 'username'], 'empty username')
  refuses(t, file([alice, { ...alice, username: 'x'.repeat(129) }]), ['users[1]', 'username'], 'username over 128 characters')
  refuses(t, file([{ password_hash: HASH, orgs: [1] }]), ['users[0]', '(no username)', 'username'], 'missing username')
  refuses(t, file([{ ...alice, username: 42 }]), ['users[0]', '(no username)'], 'numeric username')
})

t.test('a duplicate username is refused naming the second entry', async (t) => {
  refuses(t, file([alice, { username: 'bob', password_hash: HASH, orgs: [3] }, { ...alice, orgs: [9] }]), ['users[2]', '"alice"', 'duplicate'], 'duplicate')
})

t.test('a bad password hash is refused naming the entry and the reason', async (t) => {
  refuses(t, file([alice, { username: 'bob', orgs: [1] }]), ['users[1]', '"bob"', 'password_hash is required'], 'missing hash')
  refuses(t, file([alice, { username: 'bob', password_hash: 'hunter2hunter2', orgs: [1] }]), ['users[1]', '"bob"', 'password_hash must look like'], 'plain text')
  refuses(t, file([{ ...alice, password_hash: HASH.replace('ln=10', 'ln=9') }]), ['users[0]', '"alice"', 'out of range'], 'cost out of range')
  refuses(t, file([{ ...alice, password_hash: HASH.slice(0, -1) }]), ['users[0]', '"alice"', 'password_hash'], 'key cut short')
})

t.test('bad orgs are refused naming the entry', async (t) => {
  const bad: Record<string, unknown> = {
    missing: undefined,
    empty: [],
    zero: [0],
    negative: [-1],
    fraction: [1.5],
    string: ['1'],
    duplicate: [1, 1],
    unsafe: [2 ** 53],
    'other string': 'all',
    number: 1
  }
  for (const [label, orgs] of Object.entries(bad)) {
    refuses(t, file([alice, { username: 'bob', password_hash: HASH, orgs }]), ['users[1]', '"bob"', 'orgs'], `orgs ${label}`)
  }
})

t.test('an unknown property is refused naming the entry and the property, never ignored', async (t) => {
  refuses(t, file([{ ...alice, password: 'plain text' }]), ['users[0]', '"alice"', 'unknown', 'password'], 'password in plain text')
  refuses(t, file([alice, { username: 'bob', password_hash: HASH, orgs: [1], role: 'admin' }]), ['users[1]', '"bob"', 'role'], 'role')
})

t.test('an entry that is not an object is refused naming its index', async (t) => {
  refuses(t, file([alice, 'bob']), ['users[1]', 'not an object'], 'string entry')
  refuses(t, file([alice, null]), ['users[1]', 'not an object'], 'null entry')
  refuses(t, file([alice, [alice]]), ['users[1]', 'not an object'], 'array entry')
})

t.test('a users file that does not exist stops loading with a readable error', async (t) => {
  const dir = t.testdir()
  await t.rejects(UserDirectory.load(join(dir, 'missing.json')), { name: 'UsersFileError', message: /cannot be read \(ENOENT\)/ })
})

t.test('a loaded directory answers users by name and has a dummy hash for unknown ones', async (t) => {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, file([alice]))
  const directory = await UserDirectory.load(path)
  t.equal(directory.size, 1)
  t.equal(directory.get('alice')?.username, 'alice')
  t.equal(directory.get('mallory'), undefined)
  t.equal(directory.dummy.key.length, 32, 'the dummy is a real hash')
  t.same([directory.dummy.ln, directory.dummy.r, directory.dummy.p], [10, 8, 1], 'the dummy costs as much as the file\'s hashes')
  t.equal(await verifyPassword('correct horse battery staple', directory.dummy), false, 'the dummy matches no real password')
})

t.test('reload picks up added and removed users', async (t) => {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, file([alice]))
  const directory = await UserDirectory.load(path)
  await writeFile(path, file([{ username: 'bob', password_hash: OTHER_HASH, orgs: [7] }]))
  t.equal(await directory.reload(), 1, 'reports the new count')
  t.equal(directory.get('alice'), undefined, 'a removed user is gone')
  t.same(directory.get('bob')?.orgs, [7], 'an added user is present')
})

t.test('a failed reload keeps every previous user and reports why', async (t) => {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, file([alice, { username: 'bob', password_hash: OTHER_HASH, orgs: '*' }]))
  const directory = await UserDirectory.load(path)

  await writeFile(path, file([alice, { ...alice, username: 'carol', orgs: [] }]))
  await t.rejects(directory.reload(), { name: 'UsersFileError', message: /users\[1\] "carol"/ }, 'a broken entry is reported')
  t.equal(directory.size, 2, 'still two users')
  t.ok(directory.get('alice') !== undefined && directory.get('bob') !== undefined, 'the previous users remain')
  t.equal(directory.get('carol'), undefined, 'nothing of the broken file was taken')

  await writeFile(path, '{"users": [')
  await t.rejects(directory.reload(), { name: 'UsersFileError', message: /not valid JSON/ }, 'invalid JSON is reported')
  t.equal(directory.size, 2, 'still two users after invalid JSON')
})

t.test('names that differ only in case or Unicode form are one name: a file holding two of them is refused', async (t) => {
  refuses(t, file([{ ...alice, username: 'dave' }, { ...alice, username: 'Dave' }]), ['users[1]', '"Dave"', 'duplicate', 'users[0] "dave"', 'case-insensitive'], 'case variants')
  refuses(t, file([{ ...alice, username: 'OPS@example.com' }, { ...alice, username: 'ops@EXAMPLE.com' }]), ['users[1]', 'duplicate'], 'e-mail style names')
  t.equal(canonicalUsername('Dave'), 'dave')
  t.equal(canonicalUsername('\uff24\uff41\uff56\uff45'), 'dave', 'full-width letters are the same name (NFKC)')
})

t.test('a user is found under any case of the name, and keeps the name as written in the file', async (t) => {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, file([{ ...alice, username: 'Dave' }]))
  const directory = await UserDirectory.load(path)
  for (const name of ['Dave', 'dave', 'DAVE', '\uff44\uff41\uff56\uff45']) t.equal(directory.get(name)?.username, 'Dave', name)
  t.equal((await directory.authenticate('dAVE', 'correct horse battery staple'))?.username, 'Dave', 'signs in under another case')
  t.equal(await directory.authenticate('dave', 'wrong horse battery staple'), undefined, 'a wrong password is refused')
  t.equal(await directory.authenticate('mallory', 'correct horse battery staple'), undefined, 'an unknown user is refused')
})

t.test('hashes of different costs in one file are refused naming the entry, so no user signs in faster than another', async (t) => {
  const cheaper = await hashPassword('another long passphrase', { ln: 10, r: 1, p: 1 })
  refuses(t, file([alice, { username: 'bob', password_hash: cheaper, orgs: [1] }]),
    ['users[1]', '"bob"', 'ln=10,r=1,p=1', 'ln=10,r=8,p=1', 'users[0] "alice"', 'same cost'], 'mixed costs')
})

t.test('the dummy checked for unknown users has the cost of the file, also after a reload to another cost', async (t) => {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, file([alice]))
  const directory = await UserDirectory.load(path)
  t.same([directory.dummy.ln, directory.dummy.r, directory.dummy.p], [10, 8, 1])
  await writeFile(path, file([{ ...alice, password_hash: await hashPassword('correct horse battery staple', { ln: 11, r: 2, p: 1 }) }]))
  await directory.reload()
  t.same([directory.dummy.ln, directory.dummy.r, directory.dummy.p], [11, 2, 1], 'the dummy follows the new cost')
  await writeFile(path, file([]))
  await directory.reload()
  t.same([directory.dummy.ln, directory.dummy.r, directory.dummy.p], [15, 8, 1], 'an empty file falls back to the default cost')
})
