import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/** PHC-style scrypt: `$scrypt$ln=15,r=8,p=1$<salt>$<key>`, standard base64 without padding. */
export interface ScryptHash {
  ln: number
  r: number
  p: number
  salt: Buffer
  key: Buffer
}

export interface ScryptParams { ln: number, r: number, p: number }

export const DEFAULT_PARAMS: ScryptParams = { ln: 15, r: 8, p: 1 }
/** scrypt's CPU and memory grow with 2^ln·r·p; no hash may cost more than the default (~100 ms, 32 MiB). */
export const MAX_WORK = work(DEFAULT_PARAMS)
const KEY_LENGTH = 32
const SALT_LENGTH = 16
const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{11,})\$([A-Za-z0-9+/]{43})$/

export function work (params: ScryptParams): number {
  return 2 ** params.ln * params.r * params.p
}

/** `ln=15,r=8,p=1`, as written in a hash. */
export function describeCost (params: ScryptParams): string {
  return `ln=${params.ln},r=${params.r},p=${params.p}`
}

const b64 = (buffer: Buffer) => buffer.toString('base64').replace(/=+$/, '')

function derive (password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.ln
  const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 128 * N * params.r * params.p + 16 * 1024 * 1024 }
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_LENGTH, options, (error, key) => error === null ? resolve(key) : reject(error))
  })
}

/** Parses a stored hash; throws with a reason when it is not one this service can verify. */
export function parseHash (value: string): ScryptHash {
  const match = PHC.exec(value)
  if (match === null) throw new Error('password_hash must look like $scrypt$ln=15,r=8,p=1$<salt>$<key> (base64 without padding, 32-byte key)')
  const [ln, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])]
  if (ln < 10 || ln > 17 || r < 1 || r > 16 || p < 1 || p > 4) throw new Error('password_hash parameters out of range (ln 10–17, r 1–16, p 1–4)')
  // Login is unauthenticated: one attempt must never cost more CPU and memory than the default.
  if (work({ ln, r, p }) > MAX_WORK) throw new Error(`password_hash cost ${describeCost({ ln, r, p })} is above the most this service allows (${describeCost(DEFAULT_PARAMS)}, 2^ln·r·p at most ${MAX_WORK})`)
  const key = Buffer.from(match[5] as string, 'base64')
  if (key.length !== KEY_LENGTH) throw new Error('password_hash key must be 32 bytes')
  return { ln, r, p, salt: Buffer.from(match[4] as string, 'base64'), key }
}

export async function hashPassword (password: string, params: ScryptParams = DEFAULT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_LENGTH)
  const key = await derive(password, salt, params)
  return `$scrypt$${describeCost(params)}$${b64(salt)}$${b64(key)}`
}

/** Constant-time comparison of the derived key; the cost is set by the hash's own parameters. */
export async function verifyPassword (password: string, hash: ScryptHash): Promise<boolean> {
  const key = await derive(password, hash.salt, hash)
  return timingSafeEqual(key, hash.key)
}
