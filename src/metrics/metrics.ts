import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { Operation, Outcome } from '../upstream/http.ts'
import { FixedHistogram } from './fixed-histogram.ts'
import type { BudgetObserver, BudgetRejection } from '../upstream/budget.ts'

export type SessionEvent = 'login_ok' | 'login_failed' | 'logout' | 'rejected'
export const SESSION_EVENTS: readonly SessionEvent[] = ['login_ok', 'login_failed', 'logout', 'rejected']

/** Route label of requests that matched no route: raw URLs would make the label set unbounded. */
export const NOT_FOUND_ROUTE = 'not_found'

// Seconds; the upstream buckets reach the largest configurable UPSTREAM_TIMEOUT_MS.
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const UPSTREAM_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
// Up to the largest configurable UPSTREAM_QUEUE_TIMEOUT_MS.
const BUDGET_WAIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]
const BUDGET_REJECTIONS: readonly BudgetRejection[] = ['timeout', 'queue_full', 'paused']

let processRegistry: Registry | undefined

/**
 * Process metrics (CPU, memory, GC, event loop) describe the process, not an app: collected once
 * per process, however many apps a test builds, and served alongside each app's own series.
 */
function processMetrics (): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

/** An in-memory store whose size is watched: every one the BFF keeps is bounded. */
export interface BoundedStore {
  readonly size: number
  readonly capacity: number
}

/** The BFF's Prometheus series, in a registry of its own per app. */
export class Metrics {
  readonly registry = new Registry()
  readonly #http: FixedHistogram<'method' | 'route' | 'status_code'>
  readonly #upstream: FixedHistogram<'operation' | 'outcome'>
  readonly #authenticate: Counter<'outcome'>
  readonly #sessions: Counter<'event'>
  readonly #readCache: Counter<'result'>
  #tokenExpiresIn: () => number = () => 0
  #stores: Record<string, BoundedStore> = {}

