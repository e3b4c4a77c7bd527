// The upstream budget: emnify allows one IP 2,000 calls per 5 minutes, shared by every frontend
// behind the BFF, so the BFF spends it for them through a token bucket, fairly across sessions.
// Sizing and the reasoning behind the defaults: README, "Sizing the upstream budget".
import { randomUUID } from 'node:crypto'
import { Type, type Static } from 'typebox'
import { Problem } from '../errors/problems.ts'
import { ClientGoneError } from './emnify-client.ts'

/** The waiting request's response: its 'close' before the grant means the client has gone. */
export interface InboundResponse {
  readonly destroyed: boolean
  once: (event: 'close', listener: () => void) => unknown
  off: (event: 'close', listener: () => void) => unknown
}

export type BudgetMode = 'unlimited' | 'local' | 'shared' | 'fallback'

export interface BudgetSnapshot {
  /** Whole tokens free now (in a fleet: the shared bucket as last seen, plus this instance's lease). */
  tokens: number
  capacity: number
  perFiveMinutes: number
  /** Calls waiting for a token on this instance. */
  waiting: number
  /** How long spending stays paused after emnify's 429 (0 = not paused). */
  pausedForMs: number
  /** `shared`: the fleet's bucket on Redis; `fallback`: Redis unreachable, this instance's share alone. */
  mode: BudgetMode
  /** Instances sharing the budget, as last seen on Redis (1 without Redis). */
  instances: number
}

export interface UpstreamBudget {
  /**
   * One token for one upstream call made for session `sub`. `true` when a token was free (no
   * promise on the hot path); otherwise a promise that resolves when granted, fairly across subs,
   * or rejects with Problem UPSTREAM_BUDGET_EXHAUSTED (+ retryAfter) past the queue timeout or
   * at once when the queue is full, or with ClientGoneError when `inbound` closes first.
   */
  take: (sub: string, inbound?: InboundResponse) => true | Promise<void>
  /** emnify answered 429: empty the bucket and refuse or queue spending for `retryAfterMs`. */
  pause: (retryAfterMs: number) => void
  /** For the gauge, the readiness body and the start-up line. */
  snapshot: () => BudgetSnapshot
  close: () => void
}

/** Why a call was refused: its wait ran out, the queue was full, or a pause outlasts the wait. */
export type BudgetRejection = 'timeout' | 'queue_full' | 'paused'

/** Hooks for the metrics; called off the hot path only (a call granted at once reports nothing). */
export interface BudgetObserver {
  /** A call that had to wait was granted after `seconds`. */
  waited?: (seconds: number) => void
  rejected?: (reason: BudgetRejection) => void
  /** The shared (Redis) bucket became unreachable (`false`) or reachable again (`true`). */
  shared?: (reachable: boolean) => void
}

