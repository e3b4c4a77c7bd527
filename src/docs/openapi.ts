import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../app.ts'
import { loadConfig } from '../config/config.ts'

/**
 * The OpenAPI document of the whole API as shipped (login offered, metrics on the main port),
 * independent of the local environment: what `npm run openapi` writes to openapi.json.
 */
export async function openApiDocument (): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'emnify-bff-openapi-'))
  try {
    // /auth/login exists only with a users file; an empty one is enough to describe it.
    const usersFile = join(dir, 'users.json')
    await writeFile(usersFile, '{"users":[]}\n')
    const config = loadConfig({
      env: {
        EMNIFY_APPLICATION_TOKEN: 'openapi-generation',
        SESSION_SECRET: 'openapi-generation-only-not-a-secret',
        USERS_FILE: usersFile,
        LOG_LEVEL: 'silent'
      }
    })
    const app = await buildApp(config)
    try {
      await app.ready()
      return structuredClone(app.swagger()) as unknown as Record<string, unknown>
    } finally {
      await app.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The committed form: two-space JSON with a final newline. */
export function serialiseDocument (document: unknown): string {
  return `${JSON.stringify(document, null, 2)}\n`
}
