import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type Static } from 'typebox'
import { Problem } from '../errors/problems.ts'
import { headerLines } from '../protection/header-lines.ts'
import { allowsOrganisation } from '../session/claims.ts'
import { ContactParamsSchema, ContactPatchSchema, ContactSchema, ID_REGEX } from '../schemas/contact.ts'
import { COMMON_PROBLEMS, problemResponses, SESSION_PROBLEMS } from '../schemas/responses.ts'
import type { EmnifyClient } from '../upstream/emnify-client.ts'
import { upstreamContext, validTraceparent } from '../upstream/context.ts'

export interface ContactRoutesOptions {
  client: EmnifyClient
  audit: FastifyBaseLogger
}

export const CONTACT_BODY_LIMIT = 16 * 1024
const JSON_TYPES = new Set(['application/json', 'application/merge-patch+json'])

function mediaType (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const semicolon = header.indexOf(';')
  // Only HTTP whitespace (SP, HTAB) surrounds a media type; String#trim would also drop e.g. U+00A0.
  return (semicolon === -1 ? header : header.slice(0, semicolon)).replace(/^[ \t]+|[ \t]+$/g, '').toLowerCase()
}

/**
 * RFC 7240: `Prefer` may list several preferences, comma-separated, in any case; a preference
 * given more than once counts only the first time (`return=minimal, return=representation` is minimal).
 */
export function prefersRepresentation (header: string | undefined): boolean {
  if (header === undefined) return false
  for (const part of header.split(',')) {
    const preference = part.split(';')[0]?.trim().toLowerCase().replace(/\s*=\s*/, '=') ?? ''
    if (preference === 'return' || preference.startsWith('return=')) return preference === 'return=representation'
  }
  return false
}

interface ContactParams { org_id: string, contact_id: string }

/**
 * Authorisation runs at onRequest, before the body is read: a caller without rights to the
 * organisation learns nothing from body validation and costs nothing to parse. The hooks here
 * are synchronous (Fastify catches what they throw): an async hook costs a promise and a
 * microtask hop on every request.
 */
function authoriseOrganisation (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  const params = request.params as ContactParams
  if (!ID_REGEX.test(params.org_id) || !ID_REGEX.test(params.contact_id)) {
    const bad = [params.org_id, params.contact_id].map((value, i) => ID_REGEX.test(value) ? undefined : i).filter((i) => i !== undefined)
    throw new Problem('VALIDATION_FAILED', {
      detail: 'The path parameters are invalid',
      errors: bad.map((i) => ({ pointer: i === 0 ? '/org_id' : '/contact_id', detail: 'must be a positive decimal integer', in: 'path' as const }))
    })
  }
  if (request.session === null || !allowsOrganisation(request.session, params.org_id)) {
    throw new Problem('ORGANISATION_FORBIDDEN', { detail: 'This session may not act on that organisation' })
  }
  done()
}

function requireJson (request: FastifyRequest, _reply: FastifyReply, _payload: unknown, done: () => void): void {
  // Content-Type is a singleton: of several lines Node keeps the first, which need not be what the client meant.
  if (headerLines(request.raw.rawHeaders, 'content-type') > 1 || !JSON_TYPES.has(mediaType(request.headers['content-type']) ?? '')) {
    throw new Problem('UNSUPPORTED_MEDIA_TYPE', { detail: 'Send application/json or application/merge-patch+json' })
  }
  // Nothing here decodes a content coding, so a compressed body would be read as if it were plain.
  const encoding = request.headers['content-encoding']
  if (encoding !== undefined && encoding.split(',').some((part) => {
    const coding = part.trim().toLowerCase()
    return coding !== '' && coding !== 'identity'
  })) {
    throw new Problem('UNSUPPORTED_MEDIA_TYPE', { detail: 'Send the body without a Content-Encoding' })
  }
  done()
}

export default async function contactRoutes (fastify: FastifyInstance, { client, audit }: ContactRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()

  // This plugin's own JSON parser (encapsulated): the default one, fed only strictly decoded UTF-8.
  app.patch('/api/v1/organisation/:org_id/contact/:contact_id', {
    bodyLimit: CONTACT_BODY_LIMIT,
    config: { sessionRateLimit: true },
    onRequest: authoriseOrganisation,
    preParsing: requireJson,
    schema: {
      tags: ['contacts'],
      summary: 'Update some fields of an organisation contact',
      description: 'Validates the patch, forwards it to emnify with the service credential and translates the answer. ' +
        'With `Prefer: return=representation` the updated contact is read back and returned.',
      params: ContactParamsSchema,
      body: ContactPatchSchema,
      consumes: ['application/json', 'application/merge-patch+json'],
      headers: Type.Object({
        prefer: Type.Optional(Type.String({ description: '`return=representation` to receive the updated contact' })),
        'x-request-id': Type.Optional(Type.String({ description: 'correlation id, `^[A-Za-z0-9._-]{1,64}$`; echoed and sent upstream' })),
        'x-csrf': Type.Optional(Type.String({ description: 'must be `1` when the session is sent as the cookie' })),
        traceparent: Type.Optional(Type.String({ description: 'W3C Trace Context; forwarded to emnify when valid, otherwise dropped' }))
      }),
      response: {
        200: ContactSchema,
        204: Type.Null({ description: 'The contact was updated' }),
        ...problemResponses([
          ...COMMON_PROBLEMS, ...SESSION_PROBLEMS,
          'VALIDATION_FAILED', 'MALFORMED_JSON', 'ORGANISATION_FORBIDDEN', 'CONTACT_NOT_FOUND', 'UPSTREAM_CONFLICT',
          'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'UPSTREAM_VALIDATION_FAILED', 'RATE_LIMITED', 'UPSTREAM_ERROR',
          'UPSTREAM_AUTH_FAILED', 'UPSTREAM_FORBIDDEN', 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_RATE_LIMITED', 'UPSTREAM_TIMEOUT'
        ], { instance: '/api/v1/organisation/1/contact/2' })
      }
    }
  }, async (request, reply) => {
    const { org_id: orgId, contact_id: contactId } = request.params
    const patch = request.body
    const upstream = upstreamContext(request.id, validTraceparent(request.headers.traceparent), reply.raw)
    request.upstream = upstream
    // The validated object, re-serialised: nothing the schema did not accept can reach emnify.
    await client.patchContact(orgId, contactId, JSON.stringify(patch), upstream)

    audit.info({
      event: 'contact.updated',
      request_id: request.id,
      sub: request.session?.sub,
      org_id: orgId,
      contact_id: contactId,
      fields: Object.keys(patch)
    }, 'contact updated')

    reply.header('vary', 'Prefer')
    // A client that left while the PATCH was under way gets no representation: do not read one.
    if (prefersRepresentation(request.headers.prefer) && !reply.raw.destroyed) {
      try {
        const contact = await client.getContact(orgId, contactId, upstream)
        if (typeof contact.id === 'number') {
          return reply.code(200).header('preference-applied', 'return=representation').send(contact as Static<typeof ContactSchema>)
        }
        request.log.warn('representation read returned a contact without id; answering 204')
      } catch (error) {
        // The update did happen; failing the request now would invite a blind retry.
        request.log.warn({ code: (error as Problem).code }, 'representation read failed; answering 204')
      }
    }
    return reply.code(204).send(null)
  })
}
