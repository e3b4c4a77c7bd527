// Generators for the property tests of PATCH /api/v1/organisation/{org_id}/contact/{contact_id},
// and the oracle that judges what they generate. The oracle is written from CONTRACT.md §4/§6 and
// the README, not from src/: it decides on its own what is valid, and the tests cross-check it
// against TypeBox's Value.Check on the route's schema.
import fc from 'fast-check'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

// ---------------------------------------------------------------------------------------------
// The contract, restated

/** §4: the string properties and their maximum length in characters (code points, as JSON Schema counts). */
export const TEXT_LIMITS: Readonly<Record<string, number>> = {
  name: 255,
  title: 255,
  department: 255,
  street: 255,
  zipcode: 255,
  city: 255,
  phone: 255,
  mobile: 255,
  state: 255,
  secondary_address: 255,
  email: 254,
  purchase_order_number: 50
}
/** §4: `{id: positive integer}` references, no other keys inside. */
export const REF_FIELDS: readonly string[] = ['type', 'country']
export const PATCH_FIELDS: readonly string[] = [...REF_FIELDS, ...Object.keys(TEXT_LIMITS)]
export const BODY_LIMIT_BYTES = 16 * 1024
/**
 * Largest reference id: beyond 2^53 a JSON number no longer survives parse and re-serialisation
 * unchanged, so "forward exactly the validated body" rules such ids out.
 */
export const MAX_REF_ID = Number.MAX_SAFE_INTEGER

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
const own = (value: Record<string, unknown>, key: string) => Object.prototype.hasOwnProperty.call(value, key)

export function codePointLength (text: string): number {
  return Array.from(text).length
}

const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' })
export function graphemeLength (text: string): number {
  return Array.from(segmenter.segment(text)).length
}

const ATOM = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
const LOCAL_PART = new RegExp(`^[${ATOM}]+(?:\\.[${ATOM}]+)*$`)
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/

/**
 * `format: email` as the contract's readers (the BFF's JSON Schema validator and emnify) apply it:
 * a dot-atom local part and a domain of at least two host labels. Quoted local parts, address
 * literals and single-label domains are outside it; the generators never rely on them being valid.
 */
export function isEmailAddress (text: string): boolean {
  const at = text.indexOf('@')
  if (at === -1) return false
  const labels = text.slice(at + 1).split('.')
  return LOCAL_PART.test(text.slice(0, at)) && labels.length >= 2 && labels.every((label) => DOMAIN_LABEL.test(label))
}

function isReference (value: unknown): boolean {
  if (!isObject(value)) return false
  const keys = Object.keys(value)
  const id = value.id
  return keys.length === 1 && keys[0] === 'id' &&
    typeof id === 'number' && Number.isInteger(id) && id >= 1 && id <= MAX_REF_ID
}

/** §4 body rules: an object, at least one known property, nothing else, no coercion; `null` clears a string. */
export function isValidPatch (value: unknown): value is Record<string, Json> {
  if (!isObject(value)) return false
  const keys = Object.keys(value)
  if (keys.length === 0) return false
  for (const key of keys) {
    const field = value[key]
    if (REF_FIELDS.includes(key)) {
      if (!isReference(field)) return false
      continue
    }
    const limit = own(TEXT_LIMITS, key) ? TEXT_LIMITS[key] : undefined
    if (limit === undefined) return false
    // §4: `null` clears a string field; `type` and `country` (above) may not be null.
    if (field === null) continue
    if (typeof field !== 'string' || codePointLength(field) > limit) return false
    if (key === 'email' && !isEmailAddress(field)) return false
  }
  return true
}

/**
 * Inputs where TypeBox's own Value.Check is known to read the schema differently from JSON
 * Schema: it counts maxLength in graphemes (JSON Schema counts code points), and its `email`
 * format also admits single-label domains, quoted local parts and address literals.
 */
export function typeboxMayDisagree (value: unknown): boolean {
  if (!isObject(value)) return false
  for (const [key, limit] of Object.entries(TEXT_LIMITS)) {
    const text = value[key]
    if (typeof text === 'string' && codePointLength(text) > limit && graphemeLength(text) < codePointLength(text)) return true
  }
  const email = value.email
  if (typeof email !== 'string') return false
  const domain = email.slice(email.lastIndexOf('@') + 1)
  return email.startsWith('"') || domain.startsWith('[') || !domain.includes('.')
}

/** Objects carrying the keys prototype-pollution attacks use; parsers may refuse them outright. */
export function isPoisoned (value: unknown): boolean {
  // Iterative: bodies nest thousands deep.
  const pending: unknown[] = [value]
  while (pending.length > 0) {
    const node = pending.pop()
    if (Array.isArray(node)) {
      pending.push(...node)
      continue
    }
    if (!isObject(node)) continue
    if (own(node, '__proto__')) return true
    const ctor = node.constructor
    if (own(node, 'constructor') && isObject(ctor) && own(ctor, 'prototype')) return true
    pending.push(...Object.values(node))
  }
  return false
}

