import { randomUUID } from 'node:crypto'
import type { SessionConfig } from '../config/config.ts'

/** Claims of a verified BFF session. `orgs: '*'` means every organisation. */
export interface SessionClaims {
  sub: string
  orgs: number[] | '*'
  iat: number
  exp: number
  iss: string
  aud: string | string[]
  jti?: string
  /** Space-separated; `contacts:read`, `contacts:write` count. Absent = both (older sessions keep working). */
  scope?: string
  /** The identity provider's session id, for back-channel logout (SSO sessions only). */
  sid?: string
}

export type Scope = 'contacts:read' | 'contacts:write'
export const SCOPES: readonly Scope[] = ['contacts:read', 'contacts:write']

export const MAX_TOKEN_LENGTH = 8192
export const CLOCK_TOLERANCE_MS = 30_000
const MAX_ORGS = 10_000
/** The longest session accepted from any issuer: one year. */
export const MAX_SESSION_LIFETIME_S = 366 * 24 * 3600

/**
 * Whether the signature segment is the one canonical base64url spelling of its bytes. fast-jwt
 * ignores the unused low bits of the last character, so one session has four spellings that all
 * verify; a logout that revokes a jti-less session by its token hash would miss three of them.
 */
export function hasCanonicalSignature (token: string): boolean {
  const signature = token.slice(token.lastIndexOf('.') + 1)
  // Read off the characters instead of decoding and re-encoding on every request: only
  // base64url characters, no impossible length, and the last character's unused bits all zero.
  if (!BASE64URL.test(signature)) return false
  const rest = signature.length % 4
  if (rest === 0) return true
  if (rest === 1) return false
  return (BASE64URL_ALPHABET.indexOf(signature[signature.length - 1] as string) & (rest === 2 ? 0b1111 : 0b11)) === 0
}

const BASE64URL = /^[A-Za-z0-9_-]*$/
const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Options shared by every place that signs or verifies a session, so they cannot drift apart. */
export function sessionSignOptions (config: SessionConfig) {
  return {
    algorithm: 'HS256' as const,
    iss: config.SESSION_ISSUER,
    aud: config.SESSION_AUDIENCE,
    // A string, because @fastify/jwt reads numbers as seconds and fast-jwt as milliseconds.
    expiresIn: `${config.SESSION_TTL_S}s`
  }
}

export function sessionVerifyOptions (config: SessionConfig) {
  return {
    algorithms: ['HS256' as const],
    allowedIss: config.SESSION_ISSUER,
    allowedAud: config.SESSION_AUDIENCE,
    requiredClaims: ['sub', 'orgs', 'iat', 'exp', 'iss', 'aud'],
    clockTolerance: CLOCK_TOLERANCE_MS,
    // Frontends repeat the same token on every call; fast-jwt's cache keys by a hash of the token
    // and re-checks exp/nbf on every hit.
    cache: 10_000
  }
}

export interface NewSession {
  sub: string
  orgs: number[] | '*'
  scope?: string | undefined
  sid?: string | undefined
}

/** Payload for a new session; `iat`, `exp`, `iss`, `aud` are added by the signer. */
export function newSessionPayload (session: NewSession): Record<string, unknown> {
  const payload: Record<string, unknown> = { sub: session.sub, orgs: session.orgs, jti: randomUUID() }
  if (session.scope !== undefined) payload.scope = session.scope
  if (session.sid !== undefined) payload.sid = session.sid
  return payload
}

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/**
 * The one parser of `scope`: a space-separated list of RFC 6749 scope tokens, at most 1 KiB.
 * Unknown scopes are allowed (an issuer may carry its own) and grant nothing here.
 */
export function validScope (scope: unknown): scope is string {
  if (typeof scope !== 'string' || scope.length > 1024) return false
  const parts = scope.split(' ')
  return parts.every((part) => part === '' || SCOPE_TOKEN.test(part))
}

/** Whether the session holds `scope`; a session without a `scope` claim holds both contact scopes. */
export function hasScope (claims: SessionClaims, scope: Scope): boolean {
  if (claims.scope === undefined) return true
  return ` ${claims.scope} `.includes(` ${scope} `)
}

/** The scopes a session holds, as reported by GET /auth/session and login. */
export function effectiveScope (claims: Pick<SessionClaims, 'scope'>): string {
  return claims.scope ?? SCOPES.join(' ')
}

/** Parses `--scope`/users-file values: space- or comma-separated, only the known contact scopes. */
export function parseScope (value: string): string {
  const parts = [...new Set(value.split(/[\s,]+/).filter((part) => part !== ''))]
  const unknown = parts.filter((part) => !(SCOPES as readonly string[]).includes(part))
  if (parts.length === 0 || unknown.length > 0) {
    throw new Error(`scope must list ${SCOPES.join(' and/or ')}, got "${value}"`)
  }
  return parts.join(' ')
}

function validOrgs (orgs: unknown): orgs is number[] | '*' {
  if (orgs === '*') return true
  if (!Array.isArray(orgs) || orgs.length > MAX_ORGS) return false
  for (let i = 0; i < orgs.length; i++) {
    const org: unknown = orgs[i]
    // Safe integers only: the org check compares numbers, and rounding must never make two ids equal.
    if (typeof org !== 'number' || !Number.isSafeInteger(org) || org < 1) return false
    if (orgs.indexOf(org) !== i) return false
  }
  return true
}

/**
 * The shape checks fast-jwt cannot express: it proves the signature, time claims, issuer and
 * audience; this proves the claims the BFF itself relies on are well-formed.
 */
export function isSessionClaims (payload: unknown, nowMs: number): payload is SessionClaims {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return false
  const p = payload as Record<string, unknown>
  if (typeof p.sub !== 'string' || p.sub.length === 0 || p.sub.length > 256) return false
  if (typeof p.iat !== 'number' || typeof p.exp !== 'number' || !Number.isFinite(p.iat) || !Number.isFinite(p.exp) || p.exp <= p.iat) return false
  // A lifetime past any issuer's (and past what a Date can hold) is forged or broken.
  if (p.exp - p.iat > MAX_SESSION_LIFETIME_S) return false
  // A session "issued" in the future is forged or from a broken clock.
  if (p.iat * 1000 > nowMs + CLOCK_TOLERANCE_MS) return false
  if (p.jti !== undefined && (typeof p.jti !== 'string' || p.jti.length === 0 || p.jti.length > 128)) return false
  if (p.scope !== undefined && !validScope(p.scope)) return false
  if (p.sid !== undefined && (typeof p.sid !== 'string' || p.sid.length === 0 || p.sid.length > 256)) return false
  return validOrgs(p.orgs)
}

/** Whether the session may act on this organisation. `orgId` is a validated decimal string. */
export function allowsOrganisation (claims: SessionClaims, orgId: string): boolean {
  if (claims.orgs === '*') return true
  // orgs are safe integers, so an id longer than 2^53 rounds to a value none of them can equal.
  return claims.orgs.includes(Number(orgId))
}
