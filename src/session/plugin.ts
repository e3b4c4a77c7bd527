import fp from 'fastify-plugin'
import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../config/config.ts'
import { Revocations } from './revocations.ts'
import { VerifiedSessions } from './verification-cache.ts'
import { headerLines } from '../protection/header-lines.ts'
import { Problem } from '../errors/problems.ts'
import {
  hasCanonicalSignature,
  isSessionClaims,
  MAX_TOKEN_LENGTH,
  sessionSignOptions,
  sessionVerifyOptions,
  type SessionClaims
} from './claims.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Routes open without a session (health, login, docs). Everything else requires one. */
    public?: boolean
  }
  interface FastifyRequest {
    /** The verified session, set before any route handler runs on a non-public route. */
    session: SessionClaims | null
    /** The raw session token, kept for revocation by logout. */
    sessionToken: string | null
  }
  interface FastifyInstance {
    /** Sessions ended by logout, consulted on every authenticated request. */
    revocations: Revocations
  }
}

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i
const COMPACT_JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

export function sessionCookieName (config: Pick<Config, 'SESSION_COOKIE_SECURE'>): string {
  // The __Host- prefix makes browsers refuse the cookie unless Secure, Path=/ and no Domain.
  return config.SESSION_COOKIE_SECURE ? '__Host-session' : 'session'
}

export interface SessionPluginOptions {
  config: Config
  /**
   * Called before a request is refused (401 or 403 from this hook); may throw another problem
   * instead. The per-session rate limit uses it to count unauthenticated requests per IP.
   */
  onReject?: (request: FastifyRequest, reply: FastifyReply) => void
  /** The state layer's revocations (shared by a fleet); a fresh local set otherwise. */
  revocations?: Revocations
}

function unauthenticated (detail: string): Problem {
  return new Problem('UNAUTHENTICATED', { detail })
}

async function sessionPlugin (app: FastifyInstance, { config, onReject, revocations = new Revocations() }: SessionPluginOptions) {
  const cookieName = sessionCookieName(config)

  await app.register(fastifyCookie)
  await app.register(fastifyJwt, {
    secret: config.SESSION_SECRET,
    sign: sessionSignOptions(config),
    // VerifiedSessions below answers repeats without hashing the token; fast-jwt's own cache
    // would only add a SHA-256 and a second copy to every first verification.
    verify: { ...sessionVerifyOptions(config), cache: false }
  })

  app.decorateRequest('session', null)
  app.decorateRequest('sessionToken', null)
  app.decorate('revocations', revocations)
  const verified = new VerifiedSessions()
  app.metrics?.watchStores({ verified_sessions: verified })

  function verify (token: string): SessionClaims {
    if (token.length > MAX_TOKEN_LENGTH) throw unauthenticated('Session token is too large')
    const now = Date.now()
    let claims = verified.get(token, now)
    if (claims === undefined) {
      if (!hasCanonicalSignature(token)) throw unauthenticated('Session is invalid or expired')
      let payload: unknown
      try {
        payload = app.jwt.verify(token)
      } catch {
        throw unauthenticated('Session is invalid or expired')
      }
      if (!isSessionClaims(payload, now)) throw unauthenticated('Session claims are invalid')
      // Only compact JWTs are remembered, so that every remembered token is one BEARER accepts.
      if (COMPACT_JWT.test(token)) verified.set(token, payload)
      claims = payload
    }
    // Every request, cached or not: a logout ends the session at once.
    if (app.revocations.has(claims, token)) throw unauthenticated('Session has ended')
    return claims
  }

  /**
   * Runs on every request before the body is read: one place for transport rules, CSRF and
   * verification, so a route added later is protected without opting in.
   */
  // Synchronous, like every per-request hook here: an async hook costs a promise and a microtask hop.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: (error?: Problem) => void) => {
    if (request.is404 || request.routeOptions.config.public === true) {
      done()
      return
    }
    try {
      authenticate(request)
    } catch (error) {
      onReject?.(request, reply)
      throw error
    }
    done()
  })

  function bearerToken (header: string): string {
    // The usual spelling with a token verified before: the cache keeps only compact JWTs, which
    // the pattern accepts, so a hit skips it (about 0.7 µs a request).
    if (header.startsWith('Bearer ')) {
      const token = header.slice(7)
      if (verified.has(token)) return token
    }
    const match = BEARER.exec(header)
    if (match === null) throw unauthenticated('Authorization must use the Bearer scheme')
    return match[1] as string
  }

  function authenticate (request: FastifyRequest): void {
    const header = request.headers.authorization
    const cookie = request.cookies[cookieName]
    if (header !== undefined && cookie !== undefined) {
      throw unauthenticated('Send the session either as a Bearer token or as a cookie, not both')
    }

    let token: string
    if (header !== undefined) {
      // Node keeps the first of several Authorization lines; acting on either would be a guess.
      if (headerLines(request.raw.rawHeaders, 'authorization') > 1) throw unauthenticated('Send one Authorization header')
      token = bearerToken(header)
    } else if (cookie !== undefined && cookie !== '') {
      token = cookie
    } else {
      throw unauthenticated('A session is required')
    }

    const claims = verify(token)
    // Cookies ride along on cross-site requests; a custom header cannot be sent cross-site
    // without a CORS preflight, so its presence proves the request came from an allowed page.
    if (header === undefined && UNSAFE_METHODS.has(request.method) && request.headers['x-csrf'] !== '1') {
      throw new Problem('CSRF_HEADER_REQUIRED', { detail: 'Cookie-authenticated requests must send the header X-CSRF: 1' })
    }
    request.session = claims
    request.sessionToken = token
  }
}

export default fp(sessionPlugin, { name: 'session', fastify: '5.x' })
