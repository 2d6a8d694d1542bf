// Bounds on configuration input, checked before anything else reads it: size, nesting depth,
// keys that would reach an object's prototype, and numbers that are not finite. The walk is
// iterative, so a 10,000-deep document is refused rather than overflowing the stack.
import type { ConfigIssue } from './errors.ts'

export const MAX_TEXT_BYTES = 1 << 20
export const MAX_DEPTH = 32
const MAX_NODES = 100_000
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

/** Problems of a parsed document's shape, each with its path (at most a few). */
export function inputIssues(doc: unknown, base = ''): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const stack: Array<{ node: unknown; path: string; depth: number }> = [{ node: doc, path: base, depth: 0 }]
  let nodes = 0
  while (stack.length && issues.length < 8) {
    const { node, path, depth } = stack.pop()!
    if (++nodes > MAX_NODES) {
      issues.push({ path: base, expected: `too large: a configuration holds at most ${MAX_NODES} values` })
      break
    }
    if (typeof node === 'number' && !Number.isFinite(node)) {
      issues.push({ path, value: node, expected: 'must be a finite number' })
      continue
    }
    if (!node || typeof node !== 'object') continue
    if (depth >= MAX_DEPTH) {
      issues.push({ path, expected: `nested too deeply: at most ${MAX_DEPTH} levels` })
      continue
    }
    const entries = Array.isArray(node) ? node.map((v, i) => [String(i), v] as const) : Object.entries(node)
    for (const key of Object.keys(node)) {
      if (FORBIDDEN_KEYS.has(key)) issues.push({ path: join(path, key), expected: `'${key}' is not allowed as a key` })
    }
    for (const [k, v] of entries) if (!FORBIDDEN_KEYS.has(k)) stack.push({ node: v, path: join(path, k), depth: depth + 1 })
  }
  return issues
}

export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key
}
