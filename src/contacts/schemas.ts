import { Type, type Static, type TSchema } from 'typebox'

/** Decimal ids as emnify parses them (Long): no sign, no leading zero, at most 18 digits. */
export const ID_PATTERN = '^[1-9][0-9]{0,17}$'
export const ID_REGEX = new RegExp(ID_PATTERN)

const Id = (description: string) => Type.String({ pattern: ID_PATTERN, description, examples: ['1'] })

export const OrganisationParamsSchema = Type.Object({ org_id: Id('emnify organisation id') }, { additionalProperties: false })
export const ContactParamsSchema = Type.Object({
  org_id: Id('emnify organisation id'),
  contact_id: Type.String({ pattern: ID_PATTERN, description: 'emnify contact id', examples: ['2'] })
}, { additionalProperties: false })

const Ref = (description: string) => Type.Object({
  id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })
}, { additionalProperties: false, description })

/** A string that `null` clears (RFC 7396); `type: [string, null]` keeps validation errors to one per field. */
const Clearable = (description: string, maxLength = 255, format?: string) => Type.Optional(Type.Unsafe<string | null>({
  type: ['string', 'null'],
  maxLength,
  ...(format === undefined ? {} : { format }),
  description: `${description}; \`null\` clears it`
}))

const contactFields = {
  name: Clearable('contact name'),
  title: Clearable('job title'),
  department: Clearable('department'),
  street: Clearable('street and number'),
  zipcode: Clearable('postal code'),
  city: Clearable('city'),
  country: Type.Optional(Ref('country (ids from GET /api/v1/country)')),
  email: Clearable('e-mail address', 254, 'email'),
  phone: Clearable('phone number'),
  mobile: Clearable('mobile number'),
  state: Clearable('state or region'),
  secondary_address: Clearable('additional address line'),
  purchase_order_number: Clearable('purchase order number (invoice contacts, type 6)', 50)
}

/** The string fields of a contact, in one list for projection and audit. */
export const TEXT_FIELDS = [
  'name', 'title', 'department', 'street', 'zipcode', 'city', 'email', 'phone', 'mobile', 'state',
  'secondary_address', 'purchase_order_number'
] as const

export const ContactPatchSchema = Type.Object({
  type: Type.Optional(Ref('contact type (1 Commercial … 6 Invoice address); emnify may refuse to change it')),
  ...contactFields
}, {
  additionalProperties: false,
  minProperties: 1,
  description: 'Partial update of a contact: at least one property, no others. A string property set to `null` is cleared.',
  examples: [{ name: 'Ada Lovelace', email: 'ada@example.com', country: { id: 74 } }]
})
export type ContactPatch = Static<typeof ContactPatchSchema>

/** The contact type of invoice contacts, the only ones with a purchase order number. */
export const INVOICE_TYPE_ID = 6

export const ContactCreateSchema = Type.Object({
  type: Ref('contact type: 1 Commercial, 2 Technical, 3 Finance, 4 Shipping address, 5 Company address, 6 Invoice address'),
  ...contactFields
}, {
  additionalProperties: false,
  description: 'A new contact: `type` is required; `purchase_order_number` only with type 6.',
  examples: [{ type: { id: 2 }, name: 'Grace Hopper', email: 'grace@example.com', country: { id: 74 } }]
})
export type ContactCreate = Static<typeof ContactCreateSchema>

const Named = Type.Object({ id: Type.Integer(), name: Type.Optional(Type.String()) }, { additionalProperties: false })
const Typed = Type.Object({ id: Type.Integer(), description: Type.Optional(Type.String()) }, { additionalProperties: false })
const Text = () => Type.Optional(Type.Union([Type.String(), Type.Null()]))

/** The contact as the BFF answers it: emnify's documented fields only. */
export const ContactSchema = Type.Object({
  id: Type.Integer(),
  type: Type.Optional(Typed),
  organisation: Type.Optional(Named),
  country: Type.Optional(Named),
  ...Object.fromEntries(TEXT_FIELDS.map((field) => [field, Text()])) as Record<typeof TEXT_FIELDS[number], ReturnType<typeof Text>>
}, { additionalProperties: false, description: 'An organisation contact, limited to the fields emnify documents' })
export type Contact = Static<typeof ContactSchema>

export const ContactListSchema = Type.Array(ContactSchema, { description: 'The organisation\'s contacts' })

export const CountrySchema = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  iso_code: Type.Optional(Type.String()),
  country_code: Type.Optional(Type.String())
}, { additionalProperties: false })
export const CountryListSchema = Type.Array(CountrySchema, { description: 'Every country emnify knows; use `id` in contact bodies' })

export const CreatedSchema = Type.Union([ContactSchema, Type.Object({ id: Type.Integer() }, { additionalProperties: false }), Type.Object({}, { additionalProperties: false })], {
  description: 'The created contact as read back; `{ "id" }` when that read failed; `{}` when emnify did not say which id it created'
}) as TSchema
