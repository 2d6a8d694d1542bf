// Sharding a global step plan over the ranks: a pure function, no worker.
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../ts/config/load.ts'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { planStep, type Generators, type PlanData, type StepPlan } from '../../ts/policy/plan.ts'
import { progressAt } from '../../ts/policy/progress.ts'
import { Sampler } from '../../ts/policy/sampler.ts'
import { shardPlan } from '../../ts/policy/shard.ts'
import { Rng, STREAM } from '../../ts/rng.ts'

const DATA: PlanData = {
  labeled: Array.from({ length: 16 }, (_, i) => ({ height: 60 + i, width: 70 })),
  unlabeled: Array.from({ length: 30 }, (_, i) => ({ height: 64, width: 50 + i })),
  labelLut: null,
}

function plan(sets: string[], step = 0): StepPlan {
  const cfg: ExperimentConfig = loadConfig('synthetic-demo', sets)
  const g: Generators = {
    augment: Rng.keyed(cfg.seed, STREAM.augment),
    labeled: new Sampler(DATA.labeled.length, cfg.seed, STREAM.labeledSampler),
    unlabeled: new Sampler(DATA.unlabeled.length, cfg.seed, STREAM.unlabeledSampler),
  }
  return planStep(cfg, progressAt(cfg, 5, step), g, DATA)
}

const PER_IMAGE = ['labeled_aug', 'unlabeled_crop', 'unlabeled_aug', 'mix'] as const

describe('shardPlan', () => {
  it('rank r of N gets entries [r·b/N, (r+1)·b/N) of every per-image list and every scalar', () => {
    for (const mix of ['classmix', 'cutmix']) {
      const p = plan(['sampling.batch_size=8', `policy.mix=${mix}`])
      for (const size of [2, 4, 8]) {
        const shards = Array.from({ length: size }, (_, r) => shardPlan(p, r, size))
        const n = 8 / size
        shards.forEach((s, r) => {
          expect(s.samples.labeled).toEqual(p.samples.labeled.slice(r * n, (r + 1) * n))
          expect(s.samples.unlabeled).toEqual(p.samples.unlabeled.slice(r * n, (r + 1) * n))
          for (const k of PER_IMAGE) expect(s[k]).toEqual(p[k]!.slice(r * n, (r + 1) * n))
          // Everything else is the global plan's, the same on every rank.
          const { samples: _s, labeled_aug: _a, unlabeled_crop: _b, unlabeled_aug: _c, mix: _m, ...scalars } = s
          const { samples: _s2, labeled_aug: _a2, unlabeled_crop: _b2, unlabeled_aug: _c2, mix: _m2, ...global } = p
          expect(scalars).toEqual(global)
        })
        // Together the shards are the plan, in order.
        expect(shards.flatMap((s) => s.samples.labeled)).toEqual(p.samples.labeled)
        for (const k of PER_IMAGE) expect(shards.flatMap((s) => s[k] as unknown[])).toEqual(p[k])
      }
    }
  })

  it('the plan does not depend on the world size, and world size 1 sends it as it is', () => {
    const p = plan(['sampling.batch_size=4'], 3)
    expect(plan(['sampling.batch_size=4', 'world.size=2'], 3)).toEqual(p)
    expect(plan(['sampling.batch_size=4', 'world.size=4', 'teacher.bn_mode=eval', 'ema.buffers=ema'], 3)).toEqual(plan(['sampling.batch_size=4', 'teacher.bn_mode=eval', 'ema.buffers=ema'], 3))
    expect(shardPlan(p, 0, 1)).toBe(p)
  })

  it('a labeled-only plan has no unlabeled lists to shard', () => {
    const p = planStep(loadConfig('synthetic-demo-supervised', ['sampling.batch_size=4']), progressAt(loadConfig('synthetic-demo-supervised'), 5, 0), {
      augment: Rng.keyed(0, STREAM.augment), labeled: new Sampler(16, 0, STREAM.labeledSampler), unlabeled: new Sampler(30, 0, STREAM.unlabeledSampler),
    }, DATA)
    const s = shardPlan(p, 1, 2)
    expect(s.samples).toEqual({ labeled: p.samples.labeled.slice(2), unlabeled: [] })
    expect(s.labeled_aug).toEqual(p.labeled_aug!.slice(2))
    expect(s.mix).toBeUndefined()
    expect(s.unlabeled_aug).toBeUndefined()
  })

  it('does not change the plan it shards', () => {
    const p = plan(['sampling.batch_size=4'])
    const copy = structuredClone(p)
    shardPlan(p, 1, 2)
    expect(p).toEqual(copy)
  })

  it('refuses a batch the ranks cannot share evenly, and a rank outside the world', () => {
    const p = plan(['sampling.batch_size=6'])
    expect(() => shardPlan(p, 0, 4)).toThrow(/samples\.labeled has 6 entries, which 4 ranks cannot share evenly/)
    expect(() => shardPlan(p, 2, 2)).toThrow(/rank must be an integer in \[0, 1\], got 2/)
    expect(() => shardPlan(p, 0, 0)).toThrow(/world size must be an integer ≥ 1/)
  })
})
