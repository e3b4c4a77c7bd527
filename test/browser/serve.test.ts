// The editor's static server, over real HTTP: what a browser gets for each file, and nothing else.
import t from 'tap'
import { contentSecurityPolicy, startWebServer } from '../../web/serve.ts'

const BFF = 'http://127.0.0.1:3999'

t.test('the page names its BFF and carries a CSP that allows only its own files and that BFF', async (t) => {
  const web = await startWebServer({ port: 0, bffOrigin: BFF })
  t.teardown(() => web.close())
  const response = await fetch(`${web.url}/`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^text\/html/)
  const csp = response.headers.get('content-security-policy') ?? ''
  t.equal(csp, contentSecurityPolicy(BFF))
  t.match(csp, "default-src 'none'")
  t.match(csp, "script-src 'self'")
  t.match(csp, `connect-src ${BFF}`)
  t.match(csp, "frame-ancestors 'none'")
  t.equal(response.headers.get('x-content-type-options'), 'nosniff')
  t.match(await response.text(), `<meta name="bff-origin" content="${BFF}">`)
})

t.test('a BFF origin set after listening is what the page gets', async (t) => {
  const web = await startWebServer({ port: 0 })
  t.teardown(() => web.close())
  web.bffOrigin = 'http://127.0.0.1:4001'
  const response = await fetch(web.url)
  t.match(await response.text(), 'content="http://127.0.0.1:4001"')
  t.match(response.headers.get('content-security-policy'), 'connect-src http://127.0.0.1:4001')
})

t.test('TypeScript is served as JavaScript with its types stripped', async (t) => {
  const web = await startWebServer({ port: 0, bffOrigin: BFF })
  t.teardown(() => web.close())
  for (const file of ['app.ts', 'api.ts']) {
    const response = await fetch(`${web.url}/${file}`)
    t.equal(response.status, 200, file)
    t.match(response.headers.get('content-type'), /^text\/javascript/, `${file} has a JavaScript type, so browsers run it as a module`)
    const body = await response.text()
    t.notMatch(body, /^import type /m, `${file}: type-only imports are gone`)
    t.notMatch(body, /\): Promise<[A-Za-z]/, `${file}: return types are gone`)
  }
  const css = await fetch(`${web.url}/styles.css`)
  t.match(css.headers.get('content-type'), /^text\/css/)
})

t.test('nothing outside the public folder can be fetched, and only GET and HEAD are answered', async (t) => {
  const web = await startWebServer({ port: 0, bffOrigin: BFF })
  t.teardown(() => web.close())
  for (const path of ['/serve.ts', '/../serve.ts', '/%2e%2e/serve.ts', '/tsconfig.json', '/..%2fserve.ts', '/nothing.html']) {
    t.equal((await fetch(`${web.url}${path}`)).status, 404, path)
  }
  const post = await fetch(`${web.url}/`, { method: 'POST', body: 'x' })
  t.equal(post.status, 405)
  t.equal(post.headers.get('allow'), 'GET, HEAD')
  const head = await fetch(`${web.url}/app.ts`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(await head.text(), '')
})
