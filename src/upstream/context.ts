import type { Outcome } from './http.ts'

/**
 * What one inbound request asks of emnify and spends there: created by a route that calls
 * upstream, filled in by the HTTP layer, read by the access log.
 */
export interface UpstreamContext {
  readonly requestId: string
  /** Whose request this is (the session `sub`): the upstream budget is shared fairly between subs. */
  readonly sub: string
  /** A validated W3C traceparent from the frontend, forwarded on contact calls (never on authenticate). */
  readonly traceparent: string | undefined
  /** Milliseconds spent in upstream calls made for this request. */
  ms: number
  /** Upstream calls made for this request (a re-authentication retry makes two). */
  calls: number
  /** Outcome of the last call. */
  outcome: Outcome | undefined
  /**
   * The inbound response: once it is destroyed the client has gone, and calls not yet sent are
   * not sent (a property read per call; no listener, no signal).
   */
  readonly inbound: { readonly destroyed: boolean } | undefined
}

export function upstreamContext (requestId: string, traceparent?: string, inbound?: { readonly destroyed: boolean }, sub = ''): UpstreamContext {
  return { requestId, sub, traceparent, ms: 0, calls: 0, outcome: undefined, inbound }
}

// Version 00 only: a later version may change the layout, and forwarding what we cannot check is worse than dropping it.
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/
const ZERO_TRACE_ID = '0'.repeat(32)
const ZERO_PARENT_ID = '0'.repeat(16)

/** The inbound `traceparent` when it is valid W3C Trace Context, else undefined (dropped, not an error). */
export function validTraceparent (header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string' || header.length !== 55) return undefined
  const match = TRACEPARENT.exec(header)
  if (match === null || match[1] === ZERO_TRACE_ID || match[2] === ZERO_PARENT_ID) return undefined
  return header
}
