// The leak scanner: every log line and every byte the BFF sends to a client is searched for
// credentials, and a test fails at teardown when one shows up. The only exemption is the one the
// contract makes: a successful POST /auth/login hands the caller its own new session token, once
// in the body and once in the session Set-Cookie; a successful SSO callback (302) does the same in
// its Set-Cookie only.
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export interface Finding {
  /** Where the secret appeared, e.g. `log line 3` or `response to POST /auth/login (200)`. */
  where: string
  /** What leaked, e.g. `the session secret`. */
  secret: string
  /** The text around the leak, the leaked fragment replaced by its name. */
  excerpt: string
}

// Fragments of a JWT part this long are searched for, every STRIDE characters plus the tail, so
// any run of WINDOW + STRIDE - 1 = 23 characters of a payload or signature is found.
const JWT_WINDOW = 16
const JWT_STRIDE = 8
// Shorter values would match by chance; nothing this short is a credential here.
const MIN_SECRET_LENGTH = 8
// Every fragment is at least this long; the search looks up this many characters per position.
const PREFIX = MIN_SECRET_LENGTH
// Other secrets: any two thirds of the value, at least 12 and at most 32 characters, anywhere.
const MIN_FRAGMENT = 12
const MAX_FRAGMENT = 32
// A JWT's header and payload (base64url JSON): nothing the BFF writes may look like this.
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const LOGIN_PATH = '/auth/login'
const OIDC_CALLBACK_PATH = '/auth/oidc/callback'
const SESSION_COOKIE = /^set-cookie:\s*(?:__Host-session|session)=([^;\r\n]*)/i
const EXCERPT = 40

interface Hit { index: number, length: number, secret: string }

/** The credentials to look for, and the fragments of each that count as a leak on their own. */
export class SecretRegistry {
  readonly #values = new Map<string, string>()
  // fragment width -> fragment -> names of the secrets it belongs to (similar tokens share some)
  readonly #fragments = new Map<number, Map<string, string[]>>()
  // the first PREFIX characters of every fragment -> the widths of fragments starting so
  readonly #prefixes = new Map<string, Set<number>>()

  /** Registers a credential; values shorter than 8 characters and non-strings are ignored. */
  add (secret: string, value: unknown): void {
    if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH || this.#values.has(value)) return
    this.#values.set(value, secret)
    let added = false
    if (JWT.test(value)) {
      // The header is the same in every token; the payload and the signature are not.
      const [, payload = '', signature = ''] = value.split('.')
      for (const part of [payload, signature]) added = this.#windows(part, secret) || added
    }
    if (!added) {
      const width = Math.min(value.length, MAX_FRAGMENT, Math.max(MIN_FRAGMENT, Math.ceil(value.length * 2 / 3)))
      for (let at = 0; at + width <= value.length; at++) this.#fragment(value.slice(at, at + width), secret)
    }
  }

  /** The name a value was registered under, if it was. */
  nameOf (value: string): string | undefined {
    return this.#values.get(value)
  }

  get size (): number {
    return this.#values.size
  }

  /**
   * Every stretch of `text` made of registered fragments, and every other JWT. Tokens with
   * similar claims share payload fragments, so a stretch is named after the secret that covers
   * most of it.
   */
  find (text: string): Hit[] {
    const raw: Array<{ index: number, length: number, secrets: string[] }> = []
    // One look-up per position on a short prefix; full fragments are compared only where it matches.
    for (let at = 0; at + PREFIX <= text.length; at++) {
      const widths = this.#prefixes.get(text.slice(at, at + PREFIX))
      if (widths === undefined) continue
      for (const width of widths) {
        const owners = this.#fragments.get(width)?.get(text.slice(at, at + width))
        if (owners !== undefined) raw.push({ index: at, length: width, secrets: owners })
      }
    }
    const hits: Hit[] = []
    let stretch: { index: number, end: number, cover: Map<string, number> } | undefined
    const close = () => {
      if (stretch === undefined) return
      const [[secret]] = [...stretch.cover].sort((a, b) => b[1] - a[1]) as [[string, number]]
      hits.push({ index: stretch.index, length: stretch.end - stretch.index, secret })
    }
    for (const hit of raw) {
      // A JWT's dot between payload and signature does not split its stretch.
      if (stretch === undefined || hit.index > stretch.end + 1) {
        close()
        stretch = { index: hit.index, end: hit.index, cover: new Map() }
      }
      stretch.end = Math.max(stretch.end, hit.index + hit.length)
      for (const secret of hit.secrets) stretch.cover.set(secret, (stretch.cover.get(secret) ?? 0) + hit.length)
    }
    close()
    const registered = [...hits]
    for (const match of text.matchAll(JWT_SHAPE)) {
      const end = match.index + match[0].length
      if (registered.some((hit) => hit.index < end && match.index < hit.index + hit.length)) continue
      hits.push({ index: match.index, length: match[0].length, secret: 'something shaped like a JWT (eyJ….eyJ…)' })
    }
    return hits
  }

