import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Config } from '../config/config.ts'
import { isProblem, Problem, type ProblemCode } from '../errors/problems.ts'
import { type AuditRecord, auditFields, auditMessage, fieldLines } from '../logging/logger.ts'
import { COMMON_PROBLEMS, problemResponses, SESSION_PROBLEMS } from '../schemas/responses.ts'
import { allowsOrganisation, hasScope, type Scope } from '../session/claims.ts'
import { MemoryIdempotencyStore } from '../state/idempotency-memory.ts'
import { LocalInvalidationBus } from '../state/invalidation-memory.ts'
import { StoreUnavailableError, type IdempotencyStore, type IdempotentAnswer, type InvalidationBus } from '../state/types.ts'
import { upstreamContext, validTraceparent, type UpstreamContext } from '../upstream/context.ts'
import { ClientGoneError } from '../upstream/emnify-client.ts'
import { OPERATIONS } from '../upstream/operations.ts'
import { ReadCache } from './read-cache.ts'
import { sendNoContent } from '../http/replies.ts'
import { appendVary, prefersRepresentation, requireJson, sendRepresentation, sendText } from './request.ts'
import {
  matchesIfMatch, parseUpstreamJson, represent, toContact, toContactList, type Representation
} from './representation.ts'
import {
  ContactCreateSchema, ContactListSchema, ContactParamsSchema, ContactPatchSchema, ContactSchema, CreatedSchema,
  ID_REGEX, INVOICE_TYPE_ID, OrganisationParamsSchema
} from './schemas.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The session scope a contact route needs; checked after the organisation, before anything is read. */
    scope?: Scope
  }
}

export const CONTACT_BODY_LIMIT = 16 * 1024
export const CONTACTS_PREFIX = '/api/v1/organisation/:org_id'
const IDEMPOTENCY_KEY = '^[\\x21-\\x7e]{1,255}$'

export interface ContactsOptions {
  config: Config
  /** Where writes are announced, so every instance drops the organisation's cached reads. */
  bus?: InvalidationBus
  idempotency?: IdempotencyStore
}

interface Params { org_id: string, contact_id?: string }

/**
 * Authorisation runs at onRequest, before the body is read: a caller without rights to the
 * organisation learns nothing from body validation and costs nothing to parse. Synchronous
 * (Fastify catches what it throws): an async hook costs a promise and a microtask per request.
 */
function authoriseOrganisation (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  const params = request.params as Params
  const badOrg = !ID_REGEX.test(params.org_id)
  const badContact = params.contact_id !== undefined && !ID_REGEX.test(params.contact_id)
  if (badOrg || badContact) {
    const errors = []
    if (badOrg) errors.push({ pointer: '/org_id', detail: 'must be a positive decimal integer', in: 'path' as const })
    if (badContact) errors.push({ pointer: '/contact_id', detail: 'must be a positive decimal integer', in: 'path' as const })
    throw new Problem('VALIDATION_FAILED', { detail: 'The path parameters are invalid', errors })
  }
  if (request.session === null || !allowsOrganisation(request.session, params.org_id)) {
    throw new Problem('ORGANISATION_FORBIDDEN', { detail: 'This session may not act on that organisation' })
  }
  done()
}

function requireScope (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  const scope = request.routeOptions.config.scope
  if (scope !== undefined && (request.session === null || !hasScope(request.session, scope))) {
    throw new Problem('INSUFFICIENT_SCOPE', { detail: `This session lacks the scope ${scope}` })
  }
  done()
}

/** Answers nothing was sent for, so a retry with the same Idempotency-Key may try again. */
const NOT_SENT: ReadonlySet<ProblemCode> = new Set([
  'UPSTREAM_BUDGET_EXHAUSTED', 'UPSTREAM_RATE_LIMITED', 'UPSTREAM_AUTH_FAILED', 'UPSTREAM_UNAVAILABLE', 'STORE_UNAVAILABLE'
])

/** The new contact's id from emnify's Location (absolute or relative), if it names this organisation's contact. */
export function createdContactId (location: string | string[] | undefined, org: string): string | undefined {
  const value = Array.isArray(location) ? location[0] : location
  if (value === undefined || value === '') return undefined
  let path: string
  try {
    path = new URL(value, 'http://upstream.invalid').pathname
  } catch {
    return undefined
  }
  const match = /^\/api\/v1\/organisation\/([1-9][0-9]{0,17})\/contact\/([1-9][0-9]{0,17})\/?$/.exec(path)
  return match !== null && match[1] === org ? match[2] : undefined
}

