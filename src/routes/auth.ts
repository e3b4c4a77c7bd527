import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Config } from '../config/config.ts'
import { Problem } from '../errors/problems.ts'
import { BODY_PROBLEMS, COMMON_PROBLEMS, problemResponses, SESSION_PROBLEMS } from '../schemas/responses.ts'
import { effectiveScope, newSessionPayload } from '../session/claims.ts'
import { LoginLockout } from '../session/login-limiter.ts'
import { sessionCookieName } from '../session/plugin.ts'
import { canonicalUsername, type UserDirectory } from '../users/users-file.ts'
import { sendNoContent } from '../http/replies.ts'

export interface AuthRoutesOptions {
  config: Config
  /** Null when USERS_FILE is not configured: login is then not offered. */
  users: UserDirectory | null
  limiter?: LoginLockout
}

const Orgs = Type.Union([Type.Array(Type.Integer({ minimum: 1 })), Type.Literal('*')], { description: 'organisation ids, or "*" for all' })

const Scope = Type.String({ description: 'space-separated scopes the session holds: `contacts:read`, `contacts:write`' })

const LoginBody = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 128 }),
  password: Type.String({ minLength: 1, maxLength: 1024 })
}, { additionalProperties: false, examples: [{ username: 'alice', password: 'correct horse battery staple' }] })

const LoginReply = Type.Object({
  token: Type.String({ description: 'the session JWT, for Authorization: Bearer' }),
  token_type: Type.Literal('Bearer'),
  expires_at: Type.String({ format: 'date-time' }),
  user: Type.Object({ sub: Type.String(), orgs: Orgs, scope: Scope })
})

const EndSessionReply = Type.Object({
  end_session_url: Type.String({ format: 'uri', description: 'where to send the browser so that the identity provider\'s session ends too' })
}, { description: 'Signed out of the BFF; the provider\'s session is still open' })

const LogoutQuery = Type.Object({
  return_to: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: 'single sign-on: the page to come back to once the provider\'s session has ended; an absolute URL on an origin of OIDC_RETURN_ORIGINS, registered at the provider as a post-logout redirect URI' }))
})

const SessionReply = Type.Object({ sub: Type.String(), orgs: Orgs, scope: Scope, expires_at: Type.String({ format: 'date-time' }) })

/** Attributes of the session cookie, wherever a session is set or cleared (password login, SSO). */
export function sessionCookieOptions (config: Pick<Config, 'SESSION_COOKIE_SECURE'>) {
  return { httpOnly: true, sameSite: 'strict' as const, path: '/', secure: config.SESSION_COOKIE_SECURE }
}

export default async function authRoutes (fastify: FastifyInstance, { config, users, limiter = new LoginLockout() }: AuthRoutesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const cookieName = sessionCookieName(config)
  const cookie = sessionCookieOptions(config)

  // Session material must never sit in a shared or browser cache, errors included. onSend, not
  // onRequest: the session hook rejects (401/403) before this plugin's onRequest hooks would run.
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('cache-control', 'no-store')
    done(null, payload)
  })

  if (users !== null) {
    app.post('/auth/login', {
      bodyLimit: 4096,
      config: {
        public: true,
        rateLimit: { max: config.LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE, timeWindow: 60_000 }
      },
      schema: {
        tags: ['auth'],
        summary: 'Sign in with a username and password from the users file',
        description: 'Answers the session token and sets it as an HttpOnly, SameSite=Strict cookie. ' +
          'Unknown user and wrong password are indistinguishable. 5 failures for one username within 15 minutes lock it for the rest of the window.',
        body: LoginBody,
        response: {
          200: LoginReply,
          ...problemResponses([...COMMON_PROBLEMS, ...BODY_PROBLEMS, 'VALIDATION_FAILED', 'INVALID_CREDENTIALS', 'RATE_LIMITED'], { instance: '/auth/login' })
        }
      }
    }, async (request, reply) => {
      const { password } = request.body
      // One name per account for the lockout too: "Dave" and "dave" share one failure count.
      const username = canonicalUsername(request.body.username)
      // Counted before verifying, so parallel guesses cannot all slip past the limit.
      const wait = await limiter.attempt(username)
      if (wait > 0) throw new Problem('RATE_LIMITED', { detail: 'Too many failed sign-ins for this user; try again later', retryAfter: wait })
      // An unknown user costs one scrypt of the file's one cost too: same answer, same time.
      const user = await users.authenticate(username, password)
      if (user === undefined) {
        request.log.info({ event: 'login.failed' }, 'login failed')
        throw new Problem('INVALID_CREDENTIALS', { detail: 'The username or password is wrong' })
      }
      await limiter.succeed(username)
      const token = app.jwt.sign(newSessionPayload({ sub: user.username, orgs: user.orgs, scope: user.scope }))
      const exp = app.jwt.decode<{ exp: number }>(token)?.exp ?? Math.floor(Date.now() / 1000) + config.SESSION_TTL_S
      reply.setCookie(cookieName, token, { ...cookie, maxAge: config.SESSION_TTL_S })
      request.log.info({ event: 'login.succeeded', sub: user.username }, 'login succeeded')
      return { token, token_type: 'Bearer' as const, expires_at: new Date(exp * 1000).toISOString(), user: { sub: user.username, orgs: user.orgs, scope: effectiveScope(user) } }
    })
  }

  app.get('/auth/session', {
    schema: {
      tags: ['auth'],
      summary: 'Who am I: the presented session',
      response: { 200: SessionReply, ...problemResponses([...COMMON_PROBLEMS, 'UNAUTHENTICATED'], { instance: '/auth/session' }) }
    }
  }, async (request) => {
    const session = request.session as NonNullable<typeof request.session>
    return { sub: session.sub, orgs: session.orgs, scope: effectiveScope(session), expires_at: new Date(session.exp * 1000).toISOString() }
  })

  app.post('/auth/logout', {
    schema: {
      tags: ['auth'],
      summary: 'End the presented session: it is revoked until it expires and the cookie is cleared',
      description: 'A session from single sign-on answers 200 with `end_session_url` when the identity provider offers RP-initiated logout: ' +
        'send the browser there to end the provider\'s session too (and back to `return_to`, when given). Every other session answers 204. ' +
        'A `return_to` outside OIDC_RETURN_ORIGINS is 400 `VALIDATION_FAILED`, and the session is not ended.',
      querystring: LogoutQuery,
      response: {
        200: EndSessionReply,
        204: Type.Null({ description: 'Signed out' }),
        ...problemResponses([...COMMON_PROBLEMS, ...SESSION_PROBLEMS, ...BODY_PROBLEMS, 'VALIDATION_FAILED'], { instance: '/auth/logout' })
      }
    }
  }, async (request, reply) => {
    const session = request.session as NonNullable<typeof request.session>
    // First: a return_to that is refused leaves the session as it was.
    const endSessionUrl = app.sso.endSessionUrl(session, request.query.return_to)
    app.revocations.revoke(session, request.sessionToken as string)
    reply.clearCookie(cookieName, cookie)
    request.log.info({ event: 'logout', sub: session.sub }, 'logout')
    if (endSessionUrl !== undefined) return reply.code(200).send({ end_session_url: endSessionUrl })
    return sendNoContent(reply)
  })
}
