// The generic-proxy reference: Fastify with @fastify/reply-from, configured as its README shows,
// forwarding the contact PATCH and the contact list GET. No session, no validation, no token exchange: the client
// sends the upstream auth_token itself. Usage: UPSTREAM=… PORT=3002 node bench/reply-from.ts
import Fastify from 'fastify'
import replyFrom from '@fastify/reply-from'

const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:4010'
const port = Number(process.env.PORT ?? 3002)

const app = Fastify({ logger: false })
await app.register(replyFrom, { base: upstream, undici: { connections: 64, pipelining: 1 } })
// Bodies pass through unparsed, as a proxy should.
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
app.patch('/api/v1/organisation/:org_id/contact/:contact_id', (request, reply) => {
  return reply.from(request.url)
})
app.get('/api/v1/organisation/:org_id/contact', (request, reply) => {
  return reply.from(request.url)
})
await app.listen({ host: '127.0.0.1', port })
process.stdout.write(`reply-from listening on ${port}\n`)
process.once('SIGTERM', () => { app.close().then(() => process.exit(0)) })
