// A value checked against a typebox (JSON Schema) type, with issues a person can act on: the
// path, the value, and what is allowed (an enum's values, an object's known keys, a union's
// branches). typebox's own errors say "schema is false" or "must match a schema in anyOf"; this
// walk says what that means for the setting at hand.
import type { ConfigIssue } from './errors.ts'
import { listOf } from './errors.ts'
import { join } from './input.ts'

export interface JsonSchema {
  type?: string
  enum?: unknown[]
  const?: unknown
  anyOf?: JsonSchema[]
  properties?: Record<string, JsonSchema>
  patternProperties?: Record<string, JsonSchema>
  required?: string[]
  additionalProperties?: boolean
  items?: JsonSchema
  minItems?: number
  maxItems?: number
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  description?: string
}

export function schemaIssues(schema: JsonSchema, value: unknown, path = ''): ConfigIssue[] {
  if (schema.anyOf) return unionIssues(schema.anyOf, value, path)
  if (schema.enum) return schema.enum.includes(value) ? [] : [{ path, value, expected: `must be one of ${listOf(schema.enum)}` }]
  if ('const' in schema) return value === schema.const ? [] : [{ path, value, expected: `must be ${listOf([schema.const])}` }]
  switch (schema.type) {
    case 'object': return objectIssues(schema, value, path)
    case 'array': return arrayIssues(schema, value, path)
    case 'number':
    case 'integer': return numberIssues(schema, value, path)
    case 'string': return stringIssues(schema, value, path)
    case 'boolean': return typeof value === 'boolean' ? [] : [{ path, value, expected: 'must be true or false' }]
    case 'null': return value === null ? [] : [{ path, value, expected: 'must be null' }]
    default: return []
  }
}

/** A short description of what a schema accepts, for a union's message. */
export function describe(schema: JsonSchema): string {
  if (schema.anyOf) return schema.anyOf.map(describe).join(' or ')
  if (schema.enum) return `one of ${listOf(schema.enum)}`
  if ('const' in schema) return listOf([schema.const])
  if (schema.type === 'object') {
    const kind = schema.properties?.kind
    if (kind && 'const' in kind) return `{kind: '${String(kind.const)}', ${Object.keys(schema.properties!).filter((k) => k !== 'kind').join(', ')}}`
    return schema.properties ? `an object with ${Object.keys(schema.properties).join(', ')}` : 'an object'
  }
  if (schema.type === 'array') return schema.minItems !== undefined && schema.minItems === schema.maxItems ? `a list of ${schema.minItems}` : 'a list'
  if (schema.type === 'number' || schema.type === 'integer') return `${schema.type === 'integer' ? 'an integer' : 'a number'}${bounds(schema)}`
  if (schema.type === 'null') return 'null'
  return `a ${schema.type ?? 'value'}`
}

function unionIssues(branches: JsonSchema[], value: unknown, path: string): ConfigIssue[] {
  const results = branches.map((b) => schemaIssues(b, value, path))
  if (results.some((r) => r.length === 0)) return []
  // An object naming its kind answers for the branch of that kind (a schedule, an epoch law).
  const kind = value && typeof value === 'object' ? (value as Record<string, unknown>).kind : undefined
  const kinds = branches.map((b) => b.properties?.kind?.const)
  if (kinds.some((k) => k !== undefined)) {
    const i = kinds.indexOf(kind)
    if (i >= 0) return results[i]!
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      return [{ path: join(path, 'kind'), value: kind, expected: `must be one of ${listOf(kinds.filter((k) => k !== undefined))}` }]
    }
  }
  // A value of the right type that fails one branch's bounds says so, not "matches no branch".
  const sameType = results.filter((r, i) => r.length > 0 && typeMatches(branches[i]!, value))
  if (sameType.length === 1) return sameType[0]!
  return [{ path, value, expected: `must be ${branches.map(describe).join(', or ')}` }]
}

