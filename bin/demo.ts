// `npm run demo`: the emnify simulator, the BFF and the reference contact editor in one process,
// no configuration needed. Prints the page to open, a demo user, and ready-to-paste curl
// commands with a freshly minted session. Ctrl-C stops everything.
// `npm run dev` runs it with `--dev` under `node --watch`: it restarts on every source change,
// logs are pretty-printed on a terminal, and sessions and the demo password survive restarts.
// Tests import startDemo() to drive the same stack on free ports.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { buildApp } from '../src/app.ts'
import { loadConfig, type Config } from '../src/config/config.ts'
import { mintSession } from '../src/session/mint.ts'
import { hashPassword } from '../src/users/password.ts'
import { DEFAULT_APPLICATION_TOKEN, startSimulator, type RunningSimulator } from '../simulator/simulator.ts'
import { startIdentityProvider, type RunningIdentityProvider } from '../simulator/identity-provider.ts'
import { startWebServer, type WebServer } from '../web/serve.ts'

export interface DemoOptions {
  /** The BFF's port (default 3000); 0 picks a free one. */
  bffPort?: number
  /** The contact editor's port (default 5173); 0 picks a free one. */
  webPort?: number
  /** The simulator's port (default: a free one). */
  simPort?: number
  /** Fixed secret and password, so sessions and the printed user survive `node --watch` restarts. */
  dev?: boolean
  logLevel?: string
  logStream?: DestinationStream
  /** Origins the BFF accepts besides the editor's own (tests add a misconfigured one). */
  extraCorsOrigins?: (web: WebServer) => string[]
  /** More BFF environment, e.g. the SSO settings of a demo identity provider. */
  env?: Record<string, string>
  /** More users-file users besides the demo user (tests add one with every organisation). */
  extraUsers?: DemoUser[]
  /** Start the demo OpenID Provider on this port (0 = a free one) and sign in with SSO through it; needs a fixed bffPort. */
  idpPort?: number
}

export interface DemoUser {
  username: string
  password: string
  orgs: number[] | '*'
}

export interface Demo {
  /** The BFF's origin, e.g. `http://127.0.0.1:3000`. */
  bffUrl: string
  /** The contact editor's origin, e.g. `http://127.0.0.1:5173`. */
  webUrl: string
  sim: RunningSimulator
  app: FastifyInstance
  web: WebServer
  config: Config
  /** The users-file user the editor signs in with (organisations 1 and 2). */
  user: { username: string, password: string }
  /** The demo OpenID Provider, when started (`idpPort`). */
  idp: RunningIdentityProvider | undefined
  close: () => Promise<void>
}

/** Which part of the stack could not listen, so the message can name the variable to change. */
export class DemoListenError extends Error {
  readonly variable: string
  constructor (variable: string, address: string, cause: Error) {
    super(`could not listen on ${address} (${cause.message}); try ${variable}=<another port> npm run demo`)
    this.variable = variable
  }
}

const HOST = '127.0.0.1'
export const DEMO_USERNAME = 'demo'

/** A port that was free a moment ago. */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, HOST, resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Writes a users file, the passwords hashed exactly as `npm run user:add` does. */
async function writeUsersFile (dir: string, users: DemoUser[]): Promise<string> {
  const file = join(dir, 'users.json')
  const entries = await Promise.all(users.map(async ({ username, password, orgs }) => ({ username, password_hash: await hashPassword(password), orgs })))
  await writeFile(file, JSON.stringify({ users: entries }, null, 2) + '\n', { mode: 0o600 })
  return file
}

