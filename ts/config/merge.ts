// Merging configurations: a preset with a file, ready-made settings with overrides.

export function isPlain(x: unknown): x is Record<string, unknown> {
  return !!x && typeof x === 'object' && !Array.isArray(x)
}

/** `over` laid on `base`, mapping by mapping. Arrays, values and `loss` (a spec is a list of terms
 *  that only makes sense whole) are replaced, not merged. */
export function deepMerge<T>(base: T, over: unknown): T {
  if (!isPlain(base) || !isPlain(over)) return over as T
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = k in base && k !== 'loss' ? deepMerge(base[k], v) : v
  return out as T
}
