// The reference contact editor: plain DOM, no framework. Every call goes through api.ts; all
// text from the BFF is written with textContent, never parsed as HTML.
import { ApiError, BffClient, newIdempotencyKey, STRING_FIELDS } from './api.ts'
import type { Contact, ContactChanges, Country, FieldError, SessionInfo, StringField } from './api.ts'

// emnify has no contact-type lookup; these are the documented names (6 = invoice address).
const CONTACT_TYPES: ReadonlyArray<[number, string]> = [
  [1, 'Commercial'], [2, 'Technical'], [3, 'Finance'], [4, 'Shipping address'], [5, 'Company address'], [6, 'Invoice address']
]
const INVOICE_TYPE = 6

interface FieldSpec {
  name: StringField | 'type' | 'country'
  label: string
  input?: 'email' | 'tel'
  autocomplete?: AutoFill
  maxLength?: number
  wide?: boolean
}

const FIELDS: FieldSpec[] = [
  { name: 'type', label: 'Type' },
  { name: 'name', label: 'Name', autocomplete: 'off', maxLength: 255 },
  { name: 'title', label: 'Job title', maxLength: 255 },
  { name: 'department', label: 'Department', maxLength: 255 },
  { name: 'email', label: 'E-mail', input: 'email', maxLength: 254 },
  { name: 'phone', label: 'Phone', input: 'tel', maxLength: 255 },
  { name: 'mobile', label: 'Mobile', input: 'tel', maxLength: 255 },
  { name: 'street', label: 'Street', maxLength: 255, wide: true },
  { name: 'secondary_address', label: 'Address line 2', maxLength: 255, wide: true },
  { name: 'zipcode', label: 'Postcode', maxLength: 255 },
  { name: 'city', label: 'City', maxLength: 255 },
  { name: 'state', label: 'State or region', maxLength: 255 },
  { name: 'country', label: 'Country' },
  { name: 'purchase_order_number', label: 'Purchase order number', maxLength: 50 }
]

type Route =
  | { view: 'home' }
  | { view: 'list', org: number }
  | { view: 'contact', org: number, id: number }
  | { view: 'new', org: number }

interface Action {
  label: string
  run: () => void
}

function byId<T extends HTMLElement = HTMLElement> (id: string): T {
  const element = document.getElementById(id)
  if (element === null) throw new Error(`the page lacks #${id}`)
  return element as T
}

function element<K extends keyof HTMLElementTagNameMap> (tag: K, properties: Partial<HTMLElementTagNameMap[K]> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), properties)
  node.append(...children)
  return node
}

const views = ['booting', 'sign-in-view', 'pick-view', 'list-view', 'contact-view'] as const
const ui = {
  notice: byId('notice'),
  failure: byId('failure'),
  failureTitle: byId('failure-title'),
  failureDetail: byId('failure-detail'),
  failureRequest: byId('failure-request'),
  failureRequestId: byId('failure-request-id'),
  failureActions: byId('failure-actions'),
  sessionBar: byId('session-bar'),
  whoami: byId('whoami'),
  orgForm: byId<HTMLFormElement>('org-form'),
  orgSelect: byId<HTMLSelectElement>('org-select'),
  orgSelectLabel: byId('org-select-label'),
  orgInput: byId<HTMLInputElement>('org-input'),
  orgInputLabel: byId('org-input-label'),
  orgOpen: byId<HTMLButtonElement>('org-open'),
  signOut: byId<HTMLButtonElement>('sign-out'),
  signInForm: byId<HTMLFormElement>('sign-in-form'),
  signInButton: byId<HTMLButtonElement>('sign-in-button'),
  sso: byId('sso'),
  ssoLink: byId<HTMLAnchorElement>('sso-link'),
  listHeading: byId('list-heading'),
  newContact: byId<HTMLAnchorElement>('new-contact'),
  listLoading: byId('list-loading'),
  listEmpty: byId('list-empty'),
  listTable: byId('list-table'),
  listBody: byId('list-body'),
  backToList: byId<HTMLAnchorElement>('back-to-list'),
  contactHeading: byId('contact-heading'),
  contactLoading: byId('contact-loading'),
  contactForm: byId<HTMLFormElement>('contact-form'),
  contactFields: byId('contact-fields'),
  saveButton: byId<HTMLButtonElement>('save-button'),
  deleteButton: byId<HTMLButtonElement>('delete-button'),
  confirm: byId<HTMLDialogElement>('confirm-delete'),
  confirmText: byId('confirm-text')
}

