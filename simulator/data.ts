// Contact data of the simulated emnify API: reference tables, seed, validation of writes.
import { isRecord } from './json.ts'

export interface IdName {
  id: number
  name: string
}

export interface ContactType {
  id: number
  description: string
}

// Order taken from the emnify docs; only 6 = Invoice address is confirmed as an id.
export const CONTACT_TYPES: ReadonlyMap<number, string> = new Map([
  [1, 'Commercial'],
  [2, 'Technical'],
  [3, 'Finance'],
  [4, 'Shipping address'],
  [5, 'Company address'],
  [6, 'Invoice address']
])

export interface Country {
  id: number
  name: string
  /** The international dialling code, e.g. "49". */
  country_code: string
  mcc: string
  /** ISO 3166-1 alpha-2, lower case as in emnify's examples. */
  iso_code: string
}

// A slice of emnify's country table; ids follow the example where Germany is 74, so they are not 1..n.
// The last entries are networks without a country, which `?geographic=true` leaves out.
const COUNTRY_ROWS: ReadonlyArray<readonly [number, string, string, string, string, boolean]> = [
  [14, 'Austria', '43', '232', 'at', true],
  [21, 'Belgium', '32', '206', 'be', true],
  [30, 'Brazil', '55', '724', 'br', true],
  [38, 'Canada', '1', '302', 'ca', true],
  [44, 'China', '86', '460', 'cn', true],
  [57, 'Czech Republic', '420', '230', 'cz', true],
  [58, 'Denmark', '45', '238', 'dk', true],
  [72, 'Finland', '358', '244', 'fi', true],
  [73, 'France', '33', '208', 'fr', true],
  [74, 'Germany', '49', '262', 'de', true],
  [84, 'Greece', '30', '202', 'gr', true],
  [99, 'India', '91', '404', 'in', true],
  [103, 'Ireland', '353', '272', 'ie', true],
  [105, 'Italy', '39', '222', 'it', true],
  [107, 'Japan', '81', '440', 'jp', true],
  [138, 'Mexico', '52', '334', 'mx', true],
  [153, 'Netherlands', '31', '204', 'nl', true],
  [163, 'Norway', '47', '242', 'no', true],
  [173, 'Poland', '48', '260', 'pl', true],
  [174, 'Portugal', '351', '268', 'pt', true],
  [195, 'Spain', '34', '214', 'es', true],
  [202, 'Sweden', '46', '240', 'se', true],
  [204, 'Switzerland', '41', '228', 'ch', true],
  [205, 'United Kingdom', '44', '234', 'gb', true],
  [222, 'United States', '1', '310', 'us', true],
  [247, 'International Networks', '882', '901', 'xn', false],
  [248, 'Maritime Networks', '883', '901', 'xm', false]
]

export const COUNTRIES: ReadonlyMap<number, Country> = new Map(
  COUNTRY_ROWS.map(([id, name, countryCode, mcc, isoCode]) => [id, { id, name, country_code: countryCode, mcc, iso_code: isoCode }])
)

const GEOGRAPHIC: ReadonlySet<number> = new Set(COUNTRY_ROWS.filter((row) => row[5]).map(([id]) => id))

/** `GET /api/v1/country`: all countries, or only the (non-)geographic ones when `geographic` is given. */
export function listCountries (geographic?: boolean): Country[] {
  const all = [...COUNTRIES.values()]
  return (geographic === undefined ? all : all.filter((c) => GEOGRAPHIC.has(c.id) === geographic)).map((c) => ({ ...c }))
}

export const STRING_FIELDS = [
  'name',
  'title',
  'department',
  'street',
  'zipcode',
  'city',
  'email',
  'phone',
  'mobile',
  'state',
  'secondary_address',
  'purchase_order_number'
] as const

export type StringField = typeof STRING_FIELDS[number]

export type ContactStrings = Record<StringField, string | null>

export interface StoredContact extends ContactStrings {
  id: number
  type: ContactType
  country: IdName | null
  /** ISO time; only shown with the `extraFields` switch, as a field emnify might add. */
  createdAt: string
}

/** The GET shape of a contact, as emnify returns it. */
export interface ContactView extends ContactStrings {
  id: number
  organisation: IdName
  type: ContactType
  country: IdName | null
}

