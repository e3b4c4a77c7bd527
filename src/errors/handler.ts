import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { pathOf } from '../logging/logger.ts'
import { Problem, PROBLEMS, problemType, type ProblemBody, type ProblemField } from './problems.ts'

interface AjvIssue {
  keyword: string
  instancePath: string
  message?: string
  params: Record<string, unknown>
}

const escapePointer = (token: string) => token.replaceAll('~', '~0').replaceAll('/', '~1')

function fieldErrors (issues: AjvIssue[], context: string | undefined): ProblemField[] {
  const where = context === 'params' ? 'path' : context === 'headers' ? 'header' : 'body'
  return issues.slice(0, 50).map((issue) => {
    switch (issue.keyword) {
      case 'additionalProperties':
        return { pointer: `${issue.instancePath}/${escapePointer(String(issue.params.additionalProperty))}`, detail: 'is not an allowed property', in: where }
      case 'required':
        return { pointer: `${issue.instancePath}/${escapePointer(String(issue.params.missingProperty))}`, detail: 'is required', in: where }
      case 'minProperties':
        return { pointer: issue.instancePath, detail: 'must contain at least one property', in: where }
      case 'pattern':
        return { pointer: issue.instancePath, detail: where === 'path' ? 'must be a positive decimal integer' : 'has the wrong format', in: where }
      default:
        return { pointer: issue.instancePath, detail: issue.message ?? 'is invalid', in: where }
    }
  })
}

/** Every failure, ours or Fastify's, becomes a Problem; unknown errors never show their message. */
export function toProblem (error: FastifyError | Problem | Error): Problem {
  if (error instanceof Problem) return error
  // `throw null` must still end as problem+json, not crash the error handler.
  const e = (error ?? {}) as FastifyError
  if (e.validation !== undefined) {
    return new Problem('VALIDATION_FAILED', {
      detail: e.validationContext === 'params' ? 'The path parameters are invalid' : 'The request body is invalid',
      errors: fieldErrors(e.validation as AjvIssue[], e.validationContext)
    })
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new Problem('PAYLOAD_TOO_LARGE', { detail: 'The request body exceeds the size limit' })
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new Problem('UNSUPPORTED_MEDIA_TYPE', { detail: 'Send application/json or application/merge-patch+json' })
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      // Includes bodies using __proto__ or constructor.prototype, which Fastify's parser refuses.
      return new Problem('MALFORMED_JSON', { detail: 'The request body is not valid JSON' })
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new Problem('VALIDATION_FAILED', { detail: 'The request path is invalid' })
  }
  if (error instanceof SyntaxError && e.statusCode === 400) {
    return new Problem('MALFORMED_JSON', { detail: 'The request body is not valid JSON' })
  }
  const status = e.statusCode ?? 500
  if (status === 404) return new Problem('NOT_FOUND')
  if (status === 429) return new Problem('RATE_LIMITED')
  if (status >= 400 && status < 500) return new Problem('VALIDATION_FAILED', { detail: 'The request is invalid' })
  return new Problem('INTERNAL_ERROR', { detail: 'An unexpected error occurred', cause: error })
}

export function problemBody (problem: Problem, request: FastifyRequest): ProblemBody {
  return problemFields(problem, pathOf(request.url), request.id)
}

function problemFields (problem: Problem, instance: string, requestId: string): ProblemBody {
  const body: ProblemBody = {
    type: problemType(problem.code),
    title: PROBLEMS[problem.code].title,
    status: problem.status,
    detail: problem.detail,
    instance,
    code: problem.code,
    request_id: requestId
  }
  if (problem.errors !== undefined) body.errors = problem.errors
  return body
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }
// The first line only (no `m` flag): a later line must never become the instance.
const REQUEST_LINE_PATH = /^[A-Z]+ (\/[\x21-\x7e]{0,2047}) HTTP\/1\.[01]\r?(?:\n|$)/

/**
 * The whole HTTP answer to a request Node's parser refused or timed out, which never reaches
 * Fastify's routing, hooks or error handler: still problem+json, still with the security headers.
 * Undefined when nothing should be written (the client is gone).
 */
export function clientErrorResponse (error: { code?: string, rawPacket?: unknown }, headers: Readonly<Record<string, string>>): string | undefined {
  if (error.code === 'ECONNRESET') return undefined
  const problem = error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? new Problem('REQUEST_TIMEOUT', { detail: 'The request did not arrive completely in time' })
    : error.code === 'HPE_HEADER_OVERFLOW'
      ? new Problem('HEADERS_TOO_LARGE', { detail: 'The request headers are too large' })
      : new Problem('VALIDATION_FAILED', { detail: 'The request is not valid HTTP/1.1' })
  // The path, when the request line itself could be read; never anything after it (it may hold credentials).
  const path = Buffer.isBuffer(error.rawPacket) ? REQUEST_LINE_PATH.exec(error.rawPacket.toString('latin1', 0, 2100))?.[1] : undefined
  const body = JSON.stringify(problemFields(problem, path === undefined ? '/' : pathOf(path), randomUUID()))
  let head = `HTTP/1.1 ${problem.status} ${REASONS[problem.status]}\r\ncontent-type: application/problem+json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n`
  if (headers['x-content-type-options'] === undefined) head += 'x-content-type-options: nosniff\r\n'
  for (const name in headers) head += `${name}: ${headers[name]}\r\n`
  return `${head}\r\n${body}`
}

/** What failed, for a log line: the error's name, message and code, its cause's too, no stack. */
export function failureSummary (error: unknown): { failure?: string } {
  const parts: string[] = []
  for (let current = error, depth = 0; current instanceof Error && depth < 3; current = current.cause, depth++) {
    const code = (current as NodeJS.ErrnoException).code
    parts.push(`${current.name}: ${current.message}${typeof code === 'string' && !current.message.includes(code) ? ` (${code})` : ''}`)
  }
  return parts.length === 0 ? {} : { failure: parts.join(' <- ') }
}

export function sendProblem (reply: FastifyReply, problem: Problem) {
  reply.code(problem.status).header('content-type', 'application/problem+json; charset=utf-8')
  if (problem.retryAfter !== undefined) reply.header('retry-after', String(problem.retryAfter))
  if (problem.code === 'UNAUTHENTICATED') reply.header('www-authenticate', 'Bearer')
  return reply.send(problemBody(problem, reply.request))
}

async function errorsPlugin (app: FastifyInstance) {
  app.setErrorHandler((error: FastifyError | Problem, request, reply) => {
    const problem = toProblem(error)
    // Shed requests are already counted by the access line; logging each would add to the overload.
    if (problem.status >= 500 && problem.code !== 'OVERLOADED') {
      // Our own 500s are bugs and keep their stack; upstream failures are expected operating
      // conditions: one line naming what failed, no stack trace.
      if (problem.code === 'INTERNAL_ERROR') request.log.error({ err: problem.cause ?? error, code: problem.code }, problem.detail)
      else request.log.warn({ code: problem.code, ...failureSummary(problem.cause) }, problem.detail)
    }
    return sendProblem(reply, problem)
  })

  app.setNotFoundHandler((request, reply) => {
    // A known path asked with a method it does not serve (method-not-allowed.ts learns the routes).
    const allow = app.hasDecorator('allowedMethods') ? app.allowedMethods(request.url) : undefined
    if (allow !== undefined) {
      reply.header('allow', allow)
      return sendProblem(reply, new Problem('METHOD_NOT_ALLOWED', { detail: `This path answers ${allow}` }))
    }
    return sendProblem(reply, new Problem('NOT_FOUND', { detail: 'There is no such route' }))
  })
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' })
