// Behind a load balancer every request comes from the balancer's address; TRUST_PROXY lets the
// per-IP limits see the client from X-Forwarded-For, and only from the proxies it names.
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.ts'
import { parseTrustProxy } from '../../src/http/trust-proxy.ts'
import { startStack, testConfig, type Stack } from '../helpers/stack.ts'
import { usersFile } from './ops-helpers.ts'

async function loginStack (t: Test, env: Record<string, string> = {}): Promise<Stack> {
  return startStack(t, { env: { USERS_FILE: await usersFile(t), LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: '2', ...env } })
}

const bogusLogin = (stack: Stack, forwardedFor?: string) => stack.call('POST', '/auth/login', {
  headers: { 'content-type': 'application/json', ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }) },
  body: { username: `nobody-${Math.random()}`, password: 'not the password at all' }
}).then((reply) => reply.status)

t.test('without TRUST_PROXY, X-Forwarded-For is ignored: the TCP peer is the client', async (t) => {
  const stack = await loginStack(t)
  t.same([await bogusLogin(stack, '203.0.113.1'), await bogusLogin(stack, '203.0.113.2'), await bogusLogin(stack, '203.0.113.3')], [401, 401, 429],
    'one budget for the peer, whatever the header says')
})

for (const value of ['1', '127.0.0.1', '127.0.0.0/8, 10.0.0.0/8', 'loopback']) {
  t.test(`TRUST_PROXY=${value}: bogus logins from one client behind the balancer do not block another client`, async (t) => {
    const stack = await loginStack(t, { TRUST_PROXY: value })
    t.same([await bogusLogin(stack, '203.0.113.1'), await bogusLogin(stack, '203.0.113.1'), await bogusLogin(stack, '203.0.113.1')], [401, 401, 429], 'the noisy client is limited')
    t.equal(await bogusLogin(stack, '198.51.100.7'), 401, 'another client behind the same balancer is not')
    t.equal(await bogusLogin(stack, '198.51.100.7, 203.0.113.9'), 401, 'the address the trusted proxy appended counts, not what the client wrote before it')
  })
}

t.test('TRUST_PROXY naming other proxies: X-Forwarded-For from an untrusted peer is ignored', async (t) => {
  const stack = await loginStack(t, { TRUST_PROXY: '10.0.0.0/8' })
  t.same([await bogusLogin(stack, '203.0.113.1'), await bogusLogin(stack, '203.0.113.2'), await bogusLogin(stack, '203.0.113.3')], [401, 401, 429])
})

t.test('an invalid TRUST_PROXY stops start-up naming the variable', async (t) => {
  for (const value of ['true', '0', '17', '10.0.0.0/33', 'proxy.example.com', '10.0.0.1/8/1']) {
    await t.rejects(buildApp(testConfig({ TRUST_PROXY: value })), { message: /^TRUST_PROXY must be/ }, value)
  }
})

t.test('parseTrustProxy: unset trusts nobody, a count trusts that many hops, a list is passed on', async (t) => {
  t.equal(parseTrustProxy(undefined), false)
  const twoHops = parseTrustProxy('2') as (address: string, hop: number) => boolean
  t.same([twoHops('10.0.0.1', 0), twoHops('10.0.0.2', 1), twoHops('203.0.113.1', 2)], [true, true, false])
  t.same(parseTrustProxy(' 10.0.0.0/8 , ::1, fd00::/8 ,loopback'), ['10.0.0.0/8', '::1', 'fd00::/8', 'loopback'])
})
