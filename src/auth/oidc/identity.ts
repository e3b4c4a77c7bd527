import { SCOPES } from '../../session/claims.ts'

/**
 * Prefix of every SSO session's `sub`. Users-file usernames match `^[A-Za-z0-9._@+-]{1,128}$`,
 * so no ":" – an SSO subject can never be taken for (or revoke, lock out, or share limits with)
 * a local user of the same spelling.
 */
export const OIDC_SUBJECT_PREFIX = 'oidc:'
const MAX_SUB = 256

/** The session `sub` for a provider's subject, or undefined when it cannot be one. */
export function sessionSubject (providerSub: unknown): string | undefined {
  if (typeof providerSub !== 'string' || providerSub === '') return undefined
  const sub = OIDC_SUBJECT_PREFIX + providerSub
  return sub.length <= MAX_SUB ? sub : undefined
}

export function isSsoSubject (sub: string): boolean {
  return sub.startsWith(OIDC_SUBJECT_PREFIX)
}

const DECIMAL_ID = /^[1-9][0-9]{0,15}$/
const MAX_ORGS = 10_000

/**
 * The organisations claim: an array of positive integers (decimal strings accepted, since
 * directory attributes are often strings), or "*". Undefined when absent, empty or malformed:
 * such a user gets no session.
 */
export function organisationsFrom (value: unknown): number[] | '*' | undefined {
  if (value === '*') return '*'
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_ORGS) return undefined
  const orgs = new Set<number>()
  for (const item of value) {
    const id = typeof item === 'string' && DECIMAL_ID.test(item) ? Number(item) : item
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) return undefined
    orgs.add(id)
  }
  return [...orgs]
}

/**
 * The contact scopes named by the scope claim (a space-separated string or an array of
 * strings). Other values are the provider's own business and grant nothing; a missing or
 * malformed claim grants no contact scope at all (fail closed).
 */
export function scopeFrom (value: unknown): string {
  const parts = typeof value === 'string'
    ? value.split(' ')
    : Array.isArray(value) ? value.filter((part): part is string => typeof part === 'string') : []
  return SCOPES.filter((scope) => parts.includes(scope)).join(' ')
}

/** The provider's session id, kept so that back-channel logout can end this session. */
export function sidFrom (value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_SUB ? value : undefined
}

/**
 * The URL a finished login may return to: absolute http(s), on an allowed origin, without
 * credentials. Undefined otherwise (no open redirect).
 */
export function allowedReturn (value: string, origins: readonly string[]): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  if (url.username !== '' || url.password !== '') return undefined
  return origins.includes(url.origin) ? url.href : undefined
}
