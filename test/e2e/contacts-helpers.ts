// Shared pieces of the contact-resource end-to-end tests (no tests of its own).
import type { Test } from 'tap'
import type { Operation } from '../../simulator/simulator.ts'
import { claims, forge, type Reply, type Stack } from '../helpers/stack.ts'

export const ORG = '/api/v1/organisation/1'
export const LIST = `${ORG}/contact`
export const ONE = `${ORG}/contact/1`

/** The keys a contact answered by the BFF may have (its own representation). */
export const CONTACT_KEYS = [
  'id', 'type', 'organisation', 'country', 'name', 'title', 'department', 'street', 'zipcode', 'city', 'email', 'phone',
  'mobile', 'state', 'secondary_address', 'purchase_order_number'
]

/** A session with exactly this `scope` claim (undefined = no claim at all). */
export function scoped (scope: string | undefined, overrides: Record<string, unknown> = {}): string {
  return forge({ alg: 'HS256', typ: 'JWT' }, claims({ ...(scope === undefined ? {} : { scope }), ...overrides }))
}

export interface Send {
  token?: string
  body?: unknown
  headers?: Record<string, string>
}

/** One request to the BFF as a bearer-authenticated frontend; bodies go as application/json. */
export function send (stack: Stack, method: string, path: string, { token = stack.token, body, headers = {} }: Send = {}): Promise<Reply> {
  const all: Record<string, string> = { authorization: `Bearer ${token}`, ...headers }
  if (body !== undefined) all['content-type'] ??= 'application/json'
  return stack.call(method, path, { headers: all, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) })
}

type Counted = Exclude<Operation, 'other'>

/**
 * After a moment for anything wrongly re-sent to arrive: exactly these calls reached emnify, every
 * operation not named counted zero, and nothing else (the total is their sum).
 */
export async function assertCalls (t: Test, stack: Stack, expected: Partial<Record<Counted, number>>): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 50))
  const counters = stack.sim.state.counters
  const operations: Counted[] = ['authenticate', 'list_contacts', 'get_contact', 'create_contact', 'patch_contact', 'delete_contact', 'list_countries']
  let sum = 0
  for (const operation of operations) {
    const want = expected[operation] ?? 0
    sum += want
    t.equal(counters[operation], want, `${want} ${operation} call(s) upstream`)
  }
  t.equal(counters.total, sum, 'no other call upstream')
}

/** Nothing at all reached emnify, not even authenticate. */
export async function assertNothingSent (t: Test, stack: Stack): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(stack.sim.state.counters.total, 0, 'nothing was sent upstream')
}

/** The value of one series of the BFF's /metrics, 0 when absent. */
export async function metric (stack: Stack, name: string, labels: Record<string, string> = {}): Promise<number> {
  const reply = await stack.call('GET', '/metrics')
  for (const line of reply.text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) return Number(line.split(' ').at(-1))
  }
  return 0
}

/** The simulator's contact as the BFF should answer it: its documented fields, references that are null left out. */
export function expectedContact (stack: Stack, org: number, id: number): Record<string, unknown> {
  const view = stack.sim.state.getContact(org, id) as unknown as Record<string, unknown> | undefined
  if (view === undefined) throw new Error(`the simulator has no contact ${org}/${id}`)
  return Object.fromEntries(Object.entries(view).filter(([key, value]) => !(value === null && ['type', 'organisation', 'country'].includes(key))))
}

/** Every key of the answer (and of its references) belongs to the BFF's own representation. */
export function assertOwnShape (t: Test, contact: Record<string, unknown>): void {
  t.same(Object.keys(contact).filter((key) => !CONTACT_KEYS.includes(key)), [], 'no key beyond the BFF\'s representation')
  t.type(contact.id, 'number', 'id is a number')
  for (const [ref, label] of [['type', 'description'], ['organisation', 'name'], ['country', 'name']] as const) {
    const value = contact[ref] as Record<string, unknown> | undefined
    if (value === undefined) continue
    t.same(Object.keys(value).filter((key) => key !== 'id' && key !== label), [], `${ref} carries only id and ${label}`)
  }
}

/** A strong validator, as RFC 9110 spells one. */
export const STRONG_ETAG = /^"[\x21\x23-\x7e]+"$/
