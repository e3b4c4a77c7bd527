// `npm run demo` as a new user runs it: the printed page answers, and the printed curl commands,
// pasted into a shell as they are, list, read, create (idempotently), patch and delete.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'

const DEMO = join(import.meta.dirname, '../../bin/demo.ts')
const hasCurl = spawnSync('curl', ['--version']).status === 0

/** The commands as printed: each starts with `curl` at the line start and may continue with `\`. */
function commands (text: string): string[] {
  const found: string[] = []
  let current: string[] | undefined
  for (const line of text.split('\n')) {
    if (current === undefined && line.startsWith('curl ')) current = []
    if (current === undefined) continue
    current.push(line)
    if (!line.endsWith('\\')) {
      found.push(current.join('\n'))
      current = undefined
    }
  }
  return found
}

t.test('the demo prints the page, the user and curl commands that work as pasted', { skip: hasCurl ? false : 'curl is not installed' }, async (t) => {
  const child = spawn(process.execPath, [DEMO], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', WEB_PORT: '0', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  let err = ''
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString('utf8') })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8')
      if (out.includes('Press Ctrl-C')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`demo exited (${code}): ${err}`)))
  })

  const page = /Contact editor +(http:\/\/127\.0\.0\.1:\d+) +open this, sign in as +(\S+) +\/ +(\S+)/.exec(out)
  t.ok(page, 'names the page and the demo user')
  const [, pageUrl, username, password] = page ?? []
  t.equal(username, 'demo')
  t.ok((password ?? '').length >= 12, 'a password long enough for the users file')
  t.equal((await fetch(pageUrl as string)).status, 200, 'the page is served')
  t.match(out, /localhost is another site/, 'says why the address matters')
  const bffUrl = /^export BFF=(\S+)$/m.exec(out)?.[1] as string
  const health = await fetch(`${bffUrl}/health/live`)
  t.match(health.headers.get('content-security-policy'), /^default-src 'none'/, 'the BFF keeps its own strict CSP beside the page')

  const exports = out.split('\n').filter((line) => line.startsWith('export ')).join('\n')
  const printed = commands(out)
  const shell = (command: string) => spawnSync('bash', ['-c', `${exports}\n${command}`], { encoding: 'utf8' }).stdout
  const find = (pattern: RegExp) => printed.find((command) => pattern.test(command)) ?? ''
  t.equal(printed.length, 5, 'list, read, create, patch, delete')

  t.match(shell(find(/^curl -s .*\/contact" /)), /"name":"Ada Lovelace"/, 'list')
  const read = shell(find(/^curl -i "\$BFF\/api\/v1\/organisation\/1\/contact\/1"/))
  t.match(read, /^HTTP\/1\.1 200/)
  t.match(read, /^etag: "/im, 'the read shows its ETag')
  const create = find(/-X POST/)
  t.match(create, /Idempotency-Key: /)
  const created = shell(create)
  t.match(created, /^HTTP\/1\.1 201/)
  t.match(created, /^location: \/api\/v1\/organisation\/1\/contact\/\d+/im)
  t.match(shell(create), /^idempotency-replayed: true/im, 'pasting the create again replays it')
  t.match(shell(find(/-X PATCH/)), /^HTTP\/1\.1 200[\s\S]*"city":"London"/)
  t.match(shell(find(/-X DELETE/)), /^HTTP\/1\.1 204/)
  const countries = /Countries for a picker: +(curl .*)/.exec(out)?.[1] ?? ''
  t.match(shell(countries), /"name":"Germany"/)

  child.kill('SIGINT')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'Ctrl-C stops it cleanly')
})
