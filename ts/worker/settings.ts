// Ready-made worker settings for the REPL, benchmarks and worker tests: the paper's (the preset
// voc-662-prcl, ts/config/presets.ts, is where its values are declared) and a tiny one, the
// resolved arguments of a step, and a synthetic batch, so a user can configure and step a worker
// in two lines.
import { deepMerge } from '../config/merge.ts'
import { preset } from '../config/presets.ts'
import type { ExperimentConfig } from '../config/schema.ts'
import { prclLoss, type PrclLossOptions } from '../loss/compose.ts'
import { workerSettings, type WorkerSettings } from '../experiment/settings.ts'
import { progressAt } from '../policy/progress.ts'
import { stepScalars, type StepPolicy, type StepScalars } from '../policy/scalars.ts'
import { tensor, type Tensor } from '../wire/tensor.ts'
import { Rng, STREAM } from '../rng.ts'

export type { StepPolicy, WorkerSettings }

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] }

function paperConfig(loss?: ExperimentConfig['loss']): ExperimentConfig {
  const cfg = preset('voc-662-prcl')!
  if (loss) cfg.loss = loss
  return cfg
}

/** DeepLabV3+ ResNet-101 OS16 with the released PRCL settings for VOC (21 classes). */
export function paperSettings(over?: DeepPartial<WorkerSettings>, loss?: PrclLossOptions): WorkerSettings {
  const base = workerSettings(paperConfig(loss ? prclLoss({ epochs: 200, ...loss }) : undefined), null)
  return deepMerge(base, over ?? {})
}

/** A quarter-width ResNet-18 with small PRCL sampling: a CPU step takes a fraction of a second. */
export function tinySettings(over?: DeepPartial<WorkerSettings>, loss?: PrclLossOptions): WorkerSettings {
  const tiny = paperSettings({
    seed: 0,
    deterministic: true,
    model: { num_classes: 4, backbone: 'resnet18', output_stride: 16, rep_dim: 32, width: 0.25, pretrained: null },
  }, { numQueries: 32, numNegatives: 64, temp: 0.5, epochs: 10, ...loss })
  return deepMerge(tiny, over ?? {})
}

/** The resolved scalars of step `step` (0-based) for these settings' loss, with the paper's
 *  learning rates, EMA and pseudo-label policy: what train_step needs besides tensors and
 *  augmentation parameters. */
export function stepArgs(settings: WorkerSettings, step: number, over: Partial<StepScalars> = {}): StepScalars & { step: number } {
  const cfg = paperConfig(settings.loss)
  return { step, ...stepScalars(cfg, progressAt(cfg, 1000, step)), ...over }
}

/** The released pseudo-label policy (spec §13): weak threshold 0.7, ClassMix, teacher BN in train mode. */
export function paperPolicy(over?: Partial<StepPolicy>): StepPolicy {
  const cfg = paperConfig()
  return { ...stepScalars(cfg, progressAt(cfg, 1000, 0)).policy, ...over }
}

/** Random normalised images and blocky labels: x_l, y_l, x_u for train_step. */
export function syntheticBatch(o: { batch?: number; size?: number; classes?: number; seed?: number } = {}): Record<string, Tensor> {
  const { batch = 2, size = 65, classes = 4, seed = 1 } = o
  const rng = Rng.keyed(seed, STREAM.syntheticBatch)
  const rnd = () => rng.float()
  const n = batch * 3 * size * size
  const labels = new BigInt64Array(batch * size * size)
  for (let b = 0; b < batch; b++) {
    const cut = Math.floor(size / 2)
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
      labels[(b * size + y) * size + x] = BigInt(((x >= cut ? 1 : 0) + (y >= cut ? 2 : 0) + b) % classes)
    }
  }
  const x_l = new Float32Array(n)
  // Images carry their labels (plus noise), so a model can learn them.
  for (let b = 0; b < batch; b++) for (let c = 0; c < 3; c++) for (let p = 0; p < size * size; p++) {
    x_l[(b * 3 + c) * size * size + p] = Number(labels[b * size * size + p]!) * (c + 1) * 0.3 - 1 + (rnd() - 0.5)
  }
  const x_u = Float32Array.from(x_l, (v) => v + (rnd() - 0.5) * 0.2)
  return {
    x_l: tensor(x_l, [batch, 3, size, size]),
    y_l: tensor(labels, [batch, size, size]),
    x_u: tensor(x_u, [batch, 3, size, size]),
  }
}
