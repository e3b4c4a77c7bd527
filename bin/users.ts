// Users file tooling for operators:
//   npm run user:hash                      reads a password (no echo on a terminal, or from stdin), prints its hash
//   npm run user:add -- --file users.json --username alice --orgs 1,2
//                                          same, then adds (or replaces) the user in the file
import { parseArgs } from 'node:util'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { parseOrgs } from '../src/session/mint.ts'
import { hashPassword } from '../src/users/password.ts'
import { parseUsers } from '../src/users/users-file.ts'

async function readPassword (): Promise<string> {
  if (!process.stdin.isTTY) {
    let data = ''
    for await (const chunk of process.stdin) data += String(chunk)
    return data.replace(/\r?\n$/, '')
  }
  // Prompt on stderr and do not echo what is typed.
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true })
  const write = rl as unknown as { _writeToOutput: (s: string) => void }
  let prompted = false
  write._writeToOutput = (text: string) => {
    if (!prompted) {
      process.stderr.write(text)
      prompted = true
    }
  }
  const answer = await new Promise<string>((resolve) => rl.question('Password: ', resolve))
  rl.close()
  process.stderr.write('\n')
  return answer
}

async function main (): Promise<void> {
  const [command, ...rest] = process.argv.slice(2)
  const { values } = parseArgs({
    args: rest,
    options: { file: { type: 'string' }, username: { type: 'string' }, orgs: { type: 'string' } },
    strict: true
  })
  if (command !== 'hash' && command !== 'add') throw new Error('usage: users.ts hash | add --file <users.json> --username <name> --orgs <1,2|*>')
  if (command === 'add' && (values.file === undefined || values.username === undefined || values.orgs === undefined)) {
    throw new Error('add needs --file, --username and --orgs')
  }
  const orgs = values.orgs === undefined ? undefined : parseOrgs(values.orgs)
  const password = await readPassword()
  if (password.length < 12) throw new Error('the password must have at least 12 characters')
  const hash = await hashPassword(password)
  if (command === 'hash') {
    process.stdout.write(`${hash}\n`)
    return
  }
  const file = values.file as string
  let text = '{"users":[]}'
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  parseUsers(text, file) // refuse to edit a file the service would refuse to load
  const data = JSON.parse(text) as { users: Array<{ username: string }> }
  const entry = { username: values.username as string, password_hash: hash, orgs }
  const index = data.users.findIndex((user) => user.username === entry.username)
  if (index === -1) data.users.push(entry)
  else data.users[index] = entry
  const next = JSON.stringify(data, null, 2) + '\n'
  parseUsers(next, file)
  // Write then rename, so a running service never reads a half-written file on SIGHUP.
  await writeFile(`${file}.tmp`, next, { mode: 0o600 })
  await rename(`${file}.tmp`, file)
  process.stderr.write(`${index === -1 ? 'added' : 'updated'} ${entry.username} in ${file}; send SIGHUP to a running service to reload\n`)
}

main().catch((error: unknown) => {
  process.stderr.write(`users: ${(error as Error).message}\n`)
  process.exit(2)
})