export type BodyVerdict =
  | { kind: 'too_large' }
  | { kind: 'malformed', why: string }
  /** 400 VALIDATION_FAILED; MALFORMED_JSON is also acceptable when the body is poisoned. */
  | { kind: 'invalid', poisoned: boolean, parsed: unknown }
  | { kind: 'valid', patch: Record<string, Json> }

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * What §4/§6 say about a request body (given a JSON content type): over 16 KiB → 413; not UTF-8
 * JSON text (RFC 8259 §8.1; a leading BOM may be ignored) → 400 MALFORMED_JSON; JSON that breaks
 * the body rules → 400 VALIDATION_FAILED; otherwise it is forwarded.
 */
export function judgeBody (body: string | Uint8Array): BodyVerdict {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
  if (bytes.byteLength > BODY_LIMIT_BYTES) return { kind: 'too_large' }
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return { kind: 'malformed', why: 'not UTF-8' }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    return { kind: 'malformed', why: (error as Error).message }
  }
  if (isValidPatch(parsed)) return { kind: 'valid', patch: parsed }
  return { kind: 'invalid', poisoned: isPoisoned(parsed), parsed }
}

/** RFC 9110 OWS. */
const trimOws = (text: string) => text.replace(/^[ \t]+|[ \t]+$/g, '')

/**
 * §4: `application/json` or `application/merge-patch+json` (media types are case-insensitive,
 * parameters other than a non-UTF-8 charset do not change them). Content-Type is a singleton field: several lines are an error,
 * not a choice. A content coding the BFF does not apply is unsupported too (RFC 9110 §8.4.1).
 */
export function acceptsBody (contentTypes: readonly string[], contentEncodings: readonly string[]): boolean {
  if (contentTypes.length !== 1) return false
  const codings = contentEncodings.flatMap((line) => line.split(',')).map(trimOws).filter((c) => c !== '')
  if (codings.some((coding) => coding.toLowerCase() !== 'identity')) return false
  const value = contentTypes[0] as string
  const [type = '', ...parameters] = value.split(';')
  const mediaType = trimOws(type).toLowerCase()
  if (mediaType !== 'application/json' && mediaType !== 'application/merge-patch+json') return false
  // RFC 8259 §8.1: JSON is UTF-8; a body declared in another charset is not read (the first charset parameter counts).
  for (const parameter of parameters) {
    const equals = parameter.indexOf('=')
    if (equals === -1 || trimOws(parameter.slice(0, equals)).toLowerCase() !== 'charset') continue
    const charset = trimOws(parameter.slice(equals + 1)).replace(/^"(.*)"$/, '$1').toLowerCase()
    return charset === 'utf-8' || charset === 'utf8'
  }
  return true
}

/** §4: the id a raw path segment names once percent-decoded, or undefined when it names none (→ 400). */
export function idOfSegment (raw: string): string | undefined {
  let decoded: string
  try {
    decoded = decodeURIComponent(raw)
  } catch {
    return undefined
  }
  if (decoded.length < 1 || decoded.length > 18 || decoded[0] === '0') return undefined
  for (const char of decoded) if (char < '0' || char > '9') return undefined
  return decoded
}

/**
 * RFC 7240: `Prefer` is a comma-separated list over all its lines; names are case-insensitive,
 * `=` may have whitespace around it, parameters follow `;`; a preference given twice counts
 * only the first time.
 */
export function asksForRepresentation (lines: readonly string[]): boolean {
  for (const preference of lines.join(',').split(',')) {
    const [token = ''] = preference.split(';')
    const match = /^([^=]*?)[ \t]*(?:=[ \t]*(.*))?$/.exec(trimOws(token))
    if (match === null || match[1]?.toLowerCase() !== 'return') continue
    return match[2] === 'representation'
  }
  return false
}

/** §7: a caller's X-Request-Id is kept only when it is one header matching this. */
export const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/

/** README: a W3C traceparent, version 00, lowercase hex, ids not all zero; forwarded only then. */
export function isTraceparent (value: string): boolean {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/.exec(value)
  return match !== null && !/^0+$/.test(match[1] as string) && !/^0+$/.test(match[2] as string)
}

// ---------------------------------------------------------------------------------------------
// Bodies

/** Own data property, also for `__proto__` (a plain assignment would set the prototype instead). */
export function objectOf (entries: ReadonlyArray<readonly [string, Json]>): { [key: string]: Json } {
  const target: { [key: string]: Json } = {}
  for (const [key, value] of entries) {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
  }
  return target
}

/**
 * Single code points that make lengths interesting: astral, combining, controls, a lone (low)
 * surrogate; no lone high surrogate, which would pair with a following low one.
 */
const CODE_POINTS = ['a', 'Z', '7', ' ', 'é', 'ß', '中', '😀', '𝟏', '\u0301', '\u200d', '\u0000', '\u001f', '\u007f',
  '\u2028', '\u202e', '\ufeff', '\udfff', '"', '\\', '/', '<', '\n']

const SPECIAL_STRINGS = ['', ' ', '\u0000', 'a\u0000b', '\u2028\u2029', '\ud800', '\udfff', '😀', 'e\u0301',
  '👨‍👩‍👧‍👦', '\u202eevil', '\ufeffbom', 'Zoë Ünicode', '"__proto__"', '{"__proto__":{}}', '"constructor": {"prototype": 1}',
  'constructor', '<script>alert(1)</script>', 'null', '0', '-0', 'NaN', '1e308', '\\', '\t\r\n', 'Robert\'); DROP TABLE contacts;--',
  '%00', '$' + '{jndi:ldap://x}', '../../etc/passwd', '\u00a0', 'ａｂｃ']

