// What SSO keeps in memory stays bounded and is visible in the store gauges (used sign-in states
// and logout-token jtis, each until it could no longer be replayed); sign-ins count as session events.
import t from 'tap'
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { LogoutTokenVerifier } from '../../src/auth/oidc/logout-token.ts'
import { UsedStates } from '../../src/auth/oidc/transaction.ts'
import { Browser, signIn, startSsoStack } from '../helpers/oidc-stack.ts'

t.test('a used sign-in state is refused until its transaction would have expired, then forgotten', async (t) => {
  const used = new UsedStates(3)
  t.equal(used.use('a', 1_000, 0), true)
  t.equal(used.use('a', 1_000, 999), false, 'replayed inside the window')
  t.equal(used.use('a', 2_000, 1_000), true, 'after it, the state is unknown again (its cookie is long gone)')
  t.equal(used.size, 1)
})

t.test('used sign-in states never exceed their bound; the oldest goes first', async (t) => {
  const used = new UsedStates(3)
  for (const state of ['a', 'b', 'c', 'd']) used.use(state, 10_000, 0)
  t.equal(used.size, 3)
  t.equal(used.capacity, 3)
  t.equal(used.use('a', 10_000, 1), true, 'the oldest was evicted')
  t.equal(used.use('d', 10_000, 1), false, 'the newest is still known')
})

t.test('remembered logout-token jtis are bounded and expire with the token\'s acceptable age', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('RS256')
  const keys = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'RS256' }] })
  let now = Date.now()
  const verifier = new LogoutTokenVerifier({ issuer: 'https://idp.example', clientId: 'bff', keys, algorithms: ['RS256'], now: () => now, maxJtis: 2 })
  const token = (jti: string) => new SignJWT({ sid: 's', jti, events: { 'http://schemas.openid.net/event/backchannel-logout': {} } })
    .setProtectedHeader({ alg: 'RS256', kid: 'k' }).setIssuer('https://idp.example').setAudience('bff').setIssuedAt(Math.floor(now / 1000)).sign(privateKey)
  for (const jti of ['j1', 'j2', 'j3']) t.same(await verifier.verify(await token(jti)), { kind: 'sid', value: 's' })
  t.equal(verifier.size, 2)
  t.equal(verifier.capacity, 2)
  await t.rejects(verifier.verify(await token('j3')), { message: 'jti was already used' })
  now += 331_000
  t.same(await verifier.verify(await token('j3')), { kind: 'sid', value: 's' }, 'a token issued now with an old jti is no replay any more')
  t.equal(verifier.size, 1, 'expired jtis are pruned')
})

t.test('the SSO stores appear in the store gauges, and SSO sign-ins in the session events', async (t) => {
  const stack = await startSsoStack(t)
  await signIn(new Browser(), stack)
  await new Browser().fetch(`${stack.url}/auth/oidc/callback?code=x&state=${'D'.repeat(43)}`)
  await signIn(new Browser(), stack, { username: 'bob' })
  const metrics = await new Browser().fetch(`${stack.url}/metrics`)
  t.match(metrics.text, /emnify_bff_sessions_total\{event="login_ok"\} 1/)
  t.match(metrics.text, /emnify_bff_sessions_total\{event="login_failed"\} 2/, 'a refused callback and a user without organisations')
  t.match(metrics.text, /emnify_bff_store_entries\{store="oidc_used_states"\} 2/)
  t.match(metrics.text, /emnify_bff_store_capacity\{store="oidc_used_states"\} 10000/)
  t.match(metrics.text, /emnify_bff_store_capacity\{store="oidc_logout_jtis"\} 10000/)
})