const bffOrigin = document.querySelector<HTMLMetaElement>('meta[name="bff-origin"]')?.content ?? ''
const api = new BffClient(bffOrigin)

let session: SessionInfo | null = null
let countries: Country[] | null = null
/** The contact on screen, with the ETag of the read it came from. */
let current: { org: number, contact: Contact, etag: string | undefined } | null = null
/** The pending create: the same body retried keeps its Idempotency-Key. */
let createAttempt: { key: string, body: string } | null = null
let pendingNotice = ''
/** Bumped on every navigation, so a slow answer for a screen the user left is dropped. */
let generation = 0

// ---- messages ---------------------------------------------------------------------------------

function showNotice (text: string): void {
  ui.notice.textContent = text
}

function clearFailure (): void {
  ui.failure.hidden = true
  ui.failureTitle.textContent = ''
  ui.failureDetail.textContent = ''
  ui.failureRequestId.textContent = ''
  ui.failureRequest.hidden = true
  ui.failureActions.replaceChildren()
  ui.failureActions.hidden = true
}

function showFailure (title: string, detail: string, requestId?: string, actions: Action[] = []): void {
  showNotice('')
  ui.failure.hidden = false
  ui.failureTitle.textContent = title
  ui.failureDetail.textContent = detail
  ui.failureRequest.hidden = requestId === undefined
  ui.failureRequestId.textContent = requestId ?? ''
  ui.failureActions.replaceChildren(...actions.map((action) => {
    const button = element('button', { type: 'button', textContent: action.label, className: 'secondary' })
    button.addEventListener('click', action.run)
    return button
  }))
  ui.failureActions.hidden = actions.length === 0
}

function retryHint (error: ApiError): string {
  return error.retryAfterS === undefined ? 'Try again in a moment.' : `Try again in ${error.retryAfterS} s.`
}

/** What a person should read for a failed call; `what` says what was being done. */
function explain (error: ApiError, what: string): { title: string, detail: string } {
  switch (error.code) {
    case 'NETWORK_ERROR': return { title: `Could not ${what}: the BFF did not answer`, detail: error.detail }
    case 'ORGANISATION_FORBIDDEN': return { title: 'No access to this organisation', detail: 'Your session does not include it. Choose another organisation.' }
    case 'INSUFFICIENT_SCOPE': return { title: `You may not ${what}`, detail: 'Your session lacks the permission for this (contacts:read or contacts:write).' }
    case 'CONTACT_NOT_FOUND': return { title: 'This contact does not exist', detail: 'It may have been deleted by someone else.' }
    case 'PRECONDITION_FAILED': return { title: 'Someone else changed this contact after you opened it', detail: 'Nothing was saved. Reload it to see the current version, then make your change again.' }
    case 'UPSTREAM_CONFLICT': return { title: `Could not ${what}: emnify reports a conflict`, detail: error.detail }
    case 'IDEMPOTENCY_KEY_IN_USE': return { title: 'The same create is still in progress', detail: 'Wait a moment, then look at the list before trying again.' }
    case 'RATE_LIMITED': return { title: 'Too many requests', detail: retryHint(error) }
    default:
      if (error.status === 429 || error.status === 503) return { title: `Could not ${what}: the service is busy`, detail: `${error.detail} ${retryHint(error)}`.trim() }
      return { title: `Could not ${what}`, detail: error.detail === '' ? error.title : error.detail }
  }
}

function signedOut (message: string, requestId?: string): void {
  session = null
  current = null
  render()
  showFailure('Please sign in again', message, requestId)
}

/** Shows any failure; a lost session sends the user back to the sign-in form. */
function fail (error: unknown, what: string, actions: Action[] = []): void {
  if (!(error instanceof ApiError)) {
    showFailure(`Could not ${what}`, error instanceof Error ? error.message : String(error), undefined, actions)
    return
  }
  if (error.status === 401 && error.code !== 'INVALID_CREDENTIALS') {
    signedOut('Your session has ended or is no longer valid.', error.requestId)
    return
  }
  const { title, detail } = explain(error, what)
  showFailure(title, detail, error.requestId, actions)
}

// ---- navigation -------------------------------------------------------------------------------

