import { Type, type Static } from 'typebox'

/** Decimal ids as emnify parses them (Long): no sign, no leading zero, at most 18 digits. */
export const ID_PATTERN = '^[1-9][0-9]{0,17}$'
export const ID_REGEX = new RegExp(ID_PATTERN)

export const ContactParamsSchema = Type.Object({
  org_id: Type.String({ pattern: ID_PATTERN, description: 'emnify organisation id', examples: ['1'] }),
  contact_id: Type.String({ pattern: ID_PATTERN, description: 'emnify contact id', examples: ['2'] })
}, { additionalProperties: false })

const Ref = (description: string) => Type.Object({
  id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })
}, { additionalProperties: false, description })

const Text = (description: string, maxLength = 255) => Type.Optional(Type.String({ maxLength, description }))

export const ContactPatchSchema = Type.Object({
  type: Type.Optional(Ref('contact type (1 Commercial … 6 Invoice address); emnify may refuse to change it')),
  name: Text('contact name'),
  title: Text('job title'),
  department: Text('department'),
  street: Text('street and number'),
  zipcode: Text('postal code'),
  city: Text('city'),
  country: Type.Optional(Ref('country')),
  email: Type.Optional(Type.String({ format: 'email', maxLength: 254, description: 'e-mail address' })),
  phone: Text('phone number'),
  mobile: Text('mobile number'),
  state: Text('state or region'),
  secondary_address: Text('additional address line'),
  purchase_order_number: Text('purchase order number (invoice contacts)', 50)
}, {
  additionalProperties: false,
  minProperties: 1,
  description: 'Partial update of a contact: at least one property, no others.',
  examples: [{ name: 'Ada Lovelace', email: 'ada@example.com', country: { id: 74 } }]
})
export type ContactPatch = Static<typeof ContactPatchSchema>

const Named = Type.Object({ id: Type.Integer(), name: Type.Optional(Type.String()) })
const Typed = Type.Object({ id: Type.Integer(), description: Type.Optional(Type.String()) })
const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]))

/** The contact as emnify returns it, limited to documented fields. */
export const ContactSchema = Type.Object({
  id: Type.Integer(),
  organisation: Type.Optional(Named),
  type: Type.Optional(Typed),
  name: Nullable(Type.String()),
  title: Nullable(Type.String()),
  department: Nullable(Type.String()),
  street: Nullable(Type.String()),
  zipcode: Nullable(Type.String()),
  city: Nullable(Type.String()),
  country: Type.Optional(Type.Union([Named, Type.Null()])),
  email: Nullable(Type.String()),
  phone: Nullable(Type.String()),
  mobile: Nullable(Type.String()),
  state: Nullable(Type.String()),
  secondary_address: Nullable(Type.String()),
  purchase_order_number: Nullable(Type.String())
}, { description: 'The contact after the change, as read back from emnify' })
