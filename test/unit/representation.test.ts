// The BFF's own representation of emnify answers, and the validators it puts on them.
import t from 'tap'
import { Value } from 'typebox/value'
import { isProblem } from '../../src/errors/problems.ts'
import {
  matchesIfMatch, noneMatch, parseUpstreamJson, represent, toContact, toContactList, toCountryList
} from '../../src/contacts/representation.ts'
import { ContactSchema, CountryListSchema } from '../../src/contacts/schemas.ts'

const EMNIFY_CONTACT = {
  id: 7,
  organisation: { id: 1, name: 'Demo Org', internal_ref: 'x' },
  type: { id: 6, description: 'Invoice address', internal_ref: 'y' },
  name: 'Ada',
  title: null,
  department: 'Sales',
  street: 'Street 1',
  zipcode: '10117',
  city: 'Berlin',
  country: { id: 74, name: 'Germany', mcc: '262' },
  email: 'ada@example.org',
  phone: '+49',
  mobile: null,
  state: 'Berlin',
  secondary_address: null,
  purchase_order_number: 'PO-1',
  created_at: '2024-01-01T00:00:00Z',
  internal_ref: 'contact-7'
}

const garbled = (fn: () => unknown) => {
  try {
    fn()
  } catch (error) {
    return isProblem(error) && error.code === 'UPSTREAM_ERROR' && error.status === 502
  }
  return false
}

t.test('toContact keeps the documented fields and drops what emnify adds, at every level', async (t) => {
  const contact = toContact(EMNIFY_CONTACT) as Record<string, unknown>
  t.notOk('created_at' in contact || 'internal_ref' in contact)
  t.same(contact.organisation, { id: 1, name: 'Demo Org' })
  t.same(contact.type, { id: 6, description: 'Invoice address' })
  t.same(contact.country, { id: 74, name: 'Germany' })
  t.equal(contact.title, null, 'a null string stays null')
  t.ok(Value.Check(ContactSchema, contact), 'the answer fits the documented response schema')
})

t.test('toContact leaves out absent and null references and absent strings', async (t) => {
  t.same(toContact({ id: 3, country: null, type: undefined }), { id: 3 })
  t.same(toContact({ id: 3, organisation: { id: 2 } }), { id: 3, organisation: { id: 2 } })
  t.same(toContact({ id: 3, type: { id: 2, description: null } }), { id: 3, type: { id: 2 } })
})

t.test('toContact refuses anything not of the documented shape as UPSTREAM_ERROR', async (t) => {
  const bad: unknown[] = [
    null, [], 'x', 7, {}, { id: '7' }, { id: 0 }, { id: -1 }, { id: 1.5 }, { id: 2 ** 53 }, { id: 7, name: 1 }, { id: 7, email: {} },
    { id: 7, country: 'DE' }, { id: 7, country: { id: '74' } }, { id: 7, country: { name: 'Germany' } }, { id: 7, type: { id: 1, description: 2 } },
    { id: 7, organisation: [] }, { id: 7, organisation: { id: 1, name: false } }
  ]
  for (const value of bad) t.ok(garbled(() => toContact(value)), `refused: ${JSON.stringify(value)}`)
})

t.test('toContactList maps a bare array and refuses anything else', async (t) => {
  t.same(toContactList([]), [])
  t.same(toContactList([{ id: 1 }, { id: 2, extra: 1 }]), [{ id: 1 }, { id: 2 }])
  for (const value of [{ data: [] }, null, 'x', [{ id: 1 }, { id: 'x' }], [null]]) {
    t.ok(garbled(() => toContactList(value)), `refused: ${JSON.stringify(value)}`)
  }
})

t.test('toCountryList keeps id, name and the optional codes; refuses anything else', async (t) => {
  const list = toCountryList([{ id: 74, name: 'Germany', iso_code: 'de', country_code: '49', mcc: '262', currency: 'EUR' }, { id: 5, name: 'X', iso_code: null }])
  t.same(list, [{ id: 74, name: 'Germany', iso_code: 'de', country_code: '49' }, { id: 5, name: 'X' }])
  t.ok(Value.Check(CountryListSchema, list))
  for (const value of [{}, null, [{ id: 1 }], [{ id: '1', name: 'x' }], [{ id: 1, name: 2 }], ['DE']]) {
    t.ok(garbled(() => toCountryList(value)), `refused: ${JSON.stringify(value)}`)
  }
})

t.test('parseUpstreamJson: not JSON is a garbled answer', async (t) => {
  t.same(parseUpstreamJson(Buffer.from('{"id":1}')), { id: 1 })
  for (const text of ['', '{', '<html>', '{"auth_token": <html>']) t.ok(garbled(() => parseUpstreamJson(Buffer.from(text))), `refused: ${text}`)
})

t.test('represent: serialised once, with a strong tag that changes with the content only', async (t) => {
  const a = represent({ id: 1, city: 'Berlin' })
  t.equal(a.text, '{"id":1,"city":"Berlin"}')
  t.match(a.etag, /^"[A-Za-z0-9_-]{27}"$/, 'a strong, quoted, header-safe tag')
  t.equal(represent({ id: 1, city: 'Berlin' }).etag, a.etag, 'stable')
  t.not(represent({ id: 1, city: 'Bonn' }).etag, a.etag, 'changes with the content')
})

t.test('noneMatch: weak comparison, lists, and *', async (t) => {
  const etag = '"abc"'
  t.ok(noneMatch('"abc"', etag))
  t.ok(noneMatch('W/"abc"', etag), 'weak comparison for If-None-Match')
  t.ok(noneMatch('"x", "abc"', etag))
  t.ok(noneMatch(' * ', etag))
  t.notOk(noneMatch(undefined, etag))
  t.notOk(noneMatch('"ab"', etag))
  t.notOk(noneMatch('abc', etag), 'an unquoted tag is not the tag')
  t.notOk(noneMatch('', etag))
})

t.test('matchesIfMatch: strong comparison; * needs a current representation', async (t) => {
  const etag = '"abc"'
  t.ok(matchesIfMatch('"abc"', etag))
  t.ok(matchesIfMatch('"x" , "abc"', etag))
  t.ok(matchesIfMatch('*', etag))
  t.notOk(matchesIfMatch('W/"abc"', etag), 'a weak tag never matches')
  t.notOk(matchesIfMatch('"abd"', etag))
  t.notOk(matchesIfMatch('*', undefined), 'a missing contact fails *')
  t.notOk(matchesIfMatch('"abc"', undefined))
})
