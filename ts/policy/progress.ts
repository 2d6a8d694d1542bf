// Where a run stands: the step about to be taken, its epoch, and the run's length. Schedules read
// progress as (fractional) epochs.
import type { ExperimentConfig } from '../config/schema.ts'

export interface Progress {
  /** Steps completed before this one (the step being planned is step + 1). */
  step: number
  epoch: number
  stepsPerEpoch: number
  totalSteps: number
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

/** Progress before step `done + 1` of a run with `perEpoch` steps per epoch. */
export function progressAt(cfg: ExperimentConfig, perEpoch: number, done: number): Progress {
  return { step: done, epoch: Math.floor(done / perEpoch), stepsPerEpoch: perEpoch, totalSteps: perEpoch * cfg.sampling.epochs }
}

/** Schedules advance by epoch (as released: constant within an epoch) or by step (fractional
 *  epochs: one law, finer steps). */
export function scheduleTime(cfg: ExperimentConfig, p: Progress): number {
  return cfg.schedule_granularity === 'epoch' ? p.epoch : p.step / p.stepsPerEpoch
}
