// Loading a configuration: a preset name or a JSON/YAML file (which may `extends:` a preset),
// then `--set path=value` overrides, then the one check. Every route reports the same kind of
// error: the path, the value and what is allowed.
import { readFileSync, statSync } from 'node:fs'
import { extname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { CONFIG_SCHEMA, checkConfig } from './check.ts'
import { ConfigError, listOf, type ConfigIssue } from './errors.ts'
import { inputIssues, MAX_TEXT_BYTES } from './input.ts'
import { deepMerge, isPlain, setAt } from './merge.ts'
import { preset, presetNames } from './presets.ts'
import type { ExperimentConfig } from './schema.ts'

export { ConfigError }

/** A preset by name, or a .json/.yaml/.yml file, with `path=value` overrides applied in order. */
export function loadConfig(source: string, sets: string[] = []): ExperimentConfig {
  let config: unknown = preset(source) ?? readConfigFile(source)
  for (const s of sets) config = applySet(config, s)
  return checkConfig(config, sets.length ? `${source} with --set` : source)
}

function fail(source: string, issue: ConfigIssue): never {
  throw new ConfigError(source, [issue])
}

function readConfigFile(path: string): unknown {
  const st = statSync(path, { throwIfNoEntry: false })
  if (!st) fail(path, { path: '', expected: `'${path}' is neither a preset (${presetNames().join(', ')}) nor a file` })
  if (!st.isFile()) fail(path, { path: '', expected: `'${path}' is a ${st.isDirectory() ? 'directory' : 'special file'}, not a configuration file` })
  if (st.size > MAX_TEXT_BYTES) fail(path, { path: '', expected: `the file has ${st.size} bytes; a configuration holds at most ${MAX_TEXT_BYTES}` })
  const text = readFileSync(path, 'utf8')
  const yaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase())
  let doc: unknown
  try {
    doc = yaml ? parseYaml(text, { maxAliasCount: 100 }) : JSON.parse(text)
  } catch (e) {
    const why = e instanceof RangeError ? 'nested too deeply' : (e as Error).message.split('\n')[0]
    fail(path, { path: '', expected: `not valid ${yaml ? 'YAML' : 'JSON'}: ${why}` })
  }
  if (!isPlain(doc)) fail(path, { path: '', value: doc, expected: 'the top level must be a mapping of settings' })
  const input = inputIssues(doc)
  if (input.length) throw new ConfigError(path, input)
  const { extends: parent, ...rest } = doc
  if (parent === undefined) return rest
  const base = typeof parent === 'string' ? preset(parent) : undefined
  if (!base) fail(path, { path: 'extends', value: parent, expected: `must name a preset: one of ${listOf(presetNames())}` })
  return deepMerge(base, rest, CONFIG_SCHEMA)
}

/** `a.b.c=value`: the value is parsed as JSON when it parses (numbers, booleans, null, arrays,
 *  objects), else taken as a string. The path must name a setting of the configuration. */
export function applySet(config: unknown, assignment: string): unknown {
  const eq = assignment.indexOf('=')
  if (eq <= 0) fail('--set', { path: '', value: assignment, expected: 'expected path=value, e.g. model.width=0.5' })
  const path = assignment.slice(0, eq).trim()
  const raw = assignment.slice(eq + 1)
  if (raw.length > MAX_TEXT_BYTES) fail(`--set ${path}`, { path, expected: `the value is longer than ${MAX_TEXT_BYTES} characters` })
  let value: unknown = raw
  try { value = JSON.parse(raw) } catch { /* a plain string */ }
  const input = inputIssues(value, path)
  if (input.length) throw new ConfigError(`--set ${path}`, input)
  try {
    return setAt(config, CONFIG_SCHEMA, path, value)
  } catch (e) {
    if (e instanceof Error) throw e
    throw new ConfigError(`--set ${path}`, [e as ConfigIssue])
  }
}

/** The configuration checked as it is (for configurations built in code). */
export function validate(config: unknown, source = 'configuration'): ExperimentConfig {
  return checkConfig(config, source)
}

/** Split and data paths are relative to the dataset root unless absolute. */
export function dataPath(config: ExperimentConfig, p: string): string {
  return resolve(config.data.root, p)
}
