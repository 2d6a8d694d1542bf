// Laying one configuration on another (a file on the preset it `extends`, ready-made settings
// with overrides) and `--set path=value`, both guided by the schema: an object merges key by key,
// while a union-typed object (an epoch law, a schedule, a window) and a list are replaced whole,
// so switching `sampling.epoch` to `{kind: fixed}` does not keep the preset's `images`.
import type { ConfigIssue } from './errors.ts'
import { FORBIDDEN_KEYS, join } from './input.ts'
import type { JsonSchema } from './schema-issues.ts'

export function isPlain(x: unknown): x is Record<string, unknown> {
  return !!x && typeof x === 'object' && !Array.isArray(x)
}

/** `over` laid on `base`. Without a schema every mapping merges; with one, only plain objects
 *  (not unions, records of terms, or lists) merge. */
export function deepMerge<T>(base: T, over: unknown, schema?: JsonSchema): T {
  if (!isPlain(base) || !isPlain(over)) return over as T
  if (schema && (schema.anyOf || schema.type !== 'object' || !schema.properties)) return over as T
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    if (FORBIDDEN_KEYS.has(k)) continue
    out[k] = k in base ? deepMerge(base[k], v, schema?.properties?.[k] ?? (schema ? {} : undefined)) : v
  }
  return out as T
}

/** A copy of `config` with `value` at the dotted `path`. A list element is named by its index or,
 *  for a list of named items (loss terms), by its name: `loss.terms.unsup.params.threshold`.
 *  Throws a ConfigIssue when the path leads nowhere. */
export function setAt(config: unknown, schema: JsonSchema, path: string, value: unknown): unknown {
  const keys = path.split('.')
  const root = structuredClone(config)
  let node: unknown = root
  let sub: JsonSchema | undefined = schema
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    const here = keys.slice(0, i).join('.')
    if (FORBIDDEN_KEYS.has(key) || key === '') throw issue(join(here, key), `'${key}' is not a setting name`)
    const last = i === keys.length - 1
    if (Array.isArray(node)) {
      const index = /^\d+$/.test(key) ? Number(key) : node.findIndex((x) => isPlain(x) && x.name === key)
      if (index < 0 || index >= node.length) {
        const names = node.map((x, j) => (isPlain(x) && typeof x.name === 'string' ? x.name : String(j)))
        throw issue(join(here, key), `no item '${key}' in this list; it has ${names.join(', ')}`)
      }
      sub = sub?.items
      if (last) node[index] = value
      else node = node[index]
      continue
    }
    if (!isPlain(node)) throw issue(here, `is ${JSON.stringify(node)}, not a section with settings`)
    const props = sub?.anyOf ? undefined : sub?.properties
    const known = props ? Object.keys(props) : Object.keys(node)
    const open = !!sub?.patternProperties || !!sub?.anyOf
    if (!known.includes(key) && !(key in node) && !open) throw issue(join(here, key), `no setting '${key}' here; known: ${known.join(', ')}`)
    sub = props?.[key] ?? (sub?.patternProperties ? Object.values(sub.patternProperties)[0] : undefined)
    if (last) node[key] = value
    else {
      if (node[key] === undefined || node[key] === null || typeof node[key] !== 'object') {
        throw issue(join(here, key), `is ${JSON.stringify(node[key]) ?? 'not set'}, not a section with settings`)
      }
      node = node[key]
    }
  }
  return root
}

function issue(path: string, expected: string): ConfigIssue {
  return { path, expected }
}
