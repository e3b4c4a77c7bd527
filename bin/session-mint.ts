// Prints a session token signed with SESSION_SECRET (from the environment or .env):
//   npm run session:mint -- --sub alice --orgs 1,2 [--scope contacts:read] [--ttl 3600] [--json]
import { parseArgs } from 'node:util'
import { ConfigError, loadConfigFor, SessionConfigSchema } from '../src/config/config.ts'
import { mintSession, parseOrgs } from '../src/session/mint.ts'
import { parseScope } from '../src/session/claims.ts'

const usage = 'usage: npm run session:mint -- --sub <subject> --orgs <1,2|*> [--scope "contacts:read contacts:write"] [--ttl <seconds>] [--json]\n  without --scope the session holds both contacts:read and contacts:write'

try {
  const { values } = parseArgs({
    options: {
      sub: { type: 'string' },
      orgs: { type: 'string' },
      ttl: { type: 'string' },
      scope: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    },
    strict: true
  })
  if (values.help === true) {
    process.stdout.write(`${usage}\n`)
    process.exit(0)
  }
  if (values.sub === undefined || values.sub === '' || values.orgs === undefined) throw new Error(`--sub and --orgs are required\n${usage}`)
  let ttlS: number | undefined
  if (values.ttl !== undefined) {
    ttlS = Number(values.ttl)
    if (!Number.isInteger(ttlS) || ttlS < 1 || ttlS > 604800) throw new Error('--ttl must be a whole number of seconds between 1 and 604800')
  }
  const config = loadConfigFor(SessionConfigSchema, { dotenv: true })
  const { token, expiresAt } = mintSession(config, {
    sub: values.sub,
    orgs: parseOrgs(values.orgs),
    ...(values.scope === undefined ? {} : { scope: parseScope(values.scope) }),
    ttlS
  })
  process.stdout.write(values.json === true ? `${JSON.stringify({ token, token_type: 'Bearer', expires_at: expiresAt.toISOString() })}\n` : `${token}\n`)
} catch (error) {
  process.stderr.write(`session:mint: ${error instanceof ConfigError || error instanceof Error ? error.message : String(error)}\n`)
  process.exit(2)
}
