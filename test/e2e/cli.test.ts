// The operator CLIs: help, the password rules, replacing users on purpose only, readable errors.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { hashPassword, parseHash, verifyPassword } from '../../src/users/password.ts'
import { parseUsers } from '../../src/users/users-file.ts'
import { MINT_CLI as MINT, runScript as run, USERS_CLI as USERS } from '../helpers/cli.ts'

const PASSWORD = 'correct horse battery staple'

t.test('user:add --help and user:hash --help print the usage, with the 12-character minimum, and exit 0', async (t) => {
  for (const args of [['add', '--help'], ['hash', '--help'], ['hash', '-h'], ['--help']]) {
    const result = await run(USERS, args, '', t.testdir())
    t.equal(result.code, 0, `${args.join(' ')} exits 0 (${result.stderr})`)
    t.match(result.stdout, /user:add -- --file <users\.json>/, 'shows how to add')
    t.match(result.stdout, /at least 12 characters/, 'states the password minimum')
    t.match(result.stdout, /--update/, 'names the option that replaces a user')
    t.equal(result.stderr, '', 'no error')
  }
})

t.test('an unknown option prints the usage along with the error', async (t) => {
  const result = await run(USERS, ['add', '--user', 'alice'], '', t.testdir())
  t.equal(result.code, 2)
  t.match(result.stderr, /--user/)
  t.match(result.stderr, /usage:/)
})

t.test('user:add refuses to replace an existing user (in any case) without --update, and leaves the file alone', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'users.json')
  t.equal((await run(USERS, ['add', '--file', file, '--username', 'alice', '--orgs', '1'], `${PASSWORD}\n`, dir)).code, 0)
  const before = await readFile(file, 'utf8')
  for (const name of ['alice', 'Alice']) {
    const again = await run(USERS, ['add', '--file', file, '--username', name, '--orgs', '9'], 'another-long-passphrase\n', dir)
    t.equal(again.code, 2, `${name}: refused`)
    t.match(again.stderr, /already in .*--update/, 'says how to replace it')
    t.equal(await readFile(file, 'utf8'), before, 'the file is unchanged')
  }
  const updated = await run(USERS, ['add', '--file', file, '--username', 'alice', '--orgs', '9', '--update'], 'another-long-passphrase\n', dir)
  t.equal(updated.code, 0, updated.stderr)
  t.match(updated.stderr, /replaced password, orgs and scope of alice/, 'says what it replaced')
  const users = parseUsers(await readFile(file, 'utf8'), file)
  t.same(users.get('alice')?.orgs, [9])
  t.equal(await verifyPassword('another-long-passphrase', users.get('alice')!.hash), true)
})

t.test('user:add writes the cost the file already has, so the service keeps loading it', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'users.json')
  const cheap = await hashPassword(PASSWORD, { ln: 11, r: 4, p: 1 })
  await writeFile(file, JSON.stringify({ users: [{ username: 'alice', password_hash: cheap, orgs: [1] }] }))
  const added = await run(USERS, ['add', '--file', file, '--username', 'bob', '--orgs', '2', '--scope', 'contacts:read'], 'bobs-own-long-password\n', dir)
  t.equal(added.code, 0, added.stderr)
  t.match(added.stderr, /ln=11,r=4,p=1/, 'names the cost it used')
  const users = parseUsers(await readFile(file, 'utf8'), file)
  const bob = users.get('bob')!
  t.same([bob.hash.ln, bob.hash.r, bob.hash.p], [11, 4, 1])
  t.equal(bob.scope, 'contacts:read', '--scope is written')
})

t.test('user:add into a folder that does not exist names the folder, not a temporary file', async (t) => {
  const dir = t.testdir()
  const result = await run(USERS, ['add', '--file', join(dir, 'missing', 'u.json'), '--username', 'alice', '--orgs', '1'], `${PASSWORD}\n`, dir)
  t.equal(result.code, 2)
  t.match(result.stderr, `the folder ${join(dir, 'missing')} does not exist`)
  t.notMatch(result.stderr, /\.tmp|ENOENT/, 'no file the operator never typed')
  t.same(await readdir(dir), [], 'nothing was created')
})

/** Runs the CLI on a pseudo-terminal (util-linux `script`), answering each prompt as it appears. */
async function onTerminal (args: string[], answers: string[], cwd: string) {
  const command = [process.execPath, USERS, ...args].map((part) => `'${part}'`).join(' ')
  const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd, env: { PATH: process.env.PATH ?? '', TERM: 'dumb' } })
  let output = ''
  let asked = 0
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8')
    const prompts = output.match(/Password( again)?: /g)?.length ?? 0
    while (asked < prompts && asked < answers.length) child.stdin.write(`${answers[asked++]}\r`)
  })
  const [code] = await once(child, 'exit')
  return { code: code as number | null, output }
}

t.test('on a terminal the password is asked twice; two different answers change nothing', { skip: process.platform !== 'linux' }, async (t) => {
  const dir = t.testdir()
  const same = await onTerminal(['hash'], [PASSWORD, PASSWORD], dir)
  t.equal(same.code, 0, same.output)
  t.match(same.output, /Password: [\s\S]*Password again: /, 'asks twice')
  t.notOk(same.output.includes(PASSWORD), 'echoes neither answer')
  const printed = same.output.match(/\$scrypt\$\S+/)?.[0] ?? ''
  t.equal(await verifyPassword(PASSWORD, parseHash(printed)), true, 'prints the hash of the password')

  const file = join(dir, 'users.json')
  const differ = await onTerminal(['add', '--file', file, '--username', 'alice', '--orgs', '1'], [PASSWORD, 'correct horse battery stapler'], dir)
  t.equal(differ.code, 2)
  t.match(differ.output, /the two passwords differ/)
  t.same(await readdir(dir), [], 'no users file was written')
})

t.test('session:mint --help prints the usage and exits 0', async (t) => {
  const result = await run(MINT, ['--help'], '', t.testdir())
  t.equal(result.code, 0)
  t.match(result.stdout, /--sub <subject> --orgs/)
  t.match(result.stdout, /--scope/)
})
