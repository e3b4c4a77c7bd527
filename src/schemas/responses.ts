import { PROBLEMS, ProblemSchema, type ProblemCode } from '../errors/problems.ts'

/**
 * Response schemas for the errors a route can answer with, grouped by status. Declaring them
 * lets Fastify serialise problems with a compiled serialiser and lets OpenAPI list every code.
 */
export function problemResponses (codes: ProblemCode[]) {
  const byStatus: Record<number, ProblemCode[]> = {}
  for (const code of codes) (byStatus[PROBLEMS[code].status] ??= []).push(code)
  const responses: Record<string, { description: string, content: Record<string, { schema: typeof ProblemSchema }> }> = {}
  for (const [status, list] of Object.entries(byStatus)) {
    responses[status] = {
      description: list.map((code) => `\`${code}\`: ${PROBLEMS[code].title}`).join('; '),
      content: { 'application/problem+json': { schema: ProblemSchema } }
    }
  }
  return responses
}

/** Errors any route can produce before its handler runs. */
export const COMMON_PROBLEMS: ProblemCode[] = ['INTERNAL_ERROR']
/** Errors of routes that require a session. */
export const SESSION_PROBLEMS: ProblemCode[] = ['UNAUTHENTICATED', 'CSRF_HEADER_REQUIRED']
