// Data parallelism: the driver plans the global step (planStep, the same plan at any world size)
// and each rank executes its shard of it. Rank r of N gets entries [r·n/N, (r+1)·n/N) of every
// per-image list (sample ids, augmentation parameters, mix entries; n is the list's length, the
// global batch) and every scalar as planned. Mixing partners are taken within a rank's shard.
import type { StepPlan } from './plan.ts'

/** The per-image lists of a plan, in the order they are sharded. */
const LISTS = ['labeled_aug', 'unlabeled_crop', 'unlabeled_aug', 'mix'] as const

function slice<T>(list: readonly T[], rank: number, size: number, what: string): T[] {
  if (list.length % size !== 0) throw new Error(`${what} has ${list.length} entries, which ${size} ranks cannot share evenly`)
  const n = list.length / size
  return list.slice(rank * n, (rank + 1) * n)
}

/** Rank `rank`'s part of a global step plan for a world of `size` ranks (size 1: the plan itself). */
export function shardPlan(plan: StepPlan, rank: number, size: number): StepPlan {
  if (!Number.isInteger(size) || size < 1) throw new Error(`world size must be an integer ≥ 1, got ${size}`)
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new Error(`rank must be an integer in [0, ${size - 1}], got ${rank}`)
  if (size === 1) return plan
  const out: StepPlan = {
    ...plan,
    samples: {
      labeled: slice(plan.samples.labeled, rank, size, 'samples.labeled'),
      unlabeled: slice(plan.samples.unlabeled, rank, size, 'samples.unlabeled'),
    },
  }
  for (const key of LISTS) {
    const list = plan[key]
    if (list !== undefined) (out as Record<string, unknown>)[key] = slice(list as unknown[], rank, size, key)
  }
  return out
}
