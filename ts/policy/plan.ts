// The step plan: every decision of one training step, made by one function. planStep reads the
// configuration, where the run stands and the run's seeded generators (which it advances), and
// returns the step's request: sample ids, augmentation and mix parameters, learning rates, EMA
// decay, thresholds, loss weights and params, and whether to evaluate or checkpoint after it.
// The same generator states give the same plan, so a resumed run re-plans exactly; the plan is
// what goes on the wire (with the samples' bytes) and what `--record` writes.
import type { Static } from 'typebox'
import type { ExperimentConfig } from '../config/schema.ts'
import { readsOnlyLabeled } from '../loss/spec.ts'
import type { Rng } from '../rng.ts'
import type { OpArgs } from '../wire/ops/index.ts'
import type { ImageAug } from '../wire/ops/training.ts'
import { drawLabeled, drawMix, drawUnlabeledAug, drawUnlabeledCrop } from './augment.ts'
import type { Progress } from './progress.ts'
import type { Sampler } from './sampler.ts'
import { stepScalars } from './scalars.ts'

export interface ImageSize { height: number; width: number }

/** What the plan needs of the data: each listed image's size (read from its header at load). */
export interface PlanData {
  labeled: readonly ImageSize[]
  unlabeled: readonly ImageSize[]
  labelLut: number[] | null
}

/** The run's random streams: augmentation draws and one sampler per list. */
export interface Generators { augment: Rng; labeled: Sampler; unlabeled: Sampler }

/** A train_step request with every driver-side field present. */
export type StepPlan = OpArgs<'train_step'> & {
  epoch: number
  samples: { labeled: number[]; unlabeled: number[] }
  evaluate: boolean
  checkpoint: boolean
}
export type ImageAugParams = Static<typeof ImageAug>

/** Whether the run evaluates after `step`: at the end of every eval.every_epochs-th epoch, and
 *  after the last step. */
export function evaluatesAfter(cfg: ExperimentConfig, perEpoch: number, step: number): boolean {
  const total = perEpoch * cfg.sampling.epochs
  return step % perEpoch === 0 && (Math.floor(step / perEpoch) % cfg.eval.every_epochs === 0 || step === total)
}

export function planStep(cfg: ExperimentConfig, p: Progress, gen: Generators, data: PlanData): StepPlan {
  const b = cfg.sampling.batch_size
  const step = p.step + 1
  // A supervised-only loss reads no unlabeled batch: none is drawn, read or sent.
  const semi = !readsOnlyLabeled(cfg.loss)
  const labeled = gen.labeled.take(b)
  const unlabeled = semi ? gen.unlabeled.take(b) : []
  const scalars = stepScalars(cfg, p)
  const labeledAug = labeled.map((i) => drawLabeled(gen.augment, cfg, data.labeled[i]!))
  const unlabeledCrop = unlabeled.map((i) => drawUnlabeledCrop(gen.augment, cfg, data.unlabeled[i]!))
  const unlabeledAug = unlabeled.map(() => drawUnlabeledAug(gen.augment, cfg))
  return {
    step, epoch: p.epoch, samples: { labeled, unlabeled },
    ...scalars,
    labeled_aug: labeledAug,
    ...(semi ? { unlabeled_crop: unlabeledCrop, unlabeled_aug: unlabeledAug, mix: drawMix(gen.augment, scalars.policy.mix, b, cfg.data.unlabeled.crop) } : {}),
    ...(data.labelLut ? { label_lut: data.labelLut } : {}),
    evaluate: evaluatesAfter(cfg, p.stepsPerEpoch, step),
    checkpoint: step % cfg.checkpoint.every_steps === 0 || step === p.totalSteps,
  }
}
