// Everything the simulator remembers: data, issued tokens, active faults and the call log.
import {
  applyChanges,
  countryWithExtras,
  listCountries,
  newContact,
  seedOrganisations,
  viewContact,
  viewContactWithExtras
} from './data.ts'
import type { ContactChanges, ContactType, ContactView, Country, Organisation, StoredContact } from './data.ts'
import { OPERATIONS, parseFault } from './faults.ts'
import type { Fault, Operation } from './faults.ts'
import { RateLimiter } from './rate-limit.ts'
import { DEFAULT_SETTINGS, parseSettings } from './settings.ts'
import type { Settings, SettingsInput } from './settings.ts'
import { TokenIssuer } from './tokens.ts'
import type { IssueOptions, TokenCheck } from './tokens.ts'

export interface SimulatorOptions extends SettingsInput {
  /** Application tokens `POST /api/v1/authenticate` accepts. */
  applicationTokens?: string[]
  /** Lifetime written into issued auth tokens' `exp`; emnify was seen issuing 240 min and 7 days. */
  tokenLifetimeS?: number
  /** Issue auth tokens without `exp`, to exercise a client's fallback. */
  tokenWithoutExp?: boolean
  /** Start with the demo organisations and contacts (default true). */
  seed?: boolean
  /** Benchmark mode: only counters are kept, PATCH answers 204 for any ids without touching data. */
  lean?: boolean
  /** Milliseconds since the epoch; drives token `iat`/`exp`, expiry checks and the rate limit's window. */
  clock?: () => number
  /** Calls kept in the log before the oldest are dropped (default 10 000). */
  maxCalls?: number
  /** Auth tokens remembered; beyond this the oldest are forgotten and become invalid (default 100 000). */
  maxTokens?: number
  /** Sees every auth token as it is issued (the tests' leak scanner looks for them in the BFF's output). */
  onTokenIssued?: (token: string) => void
}

export interface RecordedCall {
  method: string
  /** Path without the query string, exactly as received (not decoded). */
  path: string
  /** Raw query string without the leading `?`; empty when there was none. */
  query: string
  /** Lower-cased header names; repeated headers joined with ", ". */
  headers: Record<string, string>
  /** Raw request body as received (truncated at the body limit). */
  body: string
  at: number
  operation: Operation
}

/**
 * Calls per operation, all calls, API calls refused with 401 (a bad or expired auth_token) and
 * calls refused with 429 by the per-IP rate limit (faulted 429s are not counted there).
 */
export type Counters = Record<Operation | 'total' | 'unauthorized' | 'rate_limited', number>

interface ActiveFault {
  fault: Fault
  remaining: number
}

export const DEFAULT_APPLICATION_TOKEN = 'demo-application-token'
export const DEFAULT_TOKEN_LIFETIME_S = 14_400

// Faults built from JSON or plain JavaScript bypass the type checker, so each is validated here.
function activate (fault: Fault): ActiveFault {
  const parsed = parseFault(fault)
  return { fault: parsed, remaining: parsed.times ?? Number.POSITIVE_INFINITY }
}

function emptyCounters (): Counters {
  const counters = { total: 0, unauthorized: 0, rate_limited: 0 } as Counters
  for (const operation of OPERATIONS) counters[operation] = 0
  return counters
}

export class SimulatorState {
  readonly lean: boolean
  readonly applicationTokens: readonly string[]
  readonly #clock: () => number
  readonly #tokens: TokenIssuer
  readonly #onTokenIssued: ((token: string) => void) | undefined
  readonly #seed: boolean
  readonly #maxCalls: number
  #calls: RecordedCall[] = []
  #counters: Counters = emptyCounters()
  #faults: ActiveFault[] = []
  #organisations: Map<string, Organisation> = new Map()
  #nextContactId = 1
  #settings: Settings
  #limiter: RateLimiter | undefined
  /** Origin for absolute `Location` headers; startSimulator sets it once listening. */
  origin: string | undefined

