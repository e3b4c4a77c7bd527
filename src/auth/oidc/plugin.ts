import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { createRemoteJWKSet, customFetch as joseFetch } from 'jose'
import {
  authorizationCodeGrant,
  buildAuthorizationUrl,
  buildEndSessionUrl,
  calculatePKCECodeChallenge,
  fetchUserInfo,
  randomNonce,
  randomPKCECodeVerifier,
  randomState,
  type Configuration
} from 'openid-client'
import { corsOrigins, type Config } from '../../config/config.ts'
import { Problem } from '../../errors/problems.ts'
import { sessionCookieOptions } from '../../routes/auth.ts'
import { COMMON_PROBLEMS, problemResponses } from '../../schemas/responses.ts'
import { newSessionPayload, type SessionClaims } from '../../session/claims.ts'
import { sessionCookieName } from '../../session/plugin.ts'
import { allowedReturn, isSsoSubject, organisationsFrom, scopeFrom, sessionSubject, sidFrom } from './identity.ts'
import { InvalidLogoutToken, KeysUnavailable, LogoutTokenVerifier } from './logout-token.ts'
import { discoverProvider, failureReason, isUnavailable, providerError, type CustomFetch } from './provider.ts'
import { isState, TransactionSealer, transactionCookieName, UsedStates } from './transaction.ts'

/** What the rest of the BFF asks of single sign-on; a no-op when SSO is off. */
export interface Sso {
  readonly enabled: boolean
  /**
   * Where to send the browser so the provider's session ends too (RP-initiated logout), for a
   * session that came from SSO; undefined for other sessions or when the provider offers none.
   * With `returnTo` the provider sends the browser back there afterwards; a `returnTo` outside
   * OIDC_RETURN_ORIGINS throws 400 VALIDATION_FAILED (call it before changing anything).
   */
  endSessionUrl: (session: SessionClaims, returnTo?: string) => string | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    sso: Sso
  }
}

export interface OidcPluginOptions {
  config: Config
  /** Every call to the provider (discovery, token, userinfo, keys) goes through this; tests wrap it. */
  fetch?: CustomFetch
  /** ms epoch; tests move it to expire transactions and logout tokens. */
  now?: () => number
  /** How long a started sign-in may take to come back, s (default 600). */
  transactionTtlS?: number
}

const CALLBACK = '/auth/oidc/callback'
const BACKCHANNEL_LOGOUT = '/auth/oidc/backchannel-logout'

const LoginQuery = Type.Object({
  return_to: Type.String({ minLength: 1, maxLength: 2048, description: 'absolute URL on an origin of OIDC_RETURN_ORIGINS, where the browser goes once signed in' })
}, { additionalProperties: false })

// The provider adds what it likes (session_state, iss, error_description): all optional, none refused.
const CallbackQuery = Type.Object({
  code: Type.Optional(Type.String({ maxLength: 4096 })),
  state: Type.Optional(Type.String({ maxLength: 512 })),
  iss: Type.Optional(Type.String({ maxLength: 2048 })),
  error: Type.Optional(Type.String({ maxLength: 256 }))
})

const Redirect = Type.Null({ description: 'Redirect (Location)' })

const BackchannelLogoutBody = Type.Object({
  logout_token: Type.String({ minLength: 1, description: 'the provider\'s signed logout token (a JWT), exactly once' })
})

/** The answer to a return_to (login or logout) outside OIDC_RETURN_ORIGINS: no open redirect. */
function returnRefused (origins: readonly string[]): Problem {
  return new Problem('VALIDATION_FAILED', {
    detail: 'return_to must be an absolute URL on an allowed origin',
    errors: [{ pointer: '/return_to', detail: `must be an absolute URL on one of: ${origins.join(', ') || '(none configured)'}` }]
  })
}

function loginFailed (detail: string): Problem {
  return new Problem('OIDC_LOGIN_FAILED', { detail })
}

function unavailable (): Problem {
  return new Problem('OIDC_PROVIDER_UNAVAILABLE', { detail: 'The identity provider cannot be reached; try again later', retryAfter: 5 })
}