function parseRoute (hash: string): Route {
  const id = '([1-9][0-9]{0,17})'
  let match = new RegExp(`^#/org/${id}/contact/${id}$`).exec(hash)
  if (match !== null) return { view: 'contact', org: Number(match[1]), id: Number(match[2]) }
  match = new RegExp(`^#/org/${id}/new$`).exec(hash)
  if (match !== null) return { view: 'new', org: Number(match[1]) }
  match = new RegExp(`^#/org/${id}$`).exec(hash)
  if (match !== null) return { view: 'list', org: Number(match[1]) }
  return { view: 'home' }
}

const listHash = (org: number) => `#/org/${org}`
const contactHash = (org: number, id: number) => `#/org/${org}/contact/${id}`

function navigate (hash: string, notice = ''): void {
  pendingNotice = notice
  if (location.hash === hash) render()
  else location.hash = hash
}

function show (view: typeof views[number]): void {
  for (const name of views) byId(name).hidden = name !== view
}

function focusHeading (heading: HTMLElement): void {
  heading.tabIndex = -1
  heading.focus()
}

function render (): void {
  generation += 1
  clearFailure()
  showNotice(pendingNotice)
  pendingNotice = ''
  ui.sessionBar.hidden = session === null
  if (session === null) {
    show('sign-in-view')
    return
  }
  const route = parseRoute(location.hash)
  fillOrgPicker(session, route.view === 'home' ? undefined : route.org)
  switch (route.view) {
    case 'home': {
      const only = Array.isArray(session.orgs) && session.orgs.length === 1 ? session.orgs[0] : undefined
      if (only !== undefined) {
        navigate(listHash(only))
        return
      }
      show('pick-view')
      return
    }
    case 'list':
      renderList(route.org).catch((error: unknown) => {
        // On the list, emnify's 404 is about the organisation, not a contact.
        if (error instanceof ApiError && error.code === 'CONTACT_NOT_FOUND') showFailure('Organisation not found', `emnify knows no organisation ${route.org}.`, error.requestId)
        else fail(error, 'show the contacts', [{ label: 'Try again', run: render }])
      })
      return
    case 'contact':
      renderContact(route.org, route.id).catch((error: unknown) => fail(error, 'show the contact', [{ label: 'Try again', run: render }]))
      return
    case 'new':
      renderNew(route.org).catch((error: unknown) => fail(error, 'open the form'))
  }
}

// ---- session ----------------------------------------------------------------------------------

function fillOrgPicker (info: SessionInfo, selected: number | undefined): void {
  ui.whoami.textContent = `Signed in as ${info.sub}`
  const any = info.orgs === '*'
  ui.orgSelect.hidden = any
  ui.orgSelectLabel.hidden = any
  ui.orgInput.hidden = !any
  ui.orgInputLabel.hidden = !any
  ui.orgOpen.hidden = false
  if (any) {
    ui.orgInput.value = selected === undefined ? '' : String(selected)
    return
  }
  const options = (info.orgs as number[]).map((org) => element('option', { value: String(org), textContent: `Organisation ${org}` }))
  if (selected === undefined) options.unshift(element('option', { value: '', textContent: 'Choose…', disabled: true }))
  ui.orgSelect.replaceChildren(...options)
  ui.orgSelect.value = selected === undefined ? '' : String(selected)
}

ui.orgForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const raw = session?.orgs === '*' ? ui.orgInput.value.trim() : ui.orgSelect.value
  if (!/^[1-9][0-9]{0,17}$/.test(raw)) {
    if (session?.orgs === '*') {
      showFailure('Enter an organisation id', 'An organisation id is a positive whole number, e.g. 1.')
      ui.orgInput.focus()
    } else {
      showFailure('Choose an organisation', 'Pick one of yours from the list first.')
      ui.orgSelect.focus()
    }
    return
  }
  navigate(listHash(Number(raw)))
})

/** Names both sites when the page and the BFF differ, to make the same-site rule concrete. */
function crossSiteHint (): string {
  const bff = new URL(api.origin)
  const here = new URL(location.href)
  const suggestion = new URL(location.href)
  suggestion.hostname = bff.hostname
  const fix = here.hostname === bff.hostname ? '' : ` Open this page as ${suggestion.origin}${suggestion.pathname} instead.`
  return `This page (${here.origin}) and the BFF (${bff.origin}) are not the same site, so the browser dropped the BFF's SameSite=Strict session cookie. Serve both from the same host name (127.0.0.1 and localhost are different sites).${fix}`
}