  constructor (options: SimulatorOptions = {}) {
    this.lean = options.lean ?? false
    this.applicationTokens = [...(options.applicationTokens ?? [DEFAULT_APPLICATION_TOKEN])]
    this.#clock = options.clock ?? Date.now
    this.#tokens = new TokenIssuer(
      this.#clock,
      options.tokenLifetimeS ?? DEFAULT_TOKEN_LIFETIME_S,
      options.tokenWithoutExp ?? false,
      options.maxTokens ?? 100_000
    )
    this.#onTokenIssued = options.onTokenIssued
    this.#seed = options.seed ?? true
    this.#maxCalls = options.maxCalls ?? 10_000
    const { createdLocation, extraFields, rateLimit } = options
    this.#settings = { ...DEFAULT_SETTINGS }
    this.configure({ createdLocation, extraFields, rateLimit })
    this.restoreData()
  }

  // --- settings ---

  get settings (): Settings {
    const { rateLimit } = this.#settings
    return { ...this.#settings, rateLimit: rateLimit === false ? false : { ...rateLimit } }
  }

  /**
   * Changes the given settings only; throws SettingsError (changing nothing) if any is invalid.
   * Setting `rateLimit` (even to the same figures) starts its window afresh.
   */
  configure (input: SettingsInput): void {
    const parsed = parseSettings(input)
    this.#settings = { ...this.#settings, ...parsed }
    if ('rateLimit' in parsed) this.#restartLimiter()
  }

  #restartLimiter (): void {
    const { rateLimit } = this.#settings
    this.#limiter = rateLimit === false ? undefined : new RateLimiter(rateLimit)
  }

  /** Whether the per-IP limit is on (lets the hot path skip looking up the client's address). */
  get limiting (): boolean {
    return this.#limiter !== undefined
  }

  /** Counts a request against the per-IP limit (when on); true when it must be answered 429. */
  rateLimited (client: string, operation: Operation): boolean {
    if (this.#limiter === undefined || !this.#limiter.refuse(client, operation, this.#clock())) return false
    this.#counters.rate_limited++
    return true
  }

  now (): number {
    return this.#clock()
  }

  // --- call log ---

  get calls (): readonly RecordedCall[] {
    return this.#calls
  }

  get counters (): Readonly<Counters> {
    return { ...this.#counters }
  }

  callsFor (operation: Operation): RecordedCall[] {
    return this.#calls.filter((call) => call.operation === operation)
  }

  count (operation: Operation): void {
    this.#counters[operation]++
    this.#counters.total++
  }

  countUnauthorized (): void {
    this.#counters.unauthorized++
  }

  /** Callers skip this in lean mode, so the call is never even built. */
  record (call: RecordedCall): void {
    this.#calls.push(call)
    if (this.#calls.length > this.#maxCalls) this.#calls.shift()
  }

  /** Clears the call log, counters, faults and the rate limit's window; data, tokens and settings stay. */
  reset (): void {
    this.#calls = []
    this.#counters = emptyCounters()
    this.#faults = []
    this.#restartLimiter()
  }

  // --- faults ---

  get faults (): Fault[] {
    return this.#faults.map(({ fault, remaining }) =>
      Number.isFinite(remaining) ? { ...fault, times: remaining } : { ...fault })
  }

  /** Replaces all faults with the given one(s); throws FaultError (changing nothing) if any is invalid. */
  setFault (fault: Fault | Fault[]): void {
    this.#faults = (Array.isArray(fault) ? fault : [fault]).map(activate)
  }

  /** Throws FaultError if the fault is invalid. */
  addFault (fault: Fault): void {
    this.#faults.push(activate(fault))
  }

  clearFaults (): void {
    this.#faults = []
  }

  /** The first fault matching `operation`, consuming one of its `times`. */
  takeFault (operation: Operation): Fault | undefined {
    if (this.#faults.length === 0) return undefined
    const index = this.#faults.findIndex(({ fault }) => fault.operation === 'any' || fault.operation === operation)
    const active = this.#faults[index]
    if (active === undefined) return undefined
    active.remaining--
    if (active.remaining <= 0) this.#faults.splice(index, 1)
    return active.fault
  }

  // --- tokens ---

  /** Mints an auth token as `POST /api/v1/authenticate` would (tests may shape its lifetime). */
  issueToken (options?: IssueOptions): string {
    const token = this.#tokens.issue(options)
    this.#onTokenIssued?.(token)
    return token
  }

  checkToken (token: string): TokenCheck {
    return this.#tokens.check(token)
  }

  /** Every auth token issued so far becomes invalid (401 InvalidToken). */
  revokeAllTokens (): void {
    this.#tokens.revokeAll()
  }

  // --- data ---

  /** Puts the seed data (or nothing, with `seed: false`) back in place. */
  restoreData (): void {
    this.#organisations = this.#seed ? seedOrganisations() : new Map()
    let maxId = 0
    for (const org of this.#organisations.values()) {
      for (const contact of org.contacts.values()) maxId = Math.max(maxId, contact.id)
    }
    this.#nextContactId = maxId + 1
  }

  /** Adds an (empty) organisation, e.g. for tests with `seed: false`. */
  addOrganisation (id: number, name: string): void {
    this.#organisations.set(String(id), { id, name, contacts: new Map() })
  }

  hasOrganisation (orgId: number | string): boolean {
    return this.#organisations.has(String(orgId))
  }

  hasContact (orgId: number | string, contactId: number | string): boolean {
    return this.#organisations.get(String(orgId))?.contacts.has(String(contactId)) ?? false
  }

  /** The contact as emnify's GET shows it (never with extra fields; see `answerContact`). */
  getContact (orgId: number | string, contactId: number | string): ContactView | undefined {
    const org = this.#organisations.get(String(orgId))
    const contact = org?.contacts.get(String(contactId))
    return org === undefined || contact === undefined ? undefined : viewContact(org, contact)
  }

  listContacts (orgId: number | string): ContactView[] | undefined {
    const org = this.#organisations.get(String(orgId))
    if (org === undefined) return undefined
    return [...org.contacts.values()].map((contact) => viewContact(org, contact))
  }

  #view (org: Organisation, contact: StoredContact): unknown {
    return this.#settings.extraFields ? viewContactWithExtras(org, contact) : viewContact(org, contact)
  }

  /** What `GET …/contact/{id}` answers, with extra fields when that switch is on. */
  answerContact (orgId: string, contactId: string): unknown {
    const org = this.#organisations.get(orgId)
    const contact = org?.contacts.get(contactId)
    return org === undefined || contact === undefined ? undefined : this.#view(org, contact)
  }

  /** What `GET …/contact` answers, with extra fields when that switch is on. */
  answerContacts (orgId: string): unknown[] | undefined {
    const org = this.#organisations.get(orgId)
    if (org === undefined) return undefined
    return [...org.contacts.values()].map((contact) => this.#view(org, contact))
  }

  /** What `GET /api/v1/country` answers, with extra fields when that switch is on. */
  answerCountries (geographic?: boolean): Array<Country | Record<string, unknown>> {
    const countries = listCountries(geographic)
    return this.#settings.extraFields ? countries.map(countryWithExtras) : countries
  }

  updateContact (orgId: number | string, contactId: number | string, changes: ContactChanges): boolean {
    const contacts = this.#organisations.get(String(orgId))?.contacts
    const contact = contacts?.get(String(contactId))
    if (contacts === undefined || contact === undefined) return false
    contacts.set(String(contactId), applyChanges(contact, changes))
    return true
  }

  /** Returns the new contact's id, or undefined when the organisation does not exist. */
  createContact (orgId: number | string, changes: ContactChanges & { type: ContactType }): number | undefined {
    const org = this.#organisations.get(String(orgId))
    if (org === undefined) return undefined
    const id = this.#nextContactId++
    org.contacts.set(String(id), newContact(id, changes, new Date(this.#clock()).toISOString()))
    return id
  }

  deleteContact (orgId: number | string, contactId: number | string): boolean {
    return this.#organisations.get(String(orgId))?.contacts.delete(String(contactId)) ?? false
  }
}
