import { createSigner } from 'fast-jwt'
import type { SessionConfig } from '../config/config.ts'
import { newSessionPayload, sessionSignOptions } from './claims.ts'

export interface MintRequest {
  sub: string
  orgs: number[] | '*'
  /** Space-separated scopes; absent = every contact scope. */
  scope?: string
  /** The identity provider's session id (SSO). */
  sid?: string
  /** Lifetime in seconds; defaults to SESSION_TTL_S. */
  ttlS?: number
}

/** Signs a session exactly as the BFF's own login would, for operators and trusted issuers. */
export function mintSession (config: SessionConfig, request: MintRequest): { token: string, expiresAt: Date } {
  const ttlS = request.ttlS ?? config.SESSION_TTL_S
  const sign = createSigner({
    ...sessionSignOptions(config),
    key: config.SESSION_SECRET,
    expiresIn: `${ttlS}s`
  })
  const token = sign(newSessionPayload(request))
  return { token, expiresAt: new Date(Date.now() + ttlS * 1000) }
}

/** Parses `1,2,3` or `*` into session orgs; throws on anything else. */
export function parseOrgs (value: string): number[] | '*' {
  if (value.trim() === '*') return '*'
  const orgs = value.split(',').map((part) => part.trim())
  if (orgs.length === 0 || orgs.some((org) => !/^[1-9][0-9]{0,15}$/.test(org) || !Number.isSafeInteger(Number(org)))) {
    throw new Error(`--orgs must be "*" or a comma-separated list of positive integers, got "${value}"`)
  }
  return [...new Set(orgs.map(Number))]
}
