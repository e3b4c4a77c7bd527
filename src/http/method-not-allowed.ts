import fp from 'fastify-plugin'
import type { FastifyInstance, RouteOptions } from 'fastify'

declare module 'fastify' {
  interface FastifyInstance {
    /** The methods a known path answers (for 405 + Allow), or undefined for an unknown path. */
    allowedMethods: (url: string) => string | undefined
  }
}

interface KnownPath { pattern: RegExp, methods: Set<string> }

function patternOf (url: string): RegExp {
  const source = url.split('/').map((segment) => {
    if (segment.startsWith(':')) return '[^/]+'
    return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  }).join('/')
  return new RegExp(`^${source}/?$`)
}

/** Learns every route as it is registered, so the not-found handler can tell 405 from 404. */
async function methodNotAllowed (app: FastifyInstance) {
  const known = new Map<string, KnownPath>()
  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.url.includes('*')) return
    let entry = known.get(route.url)
    if (entry === undefined) {
      entry = { pattern: patternOf(route.url), methods: new Set() }
      known.set(route.url, entry)
    }
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) entry.methods.add(method)
  })
  app.decorate('allowedMethods', (url: string) => {
    const query = url.indexOf('?')
    const path = query === -1 ? url : url.slice(0, query)
    for (const entry of known.values()) {
      if (entry.pattern.test(path)) return [...entry.methods].sort().join(', ')
    }
    return undefined
  })
}

export default fp(methodNotAllowed, { name: 'method-not-allowed', fastify: '5.x', dependencies: ['errors'] })
