// `npm run openapi`: writes openapi.json at the repository root from the routes' own schemas.
// A test fails when the committed file differs from what this produces.
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { openApiDocument, serialiseDocument } from '../src/docs/openapi.ts'

const target = new URL('../openapi.json', import.meta.url)
await writeFile(target, serialiseDocument(await openApiDocument()))
process.stdout.write(`wrote ${fileURLToPath(target)}\n`)
