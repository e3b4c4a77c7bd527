// A clock and timers the budget tests move by hand, and a way to watch what a take() became.
import { EventEmitter } from 'node:events'
import type { BudgetTimers, InboundResponse } from '../../src/upstream/budget.ts'

export const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

export interface FakeClock {
  now: () => number
  timers: BudgetTimers
  /** Timers set and not yet fired or cleared. */
  readonly pending: number
  /** Moves time on, firing due timers in order (promise callbacks run between them). */
  advance: (ms: number) => Promise<void>
}

export function fakeClock (start = 1_000_000): FakeClock {
  let now = start
  let sequence = 0
  const timers = new Map<number, { at: number, callback: () => void }>()
  return {
    now: () => now,
    timers: {
      setTimeout: (callback, ms) => {
        const id = ++sequence
        timers.set(id, { at: now + Math.max(0, ms), callback })
        return id
      },
      clearTimeout: (handle) => { timers.delete(handle as number) }
    },
    get pending () { return timers.size },
    async advance (ms) {
      const end = now + ms
      for (;;) {
        let due: [number, { at: number, callback: () => void }] | undefined
        for (const entry of timers) if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry
        if (due === undefined) break
        timers.delete(due[0])
        now = Math.max(now, due[1].at)
        due[1].callback()
        await flush()
      }
      now = end
      await flush()
    }
  }
}

export interface Outcome {
  state: 'granted' | 'waiting' | 'rejected'
  error: (Error & { code?: string, retryAfter?: number, status?: number }) | undefined
  /** The order in which waiting calls were granted, across every tracked call. */
  order: number
}

let grants = 0

/** What a take() became: granted at once, still waiting, granted later or rejected. */
export function track (result: true | Promise<void>): Outcome {
  const outcome: Outcome = { state: result === true ? 'granted' : 'waiting', error: undefined, order: result === true ? ++grants : 0 }
  if (result !== true) {
    result.then(() => {
      outcome.state = 'granted'
      outcome.order = ++grants
    }, (error: Outcome['error']) => {
      outcome.state = 'rejected'
      outcome.error = error
    })
  }
  return outcome
}

/** A stand-in for the waiting request's http.ServerResponse. */
export class FakeInbound extends EventEmitter implements InboundResponse {
  destroyed = false
  leave (): void {
    this.destroyed = true
    this.emit('close')
  }
}