export async function startDemo (options: DemoOptions = {}): Promise<Demo> {
  const dev = options.dev ?? false
  const dir = await mkdtemp(join(tmpdir(), 'emnify-bff-demo-'))
  const closers: Array<() => Promise<unknown>> = [() => rm(dir, { recursive: true, force: true })]
  // Last started, first stopped; a second call finds nothing left to stop.
  const close = async () => {
    for (let closer = closers.pop(); closer !== undefined; closer = closers.pop()) await closer().catch(() => {})
  }
  try {
    const password = dev ? 'dev-only-demo-password' : randomBytes(12).toString('base64url')
    const usersFile = await writeUsersFile(dir, [{ username: DEMO_USERNAME, password, orgs: [1, 2] }, ...(options.extraUsers ?? [])])
    const sim = await startSimulator({ host: HOST, port: options.simPort ?? 0 })
    closers.push(() => sim.close())

    const webPort = options.webPort ?? 5173
    const web = await startWebServer({ host: HOST, port: webPort }).catch((error: Error) => {
      throw new DemoListenError('WEB_PORT', `${HOST}:${webPort}`, error)
    })
    closers.push(() => web.close())

    let idp: RunningIdentityProvider | undefined
    let sso: Record<string, string> = {}
    // The provider registers the BFF's redirect URI, so "any free port" must be chosen up front.
    const bffPort = options.bffPort === 0 && options.idpPort !== undefined ? await freePort() : options.bffPort ?? 3000
    if (options.idpPort !== undefined) {
      const publicUrl = `http://${HOST}:${bffPort}`
      // The editor asks to come back to its own page after signing out at the provider.
      const started = await startIdentityProvider({ host: HOST, port: options.idpPort, bffUrl: publicUrl, postLogoutRedirectUris: [`${web.url}/`] }).catch((error: Error) => {
        throw new DemoListenError('IDP_PORT', `${HOST}:${options.idpPort}`, error)
      })
      closers.push(() => started.close())
      idp = started
      sso = { OIDC_ISSUER: started.issuer, OIDC_CLIENT_ID: started.clientId, OIDC_CLIENT_SECRET: started.clientSecret, PUBLIC_URL: publicUrl, OIDC_SCOPE_CLAIM: 'emnify_scope' }
    }

    const config = loadConfig({
      env: {
        HOST,
        PORT: String(bffPort),
        LOG_LEVEL: options.logLevel ?? 'info',
        EMNIFY_API_URL: sim.url,
        EMNIFY_APPLICATION_TOKEN: DEFAULT_APPLICATION_TOKEN,
        // A fresh secret per run: demo sessions die with the demo. In dev they outlive a restart.
        SESSION_SECRET: dev ? 'dev-only-session-secret-never-use-in-production' : randomBytes(32).toString('base64url'),
        // Plain http on 127.0.0.1: the cookie is `session`, not the Secure `__Host-session`.
        SESSION_COOKIE_SECURE: 'false',
        USERS_FILE: usersFile,
        // Same host name as the BFF, so the SameSite=Strict cookie is same-site for the page.
        CORS_ORIGINS: [web.url, ...(options.extraCorsOrigins?.(web) ?? [])].join(','),
        // One person on a laptop: load shedding would only turn a busy machine (or start-up) into 503s.
        MAX_EVENT_LOOP_DELAY_MS: '0',
        MAX_EVENT_LOOP_UTILIZATION: '0',
        ...sso,
        ...options.env
      }
    })
    const app = await buildApp(config, { logStream: options.logStream })
    closers.push(async () => {
      app.lifecycle.draining = true
      await app.close()
    })
    try {
      await app.listen({ host: config.HOST, port: config.PORT })
    } catch (error) {
      throw new DemoListenError('PORT', `${config.HOST}:${config.PORT}`, error as Error)
    }
    const address = app.server.address()
    const bffUrl = `http://${HOST}:${typeof address === 'object' && address !== null ? address.port : config.PORT}`
    web.bffOrigin = bffUrl
    return { bffUrl, webUrl: web.url, sim, app, web, config, user: { username: DEMO_USERNAME, password }, idp, close }
  } catch (error) {
    await close()
    throw error
  }
}

