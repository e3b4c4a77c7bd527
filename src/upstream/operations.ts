import type { ProblemCode } from '../errors/problems.ts'

/** The emnify calls the BFF makes; one row each. The name labels metrics and logs. */
export interface OperationSpec {
  readonly name: OperationName
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  /** Upstream path from validated decimal ids. */
  readonly path: (ids: OperationIds) => string
  /** Whether a 2xx body is read (error bodies always are, for translation). */
  readonly readBody: boolean
  /** Statuses that mean success. */
  readonly success: ReadonlySet<number>
  /** What an upstream 404 means to the frontend. */
  readonly notFound: ProblemCode
  /**
   * Safe to re-send once after a reset or an upstream 502/503 (a GET changes nothing). Every
   * operation may be re-sent after a connect failure, where nothing was sent.
   */
  readonly idempotent: boolean
}

export type OperationName =
  | 'list_contacts' | 'get_contact' | 'create_contact' | 'patch_contact' | 'delete_contact' | 'list_countries'

export interface OperationIds { org?: string, contact?: string }

const TWO_XX = new Set([200, 201, 202, 203, 204, 205, 206])
const collection = (ids: OperationIds) => `/api/v1/organisation/${ids.org}/contact`
const item = (ids: OperationIds) => `/api/v1/organisation/${ids.org}/contact/${ids.contact}`

export const OPERATIONS = {
  listContacts: { name: 'list_contacts', method: 'GET', path: collection, readBody: true, success: new Set([200]), notFound: 'CONTACT_NOT_FOUND', idempotent: true },
  getContact: { name: 'get_contact', method: 'GET', path: item, readBody: true, success: new Set([200]), notFound: 'CONTACT_NOT_FOUND', idempotent: true },
  createContact: { name: 'create_contact', method: 'POST', path: collection, readBody: false, success: TWO_XX, notFound: 'CONTACT_NOT_FOUND', idempotent: false },
  patchContact: { name: 'patch_contact', method: 'PATCH', path: item, readBody: false, success: TWO_XX, notFound: 'CONTACT_NOT_FOUND', idempotent: false },
  deleteContact: { name: 'delete_contact', method: 'DELETE', path: item, readBody: false, success: TWO_XX, notFound: 'CONTACT_NOT_FOUND', idempotent: false },
  listCountries: { name: 'list_countries', method: 'GET', path: () => '/api/v1/country', readBody: true, success: new Set([200]), notFound: 'UPSTREAM_ERROR', idempotent: true }
} as const satisfies Record<string, OperationSpec>

/** Every operation name, authenticate included, for metric label initialisation. */
export const OPERATION_NAMES: readonly string[] = ['authenticate', ...Object.values(OPERATIONS).map((op) => op.name)]
