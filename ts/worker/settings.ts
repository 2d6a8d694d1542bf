// Ready-made worker settings: the paper's (spec §13) and a tiny one for tests and CPU demos,
// plus a synthetic batch, so a REPL user can configure and step a worker in two lines.
import type { Static } from 'typebox'
import { deepMerge } from '../config/merge.ts'
import { prclLoss, type PrclLossOptions } from '../loss/compose.ts'
import type { ConfigureArgs, Policy } from '../wire/ops/training.ts'
import { tensor, type Tensor } from '../wire/tensor.ts'

export type WorkerSettings = Static<typeof ConfigureArgs>
export type StepPolicy = Static<typeof Policy>

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] }

function merge<T>(base: T, over: DeepPartial<T> | undefined): T {
  return deepMerge(base, over ?? {})
}

/** DeepLabV3+ ResNet-101 OS16 with the released PRCL settings for VOC (21 classes). */
export function paperSettings(over?: DeepPartial<WorkerSettings>, loss?: PrclLossOptions): WorkerSettings {
  return merge<WorkerSettings>({
    seed: 3407,
    deterministic: false,
    threads: null,
    model: { num_classes: 21, backbone: 'resnet101', output_stride: 16, rep_dim: 256, width: 1, pretrained: null },
    ema: { alpha: 0.99, buffers: 'own' },
    teacher: { bn_mode: 'train' },
    optim: { momentum: 0.9, nesterov: true, weight_decay: 5e-4, decay_norm_and_bias: true, grad_clip: null },
    amp: 'none',
    channels_last: false,
    loss: prclLoss(loss),
  }, over)
}

/** A quarter-width ResNet-18 with small PRCL sampling: a CPU step takes a fraction of a second. */
export function tinySettings(over?: DeepPartial<WorkerSettings>, loss?: PrclLossOptions): WorkerSettings {
  return paperSettings(merge<DeepPartial<WorkerSettings>>({
    seed: 0,
    deterministic: true,
    model: { num_classes: 4, backbone: 'resnet18', output_stride: 16, rep_dim: 32, width: 0.25, pretrained: null },
  }, over), { numQueries: 32, numNegatives: 64, temp: 0.5, epochs: 10, ...loss })
}

/** The released pseudo-label policy (spec §13): weak threshold 0.7, ClassMix. */
export function paperPolicy(over?: Partial<StepPolicy>): StepPolicy {
  return { weak_threshold: 0.7, mix: 'classmix', classmix_ignore_is_class: true, conf_quantization: 'none', ...over }
}

/** Random normalised images and blocky labels: x_l, y_l, x_u for train_step. */
export function syntheticBatch(o: { batch?: number; size?: number; classes?: number; seed?: number } = {}): Record<string, Tensor> {
  const { batch = 2, size = 65, classes = 4, seed = 1 } = o
  let s = seed >>> 0
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296)
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
