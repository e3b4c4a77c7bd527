// One username rule for the users file, the lookup and the lockout: case and Unicode form do not
// make a second account or a second failure count.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.ts'
import { hashPassword } from '../../src/users/password.ts'
import { startStack, testConfig, type Stack } from '../helpers/stack.ts'

const PASSWORD = 'correct horse battery staple'
const WRONG = 'incorrect donkey battery staple'
const HASH = await hashPassword(PASSWORD, { ln: 10, r: 8, p: 1 })
const FULL_WIDTH_DAVE = '\uff44\uff41\uff56\uff45'

async function usersFile (t: Test, names: string[]): Promise<string> {
  const path = join(t.testdir(), 'users.json')
  await writeFile(path, JSON.stringify({ users: names.map((username) => ({ username, password_hash: HASH, orgs: [1] })) }))
  return path
}

async function stackWith (t: Test, names: string[]): Promise<Stack> {
  return startStack(t, { env: { USERS_FILE: await usersFile(t, names), LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: '100000' } })
}

const login = (stack: Stack, username: string, password: string) => stack.call('POST', '/auth/login', {
  headers: { 'content-type': 'application/json' },
  body: { username, password }
})

t.test('a user signs in under any case or Unicode form of the name, as the name written in the file', async (t) => {
  const stack = await stackWith(t, ['Dave'])
  for (const name of ['Dave', 'dave', 'DAVE', FULL_WIDTH_DAVE]) {
    const reply = await login(stack, name, PASSWORD)
    t.equal(reply.status, 200, `${name} signs in`)
    t.equal(reply.json().user.sub, 'Dave', 'the session names the account as written in the file')
  }
})

t.test('failures under different spellings of one name share one lockout: the right password then gets 429', async (t) => {
  const stack = await stackWith(t, ['dave'])
  const spellings = ['dave', 'Dave', 'DAVE', FULL_WIDTH_DAVE, 'dAvE']
  for (const name of spellings) t.equal((await login(stack, name, WRONG)).status, 401, `${name}: wrong password`)
  for (const name of ['dave', FULL_WIDTH_DAVE]) {
    const blocked = await login(stack, name, PASSWORD)
    t.equal(blocked.status, 429, `${name}: locked after five failures under any spelling`)
    t.equal(blocked.json().code, 'RATE_LIMITED')
  }
})

t.test('a users file holding the same name twice in different case stops start-up naming both entries', async (t) => {
  const config = testConfig({ USERS_FILE: await usersFile(t, ['dave', 'Dave']) })
  await t.rejects(buildApp(config), { name: 'UsersFileError', message: /users\[1\] "Dave": duplicate username \(users\[0\] "dave"/ })
})
