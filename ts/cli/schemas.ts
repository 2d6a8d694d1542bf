// `prcl schemas [--check]`: write schemas/*.json from the typebox types, or fail on drift.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { schemaFiles } from '../wire/schema-files.ts'
import { SCHEMAS_DIR } from '../paths.ts'
import { parseCommand } from './args.ts'
import { schemas as SCHEMAS } from './commands.ts'

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

/** `prcl schemas [--check]`. */
export async function schemasCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(SCHEMAS, args)
  if (values.check) {
    const drift = schemaDrift()
    if (drift.length > 0) {
      console.error(`schemas/ is out of date with the types in ts/: ${drift.join(', ')}\nrun: npx prcl schemas`)
      return 1
    }
    console.log('schemas/ matches the types')
    return 0
  }
  console.log(`wrote ${writeSchemas().map((f) => `schemas/${f}`).join(', ')}`)
  return 0
}