export interface BudgetTimers {
  setTimeout: (callback: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

/** What the fleet's shared bucket answers to a lease (see budget-redis.ts). */
export interface LeaseAnswer {
  /** Tokens handed to this instance (at most the ones asked for). */
  granted: number
  /** Whole tokens left in the shared bucket. */
  tokens: number
  /** Milliseconds until the shared bucket has a token again (0 when it has one). */
  waitMs: number
  /** Milliseconds the fleet stays paused after a 429 (0 = not paused). */
  pausedForMs: number
  /** Instances that leased or reported within the last few seconds, this one included. */
  instances: number
}

export interface LeaseRequest {
  /** Tokens wanted now; 0 only reports this instance as alive (and reads the bucket). */
  want: number
  capacity: number
  perFiveMinutes: number
  /** Empties the shared bucket and pauses the fleet this long first (emnify answered 429). */
  pauseMs: number
  /** This instance's random id, for counting instances (never a secret). */
  instance: string
}

/** A bucket every instance shares; one atomic lease per call, so two instances never spend the same token. */
export interface BudgetStore {
  /** False while the store is known to be unreachable: callers fall back without trying. */
  readonly reachable: boolean
  lease: (request: LeaseRequest) => Promise<LeaseAnswer>
}

export interface UpstreamBudgetOptions {
  /** Calls per 5 minutes; 0 = unlimited. */
  perFiveMinutes: number
  /** Capacity of the bucket: how many calls may go out at once after a quiet period. */
  burst: number
  /** How long a call may wait for a token; 0 = refused at once when none is free. */
  queueTimeoutMs: number
  /** Calls waiting on this instance at most (default 1024); when full, the longest sub queue gives way. */
  maxWaiting?: number
  /** Calls one sub may have waiting (default: what the bucket's rate could serve it within the timeout). */
  maxWaitingPerSub?: number
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number
  timers?: BudgetTimers
  /** A fleet-wide bucket (Redis); without it the bucket is this instance's own. */
  store?: BudgetStore
  observer?: BudgetObserver
  /** Tokens leased ahead of demand from the store, so most calls take one without a round trip. */
  leaseAhead?: number
  /** A store call not answered in this counts as a failure (default 500). */
  storeTimeoutMs?: number
  /** How often an instance reports itself to the store, or probes it while unreachable (default 1000). */
  heartbeatMs?: number
}

/** Milliseconds per 5 minutes: one token is this many units, and the bucket gains perFiveMinutes units a millisecond (exact integers). */
const UNIT = 300_000
const DEFAULT_MAX_WAITING = 1024
const MAX_RETRY_AFTER_S = 60

const realTimers: BudgetTimers = {
  setTimeout: (callback, ms) => {
    const timer = setTimeout(callback, ms)
    // The HTTP server keeps the process alive; a budget timer alone must not.
    timer.unref()
    return timer
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout)
}

/** A token bucket counted in integer units, refilled lazily from the clock; a pause pushes its refill start into the future. */
export class TokenBucket {
  readonly capacity: number
  readonly perFiveMinutes: number
  #units: number
  #last: number

  constructor (perFiveMinutes: number, capacity: number, now: number) {
    this.capacity = capacity
    this.perFiveMinutes = perFiveMinutes
    this.#units = capacity * UNIT
    this.#last = now
  }

  #refill (now: number): void {
    if (now <= this.#last) return
    this.#units = Math.min(this.capacity * UNIT, this.#units + (now - this.#last) * this.perFiveMinutes)
    this.#last = now
  }

  tryTake (now: number): boolean {
    this.#refill(now)
    if (this.#units < UNIT) return false
    this.#units -= UNIT
    return true
  }

  /** Milliseconds until one token is free (at least 1). */
  msUntilNext (now: number): number {
    this.#refill(now)
    const pause = Math.max(0, this.#last - now)
    return Math.max(1, pause + Math.ceil((UNIT - this.#units) / this.perFiveMinutes))
  }

  pause (ms: number, now: number): void {
    this.#refill(now)
    this.#units = 0
    this.#last = Math.max(this.#last, now + ms)
  }

  pausedFor (now: number): number {
    return Math.max(0, this.#last - now)
  }

  tokens (now: number): number {
    this.#refill(now)
    return Math.floor(this.#units / UNIT)
  }

  /** Empties it, as after spending the tokens elsewhere. */
  drain (now: number): void {
    this.#refill(now)
    this.#units = 0
  }
}

/** Where tokens come from: this instance's bucket, or leases from the fleet's. */
interface TokenSource {
  readonly mode: BudgetMode
  readonly instances: number
  tryTake: (now: number) => boolean
  /** Milliseconds until a token may be free, or undefined when the source calls `wake` itself once tokens arrived. */
  nextIn: (now: number, waiting: number) => number | undefined
  pause: (ms: number, now: number) => void
  pausedFor: (now: number) => number
  tokens: (now: number) => number
  close: () => void
}

class LocalSource implements TokenSource {
  readonly mode = 'local'
  readonly instances = 1
  readonly #bucket: TokenBucket
  constructor (perFiveMinutes: number, burst: number, now: number) {
    this.#bucket = new TokenBucket(perFiveMinutes, burst, now)
  }

  tryTake (now: number): boolean { return this.#bucket.tryTake(now) }
  nextIn (now: number): number { return this.#bucket.msUntilNext(now) }
  pause (ms: number, now: number): void { this.#bucket.pause(ms, now) }
  pausedFor (now: number): number { return this.#bucket.pausedFor(now) }
  tokens (now: number): number { return this.#bucket.tokens(now) }
  close (): void {}
}

interface SharedSourceOptions {
  store: BudgetStore
  perFiveMinutes: number
  burst: number
  leaseAhead: number
  storeTimeoutMs: number
  heartbeatMs: number
  now: () => number
  timers: BudgetTimers
  wake: () => void
  observer: BudgetObserver | undefined
}

/**
 * Spends from the fleet's bucket on Redis through small leases taken ahead of demand, so most
 * calls find a leased token without a round trip. While the store is unreachable it spends from a
 * local bucket holding this instance's share (the budget divided by the instances last seen) and
 * probes the store every heartbeat; the first answer puts it back on the shared bucket.
 */
class SharedSource implements TokenSource {
  #mode: 'shared' | 'fallback' = 'shared'
  #instances = 1
  #pool = 0
  #sharedTokens: number
  #pausedUntil = -Infinity
  #leasing = false
  #retryTimer: unknown
  #heartbeatTimer: unknown
  #lastContact = -Infinity
  #fallback: TokenBucket | undefined
  #closed = false
  readonly #id = randomUUID()
  readonly #o: SharedSourceOptions

  constructor (options: SharedSourceOptions) {
    this.#o = options
    this.#sharedTokens = options.burst
    this.#lease(options.leaseAhead, 0)
    this.#scheduleHeartbeat()
  }

  get mode (): 'shared' | 'fallback' { return this.#mode }
  get instances (): number { return this.#instances }

  tryTake (now: number): boolean {
    if (now < this.#pausedUntil) return false
    if (this.#fallback !== undefined) return this.#fallback.tryTake(now)
    if (this.#pool < 1) return false
    this.#pool--
    // Topped up once half the lease is spent, not after every call: at a high budget that is one
    // round trip per many calls; at emnify's (a lease ahead of 1–2 tokens) it is still every call.
    if (this.#pool <= this.#o.leaseAhead / 2 && this.#retryTimer === undefined) this.#lease(this.#o.leaseAhead - this.#pool, 0)
    return true
  }

  nextIn (now: number, waiting: number): number | undefined {
    if (now < this.#pausedUntil) return Math.ceil(this.#pausedUntil - now)
    if (this.#fallback !== undefined) return this.#fallback.msUntilNext(now)
    // A bucket that was short is asked again only when it expects a token (the retry timer).
    if (this.#retryTimer === undefined) this.#lease(Math.min(this.#o.burst, waiting + this.#o.leaseAhead) - this.#pool, 0)
    return undefined
  }

  pause (ms: number, now: number): void {
    this.#pausedUntil = Math.max(this.#pausedUntil, now + ms)
    // Leased tokens are dropped: they were taken from the bucket emnify just said was too full.
    this.#pool = 0
    this.#fallback?.pause(ms, now)
    this.#lease(0, ms)
  }

  pausedFor (now: number): number {
    return Math.max(0, this.#pausedUntil - now)
  }

  tokens (now: number): number {
    if (this.#fallback !== undefined) return this.#fallback.tokens(now)
    return this.#sharedTokens + this.#pool
  }

  close (): void {
    this.#closed = true
    this.#o.timers.clearTimeout(this.#retryTimer)
    this.#o.timers.clearTimeout(this.#heartbeatTimer)
    this.#retryTimer = undefined
    this.#heartbeatTimer = undefined
  }

  #scheduleHeartbeat (): void {
    if (this.#closed) return
    this.#heartbeatTimer = this.#o.timers.setTimeout(() => {
      this.#heartbeatTimer = undefined
      // Leases report this instance too; a quiet instance reports by itself, an unreachable store is probed.
      if (this.#o.now() - this.#lastContact >= this.#o.heartbeatMs || this.#fallback !== undefined) this.#lease(this.#o.leaseAhead - this.#pool, 0)
      this.#scheduleHeartbeat()
    }, this.#o.heartbeatMs)
  }

  #lease (want: number, pauseMs: number): void {
    if (this.#closed || (this.#leasing && pauseMs === 0)) return
    const now = this.#o.now()
    // While paused nothing is leased (the bucket would answer 0); the pause itself still goes out.
    const asked = this.#fallback !== undefined || now < this.#pausedUntil ? 0 : Math.max(0, Math.floor(want))
    if (!this.#o.store.reachable) {
      this.#unreachable()
      return
    }
    this.#leasing = true
    const request: LeaseRequest = {
      want: asked,
      capacity: this.#o.burst,
      perFiveMinutes: this.#o.perFiveMinutes,
      pauseMs: Math.ceil(pauseMs),
      instance: this.#id
    }
    let timer: unknown
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = this.#o.timers.setTimeout(() => reject(new Error('upstream budget store did not answer in time')), this.#o.storeTimeoutMs)
    })
    Promise.race([this.#o.store.lease(request), timeout]).then((answer) => {
      this.#o.timers.clearTimeout(timer)
      this.#leasing = false
      if (this.#closed) return
      this.#answered(answer, asked)
    }, () => {
      this.#o.timers.clearTimeout(timer)
      this.#leasing = false
      if (this.#closed) return
      this.#unreachable()
    })
  }

  #answered (answer: LeaseAnswer, asked: number): void {
    const now = this.#o.now()
    this.#lastContact = now
    this.#instances = Math.max(1, answer.instances)
    this.#sharedTokens = answer.tokens
    if (answer.pausedForMs > 0) this.#pausedUntil = Math.max(this.#pausedUntil, now + answer.pausedForMs)
    this.#pool += answer.granted
    if (this.#fallback !== undefined) {
      this.#fallback = undefined
      this.#mode = 'shared'
      this.#o.observer?.shared?.(true)
      // Back on the shared bucket: lease ahead again, so the next call need not wait for a round trip.
      this.#lease(this.#o.leaseAhead, 0)
    }
    // The bucket was short: no new lease until it expects a token, or the fleet's pause ends.
    if (answer.granted < asked && this.#retryTimer === undefined) {
      this.#retryTimer = this.#o.timers.setTimeout(() => {
        this.#retryTimer = undefined
        this.#o.wake()
      }, Math.max(1, answer.waitMs, Math.ceil(this.pausedFor(now))))
    }
    this.#o.wake()
  }

  #unreachable (): void {
    if (this.#fallback === undefined) {
      const now = this.#o.now()
      // Each instance's share of the fleet's budget, as many instances as were last seen.
      const share = new TokenBucket(this.#o.perFiveMinutes / this.#instances, Math.max(1, Math.floor(this.#o.burst / this.#instances)), now)
      if (now < this.#pausedUntil) share.pause(this.#pausedUntil - now, now)
      this.#fallback = share
      this.#pool = 0
      this.#mode = 'fallback'
      this.#o.observer?.shared?.(false)
    }
    this.#o.wake()
  }
}

interface Waiter {
  readonly sub: string
  readonly since: number
  readonly resolve: () => void
  readonly reject: (error: Error) => void
  readonly inbound: InboundResponse | undefined
  onClose: (() => void) | undefined
  timer: unknown
}

/** Calls waiting for a token: one FIFO per sub, subs served round-robin in the order of a Map. */
class FairBudget implements UpstreamBudget {
  readonly #source: TokenSource
  readonly #subs = new Map<string, Waiter[]>()
  #waiting = 0
  #wakeTimer: unknown
  #closed = false
  readonly #perFiveMinutes: number
  readonly #burst: number
  readonly #timeoutMs: number
  readonly #maxWaiting: number
  readonly #maxPerSub: number
  readonly #now: () => number
  readonly #timers: BudgetTimers
  readonly #observer: BudgetObserver | undefined

  constructor (options: UpstreamBudgetOptions) {
    this.#perFiveMinutes = options.perFiveMinutes
    this.#burst = options.burst
    this.#timeoutMs = options.queueTimeoutMs
    this.#now = options.now ?? (() => performance.now())
    this.#timers = options.timers ?? realTimers
    this.#observer = options.observer
    this.#maxWaiting = Math.max(1, options.maxWaiting ?? DEFAULT_MAX_WAITING)
    // More waiting than the whole rate could serve one sub within the timeout would only time out.
    this.#maxPerSub = Math.max(1, options.maxWaitingPerSub ?? Math.ceil(options.perFiveMinutes * options.queueTimeoutMs / UNIT))
    const now = this.#now()
    this.#source = options.store === undefined
      ? new LocalSource(options.perFiveMinutes, options.burst, now)
      : new SharedSource({
        store: options.store,
        perFiveMinutes: options.perFiveMinutes,
        burst: options.burst,
        leaseAhead: Math.max(1, Math.min(options.burst, options.leaseAhead ?? Math.ceil(options.perFiveMinutes * 250 / UNIT))),
        storeTimeoutMs: options.storeTimeoutMs ?? 500,
        heartbeatMs: options.heartbeatMs ?? 1000,
        now: this.#now,
        timers: this.#timers,
        wake: () => this.#drain(),
        observer: options.observer
      })
  }

  take (sub: string, inbound?: InboundResponse): true | Promise<void> {
    // Nobody waiting and a token free: the hot path, no allocation.
    if (this.#waiting === 0 && this.#source.tryTake(this.#now())) return true
    return this.#enqueue(sub, inbound)
  }

  pause (retryAfterMs: number): void {
    const ms = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : 5000
    this.#source.pause(ms, this.#now())
    this.#schedule()
  }

  snapshot (): BudgetSnapshot {
    const now = this.#now()
    return {
      tokens: this.#source.tokens(now),
      capacity: this.#burst,
      perFiveMinutes: this.#perFiveMinutes,
      waiting: this.#waiting,
      pausedForMs: Math.ceil(this.#source.pausedFor(now)),
      mode: this.#source.mode,
      instances: this.#source.instances
    }
  }

  close (): void {
    if (this.#closed) return
    this.#closed = true
    this.#timers.clearTimeout(this.#wakeTimer)
    this.#wakeTimer = undefined
    this.#source.close()
    for (const queue of [...this.#subs.values()]) {
      for (const waiter of [...queue]) this.#settle(waiter, new Problem('UPSTREAM_BUDGET_EXHAUSTED', { detail: 'the service is shutting down; nothing was sent to emnify', retryAfter: 1 }))
    }
  }

  #enqueue (sub: string, inbound: InboundResponse | undefined): Promise<void> {
    const now = this.#now()
    if (this.#closed) return Promise.reject(this.#refusal('timeout', now))
    if (inbound?.destroyed === true) return Promise.reject(new ClientGoneError())
    const pausedFor = this.#source.pausedFor(now)
    if (this.#timeoutMs === 0) return Promise.reject(this.#refusal(pausedFor > 0 ? 'paused' : 'timeout', now))
    // A pause that outlasts the wait is refused now rather than after waiting for nothing.
    if (pausedFor >= this.#timeoutMs) return Promise.reject(this.#refusal('paused', now))
    let queue = this.#subs.get(sub)
    if (queue !== undefined && queue.length >= this.#maxPerSub) return Promise.reject(this.#refusal('queue_full', now))
    if (this.#waiting >= this.#maxWaiting && !this.#makeRoom(queue?.length ?? 0)) return Promise.reject(this.#refusal('queue_full', now))
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { sub, since: now, resolve, reject, inbound, onClose: undefined, timer: undefined }
      waiter.timer = this.#timers.setTimeout(() => {
        waiter.timer = undefined
        this.#settle(waiter, () => this.#refusal('timeout', this.#now()))
      }, this.#timeoutMs)
      if (inbound !== undefined) {
        // Its place goes to the next caller; nothing of it was sent.
        waiter.onClose = () => {
          waiter.onClose = undefined
          this.#settle(waiter, new ClientGoneError())
        }
        inbound.once('close', waiter.onClose)
      }
      if (queue === undefined) {
        queue = []
        this.#subs.set(sub, queue)
      }
      queue.push(waiter)
      this.#waiting++
      this.#drain()
    })
  }

  /** The queue is full: the longest sub queue gives up its newest waiter, unless the newcomer's own queue is as long. */
  #makeRoom (ownLength: number): boolean {
    let longest: Waiter[] | undefined
    for (const queue of this.#subs.values()) if (longest === undefined || queue.length > longest.length) longest = queue
    if (longest === undefined || longest.length <= ownLength + 1) return false
    const evicted = longest[longest.length - 1] as Waiter
    this.#settle(evicted, () => this.#refusal('queue_full', this.#now()))
    return true
  }

  /** Grants tokens round-robin across subs while the source has them, then waits for the next one. */
  #drain (): void {
    if (this.#closed) return
    while (this.#waiting > 0) {
      const first = this.#subs.entries().next().value as [string, Waiter[]]
      if (!this.#source.tryTake(this.#now())) break
      const [sub, queue] = first
      const waiter = queue.shift() as Waiter
      this.#waiting--
      this.#subs.delete(sub)
      // A sub with more waiting goes to the back of the round.
      if (queue.length > 0) this.#subs.set(sub, queue)
      this.#release(waiter)
      this.#observer?.waited?.((this.#now() - waiter.since) / 1000)
      waiter.resolve()
    }
    this.#schedule()
  }

  #schedule (): void {
    if (this.#closed || this.#waiting === 0 || this.#wakeTimer !== undefined) return
    const ms = this.#source.nextIn(this.#now(), this.#waiting)
    if (ms === undefined) return
    this.#wakeTimer = this.#timers.setTimeout(() => {
      this.#wakeTimer = undefined
      this.#drain()
    }, ms)
  }

  #release (waiter: Waiter): void {
    if (waiter.timer !== undefined) this.#timers.clearTimeout(waiter.timer)
    waiter.timer = undefined
    if (waiter.onClose !== undefined) waiter.inbound?.off('close', waiter.onClose)
    waiter.onClose = undefined
  }

  /** Takes a waiter out of the queue, then rejects it (a refusal is built once it no longer counts as waiting). */
  #settle (waiter: Waiter, error: Error | (() => Error)): void {
    const queue = this.#subs.get(waiter.sub)
    const index = queue?.indexOf(waiter) ?? -1
    if (queue === undefined || index < 0) return
    queue.splice(index, 1)
    if (queue.length === 0) this.#subs.delete(waiter.sub)
    this.#waiting--
    this.#release(waiter)
    waiter.reject(typeof error === 'function' ? error() : error)
    if (this.#waiting === 0 && this.#wakeTimer !== undefined) {
      this.#timers.clearTimeout(this.#wakeTimer)
      this.#wakeTimer = undefined
    }
  }

  #refusal (reason: BudgetRejection, now: number): Problem {
    this.#observer?.rejected?.(reason)
    const pausedFor = this.#source.pausedFor(now)
    // Roughly when the calls now waiting will have been served, in whole seconds.
    const expectedMs = pausedFor + (this.#waiting + 1) * UNIT / this.#perFiveMinutes
    const retryAfter = Math.min(MAX_RETRY_AFTER_S, Math.max(1, Math.ceil(expectedMs / 1000)))
    const detail = reason === 'paused'
      ? 'emnify asked the BFF to slow down; nothing was sent to emnify'
      : reason === 'queue_full'
        ? 'too many requests are waiting for emnify\'s allowance; nothing was sent to emnify'
        : `emnify's allowance had no room within ${this.#timeoutMs} ms; nothing was sent to emnify`
    return new Problem('UPSTREAM_BUDGET_EXHAUSTED', { detail, retryAfter })
  }
}

const UNLIMITED: UpstreamBudget = {
  take: () => true,
  // Nothing to pause: an operator who switched the budget off decides emnify's limits alone.
  pause: () => {},
  snapshot: () => ({ tokens: 0, capacity: 0, perFiveMinutes: 0, waiting: 0, pausedForMs: 0, mode: 'unlimited', instances: 1 }),
  close: () => {}
}

export function createUpstreamBudget (options: UpstreamBudgetOptions): UpstreamBudget {
  if (options.perFiveMinutes === 0) return UNLIMITED
  return new FairBudget(options)
}

/** The budget in `GET /health/ready`'s body (informative: it never changes the status). */
export const BudgetStatusSchema = Type.Object({
  mode: Type.Union([Type.Literal('unlimited'), Type.Literal('local'), Type.Literal('shared'), Type.Literal('fallback')]),
  per_five_minutes: Type.Integer({ description: 'UPSTREAM_BUDGET_PER_5MIN; 0 = unlimited' }),
  capacity: Type.Integer({ description: 'UPSTREAM_BUDGET_BURST' }),
  tokens: Type.Integer({ description: 'tokens free now' }),
  waiting: Type.Integer({ description: 'calls waiting for a token on this instance' }),
  paused_for_ms: Type.Integer({ description: 'spending paused after an emnify 429 for this long' }),
  instances: Type.Integer({ description: 'instances sharing the budget (1 without Redis)' })
}, { description: 'The upstream budget' })

export function budgetStatus (snapshot: BudgetSnapshot): Static<typeof BudgetStatusSchema> {
  return {
    mode: snapshot.mode,
    per_five_minutes: snapshot.perFiveMinutes,
    capacity: snapshot.capacity,
    tokens: snapshot.tokens,
    waiting: snapshot.waiting,
    paused_for_ms: snapshot.pausedForMs,
    instances: snapshot.instances
  }
}

/** The start-up line's words for a budget. */
export function describeBudget (snapshot: BudgetSnapshot): string {
  if (snapshot.mode === 'unlimited') return 'unlimited'
  return `${snapshot.perFiveMinutes} per 5 min, burst ${snapshot.capacity}${snapshot.mode === 'local' ? '' : `, shared by ${snapshot.instances} instance(s)`}`
}