export interface Organisation {
  id: number
  name: string
  contacts: Map<string, StoredContact>
}

/** Fields a PATCH or POST may change, already validated and resolved. */
export interface ContactChanges extends Partial<ContactStrings> {
  type?: ContactType
  country?: IdName
}

export type ValidationResult =
  | { ok: true, changes: ContactChanges }
  | { ok: false, messages: string[] }

export const PURCHASE_ORDER_NUMBER_MAX = 50

// Deliberately simple: one "@", no whitespace, a dot in the domain — what bean validation rejects in practice.
const EMAIL = /^[^\s@]+@[^\s@.]+(?:\.[^\s@.]+)+$/

function blankContact (id: number, type: ContactType, createdAt: string): StoredContact {
  return {
    id,
    type,
    createdAt,
    country: null,
    name: null,
    title: null,
    department: null,
    street: null,
    zipcode: null,
    city: null,
    email: null,
    phone: null,
    mobile: null,
    state: null,
    secondary_address: null,
    purchase_order_number: null
  }
}

// Seeds only use ids present in the tables above, so the lookups cannot miss.
function contactType (id: number): ContactType {
  return { id, description: CONTACT_TYPES.get(id) as string }
}

function country (id: number): IdName {
  return { id, name: (COUNTRIES.get(id) as Country).name }
}

const SEEDED_AT = '2024-03-01T09:00:00.000Z'

function seedContact (id: number, typeId: number, countryId: number, fields: Partial<ContactStrings>): StoredContact {
  return { ...blankContact(id, contactType(typeId), SEEDED_AT), country: country(countryId), ...fields }
}

export function seedOrganisations (): Map<string, Organisation> {
  const demo: Organisation = {
    id: 1,
    name: 'Demo Org',
    contacts: new Map([
      ['1', seedContact(1, 1, 74, {
        name: 'Ada Lovelace',
        title: 'Head of Partnerships',
        department: 'Sales',
        street: 'Friedrichstraße 100',
        zipcode: '10117',
        city: 'Berlin',
        email: 'ada.lovelace@demo-org.example',
        phone: '+49 30 1234567',
        mobile: '+49 171 1234567',
        state: 'Berlin'
      })],
      ['2', seedContact(2, 2, 205, {
        name: 'Grace Hopper',
        title: 'IoT Engineer',
        department: 'Engineering',
        street: '1 Example Street',
        zipcode: 'EC1A 1BB',
        city: 'London',
        email: 'grace.hopper@demo-org.example',
        phone: '+44 20 7946 0000',
        mobile: '+44 7700 900000',
        secondary_address: 'Floor 3'
      })],
      ['3', seedContact(3, 6, 74, {
        name: 'Accounts Payable',
        department: 'Finance',
        street: 'Rechnungsweg 7',
        zipcode: '20095',
        city: 'Hamburg',
        email: 'invoices@demo-org.example',
        phone: '+49 40 7654321',
        state: 'Hamburg',
        purchase_order_number: 'PO-2024-0001'
      })]
    ])
  }
  const second: Organisation = {
    id: 2,
    name: 'Second Org',
    contacts: new Map([
      ['10', seedContact(10, 1, 222, {
        name: 'Katherine Johnson',
        title: 'Procurement Lead',
        department: 'Operations',
        street: '500 Market Street',
        zipcode: '94105',
        city: 'San Francisco',
        email: 'k.johnson@second-org.example',
        phone: '+1 415 555 0100',
        mobile: '+1 415 555 0199',
        state: 'CA'
      })]
    ])
  }
  return new Map([['1', demo], ['2', second]])
}

export function viewContact (org: Organisation, contact: StoredContact): ContactView {
  // Key order follows emnify's documented GET shape, which keeps recorded JSON easy to compare by eye.
  return {
    id: contact.id,
    organisation: { id: org.id, name: org.name },
    type: { ...contact.type },
    name: contact.name,
    title: contact.title,
    department: contact.department,
    street: contact.street,
    zipcode: contact.zipcode,
    city: contact.city,
    country: contact.country === null ? null : { ...contact.country },
    email: contact.email,
    phone: contact.phone,
    mobile: contact.mobile,
    state: contact.state,
    secondary_address: contact.secondary_address,
    purchase_order_number: contact.purchase_order_number
  }
}

