import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

/**
 * A pipelined request waits for its turn on the connection before anything runs for it. Node
 * gives a queued response its socket only when the answer before it is done; if that answer closed
 * the connection (a refused body, a drain), the socket never comes and the request could not be
 * answered. It is then dropped unprocessed: nothing is sent upstream for an answer nobody gets.
 */
async function pipelining (app: FastifyInstance) {
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const response = reply.raw
    const connection = request.raw.socket
    if (response.socket !== null) return done()
    const onSocket = () => {
      connection.off('close', onClose)
      done()
    }
    const onClose = () => {
      response.off('socket', onSocket)
      request.log.info({ event: 'request.dropped' }, 'pipelined request dropped: the connection closed after the answer before it')
      // Fastify runs nothing more for a hijacked reply; there is nobody to answer.
      reply.hijack()
      done()
    }
    if (connection.destroyed) return onClose()
    response.once('socket', onSocket)
    connection.once('close', onClose)
  })
}

export default fp(pipelining, { name: 'pipelining', fastify: '5.x' })
