// A real OpenID Provider (panva's oidc-provider) for tests and `npm run demo`: one confidential
// client (the BFF) with back-channel logout, users with an `emnify_orgs` claim (one without),
// a plain password form for sign-in, consent implied for the BFF. Never for production.
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
// @ts-expect-error oidc-provider publishes no type declarations; the few parts used are typed below.
import ProviderModule from 'oidc-provider'

export interface IdentityProviderUser {
  username: string
  password: string
  name?: string
  email?: string
  /** The raw `emnify_orgs` claim; absent = the user has none. */
  orgs?: unknown
  /** The raw `emnify_scope` claim; absent = not sent. */
  scope?: unknown
}

export interface IdentityProviderOptions {
  host?: string
  /** 0 (default) picks a free port. */
  port?: number
  /** The BFF's public origin: its callback is the registered redirect URI, and it receives back-channel logouts. */
  bffUrl: string
  clientId?: string
  /** Default: random. */
  clientSecret?: string
  users?: IdentityProviderUser[]
  /**
   * Put the user's claims into the ID token itself. By default (as many providers do once an
   * access token is issued) they are only in userinfo.
   */
  claimsInIdToken?: boolean
  /** Where the provider may send the browser after RP-initiated logout. */
  postLogoutRedirectUris?: string[]
}

export interface SignOptions {
  /** Sign with a key the provider does not publish (a forged token). */
  foreignKey?: boolean
  typ?: string
  kid?: string
}

/** One back-channel logout the provider tried, and how the BFF answered. */
export interface BackchannelAttempt {
  ok: boolean
  accountId: string
  sid: string | undefined
  error?: string
}

export interface RunningIdentityProvider {
  /** Issuer, e.g. `http://127.0.0.1:45678`. */
  readonly issuer: string
  readonly port: number
  readonly clientId: string
  readonly clientSecret: string
  readonly redirectUri: string
  readonly users: readonly IdentityProviderUser[]
  /** Back-channel logouts the provider has sent, in order. */
  readonly backchannel: BackchannelAttempt[]
  /** Signs a JWT as the provider would (RS256 with its published key), for hand-made logout and ID tokens. */
  sign: (claims: Record<string, unknown>, options?: SignOptions) => Promise<string>
  close: () => Promise<void>
}

interface Interaction {
  uid: string
  prompt: { name: string }
  params: Record<string, unknown>
}

interface OidcContext {
  oidc: {
    client: { clientId: string }
    session: { accountId: string, grantIdFor: (clientId: string) => string | undefined }
    params: { scope?: unknown }
    result?: { consent?: { grantId?: string } }
    provider: ProviderInstance
  }
  body: string
  type: string
}

interface Grant {
  addOIDCScope: (scope: string) => void
  save: () => Promise<string>
}

interface ProviderInstance {
  callback: () => (req: IncomingMessage, res: ServerResponse) => void
  interactionDetails: (req: IncomingMessage, res: ServerResponse) => Promise<Interaction>
  interactionFinished: (req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, options?: { mergeWithLastSubmission?: boolean }) => Promise<void>
  on: (event: string, listener: (...args: any[]) => void) => void
  Grant: { new (init: { accountId: string, clientId: string }): Grant, find: (id: string) => Promise<Grant | undefined> }
}

const Provider = ProviderModule as new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance

/** The users of tests and the demo: alice and carol have organisations, bob has none. */
export function defaultUsers (): IdentityProviderUser[] {
  return [
    { username: 'alice', password: 'alice-sso-password', name: 'Alice Example', email: 'alice@example.com', orgs: [1, 2], scope: 'contacts:read contacts:write' },
    { username: 'bob', password: 'bob-sso-password', name: 'Bob Example', email: 'bob@example.com' },
    { username: 'carol', password: 'carol-sso-password', name: 'Carol Example', email: 'carol@example.com', orgs: [2], scope: 'contacts:read' }
  ]
}

const html = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

