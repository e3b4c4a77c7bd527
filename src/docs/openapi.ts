import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../app.ts'
import type { CustomFetch } from '../auth/oidc/provider.ts'
import { loadConfig } from '../config/config.ts'

/** An issuer that is never contacted: the document is written without a network. */
const DOCUMENTATION_ISSUER = 'https://idp.example.com'

/** The SSO settings the document is generated with, so that the SSO routes are registered and described. */
export const DOCUMENTATION_SSO_ENV: Readonly<Record<string, string>> = {
  OIDC_ISSUER: DOCUMENTATION_ISSUER,
  OIDC_CLIENT_ID: 'openapi-generation',
  OIDC_CLIENT_SECRET: 'openapi-generation-only-not-a-secret',
  PUBLIC_URL: 'https://bff.example.com',
  OIDC_RETURN_ORIGINS: 'https://editor.example.com'
}

/**
 * Answers the SSO plugin's discovery with the metadata of a provider offering everything the
 * BFF uses (userinfo, RP-initiated logout); any other call to it fails, and none is made while
 * the routes are only described.
 */
export const documentationProviderFetch: CustomFetch = async (url) => {
  if (url !== `${DOCUMENTATION_ISSUER}/.well-known/openid-configuration`) throw new TypeError(`the documentation provider serves discovery only, not ${url}`)
  return Response.json({
    issuer: DOCUMENTATION_ISSUER,
    authorization_endpoint: `${DOCUMENTATION_ISSUER}/authorize`,
    token_endpoint: `${DOCUMENTATION_ISSUER}/token`,
    userinfo_endpoint: `${DOCUMENTATION_ISSUER}/userinfo`,
    jwks_uri: `${DOCUMENTATION_ISSUER}/jwks`,
    end_session_endpoint: `${DOCUMENTATION_ISSUER}/session/end`,
    id_token_signing_alg_values_supported: ['RS256'],
    backchannel_logout_supported: true,
    backchannel_logout_session_supported: true
  })
}

/**
 * The OpenAPI document of the whole API as shipped (login and single sign-on offered, metrics on
 * the main port), independent of the local environment: what `npm run openapi` writes to openapi.json.
 */
export async function openApiDocument (): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'emnify-bff-openapi-'))
  try {
    // /auth/login exists only with a users file; an empty one is enough to describe it.
    const usersFile = join(dir, 'users.json')
    await writeFile(usersFile, '{"users":[]}\n')
    const config = loadConfig({
      env: {
        EMNIFY_APPLICATION_TOKEN: 'openapi-generation',
        SESSION_SECRET: 'openapi-generation-only-not-a-secret',
        USERS_FILE: usersFile,
        LOG_LEVEL: 'silent',
        ...DOCUMENTATION_SSO_ENV
      }
    })
    const app = await buildApp(config, { oidc: { fetch: documentationProviderFetch } })
    try {
      await app.ready()
      return structuredClone(app.swagger()) as unknown as Record<string, unknown>
    } finally {
      await app.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The committed form: two-space JSON with a final newline. */
export function serialiseDocument (document: unknown): string {
  return `${JSON.stringify(document, null, 2)}\n`
}