  #windows (part: string, secret: string): boolean {
    if (part.length < MIN_FRAGMENT) return false
    const width = Math.min(JWT_WINDOW, part.length)
    for (let at = 0; at + width <= part.length; at += JWT_STRIDE) this.#fragment(part.slice(at, at + width), secret)
    this.#fragment(part.slice(part.length - width), secret)
    return true
  }

  #fragment (fragment: string, secret: string): void {
    let fragments = this.#fragments.get(fragment.length)
    if (fragments === undefined) {
      fragments = new Map()
      this.#fragments.set(fragment.length, fragments)
    }
    const owners = fragments.get(fragment)
    if (owners !== undefined) {
      if (!owners.includes(secret)) owners.push(secret)
      return
    }
    fragments.set(fragment, [secret])
    const prefix = fragment.slice(0, PREFIX)
    let widths = this.#prefixes.get(prefix)
    if (widths === undefined) {
      widths = new Set()
      this.#prefixes.set(prefix, widths)
    }
    widths.add(fragment.length)
  }
}

/** Process-wide: tokens minted by one test must not surface in another's output either. */
export const secrets = new SecretRegistry()

/** For tests with credentials of their own (passwords, tokens) that the helpers cannot see. */
export function registerSecret (name: string, value: string): void {
  secrets.add(name, value)
}

/** One finding per secret per text, with the first place it showed. */
export function scanText (registry: SecretRegistry, where: string, text: string): Finding[] {
  const first = new Map<string, Hit>()
  for (const hit of registry.find(text)) {
    const seen = first.get(hit.secret)
    if (seen === undefined || hit.index < seen.index) first.set(hit.secret, hit)
  }
  return [...first.values()].map((hit) => ({
    where,
    secret: hit.secret,
    excerpt: `${text.slice(Math.max(0, hit.index - EXCERPT), hit.index)}⟦${hit.secret}⟧${text.slice(hit.index + hit.length, hit.index + hit.length + EXCERPT)}`
      .replace(/\r?\n/g, '⏎')
  }))
}

export interface WireResponse {
  method: string
  /** The request target as received, query included. */
  url: string
  /** The response as written to the socket (status line, headers, body), one character per byte (latin1). */
  raw: string
}

interface ParsedResponse {
  status: number
  headLines: string[]
  body: string
}

/** Splits a response into its header lines and its body, undoing chunked framing; the body is decoded as UTF-8. */
export function parseResponse (raw: string): ParsedResponse {
  let rest = raw
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    const head = end === -1 ? rest : rest.slice(0, end)
    const headLines = head.split('\r\n')
    const status = Number(/^HTTP\/\d(?:\.\d)? (\d{3})/.exec(headLines[0] ?? '')?.[1] ?? 0)
    let body = end === -1 ? '' : rest.slice(end + 4)
    // Interim answers (100 Continue) come first; the one that counts follows.
    if (status >= 100 && status < 200 && end !== -1) {
      rest = body
      continue
    }
    // Chunk sizes count bytes, so framing is undone before the body is decoded.
    if (headLines.some((line) => /^transfer-encoding:.*chunked/i.test(line))) body = unchunk(body)
    return { status, headLines, body: Buffer.from(body, 'latin1').toString('utf8') }
  }
}

function unchunk (body: string): string {
  let out = ''
  let at = 0
  while (at < body.length) {
    const lineEnd = body.indexOf('\r\n', at)
    if (lineEnd === -1) return out + body.slice(at)
    const size = Number.parseInt(body.slice(at, lineEnd), 16)
    // Not framing after all: keep the rest as it is rather than lose it.
    if (!Number.isFinite(size)) return out + body.slice(at)
    if (size === 0) return out
    out += body.slice(lineEnd + 2, lineEnd + 2 + size)
    at = lineEnd + 2 + size + 2
  }
  return out
}

