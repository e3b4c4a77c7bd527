import type { FastifyReply } from 'fastify'

/**
 * 204 without a payload: `send(null)` would be serialised against the route's null schema and the
 * content headers then removed again, for an answer that has no body.
 */
export function sendNoContent (reply: FastifyReply): FastifyReply {
  return reply.code(204).send()
}
