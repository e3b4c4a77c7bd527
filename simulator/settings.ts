// Switches that shape how the simulator answers, settable at start and at runtime (POST /_sim/settings).
import { isRecord } from './json.ts'
import { EMNIFY_RATE_LIMIT } from './rate-limit.ts'
import type { RateLimit } from './rate-limit.ts'

/** How `POST …/contact` names the new contact: `{origin}/api/…` (default), `/api/…`, or no Location at all. */
export type CreatedLocation = 'absolute' | 'relative' | 'none'

export const CREATED_LOCATIONS: readonly CreatedLocation[] = ['absolute', 'relative', 'none']

export interface Settings {
  createdLocation: CreatedLocation
  /** Contacts and countries carry fields emnify might add (`created_at`, `internal_ref`, …). */
  extraFields: boolean
  /** emnify's per-IP limit, or false (default) for none. */
  rateLimit: RateLimit | false
}

export interface SettingsInput {
  createdLocation?: CreatedLocation
  extraFields?: boolean
  /** true = emnify's figures; an object = on, each missing figure taken from emnify's; false = off. */
  rateLimit?: boolean | Partial<RateLimit>
}

export class SettingsError extends Error {
  override name = 'SettingsError'
}

export const DEFAULT_SETTINGS: Readonly<Settings> = { createdLocation: 'absolute', extraFields: false, rateLimit: false }

const MAX_COUNT = 1_000_000_000
const MAX_WINDOW_MS = 24 * 3600 * 1000

function figure (source: Record<string, unknown>, key: keyof RateLimit, max: number): number {
  const value = source[key]
  if (value === undefined) return EMNIFY_RATE_LIMIT[key]
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new SettingsError(`rateLimit.${key} must be an integer between 1 and ${max}`)
  }
  return value
}

function rateLimit (value: unknown): RateLimit | false {
  if (value === false) return false
  if (value === true) return { ...EMNIFY_RATE_LIMIT }
  if (!isRecord(value)) throw new SettingsError('rateLimit must be true, false or an object')
  for (const key of Object.keys(value)) {
    if (!(key in EMNIFY_RATE_LIMIT)) throw new SettingsError(`rateLimit.${key} is not a setting`)
  }
  return {
    requests: figure(value, 'requests', MAX_COUNT),
    authenticate: figure(value, 'authenticate', MAX_COUNT),
    windowMs: figure(value, 'windowMs', MAX_WINDOW_MS)
  }
}

/** Validates untrusted settings (from the control endpoint or options); returns only the ones given. */
export function parseSettings (value: unknown): Partial<Settings> {
  if (!isRecord(value)) throw new SettingsError('settings must be an object')
  const settings: Partial<Settings> = {}
  for (const [key, field] of Object.entries(value)) {
    if (field === undefined) continue
    switch (key) {
      case 'createdLocation':
        if (!CREATED_LOCATIONS.includes(field as CreatedLocation)) {
          throw new SettingsError(`createdLocation must be one of ${CREATED_LOCATIONS.join(', ')}`)
        }
        settings.createdLocation = field as CreatedLocation
        break
      case 'extraFields':
        if (typeof field !== 'boolean') throw new SettingsError('extraFields must be a boolean')
        settings.extraFields = field
        break
      case 'rateLimit':
        settings.rateLimit = rateLimit(field)
        break
      default:
        throw new SettingsError(`${key} is not a setting`)
    }
  }
  return settings
}
