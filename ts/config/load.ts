// Loading a configuration: a preset name or a JSON/YAML file, `--set path=value` overrides, and
// validation whose errors name the path, the bad value and what was expected.
import { existsSync, readFileSync } from 'node:fs'
import { extname, resolve } from 'node:path'
import { Compile } from 'typebox/compile'
import { parse as parseYaml } from 'yaml'
import { deepMerge, isPlain } from './merge.ts'
import { PRESETS, presetNames } from './presets.ts'
import { ExperimentConfig } from './schema.ts'

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const check = Compile(ExperimentConfig)

/** A preset by name, or a .json/.yaml/.yml file; a file may name a preset to start from (`extends`). */
export function loadConfig(source: string, sets: string[] = []): ExperimentConfig {
  let base: unknown
  if (source in PRESETS) {
    base = PRESETS[source]!()
  } else if (existsSync(source)) {
    base = readConfigFile(source)
  } else {
    throw new ConfigError(`'${source}' is neither a preset (${presetNames().join(', ')}) nor a file`)
  }
  for (const s of sets) base = applySet(base, s)
  return validate(base, source)
}

function readConfigFile(path: string): unknown {
  const text = readFileSync(path, 'utf8')
  let doc: unknown
  try {
    doc = ['.yaml', '.yml'].includes(extname(path).toLowerCase()) ? parseYaml(text) : JSON.parse(text)
  } catch (e) {
    throw new ConfigError(`${path}: not valid ${extname(path).slice(1) || 'JSON'}: ${(e as Error).message}`)
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${path}: the top level must be a mapping`)
  const { extends: parent, ...rest } = doc as Record<string, unknown>
  if (parent === undefined) return rest
  if (typeof parent !== 'string' || !(parent in PRESETS)) {
    throw new ConfigError(`${path}: extends must name a preset (${presetNames().join(', ')}), got ${JSON.stringify(parent)}`)
  }
  return deepMerge<unknown>(PRESETS[parent]!(), rest)
}

/** `a.b.c=value`: the value is parsed as JSON when it parses (numbers, booleans, null, arrays),
 *  else taken as a string. The path must exist in the configuration. */
export function applySet(config: unknown, assignment: string): unknown {
  const eq = assignment.indexOf('=')
  if (eq <= 0) throw new ConfigError(`--set expects path=value, got '${assignment}'`)
  const path = assignment.slice(0, eq).trim()
  const raw = assignment.slice(eq + 1)
  let value: unknown = raw
  try { value = JSON.parse(raw) } catch { /* a plain string */ }
  const keys = path.split('.')
  const root = structuredClone(config) as Record<string, unknown>
  let node: unknown = root
  for (let i = 0; i < keys.length - 1; i++) {
    const k = keys[i]!
    const next = Array.isArray(node) ? node[Number(k)] : isPlain(node) ? node[k] : undefined
    if (next === undefined || next === null || typeof next !== 'object') {
      throw new ConfigError(`--set ${path}: '${keys.slice(0, i + 1).join('.')}' is not a section of the configuration`)
    }
    node = next
  }
  const last = keys[keys.length - 1]!
  if (Array.isArray(node)) node[Number(last)] = value
  else if (isPlain(node)) {
    if (!(last in node)) throw new ConfigError(`--set ${path}: no setting '${last}' here; known: ${Object.keys(node).join(', ')}`)
    node[last] = value
  }
  return root
}

export function validate(config: unknown, source = 'configuration'): ExperimentConfig {
  if (check.Check(config)) return config
  const errors = [...check.Errors(config)]
  // The deepest errors first: a union's branches report at the union's path.
  const lines = errors
    .sort((a, b) => b.instancePath.split('/').length - a.instancePath.split('/').length)
    .slice(0, 6)
    .map((e) => {
      const path = e.instancePath.split('/').slice(1).join('.') || '(top level)'
      return `  ${path} = ${JSON.stringify(valueAt(config, e.instancePath)) ?? 'missing'}: ${e.message}`
    })
  throw new ConfigError(`${source}: invalid configuration\n${lines.join('\n')}`)
}

function valueAt(root: unknown, pointer: string): unknown {
  let node = root
  for (const k of pointer.split('/').slice(1)) node = (node as Record<string, unknown> | undefined)?.[k]
  return node
}

/** Split and data paths are relative to the dataset root unless absolute. */
export function dataPath(config: ExperimentConfig, p: string): string {
  return resolve(config.data.root, p)
}
