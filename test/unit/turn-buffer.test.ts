// Log lines of one event-loop turn go out in one write; bounded; errors and exit never wait.
import { spawnSync } from 'node:child_process'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { fieldLines, loggerOptions, stdoutLines, TurnBuffer } from '../../src/logging/logger.ts'

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

t.test('through pino, the level pino tells decides, not the line', async (t) => {
  for (const level of ['error', 'fatal'] as const) {
    const out = sink()
    const buffer = new TurnBuffer(out)
    const logger = pino({ base: null, timestamp: false }, buffer)
    logger.info('before')
    t.same(out.writes, [], 'an info line waits for the end of the turn')
    logger[level]('failure')
    t.same(out.writes, [`{"level":30,"msg":"before"}\n{"level":${level === 'error' ? 50 : 60},"msg":"failure"}\n`], `${level}: written at once, with the line before it`)
  }
  // A level pino tells is used as told: a custom level at 55 is at least error.
  const out = sink()
  const buffer = new TurnBuffer(out)
  const logger = pino({ base: null, timestamp: false, customLevels: { alarm: 55 } }, buffer)
  logger.alarm('custom')
  t.equal(out.writes.length, 1, 'a custom level above error is written at once')
  logger.info('after')
  t.equal(out.writes.length, 1, 'the next line is judged by its own level, not the one before')
  await nextTurn()
  t.equal(out.writes.length, 2)
})

t.test('fieldLines tells the buffer its level, so an info line after an error still waits', async (t) => {
  const out = sink()
  const buffer = new TurnBuffer(out)
  const logger = pino({ base: null, timestamp: false }, buffer)
  const lines = fieldLines(logger as unknown as FastifyBaseLogger)
  logger.error('failure')
  t.equal(out.writes.length, 1)
  lines.info({ status: 204 }, 'request completed')
  lines.written(',"status":204', '"request completed"')
  t.equal(out.writes.length, 1, 'both info lines wait for the end of the turn')
  t.equal(buffer.lastLevel, undefined, 'the told level does not outlive its line')
  await nextTurn()
  t.equal(out.writes.length, 2)
  t.match(out.writes[1], /^\{"level":30,"time":\d+,"status":204,"msg":"request completed"\}\n\{"level":30,"time":\d+,"status":204,"msg":"request completed"\}\n$/)
})

t.test('fieldLines into pino.multistream: its info lines go only where info belongs', async (t) => {
  const info = sink()
  const errors = sink()
  const logger = pino({ base: null, timestamp: false }, pino.multistream([
    { level: 'info', stream: info },
    { level: 'error', stream: errors }
  ]))
  logger.error('failure')
  fieldLines(logger as unknown as FastifyBaseLogger).info({ status: 204 }, 'request completed')
  t.equal(errors.writes.length, 1, 'the error stream has the error line only')
  t.equal(info.writes.length, 2, 'the info stream has both')
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
