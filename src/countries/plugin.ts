import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Config } from '../config/config.ts'
import { ReadCache } from '../contacts/read-cache.ts'
import { parseUpstreamJson, represent, toCountryList } from '../contacts/representation.ts'
import { CountryListSchema } from '../contacts/schemas.ts'
import { sendRepresentation } from '../contacts/request.ts'
import { COMMON_PROBLEMS, problemResponses, SESSION_PROBLEMS } from '../schemas/responses.ts'
import { upstreamContext, validTraceparent } from '../upstream/context.ts'
import { OPERATIONS } from '../upstream/operations.ts'

export interface CountriesOptions { config: Config }

const PATH = '/api/v1/country'

/** The country picker: emnify's list, projected to what a picker needs, kept COUNTRY_CACHE_TTL_S. */
async function countries (fastify: FastifyInstance, { config }: CountriesOptions) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const cache = new ReadCache({ ttlMs: config.COUNTRY_CACHE_TTL_S * 1000, maxEntries: 1, onResult: fastify.metrics?.readCache })
  fastify.metrics?.watchStores({ country_cache: cache })

  app.get(PATH, {
    // Any valid session may fill a picker: countries are not organisation data.
    config: { sessionRateLimit: true },
    schema: {
      tags: ['countries'],
      summary: 'Every country emnify knows, for a country picker',
      headers: Type.Object({
        'if-none-match': Type.Optional(Type.String({ description: 'an ETag of an earlier answer: 304 while it is still current' }))
      }),
      response: {
        200: { ...CountryListSchema, headers: { ETag: { type: 'string', description: 'strong validator' }, 'Cache-Control': { type: 'string', description: '`private, no-cache`' } } },
        304: Type.Null({ description: 'Not modified' }),
        ...problemResponses([
          ...COMMON_PROBLEMS, ...SESSION_PROBLEMS, 'RATE_LIMITED', 'UPSTREAM_ERROR', 'UPSTREAM_AUTH_FAILED', 'UPSTREAM_FORBIDDEN',
          'UPSTREAM_UNAVAILABLE', 'UPSTREAM_RATE_LIMITED', 'UPSTREAM_TIMEOUT', 'UPSTREAM_BUDGET_EXHAUSTED'
        ], { instance: PATH })
      }
    }
  }, async (request, reply) => {
    const rep = await cache.read('', PATH, async () => {
      const context = upstreamContext(request.id, validTraceparent(request.headers.traceparent), undefined, request.session?.sub ?? '')
      request.upstream = context
      const response = await fastify.emnify.call(OPERATIONS.listCountries, {}, context)
      return represent(toCountryList(parseUpstreamJson(response.body)))
    })
    return sendRepresentation(request, reply, rep)
  })
}

export default fp(countries, { name: 'countries', fastify: '5.x', dependencies: ['session', 'upstream'], encapsulate: true })
