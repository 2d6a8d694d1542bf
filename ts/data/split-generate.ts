// Generating a labeled/unlabeled split from a list of image ids, reproducibly from a seed.
//   random          shuffle, take the first `count` as labeled.
//   class-balanced  ReCo-style: each next labeled image must contain a class that has been
//                   sampled least so far among the classes still available in the pool, so every
//                   class is covered before any is repeated. Candidates are tried in shuffled order.
// ReCo also skips images with fewer than 3 classes (its VOC setting); `minClasses` does the same.
// Labeled ids come in pick order; unlabeled ids keep the order of `ids`.
import { Rng, STREAM } from '../rng.ts'

/** Per-image class sets (train ids; 255 = ignore is dropped): a map, or a function (may be async). */
export type ClassSource =
  | ReadonlyMap<string, Iterable<number>>
  | ((id: string) => Iterable<number> | Promise<Iterable<number>>)

export type GenerateSplitOptions =
  | { mode: 'random'; ids: readonly string[]; count: number; seed: number }
  | {
      mode: 'class-balanced'; ids: readonly string[]; count: number; seed: number
      classesOf: ClassSource
      /** Images with fewer classes are never labeled (ReCo uses 3 on VOC). Default 1. */
      minClasses?: number
      /** Calls of an async `classesOf` in flight at once. Default 16. */
      concurrency?: number
    }

export interface GeneratedSplit { labeled: string[]; unlabeled: string[] }

const IGNORE = 255

function checkArgs(ids: readonly string[], count: number, seed: number): void {
  const seen = new Set<string>()
  for (const id of ids) {
    if (seen.has(id)) throw new Error(`generateSplit: id '${id}' appears twice in ids; expected unique ids`)
    seen.add(id)
  }
  if (!Number.isInteger(count) || count < 1 || count > ids.length) {
    throw new Error(`generateSplit: count must be an integer from 1 to ${ids.length} (the number of ids), got ${count}`)
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`generateSplit: seed must be a non-negative integer, got ${seed}`)
}

async function loadClasses(ids: readonly string[], source: ClassSource, concurrency: number): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>()
  const one = async (id: string) => {
    let classes: Iterable<number> | undefined
    if (typeof source === 'function') classes = await source(id)
    else {
      classes = source.get(id)
      if (classes === undefined) throw new Error(`generateSplit: no class set for id '${id}' in classesOf`)
    }
    const set = new Set<number>()
    for (const c of classes) {
      if (!Number.isInteger(c) || c < 0 || c > 255) throw new Error(`generateSplit: class ${c} of '${id}' is not an integer 0..255`)
      if (c !== IGNORE) set.add(c)
    }
    out.set(id, [...set])
  }
  let next = 0
  const lane = async () => {
    while (next < ids.length) await one(ids[next++]!)
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, ids.length)) }, lane))
  return out
}

function pickBalanced(order: string[], classes: Map<string, number[]>, count: number, minClasses: number): string[] {
  const pool = order.filter((id) => classes.get(id)!.length >= minClasses)
  if (pool.length < count) {
    throw new Error(`generateSplit: only ${pool.length} of ${order.length} images have at least ${minClasses} classes; cannot label ${count}`)
  }
  const sampled = new Map<number, number>() // class → times in labeled images
  const available = new Map<number, number>() // class → images still in the pool containing it
  for (const id of pool) for (const c of classes.get(id)!) available.set(c, (available.get(c) ?? 0) + 1)
  const picked: string[] = []
  while (picked.length < count) {
    let least = Infinity
    for (const c of available.keys()) least = Math.min(least, sampled.get(c) ?? 0)
    const wanted = new Set([...available.keys()].filter((c) => (sampled.get(c) ?? 0) === least))
    const at = pool.findIndex((id) => classes.get(id)!.some((c) => wanted.has(c)))
    const id = pool.splice(at, 1)[0]! // at >= 0: every available class is in some pooled image
    picked.push(id)
    for (const c of classes.get(id)!) {
      sampled.set(c, (sampled.get(c) ?? 0) + 1)
      const left = available.get(c)! - 1
      if (left === 0) available.delete(c)
      else available.set(c, left)
    }
  }
  return picked
}

export async function generateSplit(opts: GenerateSplitOptions): Promise<GeneratedSplit> {
  const { ids, count, seed } = opts
  checkArgs(ids, count, seed)
  const order = Rng.keyed(seed, STREAM.split).shuffle(ids)
  let labeled: string[]
  if (opts.mode === 'random') labeled = order.slice(0, count)
  else if (opts.mode === 'class-balanced') {
    const minClasses = opts.minClasses ?? 1
    if (!Number.isInteger(minClasses) || minClasses < 1) throw new Error(`generateSplit: minClasses must be a positive integer, got ${minClasses}`)
    const classes = await loadClasses(ids, opts.classesOf, opts.concurrency ?? 16)
    labeled = pickBalanced(order, classes, count, minClasses)
  } else throw new Error(`generateSplit: unknown mode ${JSON.stringify((opts as { mode: unknown }).mode)}; expected 'random' or 'class-balanced'`)
  const chosen = new Set(labeled)
  return { labeled, unlabeled: ids.filter((id) => !chosen.has(id)) }
}
