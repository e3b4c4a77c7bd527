import { readFile } from 'node:fs/promises'
import { parseScope } from '../session/claims.ts'
import { DEFAULT_PARAMS, describeCost, hashPassword, parseHash, verifyPassword, type ScryptHash, type ScryptParams } from './password.ts'

export interface User {
  username: string
  orgs: number[] | '*'
  hash: ScryptHash
  /** Space-separated contact scopes; absent = both. */
  scope?: string
}

const USERNAME = /^[A-Za-z0-9._@+-]{1,128}$/

/**
 * The one username rule, for the file, the lookup and the lockout alike: NFKC, then case-folded.
 * "Dave", "dave" and "ｄａｖｅ" are one account with one failure count.
 */
export function canonicalUsername (username: string): string {
  return username.normalize('NFKC').toLowerCase()
}

/** The cost every hash of a file shares; the default for a file without users. */
export function fileCost (users: ReadonlyMap<string, User>): ScryptParams {
  const first = users.values().next().value
  return first === undefined ? DEFAULT_PARAMS : { ln: first.hash.ln, r: first.hash.r, p: first.hash.p }
}

export class UsersFileError extends Error {
  constructor (path: string, reason: string) {
    super(`Invalid users file ${path}: ${reason}`)
    this.name = 'UsersFileError'
  }
}

function parseOrgs (value: unknown): number[] | '*' | undefined {
  if (value === '*') return '*'
  if (!Array.isArray(value) || value.length === 0) return undefined
  const orgs: number[] = []
  for (const org of value) {
    if (typeof org !== 'number' || !Number.isSafeInteger(org) || org < 1 || orgs.includes(org)) return undefined
    orgs.push(org)
  }
  return orgs
}

/**
 * Validates the whole file; the first bad entry is named by index and username. The map is keyed
 * by canonicalUsername. Every hash must have the first one's cost, so that a wrong password costs
 * the same time for every user and for an unknown one (checked against a dummy of that cost).
 */
export function parseUsers (text: string, path: string): Map<string, User> {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (error) {
    throw new UsersFileError(path, `not valid JSON (${(error as Error).message})`)
  }
  const list = (data as { users?: unknown } | null)?.users
  if (data === null || typeof data !== 'object' || !Array.isArray(list)) throw new UsersFileError(path, 'expected {"users": [...]}')
  const users = new Map<string, User>()
  const seen = new Map<string, string>()
  let cost: { params: ScryptParams, where: string } | undefined
  list.forEach((entry: unknown, index) => {
    const e = entry as Record<string, unknown> | null
    const name = typeof e?.username === 'string' ? `"${e.username}"` : '(no username)'
    const where = `users[${index}] ${name}`
    if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new UsersFileError(path, `${where} is not an object`)
    const unknown = Object.keys(e).filter((key) => !['username', 'password_hash', 'orgs', 'scope'].includes(key))
    if (unknown.length > 0) throw new UsersFileError(path, `${where} has unknown properties: ${unknown.join(', ')}`)
    if (typeof e.username !== 'string' || !USERNAME.test(e.username)) throw new UsersFileError(path, `${where}: username must be 1–128 of A–Z a–z 0–9 . _ @ + -`)
    const key = canonicalUsername(e.username)
    const earlier = seen.get(key)
    if (earlier !== undefined) {
      throw new UsersFileError(path, `${where}: duplicate username (${earlier} is the same name; usernames are case-insensitive)`)
    }
    seen.set(key, where)
    if (typeof e.password_hash !== 'string') throw new UsersFileError(path, `${where}: password_hash is required`)
    let hash: ScryptHash
    try {
      hash = parseHash(e.password_hash)
    } catch (error) {
      throw new UsersFileError(path, `${where}: ${(error as Error).message}`)
    }
    if (cost === undefined) cost = { params: { ln: hash.ln, r: hash.r, p: hash.p }, where }
    else if (describeCost(hash) !== describeCost(cost.params)) {
      throw new UsersFileError(path, `${where}: password_hash cost ${describeCost(hash)} differs from ${describeCost(cost.params)} of ${cost.where}; ` +
        'every entry must have the same cost so that sign-in takes the same time for every name (re-hash it with npm run user:add)')
    }
    const orgs = parseOrgs(e.orgs)
    if (orgs === undefined) throw new UsersFileError(path, `${where}: orgs must be "*" or a non-empty array of distinct positive integers`)
    let scope: string | undefined
    if (e.scope !== undefined) {
      try {
        if (typeof e.scope !== 'string') throw new Error('scope must be a string')
        scope = parseScope(e.scope)
      } catch (error) {
        throw new UsersFileError(path, `${where}: ${(error as Error).message}`)
      }
    }
    users.set(key, scope === undefined ? { username: e.username, orgs, hash } : { username: e.username, orgs, hash, scope })
  })
  return users
}

/**
 * The users allowed to log in. Reloading validates the new file completely before swapping it
 * in, so a broken edit never locks everybody out or drops traffic.
 */
export class UserDirectory {
  readonly path: string
  #users: Map<string, User>
  #dummy: ScryptHash

  private constructor (path: string, users: Map<string, User>, dummy: ScryptHash) {
    this.path = path
    this.#users = users
    this.#dummy = dummy
  }

  static async load (path: string): Promise<UserDirectory> {
    const users = await UserDirectory.#read(path)
    return new UserDirectory(path, users, await UserDirectory.#dummyFor(users))
  }

  static async #dummyFor (users: ReadonlyMap<string, User>): Promise<ScryptHash> {
    return parseHash(await hashPassword('not-a-real-password', fileCost(users)))
  }

  /** Verified against when the user does not exist; it has the file's one cost, so both failures take the same time. */
  get dummy (): ScryptHash {
    return this.#dummy
  }

  static async #read (path: string): Promise<Map<string, User>> {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (error) {
      throw new UsersFileError(path, `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    return parseUsers(text, path)
  }

  get size (): number {
    return this.#users.size
  }

  /** The user of this name under canonicalUsername, if any. */
  get (username: string): User | undefined {
    return this.#users.get(canonicalUsername(username))
  }

  /** The user if the password is theirs; an unknown name costs one scrypt too, against the dummy. */
  async authenticate (username: string, password: string): Promise<User | undefined> {
    const user = this.get(username)
    const valid = await verifyPassword(password, user?.hash ?? this.#dummy)
    return valid && user !== undefined ? user : undefined
  }

  /** Re-reads the file; on failure keeps the current users and rethrows for logging. */
  async reload (): Promise<number> {
    const users = await UserDirectory.#read(this.path)
    const dummy = await UserDirectory.#dummyFor(users)
    // Swapped together, so the dummy always has the cost of the users it stands in for.
    this.#users = users
    this.#dummy = dummy
    return this.#users.size
  }
}
