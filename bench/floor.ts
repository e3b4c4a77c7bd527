// The raw floor: the least a Node proxy can do per request. node:http in, one undici Pool out,
// method, path, headers and body passed through untouched (any method: the PATCH and the list
// GET alike), the answer piped back. No checks, no logs. Usage: UPSTREAM=http://127.0.0.1:4010 PORT=3001 node bench/floor.ts
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { Pool } from 'undici'

const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:4010'
const port = Number(process.env.PORT ?? 3001)
const pool = new Pool(upstream, { connections: 64, pipelining: 1 })

// Hop-by-hop headers are the only ones a passthrough must not copy.
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade', 'proxy-connection', 'te', 'trailer'])

function forwardable (headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && !HOP.has(name)) out[name] = value
  }
  return out
}

const server = createServer((req, res) => {
  // A GET has no body to stream; passing the request anyway would cost a stream per call.
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req
  pool.request({
    method: req.method as 'PATCH',
    path: req.url as string,
    headers: forwardable(req.headers),
    body
  }).then((answer) => {
    res.writeHead(answer.statusCode, forwardable(answer.headers))
    answer.body.pipe(res)
  }, () => {
    res.writeHead(502).end()
  })
})
server.keepAliveTimeout = 65_000
server.listen(port, '127.0.0.1', () => process.stdout.write(`floor listening on ${port}\n`))
process.once('SIGTERM', () => process.exit(0))