/** Equal for bodies that mean the same (key order does not matter). */
function fingerprint (value: unknown): string {
  const canonical = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return v
    if (Array.isArray(v)) return v.map(canonical)
    return Object.fromEntries(Object.keys(v).sort().map((key) => [key, canonical((v as Record<string, unknown>)[key])]))
  }
  return createHash('sha256').update(JSON.stringify(canonical(value))).digest('base64url')
}

const READ_PROBLEMS = [
  ...COMMON_PROBLEMS, ...SESSION_PROBLEMS, 'VALIDATION_FAILED', 'ORGANISATION_FORBIDDEN', 'INSUFFICIENT_SCOPE',
  'RATE_LIMITED', 'UPSTREAM_ERROR', 'UPSTREAM_AUTH_FAILED', 'UPSTREAM_FORBIDDEN', 'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_RATE_LIMITED', 'UPSTREAM_TIMEOUT', 'UPSTREAM_BUDGET_EXHAUSTED'
] as const satisfies readonly ProblemCode[]
const WRITE_PROBLEMS = [
  ...READ_PROBLEMS, 'MALFORMED_JSON', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'UPSTREAM_CONFLICT', 'UPSTREAM_VALIDATION_FAILED'
] as const satisfies readonly ProblemCode[]

const CommonHeaders = {
  'x-request-id': Type.Optional(Type.String({ description: 'correlation id, `^[A-Za-z0-9._-]{1,64}$`; echoed and sent upstream' })),
  'x-csrf': Type.Optional(Type.String({ description: 'must be `1` on unsafe methods when the session is sent as the cookie' })),
  traceparent: Type.Optional(Type.String({ description: 'W3C Trace Context; forwarded to emnify when valid, otherwise dropped' }))
}
const ReadHeaders = Type.Object({
  ...CommonHeaders,
  'if-none-match': Type.Optional(Type.String({ description: 'an ETag of an earlier answer: 304 while it is still current' }))
})
const IfMatch = Type.Optional(Type.String({
  description: 'the ETag of the contact as the editor read it: the change is made only if the contact is still so (else 412); `*` = it must exist'
}))
const EtagHeader = { ETag: { type: 'string' as const, description: 'strong validator of this representation' } }
const ReadCacheControl = { 'Cache-Control': { type: 'string' as const, description: '`private, no-cache`' } }

