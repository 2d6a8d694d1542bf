// A sweep's grid: axes of settings, each value a named list of `--set` overrides, crossed into
// cells; every cell runs once per seed. The methods a reader of the paper compares are one such
// axis, declared here once: what each method switches off in the PRCL loss. Malformed axes throw
// a RangeError that names the option.

export interface AxisValue {
  /** Part of the cell's name: letters, digits, '.', '_', '-'. */
  label: string
  /** `path=value` overrides, as `prcl train --set` takes them. */
  set: string[]
}

export interface SweepAxis { name: string; values: AxisValue[] }

export interface SweepCell {
  /** The values' labels joined by '_' (first axis first). */
  name: string
  set: string[]
}

/** supervised-only, pseudo-labelling alone (the unlabeled term without PRCL's), PRCL. */
export const METHODS = {
  // Labeled images alone; the teacher (no forward of its own) averages the student's BatchNorm statistics.
  supervised: { label: 'supervised-only', set: ['loss.terms.unsup.enabled=false', 'loss.terms.prcl.enabled=false', 'ema.buffers=ema'] },
  unsup: { label: 'pseudo-labels', set: ['loss.terms.prcl.enabled=false'] },
  prcl: { label: 'PRCL', set: [] },
} as const satisfies Record<string, { label: string; set: string[] }>

export type Method = keyof typeof METHODS
export const METHOD_NAMES = Object.keys(METHODS) as Method[]

/** The methods axis, in the order given. */
export function methodsAxis(methods: readonly string[]): SweepAxis {
  const unknown = methods.filter((m) => !Object.hasOwn(METHODS, m))
  if (unknown.length) throw new RangeError(`--methods: unknown ${unknown.join(', ')}; known: ${METHOD_NAMES.join(', ')}`)
  if (new Set(methods).size !== methods.length) throw new RangeError(`--methods: ${methods.join(',')} names a method twice`)
  return { name: 'method', values: methods.map((m) => ({ label: m, set: [...METHODS[m as Method].set] })) }
}

const LABEL = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

/** `PATH=[v1, v2, ...]` (a JSON array of numbers, strings or booleans) → an axis over PATH. */
export function gridAxis(spec: string): SweepAxis {
  const eq = spec.indexOf('=')
  const path = eq > 0 ? spec.slice(0, eq).trim() : ''
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$/.test(path)) {
    throw new RangeError(`--grid ${spec}: expected PATH=[v1,v2,...], e.g. loss.terms.unsup.params.threshold=[0.9,0.95]`)
  }
  let values: unknown
  try { values = JSON.parse(spec.slice(eq + 1)) } catch { values = undefined }
  if (!Array.isArray(values) || values.length === 0 || values.length > 64) {
    throw new RangeError(`--grid ${path}: the values must be a JSON array of 1 to 64 values, e.g. ${path}=[0.9,0.95], got ${spec.slice(eq + 1)}`)
  }
  const bad = values.find((v) => !['number', 'string', 'boolean'].includes(typeof v))
  if (bad !== undefined) throw new RangeError(`--grid ${path}: each value must be a number, string or boolean (set objects with --set), got ${JSON.stringify(bad)}`)
  const key = path.split('.').at(-1)!
  const labels = values.map((v) => `${key}-${String(v)}`.replace(/[^A-Za-z0-9_.-]/g, '.'))
  if (new Set(labels).size !== labels.length) throw new RangeError(`--grid ${path}: a value is given twice`)
  return { name: path, values: values.map((v, i) => ({ label: labels[i]!, set: [`${path}=${JSON.stringify(v)}`] })) }
}

/** Every combination of the axes' values, the first axis varying slowest. */
export function cellsOf(axes: readonly SweepAxis[]): SweepCell[] {
  let cells: SweepCell[] = [{ name: '', set: [] }]
  for (const axis of axes) {
    if (axis.values.length === 0) throw new RangeError(`sweep axis ${axis.name} has no values`)
    for (const v of axis.values) {
      if (!LABEL.test(v.label)) throw new RangeError(`sweep axis ${axis.name}: the label '${v.label}' may hold only letters, digits, '.', '_' and '-'`)
    }
    cells = cells.flatMap((c) => axis.values.map((v) => ({ name: c.name ? `${c.name}_${v.label}` : v.label, set: [...c.set, ...v.set] })))
  }
  const names = cells.map((c) => c.name)
  const twice = names.find((n, i) => names.indexOf(n) !== i)
  if (twice !== undefined) throw new RangeError(`two sweep cells would both be named ${twice}: give the axes' values distinct labels`)
  if (cells.length > 1000) throw new RangeError(`the grid has ${cells.length} cells; a sweep holds at most 1000`)
  return cells
}