function typeMatches(schema: JsonSchema, value: unknown): boolean {
  if (schema.anyOf || schema.enum || 'const' in schema) return false
  switch (schema.type) {
    case 'object': return !!value && typeof value === 'object' && !Array.isArray(value)
    case 'array': return Array.isArray(value)
    case 'number': case 'integer': return typeof value === 'number'
    case 'string': return typeof value === 'string'
    default: return false
  }
}

function objectIssues(schema: JsonSchema, value: unknown, path: string): ConfigIssue[] {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return [{ path, value, expected: `must be ${describe(schema)}` }]
  const obj = value as Record<string, unknown>
  const issues: ConfigIssue[] = []
  const props = schema.properties ?? {}
  for (const key of schema.required ?? []) {
    if (!(key in obj)) issues.push({ path: join(path, key), expected: `is missing (${describe(props[key] ?? {})})` })
  }
  for (const [key, v] of Object.entries(obj)) {
    const sub = props[key] ?? patternFor(schema, key)
    if (sub) issues.push(...schemaIssues(sub, v, join(path, key)))
    else if (schema.additionalProperties === false) {
      issues.push({ path: join(path, key), value: v, expected: `no setting '${key}' here; known: ${Object.keys(props).join(', ')}` })
    }
  }
  return issues
}

function patternFor(schema: JsonSchema, key: string): JsonSchema | undefined {
  for (const [pattern, sub] of Object.entries(schema.patternProperties ?? {})) if (new RegExp(pattern).test(key)) return sub
  return undefined
}

function arrayIssues(schema: JsonSchema, value: unknown, path: string): ConfigIssue[] {
  if (!Array.isArray(value)) return [{ path, value, expected: `must be ${describe(schema)}` }]
  const { minItems = 0, maxItems = Infinity } = schema
  if (value.length < minItems || value.length > maxItems) {
    const want = minItems === maxItems ? `exactly ${minItems}` : maxItems === Infinity ? `at least ${minItems}` : `${minItems} to ${maxItems}`
    return [{ path, value, expected: `must hold ${want} items${schema.description ? ` (${schema.description})` : ''}` }]
  }
  return schema.items ? value.flatMap((v, i) => schemaIssues(schema.items!, v, join(path, String(i)))) : []
}

function bounds(s: JsonSchema): string {
  const lo = s.minimum !== undefined ? `≥ ${s.minimum}` : s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : ''
  const hi = s.maximum !== undefined ? `≤ ${s.maximum}` : s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : ''
  return lo && hi ? ` ${lo} and ${hi}` : lo || hi ? ` ${lo || hi}` : ''
}

function numberIssues(schema: JsonSchema, value: unknown, path: string): ConfigIssue[] {
  const ok = typeof value === 'number' && Number.isFinite(value) && (schema.type !== 'integer' || Number.isInteger(value)) &&
    !(schema.minimum !== undefined && value < schema.minimum) && !(schema.maximum !== undefined && value > schema.maximum) &&
    !(schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) &&
    !(schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum)
  return ok ? [] : [{ path, value, expected: `must be ${describe(schema)}` }]
}

function stringIssues(schema: JsonSchema, value: unknown, path: string): ConfigIssue[] {
  if (typeof value !== 'string') return [{ path, value, expected: 'must be a string' }]
  if (schema.minLength !== undefined && value.length < schema.minLength) {
    return [{ path, value, expected: schema.minLength === 1 ? 'must not be empty' : `must have at least ${schema.minLength} characters` }]
  }
  if (schema.maxLength !== undefined && value.length > schema.maxLength) return [{ path, value, expected: `must have at most ${schema.maxLength} characters` }]
  if (schema.pattern && !new RegExp(schema.pattern).test(value)) {
    return [{ path, value, expected: schema.description ? `must be ${schema.description}` : `must match ${schema.pattern}` }]
  }
  return []
}
