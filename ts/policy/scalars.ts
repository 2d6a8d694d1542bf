// The numbers a step runs with, resolved from the configuration and progress: learning rates,
// the teacher's EMA decay and buffers, the pseudo-label policy and thresholds, and every loss
// term's weight and params. Each may follow a schedule (ts/loss/schedule.ts).
import type { Static } from 'typebox'
import type { ExperimentConfig } from '../config/schema.ts'
import { resolveParams } from '../loss/check.ts'
import { evaluate } from '../loss/schedule.ts'
import type { LossSpec, ResolvedParams } from '../loss/spec.ts'
import type { Policy } from '../wire/ops/training.ts'
import { scheduleTime, type Progress } from './progress.ts'

export type StepPolicy = Static<typeof Policy>

export interface StepScalars {
  lr: number
  head_lr: number
  ema: { decay: number; buffers: ExperimentConfig['ema']['buffers'] }
  weights: Record<string, number>
  params: Record<string, ResolvedParams>
  policy: StepPolicy
}

export function stepScalars(cfg: ExperimentConfig, p: Progress): StepScalars {
  const t = scheduleTime(cfg, p)
  return {
    ...learningRates(cfg, t),
    ema: { decay: emaDecay(p.step, cfg.ema.alpha), buffers: cfg.ema.buffers },
    weights: lossWeights(cfg.loss, t),
    params: lossParams(cfg.loss, t),
    policy: {
      weak_threshold: evaluate(cfg.policy.weak_threshold, t),
      teacher_bn: cfg.teacher.bn_mode,
      mix: cfg.policy.mix,
      mix_partner: cfg.policy.mix_partner,
      classmix_ignore_is_class: cfg.policy.classmix_ignore_is_class,
      conf_quantization: cfg.policy.conf_quantization,
    },
  }
}

/** Poly decay as released (spec §8.2): base·(1 − t/T)^power, floored. */
export function learningRates(cfg: ExperimentConfig, t: number): { lr: number; head_lr: number } {
  const poly = (base: number) => evaluate({ kind: 'poly', base, end: cfg.sampling.epochs, ...cfg.optim.poly }, t)
  return { lr: poly(cfg.optim.lr), head_lr: poly(cfg.optim.head_lr) }
}

/** The teacher's decay for its update after `updates` earlier ones: the warm-up
 *  min(1 − 1/(t+1), α) of the released code (spec §3). */
export function emaDecay(updates: number, alpha: number): number {
  return Math.min(1 - 1 / (updates + 1), alpha)
}

/** The weight of every enabled term at progress t. */
export function lossWeights(spec: LossSpec, t: number): Record<string, number> {
  return Object.fromEntries(spec.terms.filter((tm) => tm.enabled !== false).map((tm) => [tm.name, evaluate(tm.weight, t)]))
}

/** Every enabled term's params at progress t. */
export function lossParams(spec: LossSpec, t: number): Record<string, ResolvedParams> {
  return Object.fromEntries(spec.terms.filter((tm) => tm.enabled !== false).map((tm) => [tm.name, resolveParams(tm.params ?? {}, t)]))
}
