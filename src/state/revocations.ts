import type { RevocationRecord, Revocations } from '../session/revocations.ts'
import type { SharedRedis } from './redis.ts'

const NAME = 'revocations'

/** One record as a sorted-set member: scored by `until`; a cut-off travels after `@`. */
function member (record: RevocationRecord): string {
  return record.before === undefined ? record.key : `${record.key}@${record.before}`
}

function parse (text: string, until: number): RevocationRecord | undefined {
  const at = text.indexOf('@')
  if (at === -1) return /^[jh]:/.test(text) ? { key: text, until } : undefined
  const before = Number(text.slice(at + 1))
  const key = text.slice(0, at)
  return /^[si]:/.test(key) && Number.isFinite(before) ? { key, until, before } : undefined
}

export interface SharedRevocations {
  /** Revocations made here and not yet written to Redis (kept while it is unreachable). */
  readonly pending: number
  /** Writes what is pending and reloads what others wrote; resolves when done or failed. */
  sync: () => Promise<void>
}

/**
 * Keeps the local, synchronous `Revocations` in step with the fleet: every record this instance
 * makes is written to one sorted set (scored by expiry) and published; every instance applies
 * what it hears, and reloads the whole set at start-up and after any reconnect (it may have
 * missed messages). Records made while Redis is unreachable stay pending until it returns;
 * after an outage every instance writes back all it holds, in case Redis lost its data.
 */
export function shareRevocations (revocations: Revocations, redis: SharedRedis, now: () => number = Date.now): SharedRevocations {
  const key = redis.key(NAME)
  const pending = new Map<string, RevocationRecord>()
  let flushing: Promise<void> | undefined

  async function write (): Promise<void> {
    while (pending.size > 0 && redis.up) {
      const batch = [...pending.values()]
      const multi = redis.client.multi()
      for (const record of batch) {
        multi.zadd(key, record.until, member(record))
        multi.publish(key, `${record.until} ${member(record)}`)
      }
      // Spent records go (an empty set vanishes); it never outgrows what one instance would keep.
      multi.zremrangebyscore(key, '-inf', now())
      multi.zremrangebyrank(key, 0, -(revocations.capacity + 1))
      try {
        await multi.exec()
      } catch {
        return // still pending; written on the next up
      }
      for (const record of batch) if (pending.get(member(record)) === record) pending.delete(member(record))
    }
  }

  function flush (): Promise<void> {
    flushing ??= write().finally(() => { flushing = undefined })
    return flushing
  }

  async function load (): Promise<void> {
    let entries: string[]
    try {
      entries = await redis.client.zrange(key, now(), '+inf', 'BYSCORE', 'WITHSCORES')
    } catch {
      return // loaded again on the next reconnect of either connection
    }
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const record = parse(entries[i] as string, Number(entries[i + 1]))
      if (record !== undefined) revocations.apply(record)
    }
  }

  revocations.onRecord((record) => {
    pending.set(member(record), record)
    flush().catch(() => {})
  })
  redis.subscribe(NAME, (message) => {
    const space = message.indexOf(' ')
    const record = parse(message.slice(space + 1), Number(message.slice(0, space)))
    if (record !== undefined) revocations.apply(record)
  })
  const sync = async () => {
    await flush()
    await load()
  }
  // Subscribed before loading, so nothing published in between is missed.
  redis.onSubscriberReady(() => { sync().catch(() => {}) })
  let connected = false
  redis.onUp(() => {
    // After an outage Redis may have come back empty (no persistence): write back all we know.
    if (connected) for (const record of revocations.records()) pending.set(member(record), record)
    connected = true
    // Also reloads: the subscriber may have come back first, when commands still failed.
    sync().catch(() => {})
  })

  return {
    get pending () { return pending.size },
    sync
  }
}
