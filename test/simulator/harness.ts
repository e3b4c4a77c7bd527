// The simulator over real HTTP: one simulator and one undici agent per test, torn down with it.
import { Agent, request } from 'undici'
import { startSimulator } from '../../simulator/simulator.ts'
import type { RunningSimulator, StartOptions } from '../../simulator/simulator.ts'

export interface Teardown {
  teardown: (fn: () => unknown) => void
}

export interface CallOptions {
  body?: unknown
  headers?: Record<string, string>
  token?: string
  headersTimeout?: number
  signal?: AbortSignal
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: () => unknown
}

export interface Harness {
  sim: RunningSimulator
  call: (method: string, path: string, options?: CallOptions) => Promise<Reply>
  /** Like `call` but leaves the body unread, for faults that break it. */
  open: (method: string, path: string, options?: CallOptions) => ReturnType<typeof request>
  authenticate: () => Promise<string>
  /** The agent requests go through (e.g. to read its connection state). */
  agent: Agent
}

export const APP_TOKEN = 'demo-application-token'
export const CONTACT_1 = '/api/v1/organisation/1/contact/1'

export const CONTACT_KEYS = [
  'id', 'organisation', 'type', 'name', 'title', 'department', 'street', 'zipcode', 'city',
  'country', 'email', 'phone', 'mobile', 'state', 'secondary_address', 'purchase_order_number'
]

export async function setup (t: Teardown, options?: StartOptions, agentOptions?: Agent.Options): Promise<Harness> {
  const sim = await startSimulator(options)
  // One agent per test, so a socket a fault destroyed is never reused by another test.
  const agent = new Agent(agentOptions)
  t.teardown(async () => {
    await sim.close()
    await agent.destroy()
  })

  const open: Harness['open'] = (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    let body: string | undefined
    if (typeof options.body === 'string') {
      body = options.body
    } else if (options.body !== undefined) {
      body = JSON.stringify(options.body)
      headers['content-type'] ??= 'application/json'
    }
    return request(`${sim.url}${path}`, {
      method,
      headers,
      body,
      dispatcher: agent,
      headersTimeout: options.headersTimeout,
      signal: options.signal
    })
  }

  const call: Harness['call'] = async (method, path, options) => {
    const response = await open(method, path, options)
    const text = await response.body.text()
    return { status: response.statusCode, headers: response.headers, text, json: () => JSON.parse(text) }
  }

  const authenticate = async (): Promise<string> => {
    const reply = await call('POST', '/api/v1/authenticate', { body: { application_token: APP_TOKEN } })
    return (reply.json() as { auth_token: string }).auth_token
  }

  return { sim, call, open, authenticate, agent }
}
