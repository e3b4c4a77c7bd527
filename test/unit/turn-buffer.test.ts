// Log lines of one event-loop turn go out in one write; bounded; errors and exit never wait.
import { spawnSync } from 'node:child_process'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import t from 'tap'
import { loggerOptions, stdoutLines, TurnBuffer } from '../../src/logging/logger.ts'

function sink () {
  const writes: string[] = []
  return { writes, write: (data: string) => { writes.push(data) } }
}

t.test('every line of one turn reaches the log in one write, after the turn', async (t) => {
  const out = sink()
  const buffer = new TurnBuffer(out)
  buffer.write('{"level":30,"msg":"access"}\n')
  buffer.write('{"level":30,"msg":"audit"}\n')
  t.same(out.writes, [], 'nothing written during the turn')
  await nextTurn()
  t.same(out.writes, ['{"level":30,"msg":"access"}\n{"level":30,"msg":"audit"}\n'], 'one write with both lines, in order')
  buffer.write('{"level":30,"msg":"next"}\n')
  await nextTurn()
  t.equal(out.writes.length, 2, 'the next turn is its own write')
})

t.test('the buffer is bounded: at its size it is written at once', async (t) => {
  const out = sink()
  const buffer = new TurnBuffer(out, 64)
  buffer.write(`{"level":30,"msg":"${'a'.repeat(30)}"}\n`)
  t.equal(out.writes.length, 0)
  buffer.write(`{"level":30,"msg":"${'b'.repeat(30)}"}\n`)
  t.equal(out.writes.length, 1, 'written without waiting for the turn to end')
  t.match(out.writes[0], /a+.*\n.*b+/s)
})

t.test('an error or fatal line is written at once, with the lines before it', async (t) => {
  for (const level of [50, 60]) {
    const out = sink()
    const buffer = new TurnBuffer(out)
    buffer.write('{"level":30,"msg":"before"}\n')
    buffer.write(`{"level":${level},"msg":"failure"}\n`)
    t.same(out.writes, [`{"level":30,"msg":"before"}\n{"level":${level},"msg":"failure"}\n`], `level ${level}`)
  }
})

t.test('pino through the buffer: flush() writes what is gathered', async (t) => {
  const out = sink()
  const buffer = new TurnBuffer(out)
  const logger = pino({ base: null, timestamp: false }, buffer)
  logger.info('one')
  logger.info('two')
  logger.flush()
  t.same(out.writes, ['{"level":30,"msg":"one"}\n{"level":30,"msg":"two"}\n'])
})

t.test('the production logger writes through the one stdout buffer', async (t) => {
  t.equal(loggerOptions('info').stream, stdoutLines())
  t.equal(stdoutLines(), stdoutLines(), 'one buffer (one exit listener) however many apps')
  const own = sink()
  t.equal(loggerOptions('info', own as never).stream, own, 'a given stream is used as is')
})

t.test('lines of the turn in which the process exits are not lost', async (t) => {
  const logger = fileURLToPath(new URL('../../src/logging/logger.ts', import.meta.url))
  const script = `
    import pino from 'pino'
    import { loggerOptions } from ${JSON.stringify(logger)}
    const { stream, ...options } = loggerOptions('info')
    const log = pino(options, stream)
    log.info('access line')
    log.info({ log_type: 'audit' }, 'contact updated')
    process.exit(3)
  `
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: fileURLToPath(new URL('../..', import.meta.url)) })
  t.equal(child.status, 3)
  const lines = child.stdout.trim().split('\n').map((line) => JSON.parse(line) as { msg: string })
  t.same(lines.map((line) => line.msg), ['access line', 'contact updated'])
})
