/**
 * The response headers of a JSON API, after the OWASP REST Security Cheat Sheet: nothing may be
 * loaded, framed, sniffed or referred on the strength of an answer, and only over HTTPS. Headers
 * that protect HTML documents or legacy browsers (X-XSS-Protection, X-Download-Options,
 * X-DNS-Prefetch-Control, X-Permitted-Cross-Domain-Policies, Origin-Agent-Cluster,
 * Cross-Origin-Opener-Policy) protect nothing on a JSON answer and are not sent; SECURITY.md
 * says why for each. `Cache-Control` is set per route where it applies (reads, auth). The values
 * are those @fastify/helmet sends for the same names (a unit test holds them equal).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': "default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'",
  'cross-origin-resource-policy': 'same-origin',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY'
})

/**
 * The Swagger UI page under /docs: its own scripts, styles and images, the spec fetched from the
 * same origin, inline style attributes (set by the UI's React code), nothing else.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "base-uri 'self'",
  "connect-src 'self'",
  "font-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "img-src 'self' data:",
  "manifest-src 'self'",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'"
].join('; ')

/**
 * The static block every answer carries. Kept a promise for callers written when it was worked
 * out from @fastify/helmet at start-up; it is now a constant, written once per answer.
 */
export function securityHeaders (): Promise<Readonly<Record<string, string>>> {
  return Promise.resolve(SECURITY_HEADERS)
}