/** A string of exactly `length` code points. */
const exactly = (length: number) =>
  fc.array(fc.constantFrom(...CODE_POINTS), { minLength: length, maxLength: length }).map((points) => points.join(''))

/** Valid text for a field of this limit: mostly short and wild, sometimes exactly at the limit. */
export const text = (limit: number) => fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: Math.min(limit, 30) }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: limit }) },
  { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_STRINGS) },
  { weight: 1, arbitrary: fc.integer({ min: Math.max(0, limit - 2), max: limit }).chain(exactly) }
)

const ATOM_CHARS = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', ..."!#$%&'*+/=?^_`{|}~-"]
const ALNUM = [...'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ']
const atom = fc.string({ unit: fc.constantFrom(...ATOM_CHARS), minLength: 1, maxLength: 12 })
const label = fc.oneof(
  fc.constantFrom(...ALNUM),
  fc.tuple(fc.constantFrom(...ALNUM), fc.string({ unit: fc.constantFrom(...ALNUM, '-'), maxLength: 12 }), fc.constantFrom(...ALNUM))
    .map(([first, middle, last]) => first + middle + last)
)

export const validEmail = fc.oneof(
  fc.tuple(fc.array(atom, { minLength: 1, maxLength: 3 }), fc.array(label, { minLength: 2, maxLength: 4 }))
    .map(([local, domain]) => `${local.join('.')}@${domain.join('.')}`),
  fc.emailAddress().filter((address) => address.length <= 254 && isEmailAddress(address)),
  fc.constant(`${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.de`)
)

export const invalidEmail = fc.oneof(
  fc.constantFrom('plainaddress', '@example.com', 'a@', 'a@localhost', 'a@@b.co', 'a b@c.de', 'a@b..co', '.a@b.co', 'a.@b.co',
    'a..b@c.de', 'a@-b.co', 'a@b-.co', 'ä@b.co', 'a@bü.co', '"quoted"@b.co', 'a@[127.0.0.1]', 'a@b.co\n', ' a@b.co', 'a@b.co ',
    'a@b,co', 'a@b.co.', 'a@.b.co', '', '\u0000@b.co', 'a@b.co\u0000', `${'x'.repeat(250)}@b.co`),
  validEmail.map((address) => address.replace('@', '')),
  validEmail.map((address) => address + '@x.io'),
  fc.tuple(validEmail, fc.constantFrom(' ', '\t', '(', ')', ',', ':', ';', '<', '>', '[', ']', '\\', '"', 'é'))
    .map(([address, bad]) => address.replace('@', `${bad}@`))
)

export const refId = fc.oneof(
  fc.integer({ min: 1, max: 10 }),
  fc.constantFrom(1, 6, 74, 205, 999, MAX_REF_ID),
  fc.integer({ min: 1, max: MAX_REF_ID })
)
const reference = refId.map((id) => ({ id }))

/** A string field's value: mostly text, sometimes `null`, which clears it. */
const clearable = (value: fc.Arbitrary<Json>) => fc.oneof({ weight: 9, arbitrary: value }, { weight: 1, arbitrary: fc.constant(null) })

const patchModel: Record<string, fc.Arbitrary<Json>> = {
  type: reference,
  country: reference,
  email: clearable(validEmail)
}
for (const [key, limit] of Object.entries(TEXT_LIMITS)) if (key !== 'email') patchModel[key] = clearable(text(limit))

/** Patches §4 accepts: any non-empty subset of the properties, each valid. */
export const validPatch: fc.Arbitrary<{ [key: string]: Json }> = fc.record(patchModel, { requiredKeys: [] })
  .filter((patch) => Object.keys(patch).length > 0)
  .map((patch) => patch as { [key: string]: Json })

/** Keys that are not properties of the patch, some of them close to one that is. */
export const unknownKey = fc.oneof(
  fc.constantFrom('id', 'organisation', 'Name', 'NAME', 'name ', ' name', 'nаme', 'e-mail', 'purchaseOrderNumber', 'type_id',
    'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', '$ref', '', ' ', 'type.id',
    'country/id', '~0', 'a/b', '~1', '\u0000', 'name\u0000', '😀', 'created', 'password', 'auth_token'),
  fc.string({ unit: 'binary', maxLength: 12 }).filter((key) => !PATCH_FIELDS.includes(key))
)

const WRONG_TEXT: Json[] = [0, 1, -1, 1.5, -0, 1e308, true, false, [], ['x'], {}, { x: 1 }, { id: 1 }]
const BAD_IDS: Json[] = [0, -1, -0, 0.5, 1.5, 1e-7, MAX_REF_ID + 1, 2 ** 53, 2 ** 64, 1e308, -1e308, '1', '01', '', null, true, [], [1], {}, { id: 1 }]
const WRONG_REF: Json[] = [1, '1', '{"id":1}', null, true, [], [{ id: 1 }], {}, { ID: 1 }, { Id: 1 }, { id: 1, name: 'Germany' },
  { id: 1, description: 'x' }, { id: 1, id_: 1 }]

/** The one mistake a near-miss makes; every one of them makes the body invalid under §4. */
export type Mistake =
  | { kind: 'unknown property', key: string, value: Json }
  | { kind: 'text too long', field: string, value: string }
  | { kind: 'text of the wrong type', field: string, value: Json }
  | { kind: 'bad reference', field: string, value: Json }
  | { kind: 'bad email', value: string }
  | { kind: 'empty object' }
  | { kind: 'not an object', wrap: 'array' | 'string' | 'number' | 'null' | 'boolean' }

const textField = fc.constantFrom(...Object.keys(TEXT_LIMITS))
const refField = fc.constantFrom(...REF_FIELDS)

export const mistake: fc.Arbitrary<Mistake> = fc.oneof(
  fc.record({ kind: fc.constant('unknown property' as const), key: unknownKey, value: fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json> }),
  textField.chain((field) => {
    const limit = TEXT_LIMITS[field] as number
    return fc.integer({ min: limit + 1, max: limit + 40 }).chain(exactly)
      .map((value) => ({ kind: 'text too long' as const, field, value }))
  }),
  fc.record({ kind: fc.constant('text of the wrong type' as const), field: textField, value: fc.constantFrom(...WRONG_TEXT) }),
  fc.record({
    kind: fc.constant('bad reference' as const),
    field: refField,
    value: fc.oneof(fc.constantFrom(...WRONG_REF), fc.constantFrom(...BAD_IDS).map((id) => ({ id })))
  }),
  fc.record({ kind: fc.constant('bad email' as const), value: invalidEmail }),
  fc.constant({ kind: 'empty object' as const }),
  fc.record({ kind: fc.constant('not an object' as const), wrap: fc.constantFrom('array' as const, 'string' as const, 'number' as const, 'null' as const, 'boolean' as const) })
)

/** A valid patch with exactly one mistake made in it. */
export function applyMistake (patch: { [key: string]: Json }, wrong: Mistake): Json {
  switch (wrong.kind) {
    case 'unknown property': return objectOf([...Object.entries(patch), [wrong.key, wrong.value]])
    case 'text too long':
    case 'text of the wrong type':
    case 'bad reference': return { ...patch, [wrong.field]: wrong.value }
    case 'bad email': return { ...patch, email: wrong.value }
    case 'empty object': return {}
    case 'not an object':
      switch (wrong.wrap) {
        case 'array': return [patch]
        case 'string': return JSON.stringify(patch)
        case 'number': return 1
        case 'null': return null
        case 'boolean': return true
      }
  }
}

export const nearMiss = fc.tuple(validPatch, mistake).map(([patch, wrong]) => ({ value: applyMistake(patch, wrong), mistake: wrong }))

// ---------------------------------------------------------------------------------------------
// Create bodies (POST …/contact)

/** The contact type whose contacts alone carry a purchase order number. */
export const INVOICE_TYPE = 6

/** A create body: the patch rules, plus `type` required; a purchase order number (not `null`) only with type 6. */
export function isValidCreate (value: unknown): value is Record<string, Json> {
  if (!isObject(value) || !own(value, 'type') || !isValidPatch(value)) return false
  const po = value.purchase_order_number
  return po === undefined || po === null || (value.type as { id: number }).id === INVOICE_TYPE
}

const { type: _type, ...createModel } = patchModel

/** Bodies a create accepts: a type (6 often, so invoices come up), any subset of the other properties. */
export const validCreate: fc.Arbitrary<{ [key: string]: Json }> = fc.tuple(
  fc.oneof(fc.constant(INVOICE_TYPE), fc.integer({ min: 1, max: 6 }), refId),
  fc.record(createModel, { requiredKeys: [] })
).map(([typeId, rest]) => {
  const body = { type: { id: typeId }, ...rest } as { [key: string]: Json }
  // A purchase order number makes it an invoice contact.
  if (typeof body.purchase_order_number === 'string') body.type = { id: INVOICE_TYPE }
  return body
})

/** The one mistake a near-miss create makes: one of the patch's, or one of the create's own rules. */
export type CreateMistake =
  | Mistake
  | { kind: 'no type' }
  | { kind: 'null type' }
  | { kind: 'purchase order number without type 6', typeId: number, value: string }

export const createMistake: fc.Arbitrary<CreateMistake> = fc.oneof(
  { weight: 4, arbitrary: mistake },
  { weight: 1, arbitrary: fc.constant({ kind: 'no type' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'null type' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('purchase order number without type 6' as const),
      typeId: fc.oneof(fc.integer({ min: 1, max: 5 }), refId).filter((id) => id !== INVOICE_TYPE),
      value: text(50)
    })
  }
)

export function applyCreateMistake (body: { [key: string]: Json }, wrong: CreateMistake): Json {
  switch (wrong.kind) {
    case 'no type': {
      const { type: _dropped, ...rest } = body
      return rest
    }
    case 'null type': return { ...body, type: null }
    case 'purchase order number without type 6': return { ...body, type: { id: wrong.typeId }, purchase_order_number: wrong.value }
    default: return applyMistake(body, wrong)
  }
}

export const createNearMiss = fc.tuple(validCreate, createMistake).map(([body, wrong]) => ({ value: applyCreateMistake(body, wrong), mistake: wrong }))

// ---------------------------------------------------------------------------------------------
// JSON spellings: one value, many texts

/**
 * Choices for the encoder; reading past the end gives 0, the plainest choice, so shrinking a
 * failing case also simplifies its spelling.
 */
export const spelling = fc.array(fc.nat({ max: 1 << 16 }), { maxLength: 120 })

class Tape {
  #index = 0
  readonly #values: readonly number[]
  constructor (values: readonly number[]) { this.#values = values }
  pick (choices: number): number { return (this.#values[this.#index++] ?? 0) % choices }
}

const WHITESPACE = ['', ' ', '\n', '\t', '\r\n  ', '    ']
const DECOYS = ['null', '"decoy"', '1e308', '{"id":-1}', '[]', 'true', '"x"', '{"__decoy__":1}']
const hex4 = (unit: number, upper: boolean) => {
  const hex = unit.toString(16).padStart(4, '0')
  return '\\u' + (upper ? hex.toUpperCase() : hex)
}

function spellString (value: string, tape: Tape): string {
  switch (tape.pick(4)) {
    case 1: {
      const upper = tape.pick(2) === 1
      let out = '"'
      for (let i = 0; i < value.length; i++) out += hex4(value.charCodeAt(i), upper)
      return out + '"'
    }
    case 2: return JSON.stringify(value).replaceAll('/', '\\/')
    case 3: return JSON.stringify(value).replace(/[^\x20-\x7e]/g, (unit) => hex4(unit.charCodeAt(0), false))
    default: return JSON.stringify(value)
  }
}

function spellNumber (value: number, tape: Tape): string {
  if (Object.is(value, -0)) return '-0'
  if (!Number.isSafeInteger(value)) return JSON.stringify(value)
  const plain = String(value)
  return [plain, `${plain}.0`, `${plain}e0`, `${plain}E+0`, `${plain}0e-1`, `${plain}.000`][tape.pick(6)] as string
}

/**
 * A JSON text for `value`: random whitespace, escapes (keys too), number spellings and, with
 * `duplicates`, decoy members repeated before the real one (last one wins, RFC 8259 §4 as every
 * mainstream parser reads it). Parsing it gives back `value`.
 */
export function spell (value: Json, choices: readonly number[], duplicates = true): string {
  const tape = new Tape(choices)
  const ws = () => tape.pick(3) === 0 ? (WHITESPACE[tape.pick(WHITESPACE.length)] as string) : ''
  const write = (node: Json): string => {
    if (node === null) return 'null'
    if (typeof node === 'boolean') return String(node)
    if (typeof node === 'number') return spellNumber(node, tape)
    if (typeof node === 'string') return spellString(node, tape)
    if (Array.isArray(node)) return `[${ws()}${node.map((item) => write(item)).join(`${ws()},${ws()}`)}${ws()}]`
    const members: string[] = []
    for (const key of Object.keys(node)) {
      const name = `${ws()}${spellString(key, tape)}${ws()}:${ws()}`
      if (duplicates && key !== '__proto__' && tape.pick(6) === 1) members.push(name + (DECOYS[tape.pick(DECOYS.length)] as string))
      members.push(name + write(node[key] as Json))
    }
    return `{${members.join(`${ws()},`)}${ws()}}`
  }
  return ws() + write(value) + ws()
}

// ---------------------------------------------------------------------------------------------
// Bodies from the wild: wrong types, unicode, huge numbers, nesting, prototype keys, bad bytes

const NUMBER_TEXTS = ['1e308', '1e309', '-1e309', '1E400', '-0', '0', '-0.0', '1.0000000000000001', '0.9999999999999999', '9007199254740991',
  '9007199254740992', '9007199254740993', '18446744073709551616', '123456789012345678901234567890', '4.9e-324', '2.5e-324',
  '1.7976931348623157e308', '0.1', '1e-7', '-1', '100e-2', '1.5e1']
const NOT_JSON = ['NaN', 'Infinity', '-Infinity', 'undefined', '01', '+1', '.5', '1.', '0x10', '1_000', "'x'", 'True', 'nul', '"\u0001"']

export interface RawBody {
  label: string
  body: string | Uint8Array
}

const raw = (label: string) => (body: string | Uint8Array): RawBody => ({ label, body })
const validText = fc.tuple(validPatch, spelling).map(([patch, choices]) => spell(patch, choices))

const deeplyNested = fc.tuple(fc.integer({ min: 10, max: 5000 }), fc.constantFrom('array', 'object', 'reference', 'text')).map(([depth, where]) => {
  switch (where) {
    case 'array': return `{"name":"x","extra":${'['.repeat(depth)}${']'.repeat(depth)}}`
    case 'object': return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`
    case 'reference': return `{"type":${'{"id":'.repeat(depth)}1${'}'.repeat(depth + 1)}`
    default: return `{"city":${'['.repeat(depth)}"x"${']'.repeat(depth)}}`
  }
})

