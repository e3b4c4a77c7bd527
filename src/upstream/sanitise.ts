import type { ProblemField } from '../errors/problems.ts'

/**
 * What of an upstream error body may reach a frontend. An allow-list, because a deny-list of
 * shapes always misses one: only emnify's validation messages about a known contact field pass,
 * each at the pointer of that field, and only when their text holds nothing that could be a
 * credential, a host, a path, a stack frame or a configured secret. Everything else is dropped.
 */

/** The contact fields a message may name, with the spellings emnify (Java) may use for them. */
const FIELDS = new Map<string, string>([
  ...['type', 'country', 'name', 'title', 'department', 'street', 'zipcode', 'city', 'email', 'phone', 'mobile', 'state', 'secondary_address', 'purchase_order_number']
    .map((field) => [field, field] as [string, string]),
  ['secondaryaddress', 'secondary_address'],
  ['purchaseordernumber', 'purchase_order_number'],
  ['zip', 'zipcode'],
  ['zip_code', 'zipcode']
])
/** The only sub-field a message may name. */
const OBJECT_FIELDS = new Set(['type', 'country'])

/** emnify's summaries of a rejected request, shown as the problem's detail. */
const SUMMARIES = new Set(['validation failed', 'input validation failed', 'bad request', 'invalid input', 'invalid request', 'invalid contact', 'duplicated', 'conflict'])

const MAX_INPUT = 1024
const MAX_MESSAGE = 300
const MAX_ERRORS = 20
/** Shown at a field whose upstream text could not be shown safely. */
export const UNSHOWN = 'emnify rejected this value'

// "country: …", "country.id must …", "Country does not exist", "secondaryAddress is too long".
const FIELD_PREFIX = /^([A-Za-z_]{1,40})(?:\.([A-Za-z_]{1,20}))?(?::\s*|\s+)(\S.*)$/
// Letters, digits, spaces and sentence punctuation only: no / \ @ # $ & * { } | ~ ^ ` and no controls.
const SAFE_CHARACTERS = /^[\p{L}\p{N} .,;:'"()[\]<>=!?%+_-]+$/u
const UNSAFE_SHAPES: readonly RegExp[] = [
  /\S:\S/, // host:port, user:password, scheme:, C:, Class::method
  /[\p{L}\p{N}_-]\.[\p{L}_]/u, // host names, packages, file names (db-1.emnify.de, com.x.Y, prod.yml)
  /\d\.\d+\.\d/, // addresses and versions (10.1.2.3)
  /[\p{L}\p{N}_-]{24,}/u, // a long unbroken run: a key, a token, a hash
  /(?=[A-Za-z_-]*\d)(?=[\d_-]*[A-Za-z])[A-Za-z\d_-]{8,}/, // letters and digits mixed: an id, a key, a hex string
  /\d{19,}/, // longer than any id
  /\b(?:bearer|basic|token|secret|passwor[dt]|passwd|pwd|credentials?|api[ _-]?key|auth\w*|jdbc|sql\w*|exception|stack|trace(?:back)?|errno|econn\w+|null ?pointer|localhost|root)\b/i
]

/** The field a message is about: its pointer into the request body, or undefined. */
function fieldPointer (name: string | undefined, sub?: string): string | undefined {
  if (name === undefined) return undefined
  const field = FIELDS.get(name.toLowerCase())
  if (field === undefined) return undefined
  if (sub === undefined) return `/${field}`
  return OBJECT_FIELDS.has(field) && sub.toLowerCase() === 'id' ? `/${field}/id` : undefined
}

/** Whether text can be shown without revealing anything but what the user typed and emnify's rule. */
function isSafeText (text: string, secrets: readonly string[]): boolean {
  if (!SAFE_CHARACTERS.test(text)) return false
  if (UNSAFE_SHAPES.some((shape) => shape.test(text))) return false
  const lower = text.toLowerCase()
  return !secrets.some((secret) => secret.length >= 4 && lower.includes(secret.toLowerCase()))
}

/** One line, whitespace collapsed; undefined when it is no string or too long to be a validation message. */
function normalise (value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > MAX_INPUT) return undefined
  // eslint-disable-next-line no-control-regex -- removing control characters is the point
  const text = value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\s]+/g, ' ').trim()
  return text === '' || text.length > MAX_MESSAGE ? undefined : text
}

/**
 * One upstream message as a problem field: at its field's pointer, with the message when it is
 * safe to show and a fixed text when it is not; undefined when it names no known field.
 * `field` is a field name emnify sent next to the message, if any.
 */
export function fieldMessage (message: unknown, field: unknown, secrets: readonly string[] = []): ProblemField | undefined {
  const text = normalise(message)
  const match = text === undefined ? null : FIELD_PREFIX.exec(text)
  const named = match === null ? undefined : fieldPointer(match[1], match[2])
  const pointer = named ?? (typeof field === 'string' ? fieldPointer(...field.split('.', 2) as [string, string | undefined]) : undefined)
  if (pointer === undefined) return undefined
  // The field's own name is from the fixed list; what follows it must pass on its own.
  const rest = named === undefined ? text : match?.[3]
  const safe = text !== undefined && rest !== undefined && isSafeText(rest, secrets)
  return { pointer, detail: safe ? text : UNSHOWN, in: 'upstream' }
}

/** A summary line emnify puts above its field messages, when it is one of the known ones. */
export function summaryMessage (message: unknown): string | undefined {
  const text = normalise(message)
  return text !== undefined && SUMMARIES.has(text.toLowerCase().replace(/\.$/, '')) ? text : undefined
}

export interface UpstreamMessages {
  /** A known summary, or the first field message that is safe to show. */
  detail?: string
  errors: ProblemField[]
}

/**
 * What an upstream error body may show: emnify's `{message, errors: [{message, field?}]}`, the
 * gateway's `{message}`, or anything else (then nothing). `secrets` are configured values that
 * must never be echoed (the application token, the session secret).
 */
export function upstreamMessages (body: Buffer, secrets: readonly string[] = []): UpstreamMessages {
  if (body.length === 0 || body.length > 256 * 1024) return { errors: [] }
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return { errors: [] }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { errors: [] }
  const record = parsed as Record<string, unknown>
  const errors: ProblemField[] = []
  const top = fieldMessage(record.message, record.field, secrets)
  if (top !== undefined) errors.push(top)
  if (Array.isArray(record.errors)) {
    for (const item of record.errors.slice(0, MAX_ERRORS)) {
      const entry: Record<string, unknown> = typeof item === 'object' && item !== null ? item as Record<string, unknown> : { message: item }
      const field = fieldMessage(entry.message, entry.field ?? entry.property ?? entry.path, secrets)
      if (field !== undefined && !errors.some((known) => known.pointer === field.pointer && known.detail === field.detail)) errors.push(field)
    }
  }
  const detail = summaryMessage(record.message) ?? errors.find((field) => field.detail !== UNSHOWN)?.detail
  return detail === undefined ? { errors } : { detail, errors }
}
