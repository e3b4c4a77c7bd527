import { createHash } from 'node:crypto'
import { Problem } from '../errors/problems.ts'
import { TEXT_FIELDS, type Contact } from './schemas.ts'

type Json = Record<string, unknown>

function isObject (value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

const isId = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value > 0

/** `{id, <label>?}` from emnify, or undefined for absent/null; throws for anything else. */
function reference (value: unknown, label: 'name' | 'description'): Json | undefined {
  if (value === undefined || value === null) return undefined
  if (!isObject(value) || !isId(value.id)) throw malformed()
  const label_ = value[label]
  if (label_ === undefined || label_ === null) return { id: value.id }
  if (typeof label_ !== 'string') throw malformed()
  return { id: value.id, [label]: label_ }
}

function malformed (): Problem {
  return new Problem('UPSTREAM_ERROR', { detail: 'emnify answered with a contact of an unexpected shape' })
}

/**
 * The BFF's own representation of an emnify contact: documented fields only, each of the right
 * type. A field emnify adds is dropped; a documented field of the wrong type is a garbled answer.
 */
export function toContact (value: unknown): Contact {
  if (!isObject(value) || !isId(value.id)) throw malformed()
  const contact: Json = { id: value.id }
  const type = reference(value.type, 'description')
  if (type !== undefined) contact.type = type
  const organisation = reference(value.organisation, 'name')
  if (organisation !== undefined) contact.organisation = organisation
  const country = reference(value.country, 'name')
  if (country !== undefined) contact.country = country
  for (const field of TEXT_FIELDS) {
    const text = value[field]
    if (text === undefined) continue
    if (text !== null && typeof text !== 'string') throw malformed()
    contact[field] = text
  }
  return contact as Contact
}

export function toContactList (value: unknown): Contact[] {
  if (!Array.isArray(value)) throw new Problem('UPSTREAM_ERROR', { detail: 'emnify answered with a contact list of an unexpected shape' })
  return value.map(toContact)
}

export interface Country { id: number, name: string, iso_code?: string, country_code?: string }

export function toCountryList (value: unknown): Country[] {
  const garbled = () => new Problem('UPSTREAM_ERROR', { detail: 'emnify answered with a country list of an unexpected shape' })
  if (!Array.isArray(value)) throw garbled()
  return value.map((item: unknown) => {
    if (!isObject(item) || !isId(item.id) || typeof item.name !== 'string') throw garbled()
    const country: Country = { id: item.id, name: item.name }
    if (typeof item.iso_code === 'string') country.iso_code = item.iso_code
    if (typeof item.country_code === 'string') country.country_code = item.country_code
    return country
  })
}

/** Parses an upstream JSON body; not JSON is a garbled answer. */
export function parseUpstreamJson (body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new Problem('UPSTREAM_ERROR', { detail: 'emnify answered with a body that is not JSON' })
  }
}

/** A representation serialised once, with its strong validator. */
export interface Representation {
  readonly text: string
  readonly etag: string
}

export function represent (value: unknown): Representation {
  const text = JSON.stringify(value)
  return { text, etag: `"${createHash('sha256').update(text).digest('base64url').slice(0, 27)}"` }
}

/** RFC 9110 §13.1.2 If-None-Match: weak comparison; `*` matches any current representation. */
export function noneMatch (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  const opaque = etag.slice(1, -1)
  return header.split(',').some((tag) => {
    const trimmed = tag.trim()
    const bare = trimmed.startsWith('W/') ? trimmed.slice(2) : trimmed
    return bare === `"${opaque}"`
  })
}

/** RFC 9110 §13.1.1 If-Match: strong comparison, so a weak tag never matches. */
export function matchesIfMatch (header: string, etag: string | undefined): boolean {
  if (header.trim() === '*') return etag !== undefined
  if (etag === undefined) return false
  return header.split(',').some((tag) => tag.trim() === etag)
}