const aroundTheLimit = fc.tuple(validText, fc.integer({ min: -3, max: 3 })).map(([body, offset]) =>
  body + ' '.repeat(Math.max(0, BODY_LIMIT_BYTES - Buffer.byteLength(body) + offset)))

const INVALID_UTF8 = [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xf4, 0x90, 0x80, 0x80]]
const badBytes = fc.tuple(validText, fc.constantFrom(...INVALID_UTF8)).map(([body, bytes]) => {
  const quote = body.lastIndexOf('"')
  const at = quote === -1 ? 1 : quote
  const text = Buffer.from(body, 'utf8')
  const cut = Buffer.byteLength(body.slice(0, at))
  return new Uint8Array(Buffer.concat([text.subarray(0, cut), Buffer.from(bytes), text.subarray(cut)]))
})

const poisoned = fc.tuple(validPatch, fc.constantFrom(
  '"__proto__":{"isAdmin":true}', '"__proto__":null', '"\\u005f_proto__":{}', '"constructor":{"prototype":{"x":1}}',
  '"constructor":{"prototype":null}', '"constructor":1', '"prototype":{}', '"type":{"id":1,"__proto__":{}}', '"country":{"__proto__":{"id":1}}'
)).map(([patch, member]) => {
  const inner = JSON.stringify(patch).slice(1, -1)
  return `{${member}${inner === '' ? '' : ','}${inner}}`
})