ui.signInForm.addEventListener('submit', (event) => {
  event.preventDefault()
  const data = new FormData(ui.signInForm)
  const username = String(data.get('username') ?? '')
  const password = String(data.get('password') ?? '')
  clearFailure()
  if (username === '' || password === '') {
    showFailure('Enter your username and password', 'Both are needed to sign in.')
    return
  }
  ui.signInButton.disabled = true
  ui.signInForm.setAttribute('aria-busy', 'true')
  showNotice('Signing in…')
  signIn(username, password).finally(() => {
    ui.signInButton.disabled = false
    ui.signInForm.removeAttribute('aria-busy')
  })
})

async function signIn (username: string, password: string): Promise<void> {
  try {
    await api.login(username, password)
  } catch (error) {
    if (error instanceof ApiError && error.code === 'INVALID_CREDENTIALS') {
      showFailure('Wrong username or password', 'Check both and try again.', error.requestId)
    } else {
      fail(error, 'sign in')
    }
    return
  }
  // The login answer cannot tell whether the browser kept the cookie; only the next call can.
  try {
    session = await api.session()
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showFailure('Signed in, but the browser did not keep the session cookie', crossSiteHint(), error.requestId)
    } else {
      fail(error, 'check the new session')
    }
    return
  }
  ui.signInForm.reset()
  pendingNotice = `Signed in as ${session.sub}.`
  render()
  const heading = document.querySelector<HTMLElement>('section:not([hidden]) h1')
  if (heading !== null) focusHeading(heading)
}

ui.signOut.addEventListener('click', () => {
  ui.signOut.disabled = true
  // The same page SSO sign-in returns to: the demo provider registers it for sign-out too.
  api.logout(`${location.origin}${location.pathname}`).then(({ endSessionUrl }) => {
    session = null
    current = null
    navigate('#/', 'Signed out.')
    // Signed in by SSO: the provider's own session ends there, or the next SSO click signs straight back in.
    if (endSessionUrl !== undefined) location.assign(endSessionUrl)
  }, (error: unknown) => {
    // Already gone is as good as signed out.
    if (error instanceof ApiError && error.status === 401) {
      session = null
      navigate('#/', 'Signed out.')
    } else {
      fail(error, 'sign out')
    }
  }).finally(() => { ui.signOut.disabled = false })
})

// ---- list -------------------------------------------------------------------------------------

function contactLabel (contact: Contact): string {
  return contact.name ?? `Contact ${contact.id} (no name)`
}

function typeName (contact: Contact): string {
  const id = contact.type?.id
  return contact.type?.description ?? CONTACT_TYPES.find(([known]) => known === id)?.[1] ?? (id === undefined ? '' : `Type ${id}`)
}

async function renderList (org: number): Promise<void> {
  const mine = generation
  show('list-view')
  ui.listHeading.textContent = `Contacts of organisation ${org}`
  ui.newContact.href = `#/org/${org}/new`
  ui.listLoading.hidden = false
  ui.listEmpty.hidden = true
  ui.listTable.hidden = true
  ui.listBody.replaceChildren()
  let contacts: Contact[]
  try {
    contacts = await api.listContacts(org)
  } finally {
    if (mine === generation) ui.listLoading.hidden = true
  }
  if (mine !== generation) return
  const sorted = [...contacts].sort((a, b) => contactLabel(a).localeCompare(contactLabel(b)))
  ui.listBody.replaceChildren(...sorted.map((contact) => element('tr', {},
    element('td', {}, element('a', { href: contactHash(org, contact.id), textContent: contactLabel(contact) })),
    element('td', { textContent: typeName(contact) }),
    element('td', { textContent: contact.email ?? '' }),
    element('td', { textContent: contact.city ?? '' }),
    element('td', { textContent: contact.country?.name ?? '' })
  )))
  ui.listEmpty.hidden = contacts.length > 0
  ui.listTable.hidden = contacts.length === 0
}

// ---- the contact form -------------------------------------------------------------------------

function fieldId (name: string): string {
  return `field-${name.replace(/_/g, '-')}`
}

function control (name: FieldSpec['name']): HTMLInputElement | HTMLSelectElement {
  return byId<HTMLInputElement | HTMLSelectElement>(fieldId(name))
}

