import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Problem } from '../errors/problems.ts'

// RFC 8259 §8.1: JSON text is UTF-8. A lenient decoder would turn bad bytes into U+FFFD and
// forward a change (or try a password) the client never sent.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export const JSON_MEDIA_TYPES = ['application/json', 'application/merge-patch+json']

/** The only body parser: JSON (and merge-patch JSON) in strict UTF-8; anything else is 415. */
async function jsonBody (app: FastifyInstance) {
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser(JSON_MEDIA_TYPES, { parseAs: 'buffer' }, (request, body, done) => {
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