const duplicateKeys = fc.tuple(fc.constantFrom(...PATCH_FIELDS), fc.jsonValue({ maxDepth: 1 }), validPatch, fc.boolean()).map(([key, other, patch, otherFirst]) => {
  const inner = JSON.stringify(patch).slice(1, -1)
  const decoy = `${JSON.stringify(key)}:${JSON.stringify(other)}`
  return otherFirst ? `{${decoy},${inner}}` : `{${inner},${decoy}}`
})

const numbers = fc.tuple(fc.constantFrom(...NUMBER_TEXTS, ...NOT_JSON), fc.constantFrom('type', 'country', 'name', 'top')).map(([number, where]) => {
  if (where === 'top') return number
  return REF_FIELDS.includes(where) ? `{"${where}":{"id":${number}}}` : `{"${where}":${number}}`
})

const brokenText = fc.tuple(validText, fc.constantFrom('truncate', 'trailing comma', 'comment', 'garbage', 'single quotes', 'raw control', 'two values', 'bom'))
  .chain(([body, how]) => fc.nat({ max: Math.max(0, body.length - 1) }).map((cut) => {
    switch (how) {
      case 'truncate': return body.trimEnd().slice(0, cut)
      case 'trailing comma': return body.replace(/}\s*$/, ',}')
      case 'comment': return `/* c */${body}`
      case 'garbage': return `${body}x`
      case 'single quotes': return body.replaceAll('"', "'")
      case 'raw control': return '{"name":"a\u0001b"}'
      case 'two values': return `${body}${body}`
      default: return `\ufeff${body}`
    }
  }))

