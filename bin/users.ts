// Users file tooling for operators:
//   npm run user:hash                      reads a password, prints its hash
//   npm run user:add -- --file users.json --username alice --orgs 1,2 [--scope …] [--update]
//                                          same, then adds the user to the file (--update to replace one)
import { parseArgs } from 'node:util'
import { readFile, rename, stat, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parseOrgs } from '../src/session/mint.ts'
import { parseScope } from '../src/session/claims.ts'
import { describeCost, hashPassword } from '../src/users/password.ts'
import { canonicalUsername, fileCost, parseUsers } from '../src/users/users-file.ts'

const MIN_PASSWORD = 12

const usage = `usage:
  npm run user:hash [-- --help]
      reads a password and prints its scrypt hash (ln=15,r=8,p=1) for a users file
  npm run user:add -- --file <users.json> --username <name> --orgs <1,2|*> [--scope "contacts:read contacts:write"] [--update]
      reads a password and adds the user to the file (created if missing, mode 0600);
      an existing user is only replaced (password, orgs and scope) with --update

  The password is asked twice on a terminal (never echoed), or read from stdin when piped.
  It must have at least ${MIN_PASSWORD} characters. Usernames are case-insensitive: "Alice" and
  "alice" are one user. Every hash in one file has the same cost, so that sign-in takes the same
  time for every name; user:add uses the cost the file already has.
  After editing, send SIGHUP to the running service process (node dist/server.js) to reload.`

class UsageError extends Error {}

async function prompt (question: string): Promise<string> {
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
  const answer = await new Promise<string>((resolve) => rl.question(question, resolve))
  rl.close()
  process.stderr.write('\n')
  return answer
}

async function readPassword (): Promise<string> {
  if (!process.stdin.isTTY) {
    let data = ''
    for await (const chunk of process.stdin) data += String(chunk)
    return data.replace(/\r?\n$/, '')
  }
  const password = await prompt('Password: ')
  // A typo nobody saw would lock the user out: ask twice on a terminal.
  if (password.length >= MIN_PASSWORD && await prompt('Password again: ') !== password) throw new Error('the two passwords differ; nothing was changed')
  return password
}

async function readUsersFile (file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  // The temporary file is written next to it: say which folder is missing, not the .tmp name.
  const folder = dirname(resolve(file))
  const info = await stat(folder).catch(() => undefined)
  if (info === undefined) throw new Error(`the folder ${folder} does not exist; create it first`)
  if (!info.isDirectory()) throw new Error(`${folder} is not a folder`)
  return '{"users":[]}'
}

async function main (): Promise<void> {
  const [command, ...rest] = process.argv.slice(2)
  const { values } = parseArgs({
    args: rest,
    options: {
      file: { type: 'string' },
      username: { type: 'string' },
      orgs: { type: 'string' },
      scope: { type: 'string' },
      update: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    },
    strict: true
  })
  if (values.help || command === '--help' || command === '-h') {
    process.stdout.write(`${usage}\n`)
    return
  }
  if (command !== 'hash' && command !== 'add') throw new UsageError(`unknown command ${JSON.stringify(command ?? '')}`)
  if (command === 'add' && (values.file === undefined || values.username === undefined || values.orgs === undefined)) {
    throw new UsageError('add needs --file, --username and --orgs')
  }
  const orgs = values.orgs === undefined ? undefined : parseOrgs(values.orgs)
  const scope = values.scope === undefined ? undefined : parseScope(values.scope)

  let text = '{"users":[]}'
  const file = values.file as string
  if (command === 'add') {
    // Checked before the password is asked for, so a wrong path costs no typing.
    text = await readUsersFile(file)
    parseUsers(text, file) // refuse to edit a file the service would refuse to load
  }
  const existing = command === 'add' ? parseUsers(text, file) : new Map()
  const replacing = command === 'add' && existing.has(canonicalUsername(values.username as string))
  if (replacing && !values.update) {
    throw new Error(`${values.username as string} is already in ${file}; add --update to replace its password, orgs and scope`)
  }

  const password = await readPassword()
  if (password.length < MIN_PASSWORD) throw new Error(`the password must have at least ${MIN_PASSWORD} characters`)
  if (command === 'hash') {
    process.stdout.write(`${await hashPassword(password)}\n`)
    return
  }
  // The file's one cost, so that the service keeps loading it (see parseUsers).
  const cost = fileCost(existing)
  const hash = await hashPassword(password, cost)
  const data = JSON.parse(text) as { users: Array<{ username: string }> }
  const entry = { username: values.username as string, password_hash: hash, orgs, ...(scope === undefined ? {} : { scope }) }
  const key = canonicalUsername(entry.username)
  const index = data.users.findIndex((user) => canonicalUsername(user.username) === key)
  if (index === -1) data.users.push(entry)
  else data.users[index] = entry
  const next = JSON.stringify(data, null, 2) + '\n'
  parseUsers(next, file)
  // Write then rename, so a running service never reads a half-written file on SIGHUP.
  await writeFile(`${file}.tmp`, next, { mode: 0o600 })
  await rename(`${file}.tmp`, file)
  process.stderr.write(`${index === -1 ? 'added' : 'replaced password, orgs and scope of'} ${entry.username} in ${file} (hash cost ${describeCost(cost)}); ` +
    'send SIGHUP to the running service process to reload\n')
}

main().catch((error: unknown) => {
  process.stderr.write(`users: ${(error as Error).message}\n`)
  if (error instanceof UsageError || (error as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') process.stderr.write(`${usage}\n`)
  process.exit(2)
})
