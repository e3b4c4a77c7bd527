import fp from 'fastify-plugin'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance, RouteOptions } from 'fastify'
import type { Config } from '../config/config.ts'
import { DOCS_CSP } from '../protection/security-headers.ts'
import { sessionCookieName } from '../session/plugin.ts'
import { VERSION } from '../version.ts'

export interface DocsPluginOptions {
  config: Pick<Config, 'SESSION_COOKIE_SECURE'>
}

const DESCRIPTION = `Lets internal frontends edit the contacts of emnify organisations without ever seeing an emnify credential.

**Sessions.** Every operation except the public ones needs a BFF session: \`Authorization: Bearer <jwt>\`, or the session cookie set by \`POST /auth/login\`, never both.
A request authenticated by the cookie with an unsafe method (POST, PATCH, PUT, DELETE) must also send \`X-CSRF: 1\`.

**Errors** are RFC 9457 \`application/problem+json\` with a stable \`code\`; each response below lists the codes its status can carry.
\`Retry-After\` accompanies 429 and 503 answers, and upstream failures inside an authenticate backoff window.`

/**
 * OpenAPI 3.1 generated from the routes' own TypeBox schemas (@fastify/swagger), served at
 * GET /docs/json and /docs/yaml, with Swagger UI at GET /docs. Register before the routes.
 */
async function docsPlugin (app: FastifyInstance, { config }: DocsPluginOptions) {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'emnify contact BFF', version: VERSION, description: DESCRIPTION },
      tags: [
        { name: 'contacts', description: 'Organisation contacts at emnify' },
        { name: 'auth', description: 'BFF sessions' },
        { name: 'health', description: 'Probes for orchestrators and load balancers' },
        { name: 'operations', description: 'Metrics' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'A BFF session (HS256 JWT) from `POST /auth/login` or minted by a trusted issuer.'
          },
          sessionCookie: {
            type: 'apiKey',
            in: 'cookie',
            name: sessionCookieName(config),
            description: 'The session cookie set by `POST /auth/login` or the single sign-on callback (HttpOnly, SameSite=Strict). ' +
              'Unsafe methods authenticated by this cookie must send the header `X-CSRF: 1`, else 403 `CSRF_HEADER_REQUIRED`.'
          }
        }
      },
      security: [{ bearerAuth: [] }, { sessionCookie: [] }]
    },
    // Public routes (health, login, metrics) need no session: say so per operation.
    transform: ({ schema, url, route }) => ({
      schema: (route as RouteOptions).config?.public === true ? { ...schema, security: [] } : schema,
      url
    })
  })

  // Its own context, so that marking routes public touches the UI's routes only.
  await app.register(async function swaggerUi (docs) {
    docs.addHook('onRoute', (route) => {
      route.config = { ...route.config, public: true }
    })
    await docs.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: DOCS_CSP })
  })
}

export default fp(docsPlugin, { name: 'docs', fastify: '5.x' })
