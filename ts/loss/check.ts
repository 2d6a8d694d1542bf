// The loss spec checked against the worker's op registry before anything starts: ops, inputs,
// references, cycles, duplicate names, each op's params and ranges, and every schedule over the
// run's whole range (finite, weights ≥ 0, values within the param's bounds).
import type { ConfigIssue } from '../config/errors.ts'
import { listOf } from '../config/errors.ts'
import { schemaIssues, type JsonSchema } from '../config/schema-issues.ts'
import { ANALYSIS_ONLY, LOSS_OPS, LOSS_REFS } from './ops.ts'
import { evaluate, scheduleTimes, type ScheduleOrNumber } from './schedule.ts'
import type { LossSpec, LossTerm, ResolvedParams } from './spec.ts'

/** Where schedules are evaluated: progress t in epochs over [0, end). */
export interface ScheduleRange { end: number; stepwise: boolean }

export function lossSpecIssues(spec: LossSpec, range: ScheduleRange, base = 'loss'): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const at = (i: number, rest = '') => `${base}.terms.${i}${rest}`
  const names = spec.terms.map((t) => t.name)
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) issues.push({ path: at(i, '.name'), value: n, expected: 'must be unique among the terms' })
  })
  const enabled = spec.terms.filter((t) => t.enabled !== false)
  if (enabled.length === 0) issues.push({ path: `${base}.terms`, expected: 'every term is disabled: at least one must be enabled' })
  const enabledNames = new Set(enabled.map((t) => t.name))
  spec.terms.forEach((t, i) => {
    const op = LOSS_OPS[t.op as keyof typeof LOSS_OPS]
    if (!op) {
      issues.push({ path: at(i, '.op'), value: t.op, expected: `must be one of ${listOf(Object.keys(LOSS_OPS))}` })
      return
    }
    const needed: readonly string[] = op.inputs
    for (const arg of needed) if (!(arg in t.inputs)) issues.push({ path: at(i, `.inputs.${arg}`), expected: `is missing: op '${t.op}' takes ${listOf(needed)}` })
    for (const [arg, ref] of Object.entries(t.inputs)) {
      const where = at(i, `.inputs.${arg}`)
      if (!needed.includes(arg)) { issues.push({ path: where, value: ref, expected: `op '${t.op}' takes no input '${arg}'; it takes ${listOf(needed)}` }); continue }
      const [space, name] = ref.split('.') as [string, string]
      if (space === 'term') {
        if (name === t.name) issues.push({ path: where, value: ref, expected: 'a term cannot read itself' })
        else if (!enabledNames.has(name)) issues.push({ path: where, value: ref, expected: `names no enabled term; enabled: ${listOf([...enabledNames])}` })
      } else if ((ANALYSIS_ONLY as readonly string[]).includes(name)) {
        issues.push({ path: where, value: ref, expected: 'is the unlabeled images\' ground truth, sent only to measure pseudo-label quality (log.pseudo_quality): no loss term may read it' })
      } else {
        const known: readonly string[] = LOSS_REFS[space as keyof typeof LOSS_REFS] ?? []
        if (!known.includes(name)) issues.push({ path: where, value: ref, expected: `names nothing; ${space}.* has ${listOf(known)}` })
      }
    }
    issues.push(...weightIssues(t.weight, range, at(i, '.weight')))
    issues.push(...paramIssues(t, op.params as JsonSchema, range, at(i, '.params')))
  })
  const cycle = findCycle(enabled)
  if (cycle) issues.push({ path: `${base}.terms`, expected: `terms form a cycle: ${cycle.join(' -> ')}` })
  return issues
}

function weightIssues(w: ScheduleOrNumber, range: ScheduleRange, path: string): ConfigIssue[] {
  for (const t of scheduleTimes(w, range)) {
    const v = evaluate(w, t)
    if (!Number.isFinite(v) || v < 0) return [{ path, value: w, expected: `must give a finite weight ≥ 0 over the run; gives ${v} at epoch ${round(t)}` }]
  }
  return []
}

function paramIssues(term: LossTerm, schema: JsonSchema, range: ScheduleRange, path: string): ConfigIssue[] {
  const params = term.params ?? {}
  const schedules = Object.entries(params).filter(([, v]) => v !== null && typeof v === 'object')
  const issues = schemaIssues(schema, resolveParams(params, 0), path)
  if (issues.length) return issues
  for (const [k, s] of schedules) {
    const sub = schema.properties?.[k] ?? {}
    if (sub.type !== 'number' && sub.type !== 'integer') { issues.push({ path: `${path}.${k}`, value: s, expected: 'takes no schedule (a schedule gives numbers)' }); continue }
    for (const t of scheduleTimes(s as ScheduleOrNumber, range)) {
      const v = evaluate(s as ScheduleOrNumber, t)
      const bad = schemaIssues(sub, v, `${path}.${k}`)
      if (bad.length) { issues.push({ path: `${path}.${k}`, value: s, expected: `${bad[0]!.expected} over the run; gives ${v} at epoch ${round(t)}` }); break }
    }
  }
  return issues
}

/** A term's params at progress t: schedules evaluated, plain values as they are. */
export function resolveParams(params: NonNullable<LossTerm['params']>, t: number): ResolvedParams {
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v !== null && typeof v === 'object' ? evaluate(v, t) : v]))
}

function findCycle(terms: LossTerm[]): string[] | null {
  const deps = new Map(terms.map((t) => [t.name, Object.values(t.inputs).filter((r) => r.startsWith('term.')).map((r) => r.slice(5))]))
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (name: string, chain: string[]): string[] | null => {
    if (state.get(name) === 'done') return null
    if (state.get(name) === 'visiting') return [...chain.slice(chain.indexOf(name)), name]
    state.set(name, 'visiting')
    for (const d of deps.get(name) ?? []) {
      if (d === name) continue // reported as reading itself
      const c = visit(d, [...chain, name])
      if (c) return c
    }
    state.set(name, 'done')
    return null
  }
  for (const t of terms) {
    const c = visit(t.name, [])
    if (c) return c
  }
  return null
}

const round = (t: number) => Math.round(t * 1000) / 1000
