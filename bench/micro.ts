// `node bench/micro.ts`: the levers of the hot path measured in one process, old way against new,
// alternating in many short rounds (CPU time of this process only, so other work on a shared
// machine disturbs it far less than a whole-system run). Each prints µs of CPU per operation.
import { mkdtempSync, openSync, rmSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import fastifyJwt from '@fastify/jwt'
import pino from 'pino'
import { headerStamp } from '../src/http/response-headers.ts'
import { type AccessLine, type AuditRecord, TurnBuffer, accessFields, auditFields, auditMessage, fieldLines, loggerOptions } from '../src/logging/logger.ts'
import { SECURITY_HEADERS } from '../src/protection/security-headers.ts'
import { sessionVerifyOptions } from '../src/session/claims.ts'
import { VerifiedSessions } from '../src/session/verification-cache.ts'
import { loadConfig } from '../src/config/config.ts'
import { APPLICATION_TOKEN, SECRET, benchSession, median } from './lib.ts'

const ROUNDS = Number(process.env.MICRO_ROUNDS ?? 15)

function cpuUs (): number {
  const { user, system } = process.cpuUsage()
  return user + system
}

/** Median CPU µs per operation of each variant, variants alternating round by round. */
async function compare (name: string, variants: Record<string, () => Promise<number>>): Promise<void> {
  const results: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((key) => [key, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const [key, run] of Object.entries(variants)) {
      const start = cpuUs()
      const operations = await run()
      results[key]?.push((cpuUs() - start) / operations)
    }
  }
  const keys = Object.keys(variants)
  const base = median(results[keys[0] as string] as number[])
  console.log(`\n${name}`)
  for (const key of keys) {
    const value = median(results[key] as number[])
    console.log(`  ${key.padEnd(48)} ${value.toFixed(2).padStart(7)} µs/op  (${(value / base).toFixed(3)}× the first)`)
  }
}

// 1. Response headers: a whole answer through Fastify (light-my-request runs Node's writeHead).
const HELMET_BLOCK: Record<string, string> = {
  'content-security-policy': "default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'",
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'DENY',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0'
}
const SEVEN_RATE_LIMIT = (reply: FastifyReply) => reply.header('ratelimit-policy', '600;w=60')
  .header('ratelimit-limit', '600').header('ratelimit-remaining', String(599)).header('ratelimit-reset', String(42))
  .header('x-ratelimit-limit', '600').header('x-ratelimit-remaining', String(599)).header('x-ratelimit-reset', String(42))
const DRAFT_RATE_LIMIT = (reply: FastifyReply) => reply.header('ratelimit-policy', '"session";q=600;w=60').header('ratelimit', `"session";r=${599};t=${42}`)

async function headerApp (stamp: (request: FastifyRequest, reply: FastifyReply) => void, rateLimit: (reply: FastifyReply) => void) {
  const app = Fastify()
  app.addHook('onRequest', (request, reply, done) => { stamp(request, reply); rateLimit(reply); done() })
  app.patch('/', (_request, reply) => { reply.code(204).send() })
  await app.ready()
  return app
}
const helmetApp = await headerApp((request, reply) => {
  reply.header('x-request-id', request.id).header('x-content-type-options', 'nosniff').headers(HELMET_BLOCK)
}, SEVEN_RATE_LIMIT)
const helmetStampApp = await headerApp(headerStamp(HELMET_BLOCK), SEVEN_RATE_LIMIT)
const owaspApp = await headerApp(headerStamp(SECURITY_HEADERS), SEVEN_RATE_LIMIT)
const owaspDraftApp = await headerApp(headerStamp(SECURITY_HEADERS), DRAFT_RATE_LIMIT)
const injectMany = (app: Awaited<ReturnType<typeof headerApp>>) => async () => {
  for (let i = 0; i < 2000; i++) await app.inject({ method: 'PATCH', url: '/' })
  return 2000
}
await compare('one answer with its headers (inject, 204)', {
  'helmet 12 + nosniff + request id + 7 rate-limit': injectMany(helmetApp),
  'the same 12 through the stamp\'s loop': injectMany(helmetStampApp),
  'OWASP 6 + request id + 7 rate-limit (kept)': injectMany(owaspApp),
  'OWASP 6 + request id + 2 draft rate-limit': injectMany(owaspDraftApp)
})

// 2. Log lines: a turn answering 8 requests, two lines each, to a file.
const dir = mkdtempSync(join(tmpdir(), 'bff-micro-'))
const perLine = pino({ base: { service: 'emnify-bff' } }, pino.destination({ dest: openSync(join(dir, 'a.log'), 'w'), sync: true }))
const perTurn = pino({ base: { service: 'emnify-bff' } }, new TurnBuffer(pino.destination({ dest: openSync(join(dir, 'b.log'), 'w'), sync: true })))
const access = { request_id: 'req-0123456789', method: 'PATCH', path: '/api/v1/organisation/1/contact/1', route: '/api/v1/organisation/:org_id/contact/:contact_id', status: 204, ms: 1.23, sub: 'bench-user', upstream_ms: 0.8, upstream_calls: 1, upstream_outcome: 'ok' }
const audit = { event: 'contact.updated', request_id: 'req-0123456789', sub: 'bench-user', org_id: '1', contact_id: '1', fields: ['name', 'email', 'phone', 'city'] }
const turns = (logger: pino.Logger) => async () => {
  for (let turn = 0; turn < 250; turn++) {
    for (let request = 0; request < 8; request++) {
      logger.info(access, 'request completed')
      logger.info(audit, 'contact updated')
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  return 250 * 8
}
await compare('log lines of one request (access + audit), 8 requests per turn', {
  'one synchronous write per line': turns(perLine),
  'one write per event-loop turn (kept)': turns(perTurn)
})
rmSync(dir, { recursive: true, force: true })

// 3. Session verification of a token seen before.
const config = loadConfig({ env: { EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN, SESSION_SECRET: SECRET } })
const jwtApp = async (cache: number | false) => {
  const app = Fastify()
  await app.register(fastifyJwt, { secret: SECRET, verify: { ...sessionVerifyOptions(config), cache } })
  await app.ready()
  return app
}
const fastJwtCached = await jwtApp(10_000)
const uncached = await jwtApp(false)
const token = benchSession()
const verified = new VerifiedSessions()
const verifyMany = (verify: () => unknown) => async () => {
  for (let i = 0; i < 20_000; i++) verify()
  return 20_000
}
await compare('verifying a session token seen before', {
  'fast-jwt cache (SHA-256 of the token)': verifyMany(() => fastJwtCached.jwt.verify(token)),
  'VerifiedSessions (map lookup, kept)': verifyMany(() => {
    const now = Date.now()
    const hit = verified.get(token, now)
    if (hit !== undefined) return hit
    const claims = uncached.jwt.verify(token) as never
    verified.set(token, claims)
    return claims
  }),
  'no cache (full HS256 verification)': verifyMany(() => uncached.jwt.verify(token))
})
// 4. The access line and audit record of one PATCH: their objects through JSON.stringify, or
// written field by field. Values differ per request (new strings, as each request's are).
const discard = loggerOptions('info', { write: () => {} })
const lines = fieldLines(pino(discard, discard.stream) as never)
const auditLines = fieldLines(pino(discard, discard.stream) as never, { log_type: 'audit' })
const ids = Array.from({ length: 1024 }, () => randomUUID())
const routes = new Map<string, string>()
const onePatch = (i: number): [AccessLine, AuditRecord] => {
  const id = ids[i & 1023] as string
  const contact = String(1000 + (i & 1023))
  return [
    { request_id: id, method: 'PATCH', path: `/api/v1/organisation/1/contact/${contact}`, route: '/api/v1/organisation/:org_id/contact/:contact_id', status: 200, ms: 1.37, sub: 'local:alice', upstream_ms: 0.82, upstream_calls: 1, upstream_outcome: '2xx' },
    { event: 'contact.updated', request_id: id, sub: 'local:alice', org_id: '1', contact_id: contact, fields: ['name', 'email'] }
  ]
}
const writeMany = (write: (access: AccessLine, audit: AuditRecord) => void) => async () => {
  for (let i = 0; i < 20_000; i++) {
    const [access, audit] = onePatch(i)
    write(access, audit)
  }
  return 20_000
}
await compare('the access line and audit record of a PATCH, built and written', {
  'JSON.stringify of their objects': writeMany((access, audit) => {
    lines.info(access, 'request completed')
    auditLines.info(audit, 'contact updated')
  }),
  'field by field (kept)': writeMany((access, audit) => {
    lines.written(accessFields(access, routes), '"request completed"')
    auditLines.written(auditFields(audit), auditMessage(audit.event))
  })
})

await Promise.all([helmetApp.close(), helmetStampApp.close(), owaspApp.close(), owaspDraftApp.close(), fastJwtCached.close(), uncached.close()])