const overLong = fc.tuple(textField, fc.integer({ min: 256, max: 24_000 }), fc.constantFrom('a', 'é', '😀')).map(([field, length, char]) =>
  `{${JSON.stringify(field)}:"${char.repeat(length)}"}`)

/** Anything a client might send as a body, valid or not, as text or bytes. */
export const anyBody: fc.Arbitrary<RawBody> = fc.oneof(
  { weight: 4, arbitrary: validText.map(raw('valid')) },
  { weight: 4, arbitrary: fc.tuple(nearMiss, spelling).map(([miss, choices]) => raw(`near miss: ${miss.mistake.kind}`)(spell(miss.value, choices))) },
  { weight: 2, arbitrary: fc.jsonValue().map((value) => raw('any JSON')(JSON.stringify(value))) },
  { weight: 2, arbitrary: fc.dictionary(fc.oneof(fc.constantFrom(...PATCH_FIELDS), unknownKey), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 5 }).map((value) => raw('any object')(JSON.stringify(value))) },
  { weight: 1, arbitrary: deeplyNested.map(raw('deep nesting')) },
  { weight: 1, arbitrary: aroundTheLimit.map(raw('around 16 KiB')) },
  { weight: 1, arbitrary: overLong.map(raw('over-long string')) },
  { weight: 1, arbitrary: badBytes.map(raw('invalid UTF-8')) },
  { weight: 1, arbitrary: poisoned.map(raw('prototype keys')) },
  { weight: 2, arbitrary: duplicateKeys.map(raw('duplicate keys')) },
  { weight: 2, arbitrary: numbers.map(raw('number edge')) },
  { weight: 2, arbitrary: brokenText.map(raw('broken JSON')) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map(raw('any text')) }
)

// ---------------------------------------------------------------------------------------------
// Path segments

const canonicalId = fc.oneof(
  fc.constantFrom('1', '2', '3', '10', '999999999999999', '999999999999999999', '100000000000000000'),
  fc.bigInt({ min: 1n, max: 10n ** 18n - 1n }).map(String)
)

const percent = (text: string, upper: boolean) => [...Buffer.from(text, 'utf8')]
  .map((byte) => '%' + (upper ? byte.toString(16).toUpperCase() : byte.toString(16)).padStart(2, '0')).join('')

/** A canonical id with some of its digits percent-encoded: still that id. */
const encodedId = fc.tuple(canonicalId, fc.array(fc.boolean(), { minLength: 18, maxLength: 18 }), fc.boolean())
  .map(([id, mask, upper]) => [...id].map((digit, i) => mask[i] === true ? percent(digit, upper) : digit).join(''))