function buildFields (): void {
  ui.contactFields.replaceChildren(...FIELDS.map((spec) => {
    const id = fieldId(spec.name)
    const input = spec.name === 'type' || spec.name === 'country'
      ? element('select', { id, name: spec.name })
      : element('input', { id, name: spec.name, type: spec.input ?? 'text', autocomplete: spec.autocomplete ?? 'off', maxLength: spec.maxLength ?? 255 })
    const hint = element('p', { id: `${id}-hint`, className: 'hint', hidden: true })
    const error = element('p', { id: `${id}-error`, className: 'field-error', hidden: true })
    return element('div', { className: spec.wide === true ? 'field wide' : 'field' },
      element('label', { htmlFor: id, textContent: spec.label }), input, hint, error)
  }))
  control('type').addEventListener('change', updateInvoiceField)
}

function setHint (name: FieldSpec['name'], text: string): void {
  const hint = byId(`${fieldId(name)}-hint`)
  hint.textContent = text
  hint.hidden = text === ''
  describe(name)
}

function describe (name: FieldSpec['name']): void {
  const id = fieldId(name)
  const ids = [`${id}-error`, `${id}-hint`].filter((part) => !byId(part).hidden)
  if (ids.length === 0) control(name).removeAttribute('aria-describedby')
  else control(name).setAttribute('aria-describedby', ids.join(' '))
}

function clearFieldErrors (): void {
  for (const spec of FIELDS) {
    const error = byId(`${fieldId(spec.name)}-error`)
    error.textContent = ''
    error.hidden = true
    control(spec.name).removeAttribute('aria-invalid')
    describe(spec.name)
  }
}

const LABELS = new Map(FIELDS.map((spec) => [spec.name, spec.label]))

/** `/email` → email, `/country/id` → country; anything else has no field of its own. */
function fieldOf (pointer: string): FieldSpec['name'] | undefined {
  const top = pointer.split('/')[1]
  return FIELDS.find((spec) => spec.name === top)?.name
}

/** Shows each message at its field; answers the messages that belong to no field. */
function showFieldErrors (errors: FieldError[]): string[] {
  const loose: string[] = []
  let first: HTMLElement | undefined
  for (const problem of errors) {
    const name = problem.in === undefined || problem.in === 'body' ? fieldOf(problem.pointer) : undefined
    if (name === undefined) {
      loose.push(problem.pointer === '' ? problem.detail : `${problem.pointer}: ${problem.detail}`)
      continue
    }
    const error = byId(`${fieldId(name)}-error`)
    error.textContent = error.textContent === '' ? `${LABELS.get(name)} ${problem.detail}` : `${error.textContent}; ${problem.detail}`
    error.hidden = false
    const input = control(name)
    input.setAttribute('aria-invalid', 'true')
    describe(name)
    first ??= input
  }
  first?.focus()
  return loose
}

function fillTypeSelect (selected: number | undefined, editing: boolean): void {
  const select = control('type') as HTMLSelectElement
  const options = CONTACT_TYPES.map(([id, name]) => element('option', { value: String(id), textContent: name }))
  if (selected !== undefined && !CONTACT_TYPES.some(([id]) => id === selected)) {
    options.push(element('option', { value: String(selected), textContent: `Type ${selected}` }))
  }
  if (!editing) options.unshift(element('option', { value: '', textContent: 'Choose a type…' }))
  select.replaceChildren(...options)
  select.value = selected === undefined ? '' : String(selected)
  // emnify documents that a contact's type cannot be changed after creation.
  select.disabled = editing
  select.required = !editing
  setHint('type', editing ? 'The type cannot be changed after creation.' : 'Required; it cannot be changed later.')
}

function fillCountrySelect (selected: Contact['country']): void {
  const select = control('country') as HTMLSelectElement
  const list = countries ?? []
  const options = list.map((country) => element('option', { value: String(country.id), textContent: country.name }))
  if (selected != null && !list.some((country) => country.id === selected.id)) {
    options.unshift(element('option', { value: String(selected.id), textContent: selected.name ?? `Country ${selected.id}` }))
  }
  // A country can be set or changed but not removed, so "not set" is offered only while unset.
  if (selected == null) options.unshift(element('option', { value: '', textContent: 'Not set' }))
  select.replaceChildren(...options)
  select.value = selected == null ? '' : String(selected.id)
}

