import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Problem } from '../errors/problems.ts'

// RFC 8259 §8.1: JSON text is UTF-8. A lenient decoder would turn bad bytes into U+FFFD and
// forward a change (or try a password) the client never sent.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export const JSON_MEDIA_TYPES = ['application/json', 'application/merge-patch+json']

/** The charset parameter of a Content-Type, lower-cased and unquoted; undefined when there is none. */
export function charsetOf (contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType ?? '')
  return match === null ? undefined : (match[1] ?? match[2] ?? '').toLowerCase()
}

/**
 * The only body parser: JSON (and merge-patch JSON) in strict UTF-8; anything else is 415. Also
 * refuses transfer codings other than chunked (Node would drop the coding and read the bytes as
 * they are), and answers `Expect: 100-continue` only once the request passed the session check.
 */
async function jsonBody (app: FastifyInstance) {
  // With a listener, Node no longer sends 100 Continue itself; the preParsing hook below does.
  app.server.on('checkContinue', (request, response) => app.routing(request, response))
  app.addHook('onRequest', (request, reply, done) => {
    const coding = request.headers['transfer-encoding']
    if (coding === undefined || coding.trim().toLowerCase() === 'chunked') return done()
    // The body's framing cannot be trusted: answer and close the connection.
    reply.header('connection', 'close')
    done(new Problem('VALIDATION_FAILED', {
      detail: 'Only Transfer-Encoding: chunked is supported',
      errors: [{ pointer: '/transfer-encoding', detail: 'must be chunked (no other transfer coding)', in: 'header' }]
    }))
  })
  // preParsing runs after every onRequest hook (session, CSRF, limits): only then may the client send its body.
  app.addHook('preParsing', (request, reply, payload, done) => {
    if (request.headers.expect?.toLowerCase() === '100-continue' && !reply.raw.headersSent) reply.raw.writeContinue()
    done(null, payload)
  })
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser(JSON_MEDIA_TYPES, { parseAs: 'buffer' }, (request, body, done) => {
    const charset = charsetOf(request.headers['content-type'])
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      done(new Problem('UNSUPPORTED_MEDIA_TYPE', { detail: `JSON is read as UTF-8 only; charset=${charset.slice(0, 40)} is not supported` }), undefined)
      return
    }
    let text: string
    try {
      text = strictUtf8.decode(body as Buffer)
    } catch {
      done(new Problem('MALFORMED_JSON', { detail: 'The request body is not valid UTF-8' }), undefined)
      return
    }
    parseJson(request, text, done)
  })
}

export default fp(jsonBody, { name: 'json-body', fastify: '5.x' })