  constructor () {
    processMetrics()
    const registers = [this.registry]
    // The two histograms every request observes: FixedHistogram, rendered the same as prom-client's.
    this.#http = new FixedHistogram({
      name: 'http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by method, route template and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: HTTP_BUCKETS,
      registers
    })
    this.#upstream = new FixedHistogram({
      name: 'emnify_bff_upstream_request_duration_seconds',
      help: 'Time of one call to the emnify API, by operation and outcome (2xx, 4xx, 5xx, timeout, unreachable, reset)',
      labelNames: ['operation', 'outcome'],
      buckets: UPSTREAM_BUCKETS,
      registers
    })
    this.#authenticate = new Counter({
      name: 'emnify_bff_upstream_authenticate_total',
      help: 'Exchanges of the application token for an auth_token, by outcome (ok, failed)',
      labelNames: ['outcome'],
      registers
    })
    this.#sessions = new Counter({
      name: 'emnify_bff_sessions_total',
      help: 'Session events: login_ok, login_failed, logout, rejected (a request refused by session verification)',
      labelNames: ['event'],
      registers
    })
    const budgetWait = new Histogram({
      name: 'emnify_bff_upstream_budget_wait_seconds',
      help: 'Time an upstream call waited for a budget token, for calls that found none free and were granted one',
      buckets: BUDGET_WAIT_BUCKETS,
      registers
    })
    const budgetRejected = new Counter({
      name: 'emnify_bff_upstream_budget_rejected_total',
      help: 'Calls refused with UPSTREAM_BUDGET_EXHAUSTED (nothing sent), by reason: timeout, queue_full, paused (after an emnify 429)',
      labelNames: ['reason'],
      registers
    })
    for (const reason of BUDGET_REJECTIONS) budgetRejected.inc({ reason }, 0)
    this.budgetObserver = {
      waited: (seconds) => { budgetWait.observe(seconds) },
      rejected: (reason) => { budgetRejected.labels(reason).inc() }
    }
    const budgetTokens = () => this.#budgetTokens()
    // eslint-disable-next-line no-new -- registered in the registry, read only on scrape
    new Gauge({
      name: 'emnify_bff_upstream_budget_tokens',
      help: 'Upstream budget tokens free now (in a fleet: the shared bucket as last seen by this instance)',
      registers,
      collect () { this.set(budgetTokens()) }
    })
    const tokenExpiresIn = () => this.#tokenExpiresIn()
    // eslint-disable-next-line no-new -- registered in the registry, read only on scrape
    new Gauge({
      name: 'emnify_bff_upstream_token_expires_in_seconds',
      help: 'Seconds until the cached emnify auth_token expires (0 when there is none)',
      registers,
      collect () { this.set(tokenExpiresIn()) }
    })
    const stores = () => this.#stores
    // eslint-disable-next-line no-new -- registered in the registry, read only on scrape
    new Gauge({
      name: 'emnify_bff_store_entries',
      help: 'Entries held by each in-memory store (revocations, session_rate_limit, login_lockout, upstream_token)',
      labelNames: ['store'],
      registers,
      collect () {
        for (const [store, { size }] of Object.entries(stores())) this.set({ store }, size)
      }
    })
    // eslint-disable-next-line no-new -- registered in the registry, read only on scrape
    new Gauge({
      name: 'emnify_bff_store_capacity',
      help: 'The most entries each in-memory store may hold; beyond it the oldest or soonest-expiring entry goes',
      labelNames: ['store'],
      registers,
      collect () {
        for (const [store, { capacity }] of Object.entries(stores())) this.set({ store }, capacity)
      }
    })
    this.#readCache = new Counter({
      name: 'emnify_bff_read_cache_total',
      help: 'Contact and country reads, by result: hit (kept answer), miss (one upstream call), coalesced (joined a call in flight)',
      labelNames: ['result'],
      registers
    })
    for (const result of ['hit', 'miss', 'coalesced']) this.#readCache.inc({ result }, 0)
    // Series that exist from the first scrape, so rates and alerts do not start from "no data".
    for (const outcome of ['ok', 'failed']) this.#authenticate.inc({ outcome }, 0)
    for (const event of SESSION_EVENTS) this.#sessions.inc({ event }, 0)
  }

  request (method: string, route: string, statusCode: number, seconds: number): void {
    this.#http.observe(seconds, method, route, statusCode)
  }

  /** The UpstreamHttp observer. */
  readonly upstreamCall = (operation: Operation, outcome: Outcome, durationMs: number): void => {
    this.#upstream.observe(durationMs / 1000, operation, outcome)
  }

  /** The token cache's refresh listener. */
  readonly tokenRefresh = (event: { ok: boolean }): void => {
    this.#authenticate.labels(event.ok ? 'ok' : 'failed').inc()
  }

  /** The read caches' observer. */
  readonly readCache = (result: 'hit' | 'miss' | 'coalesced'): void => {
    this.#readCache.labels(result).inc()
  }

  session (event: SessionEvent): void {
    this.#sessions.labels(event).inc()
  }

  /** The stores whose size and capacity are read at scrape time. */
  watchStores (stores: Record<string, BoundedStore>): void {
    this.#stores = { ...this.#stores, ...stores }
  }

  /** The upstream budget's observer (wait histogram, rejection counter); pass it to createUpstreamBudget. */
  readonly budgetObserver: BudgetObserver
  #budgetTokens: () => number = () => 0

  /** The budget the token gauge reads at scrape time. */
  watchBudget (budget: { snapshot: () => { tokens: number } }): void {
    this.#budgetTokens = () => budget.snapshot().tokens
  }

  /** Where the token gauge reads from at scrape time. */
  watchToken (expiresInSeconds: () => number): void {
    this.#tokenExpiresIn = expiresInSeconds
  }

  get contentType (): string {
    return this.registry.contentType
  }

  /** The exposition text: process metrics, then this app's. */
  async exposition (): Promise<string> {
    const [process, own] = await Promise.all([processMetrics().metrics(), this.registry.metrics()])
    return `${process}\n${own}`
  }
}