async function contacts (fastify: FastifyInstance, { config, bus = new LocalInvalidationBus(), idempotency = new MemoryIdempotencyStore() }: ContactsOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const client = fastify.emnify
  const audit = fieldLines(fastify.log, { log_type: 'audit' })
  const cache = new ReadCache({ ttlMs: config.CONTACT_CACHE_TTL_MS, onResult: fastify.metrics?.readCache })
  cache.follow(bus)
  fastify.metrics?.watchStores({ contact_read_cache: cache, idempotency })
  const idempotencyTtlMs = config.IDEMPOTENCY_TTL_S * 1000

  // After the per-session limit (prepended by protection/rate-limit.ts): limit, organisation, scope.
  fastify.addHook('onRoute', (route: RouteOptions) => {
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [...own, authoriseOrganisation, requireScope]
  })

  function contextOf (request: FastifyRequest, reply: FastifyReply | undefined): UpstreamContext {
    const context = upstreamContext(request.id, validTraceparent(request.headers.traceparent), reply?.raw, request.session?.sub ?? '')
    request.upstream = context
    return context
  }

  /** A fresh read of one contact (never from the cache): for If-Match and read-backs. */
  async function readContact (org: string, contact: string, context: UpstreamContext): Promise<Representation> {
    const response = await client.call(OPERATIONS.getContact, { org, contact }, context)
    return represent(toContact(parseUpstreamJson(response.body)))
  }

  /**
   * If-Match: the change is made only while the contact is as the editor read it. Called only
   * when the header came: a change without it costs no promise here.
   */
  async function checkPrecondition (header: string, org: string, contact: string, context: UpstreamContext): Promise<void> {
    // RFC 9110 §13.1.1: a contact that no longer exists matches no tag, `*` included: 412, not 404.
    const current = await readContact(org, contact, context).catch((error: unknown) => {
      if (isProblem(error) && error.code === 'CONTACT_NOT_FOUND') return undefined
      throw error
    })
    if (!matchesIfMatch(header, current?.etag)) {
      // The fresh read may prove the kept reads stale: dropped, or the editor's re-read would answer the old tag again.
      changed(org)
      throw new Problem('PRECONDITION_FAILED', { detail: 'The contact was changed since it was read; read it again and reapply the change' })
    }
  }

  /** Before the answer, so the writer reads its own write, here and (through the bus) on every instance. */
  function changed (org: string): void {
    bus.publish(org)
  }

  /**
   * Sends a change; the organisation's kept reads go whatever the answer, as a timeout or reset
   * may still have been applied. One derived promise, not an async frame of its own.
   */
  function write<T> (org: string, call: () => Promise<T>): Promise<T> {
    return call().then((value) => {
      changed(org)
      return value
    }, (error: unknown) => {
      changed(org)
      throw error
    })
  }

  function record (event: AuditRecord['event'], request: FastifyRequest, org: string, contact: string | undefined, fields: string[]): void {
    audit.written(auditFields({ event, request_id: request.id, sub: request.session?.sub, org_id: org, contact_id: contact ?? null, fields }), auditMessage(event))
  }

  app.get('/contact', {
    config: { sessionRateLimit: true, scope: 'contacts:read' },
    schema: {
      tags: ['contacts'],
      summary: 'List the organisation\'s contacts',
      description: 'Concurrent identical reads share one upstream call; answers are kept CONTACT_CACHE_TTL_MS and dropped by any write through the BFF.',
      params: OrganisationParamsSchema,
      headers: ReadHeaders,
      response: {
        200: { ...ContactListSchema, headers: { ...EtagHeader, ...ReadCacheControl } },
        304: Type.Null({ description: 'Not modified: the ETag sent in If-None-Match is current' }),
        ...problemResponses([...READ_PROBLEMS], { instance: '/api/v1/organisation/1/contact' })
      }
    }
  }, async (request, reply) => {
    const org = request.params.org_id
    const rep = await cache.read(org, `/api/v1/organisation/${org}/contact`, async () => {
      const response = await client.call(OPERATIONS.listContacts, { org }, contextOf(request, undefined))
      return represent(toContactList(parseUpstreamJson(response.body)))
    })
    return sendRepresentation(request, reply, rep)
  })

  app.get('/contact/:contact_id', {
    config: { sessionRateLimit: true, scope: 'contacts:read' },
    schema: {
      tags: ['contacts'],
      summary: 'Read one contact',
      params: ContactParamsSchema,
      headers: ReadHeaders,
      response: {
        200: { ...ContactSchema, headers: { ...EtagHeader, ...ReadCacheControl } },
        304: Type.Null({ description: 'Not modified: the ETag sent in If-None-Match is current' }),
        ...problemResponses([...READ_PROBLEMS, 'CONTACT_NOT_FOUND'], { instance: '/api/v1/organisation/1/contact/2' })
      }
    }
  }, async (request, reply) => {
    const { org_id: org, contact_id: contact } = request.params
    // Shared callers must not be cancelled by the first one leaving: no inbound on a shared read.
    const rep = await cache.read(org, `/api/v1/organisation/${org}/contact/${contact}`, () => readContact(org, contact, contextOf(request, undefined)))
    return sendRepresentation(request, reply, rep)
  })

  app.post('/contact', {
    bodyLimit: CONTACT_BODY_LIMIT,
    preParsing: requireJson,
    config: { sessionRateLimit: true, scope: 'contacts:write' },
    schema: {
      tags: ['contacts'],
      summary: 'Create a contact',
      description: 'With `Idempotency-Key`, a retry of the same body replays the first answer (`Idempotency-Replayed: true`) instead of creating a second contact; ' +
        'a replayed 201 carries `{ "id" }` (contact data is never stored).',
      params: OrganisationParamsSchema,
      body: ContactCreateSchema,
      consumes: ['application/json', 'application/merge-patch+json'],
      headers: Type.Object({
        ...CommonHeaders,
        'idempotency-key': Type.Optional(Type.String({ pattern: IDEMPOTENCY_KEY, description: '1–255 visible ASCII characters, unique per intended create' }))
      }),
      response: {
        201: {
          ...CreatedSchema,
          headers: {
            Location: { type: 'string', description: 'the BFF path of the new contact' },
            'Idempotency-Replayed': { type: 'string', description: '`true` on a replayed answer' }
          }
        },
        ...problemResponses([...WRITE_PROBLEMS, 'IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_KEY_IN_USE', 'STORE_UNAVAILABLE', 'CONTACT_NOT_FOUND'], { instance: '/api/v1/organisation/1/contact' })
      }
    }
  }, async (request, reply) => {
    const org = request.params.org_id
    const body = request.body
    if (body.purchase_order_number !== undefined && body.purchase_order_number !== null && body.type.id !== INVOICE_TYPE_ID) {
      throw new Problem('VALIDATION_FAILED', {
        detail: 'The request body is invalid',
        errors: [{ pointer: '/purchase_order_number', detail: `only invoice contacts (type ${INVOICE_TYPE_ID}) have a purchase order number`, in: 'body' }]
      })
    }
    const key = request.headers['idempotency-key']
    const sub = request.session?.sub ?? ''
    if (key === undefined) return answerCreate(reply, await create(request, reply, org, body))

    // The organisation is part of the request: a key reused for another one must not replay the first's answer.
    const print = fingerprint({ org, body })
    let begun
    try {
      begun = await idempotency.begin(sub, key, print, idempotencyTtlMs)
    } catch (error) {
      if (error instanceof StoreUnavailableError) {
        throw new Problem('STORE_UNAVAILABLE', { detail: 'The shared store is unreachable; a create with Idempotency-Key cannot be made safely now', retryAfter: 5 })
      }
      throw error
    }
    if (begun.state === 'mismatch') throw new Problem('IDEMPOTENCY_KEY_REUSED', { detail: 'This Idempotency-Key was used with another body' })
    if (begun.state === 'in_flight') throw new Problem('IDEMPOTENCY_KEY_IN_USE', { detail: 'The first request with this Idempotency-Key is still in progress', retryAfter: 1 })
    if (begun.state === 'done') {
      reply.header('idempotency-replayed', 'true')
      return answerCreate(reply, begun.answer)
    }
    let answer: IdempotentAnswer
    try {
      answer = await create(request, reply, org, body)
    } catch (error) {
      if (error instanceof ClientGoneError || (isProblem(error) && NOT_SENT.has(error.code))) {
        await idempotency.release(sub, key).catch((cause: unknown) => request.log.warn({ err: cause }, 'idempotency key could not be released'))
      } else {
        // Ambiguous or final: remembered, so a retry can never create a second contact behind the client's back.
        const problem = isProblem(error) ? error : new Problem('INTERNAL_ERROR')
        const stored: IdempotentAnswer = { status: problem.status, problem: { code: problem.code, detail: problem.detail, errors: problem.errors, retryAfter: problem.retryAfter } }
        await idempotency.complete(sub, key, print, stored, idempotencyTtlMs).catch((cause: unknown) => request.log.warn({ err: cause }, 'idempotency answer could not be stored'))
      }
      throw error
    }
    await idempotency.complete(sub, key, print, { status: answer.status, location: answer.location, contactId: answer.contactId }, idempotencyTtlMs)
      .catch((cause: unknown) => request.log.warn({ err: cause }, 'idempotency answer could not be stored'))
    return answerCreate(reply, answer)
  })

  type CreateResult = IdempotentAnswer & { body?: string }

  async function create (request: FastifyRequest, reply: FastifyReply, org: string, body: object): Promise<CreateResult> {
    const context = contextOf(request, reply)
    const response = await write(org, () => client.call(OPERATIONS.createContact, { org }, context, JSON.stringify(body)))
    const id = createdContactId(response.headers.location, org)
    record('contact.created', request, org, id, Object.keys(body))
    if (id === undefined) {
      request.log.warn('emnify answered the create without a Location naming the new contact; answering 201 {}')
      return { status: 201, body: '{}' }
    }
    const location = `/api/v1/organisation/${org}/contact/${id}`
    try {
      return { status: 201, location, contactId: id, body: (await readContact(org, id, context)).text }
    } catch (error) {
      // The contact exists; failing now would invite a retry that creates a second one.
      request.log.warn({ code: isProblem(error) ? error.code : undefined }, 'created contact could not be read back; answering 201 with its id')
      return { status: 201, location, contactId: id }
    }
  }

  function answerCreate (reply: FastifyReply, answer: CreateResult) {
    if (answer.problem !== undefined) {
      const p = answer.problem as { code: ProblemCode, detail?: string, errors?: [], retryAfter?: number }
      throw new Problem(p.code, { detail: p.detail, errors: p.errors, retryAfter: p.retryAfter })
    }
    if (answer.location !== undefined) reply.header('location', answer.location)
    const text = answer.body ?? (answer.contactId === undefined ? '{}' : JSON.stringify({ id: Number(answer.contactId) }))
    return sendText(reply.code(201), text)
  }

  app.patch('/contact/:contact_id', {
    bodyLimit: CONTACT_BODY_LIMIT,
    preParsing: requireJson,
    config: { sessionRateLimit: true, scope: 'contacts:write' },
    schema: {
      tags: ['contacts'],
      summary: 'Update some fields of an organisation contact',
      description: 'Validates the patch, forwards it to emnify with the service credential and translates the answer. ' +
        'With `Prefer: return=representation` the updated contact is read back and returned. With `If-Match` the contact is read first ' +
        'and the change is not sent when it no longer matches (412); emnify has no conditional update, so this narrows the lost-update window but cannot close it.',
      params: ContactParamsSchema,
      body: ContactPatchSchema,
      consumes: ['application/json', 'application/merge-patch+json'],
      headers: Type.Object({
        ...CommonHeaders,
        prefer: Type.Optional(Type.String({ description: '`return=representation` to receive the updated contact' })),
        'if-match': IfMatch
      }),
      response: {
        200: { ...ContactSchema, headers: EtagHeader },
        204: Type.Null({ description: 'The contact was updated' }),
        ...problemResponses([...WRITE_PROBLEMS, 'CONTACT_NOT_FOUND', 'PRECONDITION_FAILED'], { instance: '/api/v1/organisation/1/contact/2' })
      }
    }
  }, async (request, reply) => {
    const { org_id: org, contact_id: contact } = request.params
    const patch = request.body
    const context = contextOf(request, reply)
    const ifMatch = request.headers['if-match']
    if (ifMatch !== undefined) await checkPrecondition(ifMatch, org, contact, context)
    // The validated object, re-serialised: nothing the schema did not accept can reach emnify.
    await write(org, () => client.call(OPERATIONS.patchContact, { org, contact }, context, JSON.stringify(patch)))
    record('contact.updated', request, org, contact, Object.keys(patch))

    appendVary(reply, 'Prefer')
    // A client that left while the PATCH was under way gets no representation: do not read one.
    if (prefersRepresentation(request.headers.prefer) && !reply.raw.destroyed) {
      try {
        const rep = await readContact(org, contact, context)
        return sendText(reply.code(200).header('preference-applied', 'return=representation').header('etag', rep.etag), rep.text)
      } catch (error) {
        // The update did happen; failing the request now would invite a blind retry. No contact values logged.
        request.log.warn({ code: isProblem(error) ? error.code : undefined }, 'representation read failed; answering 204')
      }
    }
    return sendNoContent(reply)
  })

  app.delete('/contact/:contact_id', {
    config: { sessionRateLimit: true, scope: 'contacts:write' },
    schema: {
      tags: ['contacts'],
      summary: 'Delete a contact',
      description: 'With `If-Match` the contact is read first and not deleted when it no longer matches (412).',
      params: ContactParamsSchema,
      headers: Type.Object({ ...CommonHeaders, 'if-match': IfMatch }),
      response: {
        204: Type.Null({ description: 'The contact was deleted' }),
        ...problemResponses([...READ_PROBLEMS, 'CONTACT_NOT_FOUND', 'PRECONDITION_FAILED', 'UPSTREAM_CONFLICT', 'UPSTREAM_VALIDATION_FAILED'], { instance: '/api/v1/organisation/1/contact/2' })
      }
    }
  }, async (request, reply) => {
    const { org_id: org, contact_id: contact } = request.params
    const context = contextOf(request, reply)
    const ifMatch = request.headers['if-match']
    if (ifMatch !== undefined) await checkPrecondition(ifMatch, org, contact, context)
    await write(org, () => client.call(OPERATIONS.deleteContact, { org, contact }, context))
    record('contact.deleted', request, org, contact, [])
    return sendNoContent(reply)
  })
}

export default fp(contacts, { name: 'contacts', fastify: '5.x', dependencies: ['session', 'upstream', 'json-body'], encapsulate: true })
