import { Type } from 'typebox'
import { PROBLEMS, ProblemSchema, problemType, type ProblemBody, type ProblemCode } from '../errors/problems.ts'

interface HeaderDoc { type: 'integer' | 'string', description: string }

const RETRY_AFTER: HeaderDoc = { type: 'integer', description: 'seconds to wait before trying again' }
const RATE_LIMIT_HEADERS: Record<string, HeaderDoc> = {
  'RateLimit-Policy': { type: 'string', description: 'IETF draft RateLimit-Policy: the quota `q` per window of `w` seconds, e.g. `"session";q=60;w=60`' },
  RateLimit: { type: 'string', description: 'IETF draft RateLimit: `r` requests left in the window, `t` seconds until it resets, e.g. `"session";r=59;t=42`' }
}
/** 429s and upstream or capacity failures may carry Retry-After (inside an authenticate backoff window, any of them). */
const mayRetryLater = (code: ProblemCode) => PROBLEMS[code].status === 429 || PROBLEMS[code].status > 500

const EXAMPLE_DETAILS: Partial<Record<ProblemCode, Pick<ProblemBody, 'detail' | 'errors'>>> = {
  VALIDATION_FAILED: { detail: 'The request body is invalid', errors: [{ pointer: '/email', detail: 'must match format "email"', in: 'body' }] },
  UPSTREAM_VALIDATION_FAILED: { detail: 'emnify rejected the change', errors: [{ pointer: '', detail: 'Invalid zipcode for country', in: 'upstream' }] }
}

function example (code: ProblemCode, instance: string): ProblemBody {
  return {
    type: problemType(code),
    title: PROBLEMS[code].title,
    status: PROBLEMS[code].status,
    detail: PROBLEMS[code].title,
    instance,
    code,
    request_id: '5f0c6d3e-8a4b-4f7e-9d21-3c9a7b1e2f40',
    ...EXAMPLE_DETAILS[code]
  }
}

export interface ProblemResponseOptions {
  /** The route's path as a client would send it, used as `instance` in the examples. */
  instance?: string
}

/**
 * Response schemas for the errors a route can answer with, grouped by status. Declaring them
 * lets Fastify serialise problems with a compiled serialiser, and OpenAPI list every code a
 * status can carry (in the description and as an `enum` on `code`), with an example of each.
 */
export function problemResponses (codes: ProblemCode[], { instance = '/' }: ProblemResponseOptions = {}) {
  const byStatus: Record<number, ProblemCode[]> = {}
  for (const code of new Set(codes)) (byStatus[PROBLEMS[code].status] ??= []).push(code)
  const responses: Record<string, {
    description: string
    headers?: Record<string, HeaderDoc>
    content: Record<string, { schema: typeof ProblemSchema, examples: Record<string, { summary: string, value: ProblemBody }> }>
  }> = {}
  for (const [status, list] of Object.entries(byStatus)) {
    const schema = Type.Object({
      ...ProblemSchema.properties,
      code: Type.String({ enum: list, description: 'stable machine-readable error code' })
    }, { description: 'RFC 9457 problem details' }) as unknown as typeof ProblemSchema
    const examples: Record<string, { summary: string, value: ProblemBody }> = {}
    for (const code of list) examples[code] = { summary: PROBLEMS[code].title, value: example(code, instance) }
    const headers: Record<string, HeaderDoc> = {}
    if (list.some(mayRetryLater)) headers['Retry-After'] = RETRY_AFTER
    if (list.includes('RATE_LIMITED')) Object.assign(headers, RATE_LIMIT_HEADERS)
    responses[status] = {
      description: list.map((code) => `\`${code}\`: ${PROBLEMS[code].title}`).join('; '),
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      content: { 'application/problem+json': { schema, examples } }
    }
  }
  return responses
}

/** Errors any route can produce before its handler runs (a bug; load shedding). */
export const COMMON_PROBLEMS: ProblemCode[] = ['INTERNAL_ERROR', 'OVERLOADED']
/** Errors of routes that require a session. */
export const SESSION_PROBLEMS: ProblemCode[] = ['UNAUTHENTICATED', 'CSRF_HEADER_REQUIRED']
/** Errors of reading a JSON request body, on any route that accepts one. */
export const BODY_PROBLEMS: ProblemCode[] = ['MALFORMED_JSON', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE']
