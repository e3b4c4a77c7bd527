// SSO at start-up: what the configuration must name, a provider that cannot be discovered stops
// the process with a clear message, and without OIDC_ISSUER there is no SSO at all.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { ConfigError } from '../../src/config/config.ts'
import { SERVER } from '../helpers/server-process.ts'
import { freePort } from '../helpers/oidc-stack.ts'
import { APPLICATION_TOKEN, SECRET, captureLogs, session, startStack, testConfig } from '../helpers/stack.ts'
import { startIdentityProvider } from '../../simulator/identity-provider.ts'

const SSO = { OIDC_CLIENT_ID: 'emnify-bff', OIDC_CLIENT_SECRET: 'a-client-secret-for-tests', PUBLIC_URL: 'http://127.0.0.1:3000', CORS_ORIGINS: 'http://127.0.0.1:5173' }

t.test('OIDC_ISSUER without client id, secret and PUBLIC_URL stops start-up with one message naming all three', async (t) => {
  const error = t.throws(() => testConfig({ OIDC_ISSUER: 'https://login.example.com' })) as ConfigError
  t.type(error, ConfigError)
  t.same(error.variables, ['OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'OIDC_RETURN_ORIGINS', 'PUBLIC_URL'])
  t.match(error.message, /OIDC_CLIENT_ID is required when OIDC_ISSUER is set/)
  t.match(error.message, /PUBLIC_URL is required when OIDC_ISSUER is set/)
  const partly = t.throws(() => testConfig({ OIDC_ISSUER: 'https://login.example.com', OIDC_CLIENT_ID: 'bff', OIDC_CLIENT_SECRET: 'shh-it-is-a-secret', CORS_ORIGINS: 'http://127.0.0.1:5173' })) as ConfigError
  t.same(partly.variables, ['PUBLIC_URL'])
  t.notMatch(partly.message, 'shh-it-is-a-secret')
  // Other errors are in the same message.
  const both = t.throws(() => testConfig({ OIDC_ISSUER: 'https://login.example.com', PORT: 'nope' })) as ConfigError
  t.ok(both.variables.includes('PORT') && both.variables.includes('PUBLIC_URL'))
})

t.test('SSO with nowhere to return to is refused; OIDC_RETURN_ORIGINS or CORS_ORIGINS satisfies it', async (t) => {
  const { CORS_ORIGINS: _cors, ...rest } = SSO
  t.same((t.throws(() => testConfig({ OIDC_ISSUER: 'https://login.example.com', ...rest })) as ConfigError).variables, ['OIDC_RETURN_ORIGINS'])
  t.ok(testConfig({ OIDC_ISSUER: 'https://login.example.com', ...rest, OIDC_RETURN_ORIGINS: 'https://app.example.com' }))
  t.ok(testConfig({ OIDC_ISSUER: 'https://login.example.com', ...SSO }))
  t.ok(testConfig({ OIDC_CLIENT_ID: 'x' }), 'client settings without OIDC_ISSUER are simply unused')
})

t.test('a provider that cannot be reached at start-up stops buildApp with a message naming OIDC_ISSUER', async (t) => {
  const issuer = `http://127.0.0.1:${await freePort()}`
  await t.rejects(buildApp(testConfig({ OIDC_ISSUER: issuer, ...SSO }), { logStream: captureLogs().stream }), {
    message: new RegExp(`discovery failed for OIDC_ISSUER ${issuer}/: the provider is unreachable .*ECONNREFUSED`)
  })
})

t.test('an issuer that is not an OpenID Provider stops buildApp too', async (t) => {
  const stack = await startStack(t)
  await t.rejects(buildApp(testConfig({ OIDC_ISSUER: stack.sim.url, ...SSO }), { logStream: captureLogs().stream }), {
    message: /discovery failed for OIDC_ISSUER .*: its answer is not usable OpenID Provider metadata/
  })
})

t.test('the server process exits with one readable line when the provider is unreachable', async (t) => {
  const issuer = `http://127.0.0.1:${await freePort()}`
  const child = spawn(process.execPath, [SERVER], {
    cwd: t.testdir(),
    env: { PATH: process.env.PATH ?? '', PORT: '0', EMNIFY_APPLICATION_TOKEN: APPLICATION_TOKEN, SESSION_SECRET: SECRET, OIDC_ISSUER: issuer, ...SSO }
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
  const [code] = await once(child, 'exit')
  t.not(code, 0)
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, stderr)
  t.match(lines[0], 'OIDC_ISSUER')
  t.notMatch(stderr, SSO.OIDC_CLIENT_SECRET)
})

t.test('a reachable provider is announced once at start-up with the redirect URI to register', async (t) => {
  const idp = await startIdentityProvider({ bffUrl: SSO.PUBLIC_URL })
  t.teardown(() => idp.close())
  const logs = captureLogs()
  const app = await buildApp(testConfig({ OIDC_ISSUER: idp.issuer, ...SSO, OIDC_CLIENT_SECRET: idp.clientSecret }), { logStream: logs.stream })
  t.teardown(() => app.close())
  t.equal(app.sso.enabled, true)
  t.match(logs.records().filter((line) => line.msg === 'SSO enabled'), [{ issuer: idp.issuer, redirect_uri: `${SSO.PUBLIC_URL}/auth/oidc/callback`, end_session: true }])
})

t.test('without OIDC_ISSUER there are no SSO routes and logout answers 204', async (t) => {
  const stack = await startStack(t)
  t.equal(stack.app.sso.enabled, false)
  for (const [method, path] of [['GET', '/auth/oidc/login?return_to=http%3A%2F%2F127.0.0.1%3A5173%2F'], ['GET', '/auth/oidc/callback?code=x&state=y'], ['POST', '/auth/oidc/backchannel-logout']]) {
    const reply = await stack.call(method as string, path as string)
    t.equal(reply.status, 404, `${method} ${path}`)
  }
  const logout = await stack.call('POST', '/auth/logout', { headers: { authorization: `Bearer ${session('oidc:alice')}` } })
  t.equal(logout.status, 204)
  const withReturn = await stack.call('POST', `/auth/logout?return_to=${encodeURIComponent('https://anywhere.example/')}`, { headers: { authorization: `Bearer ${session('oidc:bob')}` } })
  t.equal(withReturn.status, 204, 'return_to means nothing without SSO')
})