function updateInvoiceField (): void {
  const invoice = (control('type') as HTMLSelectElement).value === String(INVOICE_TYPE)
  const input = control('purchase_order_number') as HTMLInputElement
  input.disabled = !invoice
  setHint('purchase_order_number', invoice ? '' : 'Only for invoice-address contacts.')
}

async function loadCountries (): Promise<void> {
  if (countries !== null) return
  try {
    countries = (await api.countries()).slice().sort((a, b) => a.name.localeCompare(b.name))
  } catch (error) {
    // The form still works with the contact's own country; the failure is shown, not hidden.
    fail(error, 'load the country list', [{ label: 'Try again', run: () => render() }])
  }
}

function fillForm (contact: Contact | undefined): void {
  clearFieldErrors()
  fillTypeSelect(contact?.type?.id, contact !== undefined)
  fillCountrySelect(contact?.country)
  for (const name of STRING_FIELDS) (control(name) as HTMLInputElement).value = contact?.[name] ?? ''
  updateInvoiceField()
}

function setBusy (busy: boolean): void {
  ui.saveButton.disabled = busy
  ui.deleteButton.disabled = busy
  if (busy) ui.contactForm.setAttribute('aria-busy', 'true')
  else ui.contactForm.removeAttribute('aria-busy')
}

async function renderContact (org: number, id: number): Promise<void> {
  const mine = generation
  show('contact-view')
  ui.backToList.href = listHash(org)
  ui.contactHeading.textContent = `Contact ${id}`
  ui.contactForm.hidden = true
  ui.contactLoading.hidden = false
  let read: Awaited<ReturnType<BffClient['getContact']>>
  try {
    [read] = await Promise.all([api.getContact(org, id), loadCountries()])
  } finally {
    if (mine === generation) ui.contactLoading.hidden = true
  }
  if (mine !== generation) return
  current = { org, contact: read.value, etag: read.etag }
  ui.contactHeading.textContent = contactLabel(read.value)
  ui.saveButton.textContent = 'Save changes'
  ui.deleteButton.hidden = false
  fillForm(read.value)
  ui.contactForm.hidden = false
}

async function renderNew (org: number): Promise<void> {
  const mine = generation
  show('contact-view')
  ui.backToList.href = listHash(org)
  ui.contactHeading.textContent = `New contact in organisation ${org}`
  ui.contactForm.hidden = true
  ui.contactLoading.hidden = false
  try {
    await loadCountries()
  } finally {
    if (mine === generation) ui.contactLoading.hidden = true
  }
  if (mine !== generation) return
  current = null
  createAttempt = null
  ui.saveButton.textContent = 'Create contact'
  ui.deleteButton.hidden = true
  fillForm(undefined)
  ui.contactForm.hidden = false
  control('type').focus()
}

/** Only what differs from the contact as read; an emptied field is cleared with null. */
function changesFrom (contact: Contact): ContactChanges {
  const changes: ContactChanges = {}
  for (const name of STRING_FIELDS) {
    const input = control(name) as HTMLInputElement
    if (input.disabled) continue
    const before = contact[name] ?? ''
    if (input.value !== before) changes[name] = input.value === '' ? null : input.value
  }
  const country = (control('country') as HTMLSelectElement).value
  if (country !== '' && Number(country) !== contact.country?.id) changes.country = { id: Number(country) }
  return changes
}

function createBody (): ContactChanges & { type: { id: number } } {
  const body: ContactChanges = {}
  const type = (control('type') as HTMLSelectElement).value
  // An unchosen type is sent as missing, so the BFF's own message appears at the field.
  if (type !== '') body.type = { id: Number(type) }
  for (const name of STRING_FIELDS) {
    const input = control(name) as HTMLInputElement
    if (!input.disabled && input.value !== '') body[name] = input.value
  }
  const country = (control('country') as HTMLSelectElement).value
  if (country !== '') body.country = { id: Number(country) }
  return body as ContactChanges & { type: { id: number } }
}

function formFailure (error: unknown, what: string, actions: Action[] = []): void {
  if (error instanceof ApiError && error.errors.length > 0) {
    const loose = showFieldErrors(error.errors)
    const { title } = explain(error, what)
    const detail = loose.length > 0 ? loose.join('; ') : 'Correct the marked fields and try again.'
    showFailure(title, detail, error.requestId, actions)
    return
  }
  fail(error, what, actions)
}