async function oidcPlugin (fastify: FastifyInstance, options: OidcPluginOptions) {
  const { config } = options
  if (config.OIDC_ISSUER === undefined) {
    fastify.decorate('sso', { enabled: false, endSessionUrl: () => undefined } satisfies Sso)
    return
  }
  const clientId = config.OIDC_CLIENT_ID as string
  const publicUrl = (config.PUBLIC_URL as string).replace(/\/$/, '')
  const redirectUri = publicUrl + CALLBACK
  const now = options.now ?? Date.now
  const ttlMs = (options.transactionTtlS ?? 600) * 1000
  const returnOrigins = corsOrigins({ CORS_ORIGINS: config.OIDC_RETURN_ORIGINS ?? config.CORS_ORIGINS }).map((origin) => new URL(origin).origin)
  const secure = config.SESSION_COOKIE_SECURE
  const sessionCookie = sessionCookieName(config)
  const sealer = new TransactionSealer(config.SESSION_SECRET)
  const usedStates = new UsedStates()

  const provider: Configuration = await discoverProvider({
    issuer: config.OIDC_ISSUER,
    clientId,
    clientSecret: config.OIDC_CLIENT_SECRET as string,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    fetch: options.fetch
  })
  const metadata = provider.serverMetadata()
  if (metadata.jwks_uri === undefined) throw new Error(`SSO is configured but OIDC_ISSUER ${config.OIDC_ISSUER} publishes no jwks_uri`)
  const keys = createRemoteJWKSet(new URL(metadata.jwks_uri), {
    timeoutDuration: config.UPSTREAM_TIMEOUT_MS,
    ...(options.fetch === undefined ? {} : { [joseFetch]: options.fetch as never })
  })
  const logoutTokens = new LogoutTokenVerifier({
    issuer: metadata.issuer,
    clientId,
    keys,
    // Asymmetric algorithms only: the keys come from the provider's JWKS.
    algorithms: (metadata.id_token_signing_alg_values_supported ?? ['RS256']).filter((alg) => alg !== 'none' && !alg.startsWith('HS')),
    now
  })
  fastify.metrics?.watchStores({ oidc_used_states: usedStates, oidc_logout_jtis: logoutTokens })
  fastify.log.info({ issuer: metadata.issuer, redirect_uri: redirectUri, end_session: metadata.end_session_endpoint !== undefined }, 'SSO enabled')

  // No id_token_hint: the BFF keeps no ID token. client_id names the application, and lets the
  // provider check post_logout_redirect_uri against that client's registered ones.
  const offersEndSession = metadata.end_session_endpoint !== undefined
  const endSession = offersEndSession ? buildEndSessionUrl(provider, { client_id: clientId }).href : undefined
  fastify.decorate('sso', {
    enabled: true,
    endSessionUrl: (session: SessionClaims, returnTo?: string) => {
      if (!offersEndSession || !isSsoSubject(session.sub)) return undefined
      if (returnTo === undefined) return endSession
      const back = allowedReturn(returnTo, returnOrigins)
      if (back === undefined) throw returnRefused(returnOrigins)
      return buildEndSessionUrl(provider, { client_id: clientId, post_logout_redirect_uri: back }).href
    }
  } satisfies Sso)

  const txCookie = (state: string) => ({ name: transactionCookieName(state, secure), options: { httpOnly: true, secure, sameSite: 'lax' as const, path: CALLBACK } })

  async function userinfo (accessToken: string | undefined, sub: string): Promise<Record<string, unknown>> {
    if (accessToken === undefined || metadata.userinfo_endpoint === undefined) return {}
    return await fetchUserInfo(provider, accessToken, sub) as Record<string, unknown>
  }

  /** The session the provider's answer entitles this user to; throws the matching problem otherwise. */
  async function exchange (request: FastifyRequest, state: string, codeVerifier: string, nonce: string) {
    const current = new URL(redirectUri)
    current.search = new URL(request.url, publicUrl).search
    const tokens = await authorizationCodeGrant(provider, current, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true
    })
    const idClaims = tokens.claims() as Record<string, unknown> | undefined
    if (idClaims === undefined) throw loginFailed('The identity provider sent no ID token')
    const sub = sessionSubject(idClaims.sub)
    if (sub === undefined) throw loginFailed('The identity provider\'s subject cannot name a session')
    const wanted = [config.OIDC_ORGS_CLAIM, ...(config.OIDC_SCOPE_CLAIM === undefined ? [] : [config.OIDC_SCOPE_CLAIM])]
    // Many providers put custom claims only in userinfo when an access token is issued.
    const claims = wanted.every((claim) => claim in idClaims) ? idClaims : { ...(await userinfo(tokens.access_token, idClaims.sub as string)), ...idClaims }
    const orgs = organisationsFrom(claims[config.OIDC_ORGS_CLAIM])
    if (orgs === undefined) {
      request.log.info({ event: 'oidc.login.no_organisations', sub, claim: config.OIDC_ORGS_CLAIM }, 'SSO user has no organisations')
      throw new Problem('OIDC_NO_ORGANISATIONS', { detail: `Your account has no emnify organisations (claim ${config.OIDC_ORGS_CLAIM}); ask your administrator` })
    }
    return {
      sub,
      orgs,
      scope: config.OIDC_SCOPE_CLAIM === undefined ? undefined : scopeFrom(claims[config.OIDC_SCOPE_CLAIM]),
      sid: sidFrom(idClaims.sid)
    }
  }

  await fastify.register(async (scope) => {
    const app = scope.withTypeProvider<TypeBoxTypeProvider>()

    // Only the back-channel logout route reads a body, and only this form.
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_request, body, done) => {
      done(null, new URLSearchParams(body as string))
    })

    // Answers here carry cookies or a provider's verdict: never cached.
    app.addHook('onSend', (_request, reply, payload, done) => {
      reply.header('cache-control', 'no-store')
      done(null, payload)
    })

    app.get('/auth/oidc/login', {
      config: { public: true },
      schema: {
        tags: ['auth'],
        summary: 'Start single sign-on: redirects the browser to the identity provider',
        description: 'Authorization code flow with PKCE (S256), state and nonce; the sign-in is kept in a short-lived HttpOnly cookie of its own, so several tabs may sign in at once.',
        querystring: LoginQuery,
        response: { 302: Redirect, ...problemResponses([...COMMON_PROBLEMS, 'VALIDATION_FAILED'], { instance: '/auth/oidc/login' }) }
      }
    }, async (request, reply) => {
      const returnTo = allowedReturn(request.query.return_to, returnOrigins)
      if (returnTo === undefined) throw returnRefused(returnOrigins)
      const codeVerifier = randomPKCECodeVerifier()
      const state = randomState()
      const nonce = randomNonce()
      const location = buildAuthorizationUrl(provider, {
        redirect_uri: redirectUri,
        scope: config.OIDC_SCOPES,
        code_challenge: await calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state,
        nonce
      })
      const { name, options: attributes } = txCookie(state)
      reply.setCookie(name, sealer.seal(state, { codeVerifier, nonce, returnTo, expiresAt: now() + ttlMs }), { ...attributes, maxAge: ttlMs / 1000 })
      return reply.redirect(location.href, 302)
    })

    app.get(CALLBACK, {
      config: { public: true, rateLimit: { max: config.LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE, timeWindow: 60_000 } },
      schema: {
        tags: ['auth'],
        summary: 'Where the identity provider sends the browser back: sets the session cookie and redirects to return_to',
        querystring: CallbackQuery,
        response: {
          302: Redirect,
          ...problemResponses([...COMMON_PROBLEMS, 'VALIDATION_FAILED', 'OIDC_LOGIN_FAILED', 'OIDC_NO_ORGANISATIONS', 'RATE_LIMITED', 'OIDC_PROVIDER_UNAVAILABLE'], { instance: CALLBACK })
        }
      }
    }, async (request, reply) => {
      const fail = (detail: string, reason: string): never => {
        request.log.info({ event: 'oidc.login.failed', reason }, 'SSO login failed')
        throw loginFailed(detail)
      }
      const state = request.query.state
      if (!isState(state)) return fail('The sign-in answer does not belong to a sign-in started here', 'state malformed or missing')
      const { name, options: attributes } = txCookie(state)
      const sealed = request.cookies[name]
      // Whatever happens next, this sign-in is over.
      if (sealed !== undefined) reply.clearCookie(name, attributes)
      if (sealed === undefined) return fail('No sign-in with this state is in progress in this browser; start again', 'no transaction for state')
      const transaction = sealer.open(state, sealed)
      if (transaction === undefined) return fail('The sign-in could not be verified; start again', 'transaction cookie invalid')
      const at = now()
      if (transaction.expiresAt <= at) return fail('The sign-in took too long; start again', 'transaction expired')
      if (!usedStates.use(state, transaction.expiresAt, at)) return fail('This sign-in answer was already used; start again', 'callback replayed')

      let session: Awaited<ReturnType<typeof exchange>>
      try {
        session = await exchange(request, state, transaction.codeVerifier, transaction.nonce)
      } catch (error) {
        if (error instanceof Problem) {
          if (error.code === 'OIDC_LOGIN_FAILED') request.log.info({ event: 'oidc.login.failed', reason: error.detail }, 'SSO login failed')
          throw error
        }
        const reason = failureReason(error)
        if (isUnavailable(error)) {
          request.log.warn({ event: 'oidc.login.provider_unavailable', reason }, 'identity provider unreachable')
          throw unavailable()
        }
        const refused = providerError(error)
        return fail(refused === undefined ? 'The identity provider\'s answer could not be verified' : `The identity provider refused the sign-in (${refused})`, reason)
      }
      const token = app.jwt.sign(newSessionPayload(session))
      reply.setCookie(sessionCookie, token, { ...sessionCookieOptions(config), maxAge: config.SESSION_TTL_S })
      request.log.info({ event: 'login.succeeded', method: 'oidc', sub: session.sub }, 'login succeeded')
      return reply.redirect(transaction.returnTo, 302)
    })

    app.post(BACKCHANNEL_LOGOUT, {
      config: { public: true },
      // The body schema documents the form; the handler checks it itself (URLSearchParams, one value).
      attachValidation: true,
      schema: {
        tags: ['auth'],
        summary: 'OpenID Connect Back-Channel Logout: the provider ends the sessions of one of its sessions or users',
        description: 'Form body `logout_token`. A valid token revokes every BFF session of its `sid` (or of its `sub` when it names no `sid`) issued up to now. ' +
          'Invalid (signature, `iss`, `aud`, `iat`, a replayed `jti`, no back-channel logout event, a `nonce`): 400; the provider\'s keys unreachable: 503, so the provider retries.',
        consumes: ['application/x-www-form-urlencoded'],
        body: BackchannelLogoutBody,
        response: {
          200: Type.Null({ description: 'Sessions ended (empty body)' }),
          ...problemResponses([...COMMON_PROBLEMS, 'VALIDATION_FAILED', 'UNSUPPORTED_MEDIA_TYPE', 'PAYLOAD_TOO_LARGE', 'OIDC_PROVIDER_UNAVAILABLE'], { instance: BACKCHANNEL_LOGOUT })
        }
      }
    }, async (request, reply) => {
      const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams()
      const values = form.getAll('logout_token')
      const invalid = (reason: string): never => {
        request.log.info({ event: 'oidc.backchannel_logout.rejected', reason }, 'logout token rejected')
        throw new Problem('VALIDATION_FAILED', { detail: 'The logout token is missing or invalid', errors: [{ pointer: '/logout_token', detail: 'is missing or invalid' }] })
      }
      if (values.length !== 1 || values[0] === '') return invalid('logout_token missing or repeated')
      let target
      try {
        target = await logoutTokens.verify(values[0] as string)
      } catch (error) {
        if (error instanceof KeysUnavailable) {
          request.log.warn({ event: 'oidc.backchannel_logout.keys_unavailable', reason: failureReason(error.cause) }, 'identity provider keys unreachable')
          throw unavailable()
        }
        if (error instanceof InvalidLogoutToken) return invalid(error.message)
        throw error
      }
      const value = target.kind === 'sid' ? target.value : sessionSubject(target.value)
      if (value === undefined) return invalid('sub cannot name a session')
      app.revocations.revokeAll(target.kind, value, Math.floor(now() / 1000))
      request.log.info({ event: 'oidc.backchannel_logout', kind: target.kind, ...(target.kind === 'sub' ? { sub: value } : {}) }, 'sessions ended by the identity provider')
      // An empty body, as the spec's examples answer (the Null schema would serialise `null`).
      return reply.code(200).send(undefined as never)
    })
  })
}

export default fp(oidcPlugin, { name: 'oidc', fastify: '5.x', dependencies: ['session'] })
