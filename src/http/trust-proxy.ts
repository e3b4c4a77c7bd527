import { isIP } from 'node:net'

/** Names @fastify/proxy-addr understands for whole private ranges. */
const RANGES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/**
 * TRUST_PROXY as Fastify's `trustProxy`: unset → false (X-Forwarded-For is ignored, the TCP peer
 * is the client); a whole number → that many proxy hops; else a comma-separated list of proxy
 * addresses or CIDRs (or loopback, linklocal, uniquelocal). `true` (trust anyone) is refused:
 * every client could then choose its own address and escape the per-IP limits.
 */
export function parseTrustProxy (value: string | undefined): false | string[] | ((address: string, hop: number) => boolean) {
  if (value === undefined) return false
  const text = value.trim()
  if (/^\d+$/.test(text)) {
    const hops = Number(text)
    if (hops < 1 || hops > 16) throw new Error(`TRUST_PROXY must be a hop count from 1 to 16, or proxy addresses/CIDRs (got "${text}")`)
    // Fastify treats a bare number as "trust nothing"; a function trusts the nearest `hops` peers,
    // which is only safe when clients cannot reach the BFF except through those proxies.
    return (_address: string, hop: number) => hop < hops
  }
  const entries = text.split(',').map((entry) => entry.trim())
  for (const entry of entries) {
    if (RANGES.has(entry)) continue
    const [address = '', prefix, extra] = entry.split('/')
    const family = isIP(address)
    const bits = family === 4 ? 32 : 128
    const validPrefix = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits)
    if (family === 0 || !validPrefix || extra !== undefined) {
      throw new Error(`TRUST_PROXY must be a hop count, or a comma-separated list of proxy addresses or CIDRs such as 10.0.0.0/8 (got "${entry}")`)
    }
  }
  return entries
}
