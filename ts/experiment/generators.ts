// The run's generators and the driver state a checkpoint keeps of them: a fresh run starts from
// keyed streams, a resumed one from the saved states, and a snapshot taken right after planning
// a step is what a checkpoint after that step holds.
import type { ExperimentConfig } from '../config/schema.ts'
import type { Generators, StepPlan } from '../policy/plan.ts'
import { Sampler } from '../policy/sampler.ts'
import { Rng, STREAM } from '../rng.ts'
import type { DriverState } from './checkpoint.ts'
import type { RunData } from './data.ts'

export function initialState(cfg: ExperimentConfig, data: RunData): DriverState {
  return {
    step: 0, epoch: 0, rng: Rng.keyed(cfg.seed, STREAM.augment).state(), best: null, wall_ms: 0,
    samplers: {
      labeled: new Sampler(data.labeled.length, cfg.seed, STREAM.labeledSampler).state(),
      unlabeled: new Sampler(data.unlabeled.length, cfg.seed, STREAM.unlabeledSampler).state(),
    },
  }
}

export function generators(cfg: ExperimentConfig, data: RunData, state: DriverState): Generators {
  return {
    augment: Rng.fromState(state.rng),
    labeled: new Sampler(data.labeled.length, cfg.seed, STREAM.labeledSampler, state.samplers.labeled),
    unlabeled: new Sampler(data.unlabeled.length, cfg.seed, STREAM.unlabeledSampler, state.samplers.unlabeled),
  }
}

/** The driver's state right after planning `plan`. */
export function snapshotOf(plan: StepPlan, perEpoch: number, gen: Generators, best: DriverState['best']): DriverState {
  return {
    step: plan.step, epoch: Math.floor(plan.step / perEpoch), rng: gen.augment.state(), best, wall_ms: 0,
    samplers: { labeled: gen.labeled.state(), unlabeled: gen.unlabeled.state() },
  }
}
