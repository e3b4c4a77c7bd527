import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AccessLog } from '../logging/logger.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Set when shutdown begins, so readiness fails and load balancers stop sending traffic. */
    lifecycle: { draining: boolean }
  }
}

export type HeaderStamp = (request: FastifyRequest, reply: FastifyReply) => void

/** Every answer carries these; also called where hooks do not run (router-level errors). */
export function headerStamp (security: Readonly<Record<string, string>>): HeaderStamp {
  // nosniff on every answer even if a caller's block lacks it; the pairs are laid out once.
  const block = Object.entries({ 'x-content-type-options': 'nosniff', ...security })
  const count = block.length
  return (request, reply) => {
    reply.header('x-request-id', request.id)
    for (let i = 0; i < count; i++) {
      const pair = block[i] as [string, string]
      reply.header(pair[0], pair[1])
    }
  }
}

export interface ResponseHeadersOptions {
  stamp: HeaderStamp
  accessLog: AccessLog
}

async function responseHeaders (app: FastifyInstance, { stamp, accessLog }: ResponseHeadersOptions) {
  app.decorate('lifecycle', { draining: false })
  // First hook of all, so that every answer carries these, errors and 404s included.
  app.addHook('onRequest', (request, reply, done) => {
    stamp(request, reply)
    done()
  })
  // While draining, every response ends its connection: keep-alive sockets would otherwise hold
  // the server open after the last in-flight request finished.
  app.addHook('onSend', (request, reply, payload, done) => {
    // The connection is gone (client left, or the request timed out): no 'finish' will come, so
    // Fastify would leave no access line.
    if (reply.raw.destroyed) accessLog.requestAborted(request, reply)
    else if (app.lifecycle.draining) reply.header('connection', 'close')
    done(null, payload)
  })
}

export default fp(responseHeaders, { name: 'response-headers', fastify: '5.x' })