/** A value only the `extraFields` switch produces, so a test can prove the BFF never passes such fields on. */
export const EXTRA_FIELD_MARKER = 'sim-internal-ref'

/** The contact with fields emnify might add one day, at the top level and inside its references. */
export function viewContactWithExtras (org: Organisation, contact: StoredContact): Record<string, unknown> {
  const view = viewContact(org, contact)
  const ref = (what: string): string => `${EXTRA_FIELD_MARKER}-${what}`
  return {
    ...view,
    organisation: { ...view.organisation, internal_ref: ref(`org-${org.id}`) },
    type: { ...view.type, internal_ref: ref(`type-${view.type.id}`) },
    country: view.country === null ? null : { ...view.country, internal_ref: ref(`country-${view.country.id}`) },
    created_at: contact.createdAt,
    internal_ref: ref(`contact-${contact.id}`)
  }
}

/** The country with fields emnify might add one day. */
export function countryWithExtras (country: Country): Record<string, unknown> {
  return { ...country, currency: 'EUR', internal_ref: `${EXTRA_FIELD_MARKER}-country-${country.id}` }
}

export function newContact (id: number, changes: ContactChanges & { type: ContactType }, createdAt: string): StoredContact {
  return applyChanges(blankContact(id, changes.type, createdAt), changes)
}

export function applyChanges (contact: StoredContact, changes: ContactChanges): StoredContact {
  return { ...contact, ...changes }
}

function referenceId (value: unknown): number | undefined {
  if (!isRecord(value)) return undefined
  const id = value.id
  return typeof id === 'number' && Number.isSafeInteger(id) ? id : undefined
}

/**
 * Validates a PATCH/POST body the way emnify does: unknown properties are ignored,
 * known ones are type-checked and references resolved; every problem is reported at once.
 */
export function validateContactBody (body: Record<string, unknown>): ValidationResult {
  const messages: string[] = []
  const changes: ContactChanges = {}

  for (const field of STRING_FIELDS) {
    if (!(field in body)) continue
    const value = body[field]
    if (value === null) {
      changes[field] = null
      continue
    }
    if (typeof value !== 'string') {
      messages.push(`${field}: must be a string`)
      continue
    }
    if (field === 'email' && !EMAIL.test(value)) {
      messages.push('email: must be a well-formed email address')
      continue
    }
    if (field === 'purchase_order_number' && value.length > PURCHASE_ORDER_NUMBER_MAX) {
      messages.push(`purchase_order_number: size must be between 0 and ${PURCHASE_ORDER_NUMBER_MAX}`)
      continue
    }
    changes[field] = value
  }

  if ('type' in body) {
    const id = referenceId(body.type)
    if (id === undefined) messages.push('type: must be an object with a numeric id')
    else if (!CONTACT_TYPES.has(id)) messages.push(`type: unknown contact type id ${id}`)
    else changes.type = contactType(id)
  }

  if ('country' in body) {
    const id = referenceId(body.country)
    if (id === undefined) messages.push('country: must be an object with a numeric id')
    else if (!COUNTRIES.has(id)) messages.push(`country: unknown country id ${id}`)
    else changes.country = country(id)
  }

  return messages.length > 0 ? { ok: false, messages } : { ok: true, changes }
}

export type CreateResult =
  | { ok: true, changes: ContactChanges & { type: ContactType } }
  | { ok: false, messages: string[] }

// Server-assigned on create; emnify's docs say never to send them.
const SERVER_FIELDS = ['id', 'organisation_id'] as const

/** Validates a POST body: as a PATCH, plus `type` required and server-assigned fields refused. */
export function validateNewContact (body: Record<string, unknown>): CreateResult {
  const result = validateContactBody(body)
  const messages = result.ok ? [] : [...result.messages]
  if (!('type' in body)) messages.unshift('type: may not be null')
  for (const field of SERVER_FIELDS) {
    if (field in body) messages.push(`${field}: must not be set when creating a contact`)
  }
  if (!result.ok || result.changes.type === undefined || messages.length > 0) return { ok: false, messages }
  return { ok: true, changes: { ...result.changes, type: result.changes.type } }
}
