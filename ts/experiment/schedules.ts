// What the driver resolves for every step: learning rates, loss weights, policy values.
import type { ExperimentConfig } from '../config/schema.ts'
import { resolveWeights } from '../loss/compose.ts'
import { evaluate } from '../loss/schedule.ts'
import type { StepPolicy } from '../worker/settings.ts'

export interface Progress { step: number; epoch: number; stepsPerEpoch: number; totalSteps: number }

/** Schedules advance by epoch (as released: constant within an epoch) or by step. */
export function scheduleTime(cfg: ExperimentConfig, p: Progress): { t: number; end: number } {
  return cfg.schedule_granularity === 'epoch'
    ? { t: p.epoch, end: cfg.sampling.epochs }
    : { t: p.step / p.stepsPerEpoch, end: cfg.sampling.epochs } // fractional epochs: one law, finer steps
}

export function learningRates(cfg: ExperimentConfig, p: Progress): { lr: number; head_lr: number } {
  const { t, end } = scheduleTime(cfg, p)
  const f = (base: number) => Math.max(base * Math.max(0, 1 - t / end) ** cfg.optim.poly.power, cfg.optim.poly.floor)
  return { lr: f(cfg.optim.lr), head_lr: f(cfg.optim.head_lr) }
}

export function lossWeights(cfg: ExperimentConfig, p: Progress): Record<string, number> {
  return resolveWeights(cfg.loss, scheduleTime(cfg, p).t)
}

export function stepPolicy(cfg: ExperimentConfig, p: Progress): StepPolicy {
  const { t } = scheduleTime(cfg, p)
  return {
    weak_threshold: evaluate(cfg.policy.weak_threshold, t),
    mix: cfg.policy.mix,
    classmix_ignore_is_class: cfg.policy.classmix_ignore_is_class,
    conf_quantization: cfg.policy.conf_quantization,
  }
}

/** Steps in an epoch: the released "about 2,000 labeled images" (whole passes over the labeled
 *  list, never zero: Q-data-1 fixed), or a fixed count. */
export function stepsPerEpoch(cfg: ExperimentConfig, labeledCount: number): number {
  const e = cfg.sampling.epoch
  if (e.kind === 'fixed') return e.steps
  const loaderLen = Math.ceil(labeledCount / cfg.sampling.batch_size)
  const passes = Math.max(1, Math.floor(e.images / cfg.sampling.batch_size / loaderLen))
  return passes * loaderLen
}
