// The reference contact editor's own origin: serves web/public, TypeScript stripped to JavaScript
// on the fly (Node's own type stripper, no bundler), with a strict CSP that lets the page talk
// to one BFF origin only. A development aid for `npm run demo`; not part of the service or image.
import { readFile, readdir } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { stripTypeScriptTypes } from 'node:module'
import { extname, join } from 'node:path'

const PUBLIC_DIR = join(import.meta.dirname, 'public')
const PLACEHOLDER = '__BFF_ORIGIN__'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.ts': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml'
}

export interface WebServerOptions {
  host?: string
  /** 0 picks a free port. */
  port?: number
  /** The BFF origin the page calls, e.g. `http://127.0.0.1:3000`; may be set after listening. */
  bffOrigin?: string
}

export interface WebServer {
  /** Origin the page is served from, e.g. `http://127.0.0.1:5173`. */
  readonly url: string
  readonly port: number
  /** The BFF origin written into the page and its CSP `connect-src`. */
  bffOrigin: string
  close: () => Promise<void>
}

/** The page's policy: its own scripts and styles only, and fetch to the one BFF origin. */
export function contentSecurityPolicy (bffOrigin: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    `connect-src ${bffOrigin}`,
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
}

const escapeAttribute = (value: string) => value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')

// Node warns once per process that the stripper is experimental; the demo's output stays readable without it.
function stripQuietly (source: string): string {
  const emitWarning = process.emitWarning
  process.emitWarning = () => {}
  try {
    return stripTypeScriptTypes(source, { mode: 'strip' })
  } finally {
    process.emitWarning = emitWarning
  }
}

export async function startWebServer (options: WebServerOptions = {}): Promise<WebServer> {
  // Only files present at start, by exact name: nothing else on disk can be reached by a crafted path.
  const files = new Set((await readdir(PUBLIC_DIR)).filter((name) => TYPES[extname(name)] !== undefined))
  let bffOrigin = options.bffOrigin ?? ''

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://page.invalid').pathname
    const name = path === '/' ? 'index.html' : path.slice(1)
    res.setHeader('x-content-type-options', 'nosniff')
    res.setHeader('referrer-policy', 'no-referrer')
    res.setHeader('cache-control', 'no-cache')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed\n')
      return
    }
    if (!files.has(name)) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n')
      return
    }
    let body = await readFile(join(PUBLIC_DIR, name), 'utf8')
    const extension = extname(name)
    if (extension === '.ts') body = stripQuietly(body)
    if (extension === '.html') {
      body = body.replace(PLACEHOLDER, escapeAttribute(bffOrigin))
      res.setHeader('content-security-policy', contentSecurityPolicy(bffOrigin))
    }
    res.writeHead(200, { 'content-type': TYPES[extension] as string, 'content-length': Buffer.byteLength(body) })
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('Internal error\n')
    })
  })
  const host = options.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 5173, host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://${host}:${port}`,
    port,
    get bffOrigin () { return bffOrigin },
    set bffOrigin (value: string) { bffOrigin = value },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }
}
