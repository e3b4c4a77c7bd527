// HTTP details over raw sockets: charsets, transfer codings, Expect: 100-continue and pipelining.
// None of the refused requests may send anything upstream.
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { charsetOf } from '../../src/http/json-body.ts'
import { claims, CONTACT, forge, startStack, type Stack } from '../helpers/stack.ts'
import { eventually } from './ops-helpers.ts'

interface Raw { socket: Socket, received: () => string, closed: Promise<void> }

async function raw (stack: Stack): Promise<Raw> {
  const socket = connect(Number(new URL(stack.url).port), '127.0.0.1')
  let text = ''
  socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
  socket.on('error', () => {})
  const closed = once(socket, 'close').then(() => undefined)
  await once(socket, 'connect')
  return { socket, received: () => text, closed }
}

// Not anchored to a line start: a problem body has no trailing newline before the next answer.
const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]))

function patchRequest (stack: Stack, body: string, headers: Record<string, string> = {}): string {
  const lines = { host: 'bff', authorization: `Bearer ${stack.token}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers }
  return `PATCH ${CONTACT} HTTP/1.1\r\n${Object.entries(lines).map(([name, value]) => `${name}: ${value}`).join('\r\n')}\r\n\r\n${body}`
}

t.test('a JSON body in any charset but UTF-8 is 415 UNSUPPORTED_MEDIA_TYPE and nothing is sent upstream', async (t) => {
  const stack = await startStack(t)
  for (const type of ['application/json; charset=utf-16', 'application/json; charset="UTF-16LE"', 'application/merge-patch+json; charset=iso-8859-1', 'application/json;charset=']) {
    const reply = await stack.patch(CONTACT, { city: 'Berlin' }, { 'content-type': type })
    t.equal(reply.status, 415, type)
    t.equal(reply.json().code, 'UNSUPPORTED_MEDIA_TYPE')
  }
  t.equal(stack.sim.state.counters.patch_contact ?? 0, 0, 'nothing reached emnify')
  for (const type of ['application/json; charset=utf-8', 'application/json; charset="UTF-8"', 'application/json;CHARSET=utf8', 'application/json']) {
    t.equal((await stack.patch(CONTACT, { city: 'Berlin' }, { 'content-type': type })).status, 204, type)
  }
  t.equal(charsetOf('application/json; foo=bar; charset="Utf-8"'), 'utf-8')
  t.equal(charsetOf('application/json'), undefined)
})

t.test('a transfer coding other than chunked is refused with 400 and the connection closed; nothing is sent upstream', async (t) => {
  const stack = await startStack(t)
  for (const coding of ['gzip, chunked', 'deflate,chunked', 'identity, chunked']) {
    const client = await raw(stack)
    client.socket.write(`PATCH ${CONTACT} HTTP/1.1\r\nHost: bff\r\nAuthorization: Bearer ${stack.token}\r\nContent-Type: application/json\r\nTransfer-Encoding: ${coding}\r\n\r\n11\r\n{"city":"Berlin"}\r\n0\r\n\r\n`)
    await client.closed
    t.same(statuses(client.received()), [400], coding)
    t.match(client.received(), /\r\nconnection: close\r\n/i)
    t.match(client.received(), /"code":"VALIDATION_FAILED"/)
  }
  t.equal(stack.sim.state.counters.patch_contact ?? 0, 0, 'nothing reached emnify')
  const chunked = await raw(stack)
  chunked.socket.write(`PATCH ${CONTACT} HTTP/1.1\r\nHost: bff\r\nAuthorization: Bearer ${stack.token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n11\r\n{"city":"Berlin"}\r\n0\r\n\r\n`)
  await chunked.closed
  t.same(statuses(chunked.received()), [204], 'plain chunked is fine')
})

t.test('Expect: 100-continue is answered only after the session check', async (t) => {
  const stack = await startStack(t)
  const anonymous = await raw(stack)
  anonymous.socket.write(`PATCH ${CONTACT} HTTP/1.1\r\nHost: bff\r\nContent-Type: application/json\r\nContent-Length: 17\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`)
  await eventually(async () => statuses(anonymous.received()).length > 0, 5_000, 'an answer')
  t.same(statuses(anonymous.received()), [401], 'refused without inviting the body')
  anonymous.socket.destroy()

  const signedIn = await raw(stack)
  signedIn.socket.write(`PATCH ${CONTACT} HTTP/1.1\r\nHost: bff\r\nAuthorization: Bearer ${stack.token}\r\nContent-Type: application/json\r\nContent-Length: 17\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`)
  await eventually(async () => statuses(signedIn.received()).length > 0, 5_000, 'an interim answer')
  t.same(statuses(signedIn.received()), [100], 'a valid session is invited to send the body')
  signedIn.socket.write('{"city":"Berlin"}')
  await signedIn.closed
  t.same(statuses(signedIn.received()), [100, 204])
  t.equal(stack.sim.state.counters.patch_contact, 1)
})

t.test('a pipelined request after a refused one that closes the connection is not sent upstream', async (t) => {
  const stack = await startStack(t)
  // A warm token: the second PATCH would otherwise still be authenticating when the socket closes.
  t.equal((await stack.patch(CONTACT, { city: 'Warm-up' })).status, 204)
  for (let i = 0; i < 5; i++) {
    const client = await raw(stack)
    client.socket.write(patchRequest(stack, '{x}') + patchRequest(stack, '{"city":"Berlin"}'))
    await client.closed
    t.same(statuses(client.received()), [400], 'only the refused request is answered')
  }
  await sleep(100)
  t.equal(stack.sim.state.counters.patch_contact, 1, 'no pipelined PATCH reached emnify')
  t.equal(stack.logs.records().filter((record) => record.log_type === 'audit').length, 1, 'and none was audited')
})

t.test('pipelined requests on a connection that stays open are all answered, in order', async (t) => {
  const stack = await startStack(t)
  const client = await raw(stack)
  client.socket.write(patchRequest(stack, '{"city":"A"}') + patchRequest(stack, '{"colour":"red"}') + patchRequest(stack, '{"city":"C"}', { connection: 'close' }))
  await client.closed
  t.same(statuses(client.received()), [204, 400, 204])
  t.equal(stack.sim.state.counters.patch_contact, 2)
})

t.test('a session whose exp lies beyond any date (1e300) is 401 on GET /auth/session, not a 500', async (t) => {
  const stack = await startStack(t)
  for (const overrides of [{ exp: 1e300 }, { iat: -1e300 }]) {
    const token = forge({ alg: 'HS256', typ: 'JWT' }, claims(overrides))
    const reply = await stack.call('GET', '/auth/session', { headers: { authorization: `Bearer ${token}` } })
    t.equal(reply.status, 401, JSON.stringify(overrides))
    t.equal(reply.json().code, 'UNAUTHENTICATED')
  }
})