function page (title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${html(title)}</title>` +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    '<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:3rem auto;padding:0 1rem}' +
    'label,input,button{display:block;width:100%;margin:.4rem 0}input,button{padding:.5rem;box-sizing:border-box}' +
    '.error{color:#a00}</style></head>' +
    `<body><h1>${html(title)}</h1>${body}</body></html>`
}

function loginPage (uid: string, error?: string): string {
  return page('Demo identity provider – sign in', `${error === undefined ? '' : `<p class="error">${html(error)}</p>`}` +
    `<form method="post" action="/interaction/${html(uid)}/login">` +
    '<label>Username <input name="login" autocomplete="username" required autofocus></label>' +
    '<label>Password <input name="password" type="password" autocomplete="current-password" required></label>' +
    '<button type="submit">Sign in</button>' +
    '<button type="submit" name="cancel" value="yes" formnovalidate>Cancel</button></form>')
}

async function readForm (req: IncomingMessage): Promise<URLSearchParams> {
  let body = ''
  for await (const chunk of req) {
    body += String(chunk)
    if (body.length > 16 * 1024) throw new Error('form too large')
  }
  return new URLSearchParams(body)
}

function sendHtml (res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(body)
}

async function signingKey (kid: string): Promise<{ jwk: JWK, key: CryptoKey }> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  return { jwk: { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' }, key: privateKey }
}

// RSA key generation is slow; providers of one process (a test file, the demo) share their keys.
let keys: Promise<{ published: Awaited<ReturnType<typeof signingKey>>, foreign: Awaited<ReturnType<typeof signingKey>> }> | undefined
function providerKeys () {
  keys ??= Promise.all([signingKey('idp-key-1'), signingKey('idp-key-1')]).then(([published, foreign]) => ({ published, foreign }))
  return keys
}

export async function startIdentityProvider (options: IdentityProviderOptions): Promise<RunningIdentityProvider> {
  const host = options.host ?? '127.0.0.1'
  const clientId = options.clientId ?? 'emnify-bff'
  const clientSecret = options.clientSecret ?? randomBytes(24).toString('base64url')
  const bffUrl = options.bffUrl.replace(/\/$/, '')
  const redirectUri = `${bffUrl}/auth/oidc/callback`
  const users = options.users ?? defaultUsers()
  const byName = new Map(users.map((user) => [user.username, user]))
  const { published, foreign } = await providerKeys()
  const backchannel: BackchannelAttempt[] = []

  let handle: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => { res.writeHead(503).end() }
  const server: Server = createServer((req, res) => handle(req, res))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const issuer = `http://${host}:${port}`

  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      client_name: 'emnify BFF',
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: options.postLogoutRedirectUris ?? [],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
      backchannel_logout_uri: `${bffUrl}/auth/oidc/backchannel-logout`,
      backchannel_logout_session_required: true
    }],
    jwks: { keys: [published.jwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub'], profile: ['name', 'emnify_orgs', 'emnify_scope'], email: ['email', 'email_verified'] },
    conformIdTokenClaims: options.claimsInIdToken !== true,
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx: OidcContext, form: string) => {
          ctx.body = page('Demo identity provider – sign out', `${form}<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out everywhere</button>`)
        },
        postLogoutSuccessSource: (ctx: OidcContext) => {
          ctx.body = page('Signed out', '<p>You are signed out of the demo identity provider.</p>')
        }
      }
    },
    pkce: { required: () => true },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
    interactions: { url: (_ctx: unknown, interaction: Interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx: unknown, id: string) => {
      const user = byName.get(id)
      if (user === undefined) return undefined
      return {
        accountId: id,
        claims: () => ({
          sub: id,
          name: user.name,
          email: user.email,
          email_verified: user.email !== undefined,
          ...(user.orgs === undefined ? {} : { emnify_orgs: user.orgs }),
          ...(user.scope === undefined ? {} : { emnify_scope: user.scope })
        })
      }
    },
    // The BFF is first-party: consent is implied, so sign-in is the only page a user sees.
    loadExistingGrant: async (ctx: OidcContext) => {
      const { oidc } = ctx
      const grantId = oidc.result?.consent?.grantId ?? oidc.session.grantIdFor(oidc.client.clientId)
      if (grantId !== undefined) return oidc.provider.Grant.find(grantId)
      const grant = new oidc.provider.Grant({ accountId: oidc.session.accountId, clientId: oidc.client.clientId })
      grant.addOIDCScope(typeof oidc.params.scope === 'string' ? oidc.params.scope : 'openid')
      await grant.save()
      return grant
    },
    renderError: (ctx: OidcContext, out: { error?: string, error_description?: string }) => {
      ctx.type = 'html'
      ctx.body = page('Demo identity provider – error', `<p>${html(out.error ?? 'error')}: ${html(out.error_description ?? '')}</p>`)
    },
    // Its SSRF guard refuses back-channel calls to 127.0.0.1, where the BFF runs in tests and the demo.
    fetch: (url: string, init: RequestInit & { dispatcher?: unknown }) => {
      const { dispatcher: _guard, ...rest } = init
      return globalThis.fetch(url, rest)
    }
  })
  provider.on('backchannel.success', (_ctx: unknown, _client: unknown, accountId: string, sid: string | undefined) => {
    backchannel.push({ ok: true, accountId, sid })
  })
  provider.on('backchannel.error', (_ctx: unknown, error: Error, _client: unknown, accountId: string, sid: string | undefined) => {
    backchannel.push({ ok: false, accountId, sid, error: error.message })
  })

  const oidc = provider.callback()
  handle = (req, res) => {
    const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(new URL(req.url ?? '/', issuer).pathname)
    if (match === null) {
      oidc(req, res)
      return
    }
    interaction(req, res, match[1] as string, match[2] !== undefined).catch((error: unknown) => {
      if (!res.headersSent) sendHtml(res, 400, page('Demo identity provider – error', `<p>${html((error as Error).message)}</p>`))
    })
  }

  async function interaction (req: IncomingMessage, res: ServerResponse, uid: string, submitted: boolean): Promise<void> {
    const details = await provider.interactionDetails(req, res)
    if (details.uid !== uid) throw new Error('this sign-in belongs to another browser tab; start again')
    if (!submitted || req.method !== 'POST') {
      sendHtml(res, 200, loginPage(uid))
      return
    }
    const form = await readForm(req)
    if (form.get('cancel') === 'yes') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'The user cancelled the sign-in' }, { mergeWithLastSubmission: false })
      return
    }
    const user = byName.get(form.get('login') ?? '')
    if (user === undefined || user.password !== form.get('password')) {
      sendHtml(res, 200, loginPage(uid, 'Unknown user or wrong password'))
      return
    }
    await provider.interactionFinished(req, res, { login: { accountId: user.username } }, { mergeWithLastSubmission: false })
  }

  return {
    issuer,
    port,
    clientId,
    clientSecret,
    redirectUri,
    users,
    backchannel,
    async sign (claims, signOptions = {}) {
      const { kid, key } = signOptions.foreignKey === true ? { kid: foreign.jwk.kid, key: foreign.key } : { kid: published.jwk.kid, key: published.key }
      return await new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: signOptions.kid ?? kid, ...(signOptions.typ === undefined ? {} : { typ: signOptions.typ }) })
        .sign(key)
    },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }
}
