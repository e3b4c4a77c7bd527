import { readFile } from 'node:fs/promises'
import { parseScope } from '../session/claims.ts'
import { DEFAULT_PARAMS, hashPassword, parseHash, type ScryptHash } from './password.ts'

export interface User {
  username: string
  orgs: number[] | '*'
  hash: ScryptHash
  /** Space-separated contact scopes; absent = both. */
  scope?: string
}

const USERNAME = /^[A-Za-z0-9._@+-]{1,128}$/

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

/** Validates the whole file; the first bad entry is named by index and username. */
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
  list.forEach((entry: unknown, index) => {
    const e = entry as Record<string, unknown> | null
    const name = typeof e?.username === 'string' ? `"${e.username}"` : '(no username)'
    const where = `users[${index}] ${name}`
    if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new UsersFileError(path, `${where} is not an object`)
    const unknown = Object.keys(e).filter((key) => !['username', 'password_hash', 'orgs', 'scope'].includes(key))
    if (unknown.length > 0) throw new UsersFileError(path, `${where} has unknown properties: ${unknown.join(', ')}`)
    if (typeof e.username !== 'string' || !USERNAME.test(e.username)) throw new UsersFileError(path, `${where}: username must be 1–128 of A–Z a–z 0–9 . _ @ + -`)
    if (users.has(e.username)) throw new UsersFileError(path, `${where}: duplicate username`)
    if (typeof e.password_hash !== 'string') throw new UsersFileError(path, `${where}: password_hash is required`)
    let hash: ScryptHash
    try {
      hash = parseHash(e.password_hash)
    } catch (error) {
      throw new UsersFileError(path, `${where}: ${(error as Error).message}`)
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
    users.set(e.username, scope === undefined ? { username: e.username, orgs, hash } : { username: e.username, orgs, hash, scope })
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
  /** Verified against when the user does not exist, so both failures cost the same. */
  readonly dummy: ScryptHash

  private constructor (path: string, users: Map<string, User>, dummy: ScryptHash) {
    this.path = path
    this.#users = users
    this.dummy = dummy
  }

  static async load (path: string): Promise<UserDirectory> {
    const users = await UserDirectory.#read(path)
    const dummy = parseHash(await hashPassword('not-a-real-password', DEFAULT_PARAMS))
    return new UserDirectory(path, users, dummy)
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

  get (username: string): User | undefined {
    return this.#users.get(username)
  }

  /** Re-reads the file; on failure keeps the current users and rethrows for logging. */
  async reload (): Promise<number> {
    this.#users = await UserDirectory.#read(this.path)
    return this.#users.size
  }
}
