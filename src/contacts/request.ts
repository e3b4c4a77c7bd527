import type { FastifyReply, FastifyRequest } from 'fastify'
import { Problem } from '../errors/problems.ts'
import { JSON_MEDIA_TYPES } from '../http/json-body.ts'
import { headerLines } from '../protection/header-lines.ts'
import { noneMatch, type Representation } from './representation.ts'

const JSON_TYPES = new Set(JSON_MEDIA_TYPES)

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

/** Adds to `Vary` instead of replacing what CORS (or anyone) set before. */
export function appendVary (reply: FastifyReply, field: string): void {
  const current = reply.getHeader('vary')
  if (current === undefined || current === '') {
    reply.header('vary', field)
    return
  }
  const text = Array.isArray(current) ? current.join(', ') : String(current)
  const names = text.split(',').map((name) => name.trim().toLowerCase())
  if (!names.includes(field.toLowerCase()) && !names.includes('*')) reply.header('vary', `${text}, ${field}`)
}

/** A body route's preParsing guard: JSON only, no content coding. */
export function requireJson (request: FastifyRequest, _reply: FastifyReply, _payload: unknown, done: () => void): void {
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

/** JSON serialised once, when read: cache hits send the same text without serialising again. */
export function sendText (reply: FastifyReply, text: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(text)
}

/** A read's answer: its strong ETag, revalidation on every use, and 304 while the client's copy is current. */
export function sendRepresentation (request: FastifyRequest, reply: FastifyReply, rep: Representation): FastifyReply {
  reply.header('etag', rep.etag).header('cache-control', 'private, no-cache')
  if (noneMatch(request.headers['if-none-match'], rep.etag)) return reply.code(304).send()
  return sendText(reply.code(200), rep.text)
}
