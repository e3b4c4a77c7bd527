// `npm start` runs the compiled server. On a development checkout, compile first so it never
// runs stale code; in a production install (no TypeScript), use the dist/ that was shipped.
import { existsSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

const tsc = 'node_modules/typescript/bin/tsc'
if (existsSync(tsc)) {
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' })
} else if (!existsSync('dist/server.js')) {
  process.stderr.write('dist/server.js is missing and TypeScript is not installed: run `npm ci && npm run build` first\n')
  process.exit(1)
}
