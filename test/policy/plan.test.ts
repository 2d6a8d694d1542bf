// The step plan as a pure function of configuration, progress and generator state: no worker.
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../ts/config/errors.ts'
import { loadConfig } from '../../ts/config/load.ts'
import { preset, presetNames } from '../../ts/config/presets.ts'
import type { ExperimentConfig } from '../../ts/config/schema.ts'
import { planStep, type Generators, type PlanData } from '../../ts/policy/plan.ts'
import { progressAt } from '../../ts/policy/progress.ts'
import { Sampler } from '../../ts/policy/sampler.ts'
import { shardPlan } from '../../ts/policy/shard.ts'
import { emaDecay } from '../../ts/policy/scalars.ts'
import { Rng, STREAM } from '../../ts/rng.ts'

const sizes = (n: number, seed: number) => {
  const r = Rng.keyed(seed, 99)
  return Array.from({ length: n }, () => ({ height: r.int(40, 500), width: r.int(40, 500) }))
}
const DATA: PlanData = { labeled: sizes(16, 1), unlabeled: sizes(37, 2), labelLut: null }

function gens(cfg: ExperimentConfig, data = DATA): Generators {
  return {
    augment: Rng.keyed(cfg.seed, STREAM.augment),
    labeled: new Sampler(data.labeled.length, cfg.seed, STREAM.labeledSampler),
    unlabeled: new Sampler(data.unlabeled.length, cfg.seed, STREAM.unlabeledSampler),
  }
}

/** The plans of steps [from, to) with these generators. */
function plans(cfg: ExperimentConfig, g: Generators, from: number, to: number, perEpoch = 5) {
  return Array.from({ length: to - from }, (_, i) => planStep(cfg, progressAt(cfg, perEpoch, from + i), g, DATA))
}

const demo = (sets: string[] = []) => loadConfig('synthetic-demo', sets)