/** The SSO lines of what the demo prints, when it runs its own identity provider. */
function ssoInstructions (demo: Demo): string {
  const idp = demo.idp
  if (idp === undefined) return ''
  const user = (name: string) => idp.users.find((candidate) => candidate.username === name)
  const alice = user('alice')
  const carol = user('carol')
  const bob = user('bob')
  return `
  Identity provider  ${idp.issuer}      "Sign in with SSO" on the editor, as  ${alice?.username}  /  ${alice?.password}
                     (${carol?.username} / ${carol?.password} may only read; ${bob?.username} / ${bob?.password} has no organisations)
                     sign out there, and back-channel logout ends the BFF session:
                     ${idp.issuer}/session/end?client_id=${idp.clientId}
`
}

/** What the demo prints: the page, the user, and one curl command per contact operation. */
export function instructions (demo: Demo, token: string): string {
  const auth = '-H "Authorization: Bearer $TOKEN"'
  const json = "-H 'Content-Type: application/json'"
  const created = JSON.stringify({ type: { id: 2 }, name: 'Alan Turing', email: 'alan.turing@example.com', city: 'Manchester', country: { id: 205 } })
  return `
  emnify simulator   ${demo.sim.url}
  emnify BFF         ${demo.bffUrl}
  Contact editor     ${demo.webUrl}      open this, sign in as  ${demo.user.username}  /  ${demo.user.password}
                     (keep 127.0.0.1: the session cookie is SameSite=Strict, and localhost is another site)
${ssoInstructions(demo)}
  From a shell, with a minted session (valid 1 h, organisations 1 and 2):

export BFF=${demo.bffUrl}
export TOKEN=${token}

  # list the contacts of organisation 1
curl -s "$BFF/api/v1/organisation/1/contact" ${auth}

  # read one; note its ETag
curl -i "$BFF/api/v1/organisation/1/contact/1" ${auth}

  # create one (201 + Location); sending it again with the same key replays the answer
curl -i -X POST "$BFF/api/v1/organisation/1/contact" ${auth} ${json} \\
  -H 'Idempotency-Key: demo-create-1' \\
  -d '${created}'

  # update it (add  -H 'If-Match: <the ETag>'  to refuse someone else's change in between: 412)
curl -i -X PATCH "$BFF/api/v1/organisation/1/contact/1" ${auth} ${json} \\
  -H 'Prefer: return=representation' \\
  -d '{"city":"London","phone":null}'

  # delete one (204)
curl -i -X DELETE "$BFF/api/v1/organisation/1/contact/2" ${auth}

  Countries for a picker:  curl -s "$BFF/api/v1/country" ${auth}
  Press Ctrl-C to stop.

`
}

async function main (): Promise<void> {
  const dev = process.argv.includes('--dev')
  const port = (name: string, fallback?: number) => {
    const raw = process.env[name]
    if (raw === undefined || raw === '') return fallback
    if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) throw new Error(`${name} must be a port number, got ${JSON.stringify(raw)}`)
    return Number(raw)
  }
  // pino-pretty is a dev dependency: loaded only when asked for, and only for a human at a terminal.
  let logStream: DestinationStream | undefined
  if (dev && process.stdout.isTTY) {
    const { default: pretty } = await import('pino-pretty')
    logStream = pretty({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,service' })
  }
  const demo = await startDemo({
    dev,
    bffPort: port('PORT', 3000),
    webPort: port('WEB_PORT', 5173),
    simPort: port('SIM_PORT', 0),
    idpPort: port('IDP_PORT', 0),
    logLevel: process.env.LOG_LEVEL,
    logStream
  })
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) process.exit(1) // second Ctrl-C: leave at once
    stopping = true
    demo.app.log.info({ signal }, 'demo stopping')
    demo.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  const { token } = mintSession(demo.config, { sub: 'demo-user', orgs: [1, 2], ttlS: 3600 })
  process.stdout.write(instructions(demo, token))
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`demo: ${(error as Error).message}\n`)
    process.exit(1)
  })
}