ui.contactForm.addEventListener('submit', (event) => {
  event.preventDefault()
  clearFailure()
  clearFieldErrors()
  const route = parseRoute(location.hash)
  if (route.view === 'new') {
    save(create(route.org), 'create the contact')
  } else if (route.view === 'contact' && current !== null) {
    save(update(current.org, current.contact, current.etag), 'save the contact')
  }
})

function save (work: Promise<void>, what: string): void {
  setBusy(true)
  showNotice('Saving…')
  work.catch((error: unknown) => {
    const reload: Action[] = error instanceof ApiError && error.code === 'PRECONDITION_FAILED'
      ? [{ label: 'Reload contact', run: () => render() }]
      : []
    formFailure(error, what, reload)
  }).finally(() => setBusy(false))
}

async function create (org: number): Promise<void> {
  const body = createBody()
  const text = JSON.stringify(body)
  if (createAttempt === null || createAttempt.body !== text) createAttempt = { key: newIdempotencyKey(), body: text }
  const created = await api.createContact(org, body, createAttempt.key)
  createAttempt = null
  if (created.contact === undefined) navigate(listHash(org), 'Contact created.')
  else navigate(contactHash(org, created.contact.id), `Contact created${created.replayed ? ' (it had been created by an earlier attempt)' : ''}.`)
}

async function update (org: number, contact: Contact, etag: string | undefined): Promise<void> {
  const changes = changesFrom(contact)
  if (Object.keys(changes).length === 0) {
    showNotice('Nothing to save: no field was changed.')
    return
  }
  const answer = await api.updateContact(org, contact.id, changes, etag)
  const fresh = answer ?? await api.getContact(org, contact.id)
  current = { org, contact: fresh.value, etag: fresh.etag }
  ui.contactHeading.textContent = contactLabel(fresh.value)
  fillForm(fresh.value)
  showNotice(`Saved ${Object.keys(changes).length === 1 ? 'the change' : `${Object.keys(changes).length} changes`}.`)
}

// ---- delete -----------------------------------------------------------------------------------

ui.deleteButton.addEventListener('click', () => {
  if (current === null) return
  clearFailure()
  ui.confirmText.textContent = `“${contactLabel(current.contact)}” will be removed from organisation ${current.org}. This cannot be undone.`
  ui.confirm.returnValue = ''
  ui.confirm.showModal()
})

ui.confirm.addEventListener('close', () => {
  const target = current
  if (ui.confirm.returnValue !== 'delete' || target === null) {
    ui.deleteButton.focus()
    return
  }
  setBusy(true)
  showNotice('Deleting…')
  api.deleteContact(target.org, target.contact.id, target.etag).then(() => {
    current = null
    navigate(listHash(target.org), `Deleted “${contactLabel(target.contact)}”.`)
  }, (error: unknown) => {
    if (error instanceof ApiError && error.code === 'PRECONDITION_FAILED') {
      showFailure('Someone else changed this contact after you opened it', 'It was not deleted. Reload it and check before deleting.', error.requestId,
        [{ label: 'Reload contact', run: () => render() }])
    } else {
      fail(error, 'delete the contact')
    }
  }).finally(() => setBusy(false))
})

// ---- start ------------------------------------------------------------------------------------

async function offerSso (): Promise<void> {
  if (!await api.ssoOffered()) return
  // Back to the page itself; the session check on arrival decides what to show.
  ui.ssoLink.href = api.ssoLoginUrl(`${location.origin}${location.pathname}`)
  ui.sso.hidden = false
}

async function boot (): Promise<void> {
  buildFields()
  window.addEventListener('hashchange', render)
  if (!/^https?:\/\/[^/]+$/.test(bffOrigin)) {
    show('sign-in-view')
    showFailure('This page does not know where the BFF is', 'Serve it with web/serve.ts (npm run demo), which writes the BFF origin into the page.')
    return
  }
  offerSso().catch(() => {})
  try {
    session = await api.session()
  } catch (error) {
    session = null
    if (!(error instanceof ApiError) || error.status !== 401) {
      render()
      fail(error, 'check your session')
      return
    }
  }
  render()
}

boot().catch((error: unknown) => showFailure('The editor could not start', error instanceof Error ? error.message : String(error)))
