// `prcl schemas [--check]`: write schemas/*.json from the typebox types, or fail on drift.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { schemaFiles } from '../wire/schema-files.ts'
import { SCHEMAS_DIR } from '../paths.ts'

export function writeSchemas(dir = SCHEMAS_DIR): string[] {
  mkdirSync(dir, { recursive: true })
  const files = schemaFiles()
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return Object.keys(files)
}

/** Names of files that differ from what the types generate (missing, changed or extra). */
export function schemaDrift(dir = SCHEMAS_DIR): string[] {
  const files = schemaFiles()
  const drift: string[] = []
  for (const [name, text] of Object.entries(files)) {
    const path = join(dir, name)
    if (!existsSync(path)) drift.push(`${name} (missing)`)
    else if (readFileSync(path, 'utf8') !== text) drift.push(`${name} (changed)`)
  }
  if (existsSync(dir)) {
    for (const name of readdirSync(dir)) if (name.endsWith('.json') && !(name in files)) drift.push(`${name} (not generated)`)
  }
  return drift
}