function pathOf (url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

/** The session token a successful login answered, or undefined for every other response. */
export function loginToken (response: WireResponse, parsed = parseResponse(response.raw)): string | undefined {
  // A finished SSO sign-in hands the browser its new session in the session Set-Cookie only.
  if (response.method === 'GET' && pathOf(response.url) === OIDC_CALLBACK_PATH && parsed.status === 302) {
    for (const line of parsed.headLines) {
      const value = SESSION_COOKIE.exec(line)?.[1]
      if (value !== undefined && value !== '') return value
    }
    return undefined
  }
  if (response.method !== 'POST' || pathOf(response.url) !== LOGIN_PATH || parsed.status !== 200) return undefined
  try {
    const token: unknown = (JSON.parse(parsed.body) as { token?: unknown }).token
    return typeof token === 'string' && token !== '' ? token : undefined
  } catch {
    return undefined
  }
}

/**
 * Scans one response. In a successful login's answer, its own token is taken out once from the
 * body and once from the session Set-Cookie before the scan: a second copy, or the token in any
 * other header, is still a leak.
 */
export function scanResponse (registry: SecretRegistry, response: WireResponse): Finding[] {
  const parsed = parseResponse(response.raw)
  const path = pathOf(response.url)
  const where = `response to ${response.method} ${path.length > 80 ? `${path.slice(0, 79)}…` : path} (${parsed.status || 'no status line'})`
  let { headLines, body } = parsed
  const token = loginToken(response, parsed)
  if (token !== undefined) {
    registry.add('a session token issued by POST /auth/login', token)
    const at = body.indexOf(token)
    if (at !== -1) body = body.slice(0, at) + body.slice(at + token.length)
    const cookie = headLines.findIndex((line) => SESSION_COOKIE.exec(line)?.[1] === token)
    if (cookie !== -1) headLines = headLines.map((line, index) => index === cookie ? line.replace(token, '') : line)
  }
  return [
    ...scanText(registry, `${where}, head`, headLines.join('\r\n')),
    ...scanText(registry, `${where}, body`, body)
  ]
}

interface Recorded { method: string, url: string, chunks: Buffer[] }

type Write = (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean
type End = (chunk?: unknown, encoding?: unknown, callback?: unknown) => Socket

function bytes (chunk: unknown, encoding: unknown): Buffer | undefined {
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? encoding as BufferEncoding : 'utf8')
  if (chunk instanceof Uint8Array) return Buffer.from(chunk)
  return undefined
}

const CAPTURE_LIMIT = 1024 * 1024

/**
 * Captures what servers write to their sockets, so answers to raw undici or net clients are seen
 * exactly as sent. Bytes are attributed to the response the socket is serving; whatever is
 * written outside a response (Node's own 400 for unparsable requests) is kept as stray bytes.
 * Login request bodies are read as they arrive, so the passwords tried become secrets.
 */
export class WireCapture {
  readonly responses: Recorded[] = []
  readonly stray: Buffer[] = []
  readonly #registry: SecretRegistry
  readonly #current = new WeakMap<ServerResponse, Recorded>()

  constructor (registry: SecretRegistry) {
    this.#registry = registry
  }

  attach (server: Server): void {
    server.prependListener('connection', (socket: Socket) => this.#tap(socket))
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      const recorded = { method: req.method ?? '', url: req.url ?? '', chunks: [] }
      this.responses.push(recorded)
      this.#current.set(res, recorded)
      if (req.method === 'POST' && pathOf(req.url ?? '') === LOGIN_PATH) this.#readLogin(req)
    })
  }

  /** What a test got through `app.inject`, which never touches a socket. */
  recordInjected (request: { method: string, url: string, payload?: unknown }, response: { statusCode: number, statusMessage?: string, headers: Record<string, unknown>, payload: string }): void {
    const head = [`HTTP/1.1 ${response.statusCode} ${response.statusMessage ?? ''}`]
    for (const [name, value] of Object.entries(response.headers)) {
      for (const one of Array.isArray(value) ? value : [value]) head.push(`${name}: ${String(one)}`)
    }
    this.responses.push({ method: request.method, url: request.url, chunks: [Buffer.from(`${head.join('\r\n')}\r\n\r\n${response.payload}`)] })
    if (request.method === 'POST' && pathOf(request.url) === LOGIN_PATH) {
      const payload = request.payload
      this.#loginBody(typeof payload === 'string' || payload instanceof Uint8Array ? Buffer.from(payload).toString('utf8') : JSON.stringify(payload ?? null))
    }
  }

  wire (): WireResponse[] {
    return this.responses.map(({ method, url, chunks }) => ({ method, url, raw: Buffer.concat(chunks).toString('latin1') }))
  }

  #tap (socket: Socket): void {
    const record = (chunk: unknown, encoding: unknown) => {
      const data = bytes(chunk, encoding)
      if (data === undefined || data.length === 0) return
      const response = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
      const recorded = response == null ? undefined : this.#current.get(response)
      const target = recorded?.chunks ?? this.stray
      if (target.reduce((sum, buffer) => sum + buffer.length, 0) < CAPTURE_LIMIT) target.push(data)
    }
    const write = socket.write as Write
    const end = socket.end as End
    // Own properties shadow the prototype's, and http writes through `socket.write`/`socket.end`.
    socket.write = function (this: Socket, chunk: unknown, encoding?: unknown, callback?: unknown) {
      record(chunk, encoding)
      return write.call(this, chunk, encoding, callback)
    } as Socket['write']
    socket.end = function (this: Socket, chunk?: unknown, encoding?: unknown, callback?: unknown) {
      if (typeof chunk !== 'function') record(chunk, encoding)
      return end.call(this, chunk, encoding, callback)
    } as Socket['end']
  }

  #readLogin (req: IncomingMessage): void {
    // The parser pushes body chunks after the 'request' event: wrapping push sees them without
    // consuming the stream, which Fastify still reads as usual.
    const push = req.push
    const chunks: Buffer[] = []
    req.push = (chunk: unknown, encoding?: BufferEncoding) => {
      if (chunk === null) this.#loginBody(Buffer.concat(chunks).toString('utf8'))
      else {
        const data = bytes(chunk, encoding)
        if (data !== undefined && chunks.length < 64) chunks.push(data)
      }
      return push.call(req, chunk, encoding)
    }
  }

  #loginBody (text: string): void {
    try {
      const body = JSON.parse(text) as { password?: unknown } | null
      this.#registry.add('a password sent to POST /auth/login', body?.password)
    } catch {
      // Not JSON: the BFF refuses it and there is no password to remember.
    }
  }
}

