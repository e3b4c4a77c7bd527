import type { Server } from 'node:http'
import type { FastifyHttpOptions, FastifyReply, FastifyRequest } from 'fastify'
import ajvFormats from 'ajv-formats'
import type { DestinationStream } from 'pino'
import type { Config } from '../config/config.ts'
import { clientErrorResponse, sendProblem, toProblem } from '../errors/handler.ts'
import { type AccessLog, lazyChildLogger, loggerOptions, requestId } from '../logging/logger.ts'
import { parseTrustProxy } from './trust-proxy.ts'

/** Inbound connection bounds, ms. */
export interface ServerTimeouts {
  /** The whole request, headers and body, must arrive within this: stops slow-body clients. */
  requestMs: number
  /** Headers must be complete within this: stops slowloris-style clients. */
  headersMs: number
  /** Socket inactivity bound. */
  idleMs: number
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: number
  /**
   * How often Node enforces requestMs and headersMs. Its default, 30 s, would let a slow client
   * overstay them by up to that much.
   */
  checkIntervalMs: number
}

export function serverTimeouts (config: Config, overrides: Partial<ServerTimeouts> = {}): ServerTimeouts {
  return {
    requestMs: 15_000,
    headersMs: 10_000,
    // Above the worst case of one request (budget wait, authenticate, call, re-auth, retry, read back).
    idleMs: config.UPSTREAM_TIMEOUT_MS * 5 + config.UPSTREAM_QUEUE_TIMEOUT_MS + 5_000,
    // Longer than common load-balancer idle timeouts (60 s), so the balancer closes first.
    keepAliveMs: 72_000,
    checkIntervalMs: 1_000,
    ...overrides
  }
}

export interface ServerOptionsInput {
  config: Config
  timeouts: ServerTimeouts
  accessLog: AccessLog
  /** The static security headers, for answers written where no hook runs. */
  security: Record<string, string>
  /** Stamps the per-response headers on router-level rejections. */
  stamp: (request: FastifyRequest, reply: FastifyReply) => void
  logStream?: DestinationStream | undefined
}

/** Fastify's own options: logging, timeouts, strict validation and the answers no route gives. */
export function serverOptions ({ config, timeouts, accessLog, security, stamp, logStream }: ServerOptionsInput): FastifyHttpOptions<Server> {
  return {
    logger: loggerOptions(config.LOG_LEVEL, logStream),
    logController: accessLog,
    genReqId: requestId,
    childLoggerFactory: lazyChildLogger,
    requestTimeout: timeouts.requestMs,
    connectionTimeout: timeouts.idleMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    http: { connectionsCheckingInterval: timeouts.checkIntervalMs },
    bodyLimit: 64 * 1024,
    routerOptions: { maxParamLength: 64 },
    // X-Forwarded-For is believed only from the configured proxies; per-IP limits then see the client.
    trustProxy: parseTrustProxy(config.TRUST_PROXY),
    // While closing, keep answering requests on open connections (each response then closes its
    // connection) instead of Fastify's own non-problem 503 body.
    return503OnClosing: false,
    ajv: {
      // Reject what the schema does not describe, never reshape it: a strict proxy forwards
      // exactly what it validated.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: true },
      // ajv-formats types its own copy of Ajv; the runtime objects are the same.
      plugins: [ajvFormats.default as never]
    },
    // Requests Node's parser refuses (bad bytes, headers too large) or times out never reach the
    // error handler; they still get problem+json with the security headers.
    clientErrorHandler (error, socket) {
      const response = clientErrorResponse(error, security)
      if (response !== undefined && socket.writable) socket.write(response)
      // As Node and Fastify do; the error stays on the socket, where the access line reads a timeout.
      socket.destroy(error)
    },
    frameworkErrors (error, request, reply) {
      // Router-level rejections (bad URL encoding, over-long param) bypass Fastify's response
      // listeners, so without this they would leave no access line.
      reply.raw.once('finish', () => accessLog.requestCompleted(null, request, reply))
      stamp(request, reply)
      return sendProblem(reply, toProblem(error))
    }
  }
}