const UNICODE_DIGITS = ['٠', '١', '۱', '१', '১', '１', '¹', '₁', '𝟏', '߁', '᠑', 'Ⅰ', '①']
const ODD_PIECES = ['+', '-', '%2B', '%2b', '%2D', '%20', '%09', '%0A', '%0D', '%00', '%C2%A0', '%E2%80%8B', '%EF%BB%BF', '.', '..', '%2E',
  '%2F', '%2f', '%5C', '%3F', '%23', '%25', ';', ',', '~', '!', '$', '&', "'", '(', ')', '*', '=', ':', '@', '_', 'e', 'E', 'x', '0x',
  '1e3', '1.0', '%', '%1', '%zz', '%E0%A4', '%FF', '%C0%B1', 'null', 'NaN', 'Infinity', '-0', '0', '00', 'my']

const segmentPiece = fc.oneof(
  canonicalId,
  fc.tuple(fc.integer({ min: 1, max: 3 }), canonicalId).map(([zeros, id]) => '0'.repeat(zeros) + id),
  fc.bigInt({ min: 10n ** 17n, max: 10n ** 30n }).map(String),
  fc.constantFrom(...ODD_PIECES),
  fc.tuple(fc.constantFrom(...UNICODE_DIGITS), fc.boolean()).map(([digit, upper]) => percent(digit, upper)),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }).map(encodeURIComponent)
)

/** A path segment for org_id or contact_id: canonical ids, encoded ids, and many things that are no id. */
export const idSegment = fc.oneof(
  { weight: 3, arbitrary: canonicalId },
  { weight: 2, arbitrary: encodedId },
  { weight: 6, arbitrary: fc.array(segmentPiece, { minLength: 1, maxLength: 4 }).map((pieces) => pieces.join('')) },
  { weight: 1, arbitrary: fc.integer({ min: 60, max: 120 }).map((length) => '1'.repeat(length)) },
  { weight: 1, arbitrary: fc.constant('') }
)

/** A query string to append to the path (§4: never forwarded), or none. */
export const queryString = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  { weight: 2, arbitrary: fc.webQueryParameters().map((query) => `?${query}`) },
  { weight: 1, arbitrary: fc.constantFrom('?', '?org_id=2', '?contact_id=3&org_id=2', '?__proto__[admin]=1', '?a=%zz', '?%00', '?x=' + '9'.repeat(300)) }
)

// ---------------------------------------------------------------------------------------------
// Content types

const MEDIA_TYPES = ['application/json', 'application/merge-patch+json', 'text/plain', 'text/json', 'application/x-www-form-urlencoded',
  'multipart/form-data', 'application/jsonp', 'application/json-patch+json', 'application/vnd.api+json', 'application/ld+json',
  'application/problem+json', 'application/*', '*/*', 'json', 'application', '', 'application/merge-patch', 'application/xml',
  'text/html', 'application/octet-stream', 'application /json', 'application/ json', 'application/jsonx', 'xapplication/json',
  'application\\json', 'application/json,text/plain', 'application/json\u00a0', 'application/json+x', 'application/json/x']
const PARAMETERS = ['; charset=utf-8', ';charset=UTF-8', '; charset="utf-8"', '; charset=latin1', '; charset=utf-16', '; boundary=x', '; q=1',
  ';', ';;', '; =', '; a', '; profile="https://example.com/p"', ' ;charset=utf-8']

export const contentTypeLine = fc.tuple(
  fc.oneof(fc.constantFrom('application/json', 'application/merge-patch+json'), fc.constantFrom(...MEDIA_TYPES)).chain((type) => fc.mixedCase(fc.constant(type))),
  fc.constantFrom('', ' ', '\t', '  '),
  fc.array(fc.constantFrom(...PARAMETERS), { maxLength: 2 }),
  fc.constantFrom('', ' ', '\t')
).map(([type, before, parameters, after]) => before + type + parameters.join('') + after)

export const contentHeaders = fc.record({
  contentTypes: fc.oneof(
    { weight: 8, arbitrary: contentTypeLine.map((line) => [line]) },
    { weight: 1, arbitrary: fc.constant<string[]>([]) },
    { weight: 1, arbitrary: fc.array(contentTypeLine, { minLength: 2, maxLength: 3 }) }
  ),
  contentEncodings: fc.oneof(
    { weight: 6, arbitrary: fc.constant<string[]>([]) },
    { weight: 2, arbitrary: fc.constantFrom('identity', 'Identity', 'gzip', 'br', 'deflate', 'GZIP', 'identity, gzip', 'x-custom').map((line): string[] => [line]) }
  )
})

// ---------------------------------------------------------------------------------------------
// Other request headers

/** How the session travels; the test turns it into headers with real tokens. */
export type Credentials =
  | { kind: 'bearer', scheme: string, spaces: number }
  | { kind: 'malformed authorization', header: 'tab' | 'basic' | 'scheme only' | 'token only' | 'other scheme' | 'bad signature' | 'two tokens' }
  | { kind: 'cookie', csrf: string[] }
  | { kind: 'bearer and cookie' }
  | { kind: 'bearer and empty cookie' }
  | { kind: 'empty cookie' }
  | { kind: 'none' }
  | { kind: 'two authorization headers', same: boolean }