/** Everything one stack (or one server process) wrote, scanned when its test ends. */
export class LeakWatch {
  readonly registry: SecretRegistry
  readonly wire: WireCapture
  readonly #logs: Array<{ name: string, lines: string[] }> = []

  constructor (registry: SecretRegistry = secrets) {
    this.registry = registry
    this.wire = new WireCapture(registry)
  }

  /** Scans these lines (kept by reference: lines added later are scanned too). */
  watchLines (name: string, lines: string[]): void {
    this.#logs.push({ name, lines })
  }

  watchServer (server: Server): void {
    this.wire.attach(server)
  }

  findings (): Finding[] {
    const responses = this.wire.wire()
    // Login answers first: the tokens they issued are secrets in every other response and line.
    for (const response of responses) {
      const token = loginToken(response)
      if (token !== undefined) this.registry.add('a session token issued by POST /auth/login', token)
    }
    const found: Finding[] = []
    for (const { name, lines } of this.#logs) {
      lines.forEach((line, index) => found.push(...scanText(this.registry, `${name} ${index + 1}`, line)))
    }
    for (const response of responses) found.push(...scanResponse(this.registry, response))
    const stray = Buffer.concat(this.wire.stray).toString('utf8')
    if (stray !== '') found.push(...scanText(this.registry, 'bytes written outside any response', stray))
    return found
  }

  /** Throws, listing every leak, when anything was found. */
  assertClean (): void {
    const found = this.findings()
    if (found.length === 0) return
    const shown = found.slice(0, 20).map((finding) => `- ${finding.where}: ${finding.secret}\n    ${finding.excerpt}`)
    if (found.length > 20) shown.push(`- … and ${found.length - 20} more`)
    throw new Error(`leak scan: ${found.length} credential leak(s) in logs or responses\n${shown.join('\n')}`)
  }
}