describe('planStep', () => {
  it('same seed and progress give the same plan; another seed another', () => {
    const cfg = demo()
    expect(plans(cfg, gens(cfg), 0, 12)).toEqual(plans(cfg, gens(cfg), 0, 12))
    const other = demo(['seed=1'])
    expect(plans(other, gens(other), 0, 3)).not.toEqual(plans(cfg, gens(cfg), 0, 3))
  })

  it('resumed from checkpointed generator state, the plans equal the uninterrupted ones', () => {
    const cfg = demo()
    const whole = plans(cfg, gens(cfg), 0, 20)
    const g = gens(cfg)
    const first = plans(cfg, g, 0, 7)
    // What a checkpoint keeps: plain JSON states.
    const saved = JSON.parse(JSON.stringify({ rng: g.augment.state(), l: g.labeled.state(), u: g.unlabeled.state() }))
    const resumed: Generators = {
      augment: Rng.fromState(saved.rng),
      labeled: new Sampler(DATA.labeled.length, cfg.seed, STREAM.labeledSampler, saved.l),
      unlabeled: new Sampler(DATA.unlabeled.length, cfg.seed, STREAM.unlabeledSampler, saved.u),
    }
    expect([...first, ...plans(cfg, resumed, 7, 20)]).toEqual(whole)
  })

  it('each pass over a list shows every sample once (the sampler\'s promise)', () => {
    const cfg = demo(['sampling.batch_size=4'])
    const ps = plans(cfg, gens(cfg), 0, 4) // 16 labeled images, 4 a step: one pass
    expect(ps.flatMap((p) => p.samples.labeled).sort((a, b) => a - b)).toEqual([...Array(16).keys()])
    const unl = plans(cfg, gens(cfg), 0, 37).flatMap((p) => p.samples.unlabeled) // 4 passes over 37
    expect(new Set(unl.slice(0, 37)).size).toBe(37)
    expect(new Set(unl.slice(37, 74)).size).toBe(37)
  })

  it('augmentation parameters fit each image: crop boxes inside the scaled, padded image', () => {
    const cfg = demo()
    for (const p of plans(cfg, gens(cfg), 0, 10)) {
      p.labeled_aug!.forEach((a, i) => {
        const s = DATA.labeled[p.samples.labeled[i]!]!
        const r = a.rescale!
        expect(r.top + r.crop_h).toBeLessThanOrEqual(Math.max(Math.floor(s.height * r.scale), r.crop_h))
        expect(r.left + r.crop_w).toBeLessThanOrEqual(Math.max(Math.floor(s.width * r.scale), r.crop_w))
        expect(r.scale).toBeGreaterThanOrEqual(cfg.data.labeled.scale[0]!)
        expect(r.scale).toBeLessThanOrEqual(cfg.data.labeled.scale[1]!)
      })
      expect(p.mix).toHaveLength(cfg.sampling.batch_size)
    }
  })

  it('schedules resolve per epoch, or per step, and meet their ends', () => {
    const linear = 'loss.terms.unsup.params.threshold={"kind":"linear","from":0.5,"to":0.9,"start":2,"end":6}'
    const perEpoch = demo([linear])
    const byEpoch = plans(perEpoch, gens(perEpoch), 0, 40).map((p) => p.params.unsup!.threshold)
    expect(byEpoch.slice(0, 15).every((v) => v === 0.5)).toBe(true) // epochs 0–2 (5 steps each)
    expect(byEpoch[15]).toBeCloseTo(0.6, 12) // epoch 3
    expect(byEpoch[19]).toBeCloseTo(0.6, 12) // constant within the epoch
    expect(byEpoch[30]).toBeCloseTo(0.9, 12) // epoch 6 and after: the end value
    const perStep = demo([linear, 'schedule_granularity=step'])
    const bySteps = plans(perStep, gens(perStep), 0, 40).map((p) => p.params.unsup!.threshold as number)
    expect(bySteps[11]).toBeCloseTo(0.5 + 0.4 * (11 / 5 - 2) / 4, 12) // step 12 at epoch 2.2
    expect(bySteps[12]).toBeGreaterThan(bySteps[11]!)
    // The weak threshold and weights follow the same law.
    const weak = demo(['policy.weak_threshold={"kind":"piecewise","points":[{"at":0,"value":0.3},{"at":4,"value":0.7}]}'])
    const w = plans(weak, gens(weak), 0, 40)
    expect(w[0]!.policy.weak_threshold).toBe(0.3)
    expect(w[25]!.policy.weak_threshold).toBe(0.7)
    expect(w[0]!.weights).toEqual({ sup: 1, unsup: 1, prcl: 1 })
    expect(w[39]!.weights.prcl).toBeCloseTo(Math.exp(-5 * (7 / 8) ** 2), 12)
  })

  it('learning rates decay poly; the EMA decay warms up to alpha', () => {
    const cfg = demo()
    const ps = plans(cfg, gens(cfg), 0, 40)
    expect(ps[0]!.lr).toBe(cfg.optim.lr)
    expect(ps[39]!.lr).toBeCloseTo(cfg.optim.lr * (1 - 7 / 8) ** 0.9, 12)
    ps.slice(0, 4).forEach((p, t) => expect(p.ema.decay).toBeCloseTo(1 - 1 / (t + 1), 15))
    expect(ps[39]!.ema.decay).toBe(cfg.ema.alpha)
    expect(emaDecay(1000, 0.99)).toBe(0.99)
    expect(ps[0]!.ema.buffers).toBe('own')
    expect(ps[0]!.policy.teacher_bn).toBe('train')
  })

  it('a supervised-only spec plans no unlabeled samples and no mixing', () => {
    const cfg = loadConfig('synthetic-demo-supervised')
    const p = plans(cfg, gens(cfg), 0, 1)[0]!
    expect(p.samples.unlabeled).toEqual([])
    expect(p.mix).toBeUndefined()
    expect(p.unlabeled_aug).toBeUndefined()
    expect(Object.keys(p.params)).toEqual(['sup'])
    expect(p.ema.buffers).toBe('ema')
  })

  it('says when to evaluate and checkpoint', () => {
    const cfg = demo(['eval.every_epochs=2', 'checkpoint.every_steps=7'])
    const ps = plans(cfg, gens(cfg), 0, 40) // 8 epochs of 5 steps
    expect(ps.filter((p) => p.evaluate).map((p) => p.step)).toEqual([10, 20, 30, 40])
    expect(ps.filter((p) => p.checkpoint).map((p) => p.step)).toEqual([7, 14, 21, 28, 35, 40])
  })
})

describe('policy.mix_partner (Q-aug-6)', () => {
  it('is local_next in every preset but the -released ones (prcl_rank0); the three values are accepted and each step\'s plan and every rank\'s shard carry it', () => {
    for (const name of presetNames()) expect(preset(name)!.policy.mix_partner, name).toBe(name.endsWith('-released') ? 'prcl_rank0' : 'local_next')
    for (const partner of ['local_next', 'global_next', 'prcl_rank0'] as const) {
      const cfg = demo([`policy.mix_partner=${partner}`, 'sampling.batch_size=4', 'world.size=2'])
      expect(cfg.policy.mix_partner).toBe(partner)
      const ps = plans(cfg, gens(cfg), 0, 3)
      for (const p of ps) {
        expect(p.policy.mix_partner).toBe(partner)
        for (const r of [0, 1]) expect(shardPlan(p, r, 2).policy.mix_partner).toBe(partner)
      }
    }
  })

  it('refuses any other value, naming the allowed ones', () => {
    for (const bad of ['next', '"global"', '1', 'null']) {
      let err: unknown
      try {
        demo([`policy.mix_partner=${bad}`])
      } catch (e) {
        err = e
      }
      expect(err, bad).toBeInstanceOf(ConfigError)
      expect((err as Error).message).toMatch(/policy\.mix_partner = .*must be one of 'local_next', 'global_next', 'prcl_rank0'/)
    }
  })
})