export const credentials: fc.Arbitrary<Credentials> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('bearer' as const), scheme: fc.mixedCase(fc.constant('bearer')), spaces: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('malformed authorization' as const), header: fc.constantFrom('tab' as const, 'basic' as const, 'scheme only' as const, 'token only' as const, 'other scheme' as const, 'bad signature' as const, 'two tokens' as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('cookie' as const), csrf: fc.oneof(fc.constant<string[]>(['1']), fc.constant<string[]>([]), fc.constantFrom<string[]>(['0'], ['true'], ['1', '1'], ['yes'], ['01'], [''])) }) },
  { weight: 1, arbitrary: fc.constantFrom({ kind: 'bearer and cookie' as const }, { kind: 'bearer and empty cookie' as const }, { kind: 'empty cookie' as const }, { kind: 'none' as const }) }
)

/** Several Authorization lines: Node keeps the first, so which session acts depends on the reader. */
export const duplicateAuthorization = fc.record({ kind: fc.constant('two authorization headers' as const), same: fc.boolean() })

export const requestIds = fc.oneof(
  { weight: 2, arbitrary: fc.constant<string[]>([]) },
  { weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/).map((id) => [id]) },
  { weight: 2, arbitrary: fc.constantFrom('', 'a b', 'x'.repeat(65), 'ä', '../etc', 'id\t1', 'a,b', '<script>', '%41', 'über-id').map((id) => [id]) },
  { weight: 1, arbitrary: fc.tuple(fc.stringMatching(/^[a-z0-9]{1,8}$/), fc.stringMatching(/^[a-z0-9]{1,8}$/)).map(([a, b]) => [a, b]) }
)

export const preferLines = fc.oneof(
  { weight: 2, arbitrary: fc.constant<string[]>([]) },
  {
    weight: 4,
    arbitrary: fc.array(fc.constantFrom('return=representation', 'RETURN=representation', 'Return = representation', 'return=minimal',
      'respond-async', 'respond-async, return=representation', 'return=representation; x=1', 'wait=10', 'return=minimal, return=representation',
      'return=representation, return=minimal', 'handling=strict', 'return', 'return=', 'returnrepresentation', 'return-representation', ''), { minLength: 1, maxLength: 2 })
  }
)

const hex = (length: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length })
export const traceparents = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.tuple(hex(32), hex(16), hex(2)).map(([trace, parent, flags]) => `00-${trace}-${parent}-${flags}`) },
  { weight: 1, arbitrary: fc.tuple(hex(32), hex(16)).map(([trace, parent]) => `00-${trace.toUpperCase()}-${parent}-01`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(`00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`, `00-${'1'.repeat(32)}-${'0'.repeat(16)}-01`,
    `01-${'1'.repeat(32)}-${'1'.repeat(16)}-01`, `ff-${'1'.repeat(32)}-${'1'.repeat(16)}-01`, `00-${'1'.repeat(32)}-${'1'.repeat(16)}-01-extra`,
    `00-${'1'.repeat(31)}-${'1'.repeat(16)}-01`, 'garbage', '', `00_${'1'.repeat(32)}_${'1'.repeat(16)}_01`)
  }
)

const EXTRA_HEADERS: Array<[string, string]> = [['origin', 'https://evil.example'], ['referer', 'https://frontend.example/x'],
  ['x-forwarded-for', '203.0.113.9'], ['x-forwarded-host', 'evil.example'], ['x-forwarded-proto', 'http'], ['forwarded', 'for=192.0.2.1'],
  ['x-real-ip', '192.0.2.1'], ['accept', 'text/html'], ['accept', 'application/problem+json, */*'], ['accept-language', 'de-DE'],
  ['user-agent', 'frontend/9.9'], ['x-http-method-override', 'DELETE'], ['x-original-url', '/admin'], ['cache-control', 'no-cache'],
  ['if-unmodified-since', 'Sat, 01 Jan 2000 00:00:00 GMT'], ['via', '1.1 proxy'], ['proxy-authorization', 'Basic eDp5'], ['x-api-key', 'k-123'], ['x-csrf', '1'],
  ['x-emnify-token', 'eyJhbGciOiJub25lIn0.e30.'], ['accept-encoding', 'gzip, br'], ['dnt', '1'], ['x-custom-secret', 'do-not-forward']]

// undici refuses header values outside visible ASCII, space and obs-text, so that is what a client can put on the wire with it.
const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0xfe }).map((code) => String.fromCharCode(code === 0x7f ? 0xff : code)), maxLength: 40 })
  .map((value) => value.trim())

export const extraHeaders = fc.array(fc.oneof(
  fc.constantFrom(...EXTRA_HEADERS),
  fc.tuple(fc.stringMatching(/^x-[a-z0-9-]{1,16}$/), headerValue),
  fc.tuple(fc.constant('cookie'), fc.constantFrom('theme=dark', 'session=other', 'a=1; b=2', '__Host-sessionx=1', '__host-session=1'))
), { maxLength: 5 })

export const headerCase = fc.record({
  credentials,
  requestIds,
  prefer: preferLines,
  traceparent: traceparents,
  extra: extraHeaders
})
export type HeaderCase = typeof headerCase extends fc.Arbitrary<infer T> ? T : never
