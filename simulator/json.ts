// Defensive JSON helpers: the simulator must never throw on what a client sends.

export function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export type Parsed = { ok: true, value: unknown } | { ok: false }

export function parseJson (text: string): Parsed {
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch {
    return { ok: false }
  }
}
