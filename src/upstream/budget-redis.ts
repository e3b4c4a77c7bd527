// The fleet's upstream budget on Redis: one token bucket every instance leases from in a single
// atomic script, timed by the Redis server's clock so instances' clocks need not agree.
import type { Redis } from 'ioredis'
import type { BudgetStore, LeaseAnswer, LeaseRequest } from './budget.ts'

// Units as in budget.ts: one token is 300,000 units; the bucket gains perFiveMinutes units a millisecond.
// Both keys carry one hash tag, so the script also runs on a Redis Cluster.
const LEASE_SCRIPT = `
local unit = 300000
local want = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2]) * unit
local rate = tonumber(ARGV[3])
local pause = tonumber(ARGV[4])
local peerTtl = tonumber(ARGV[6])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'units', 'last')
local units = tonumber(state[1])
local last = tonumber(state[2])
if units == nil or last == nil then
  units = capacity
  last = now
end
if now > last then
  units = math.min(capacity, units + (now - last) * rate)
  last = now
end
if units > capacity then units = capacity end
if pause > 0 then
  units = 0
  if now + pause > last then last = now + pause end
end
local granted = 0
if want > 0 then
  granted = math.min(want, math.floor(units / unit))
  units = units - granted * unit
end
local pausedFor = math.max(0, last - now)
local waitMs = 0
if units < unit then waitMs = pausedFor + math.ceil((unit - units) / rate) end
redis.call('HSET', KEYS[1], 'units', units, 'last', last)
-- Once full again the bucket says nothing an absent key would not: let it go.
redis.call('PEXPIRE', KEYS[1], pausedFor + math.ceil((capacity - units) / rate) + 1000)
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - peerTtl)
redis.call('PEXPIRE', KEYS[2], peerTtl * 2)
local instances = redis.call('ZCARD', KEYS[2])
return {granted, math.floor(units / unit), waitMs, pausedFor, instances}
`

const COMMAND = 'emnifyBffBudgetLease'

interface LeaseCommand {
  [COMMAND]: (bucketKey: string, instancesKey: string, ...args: string[]) => Promise<unknown>
}

export interface RedisBudgetStoreOptions {
  /** REDIS_KEY_PREFIX; the keys are `<prefix>{upstream-budget}` and `<prefix>{upstream-budget}:instances`. */
  prefix: string
  /** An instance not heard from for this long no longer counts towards the fleet's size (default 5000). */
  instanceTtlMs?: number
}

function integer (value: unknown): number {
  const number = Number(value)
  if (!Number.isFinite(number) || number < 0) throw new Error('unexpected answer from the upstream budget script')
  return Math.floor(number)
}

/**
 * The shared bucket, on the instance's one ioredis client (commands fail at once while it is
 * disconnected, so `reachable` follows the client's status rather than a queue of stale leases).
 */
export function createRedisBudgetStore (redis: Redis, options: RedisBudgetStoreOptions): BudgetStore {
  if (typeof (redis as unknown as Partial<LeaseCommand>)[COMMAND] !== 'function') {
    // ioredis sends EVALSHA and falls back to EVAL once when the script is not cached yet.
    redis.defineCommand(COMMAND, { numberOfKeys: 2, lua: LEASE_SCRIPT })
  }
  const client = redis as unknown as LeaseCommand
  const bucketKey = `${options.prefix}{upstream-budget}`
  const instancesKey = `${options.prefix}{upstream-budget}:instances`
  const instanceTtl = String(options.instanceTtlMs ?? 5000)
  return {
    get reachable () {
      return redis.status === 'ready'
    },
    async lease (request: LeaseRequest): Promise<LeaseAnswer> {
      const answer = await client[COMMAND](
        bucketKey,
        instancesKey,
        String(request.want),
        String(request.capacity),
        String(request.perFiveMinutes),
        String(request.pauseMs),
        request.instance,
        instanceTtl
      )
      if (!Array.isArray(answer) || answer.length !== 5) throw new Error('unexpected answer from the upstream budget script')
      return {
        granted: integer(answer[0]),
        tokens: integer(answer[1]),
        waitMs: integer(answer[2]),
        pausedForMs: integer(answer[3]),
        instances: Math.max(1, integer(answer[4]))
      }
    }
  }
}
