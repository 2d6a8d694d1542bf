// The picture strips of an evaluation, drawn by rank 0: the first val images (input | ground truth |
// prediction | σ²) and the first unlabeled images through the unlabeled branch (weak view |
// pseudo-label | confidence | mixed input | mixed label | σ²), σ² on one scale per evaluation.
import type { ExperimentConfig } from '../config/schema.ts'
import { readSample } from '../data/dataset.ts'
import { decodeLabelPng } from '../data/png-decode.ts'
import type { RunData } from '../experiment/data.ts'
import { drawMix, drawUnlabeledAug, drawUnlabeledCrop } from '../policy/augment.ts'
import { progressAt } from '../policy/progress.ts'
import { stepScalars } from '../policy/scalars.ts'
import { Rng, STREAM } from '../rng.ts'
import { bytesTensor } from '../wire/tensor.ts'
import type { WorkerGroup } from '../worker/group.ts'
import { paletteFor, strip, type Panel, type Strip } from './pictures.ts'

export const UNLABELED_PANELS = ['weak view', 'pseudo-label', 'confidence', 'mixed input', 'mixed label', 'σ² (student)']

/** Strips of the first `n` unlabeled images through the unlabeled branch (the worker's
 *  unlabeled_views): fixed augmentation and mixing parameters (their own seeded stream, so the
 *  same every evaluation and no draw of the run's), the policy of this step. */
export async function unlabeledStrips(group: WorkerGroup, cfg: ExperimentConfig, data: RunData, n: number, step: number, perEpoch: number): Promise<Array<Strip & { varMax: number }>> {
  const refs = data.unlabeled.slice(0, n)
  const rng = Rng.keyed(cfg.seed, STREAM.pictures)
  const policy = stepScalars(cfg, progressAt(cfg, perEpoch, step)).policy
  const body = {
    policy,
    unlabeled_crop: data.sizes.unlabeled.slice(0, n).map((size) => drawUnlabeledCrop(rng, cfg, size)),
    unlabeled_aug: refs.map(() => drawUnlabeledAug(rng, cfg)),
    ...(policy.mix === 'none' ? {} : { mix: drawMix(rng, policy.mix, n, cfg.data.unlabeled.crop) }),
  }
  const samples = await Promise.all(refs.map((r) => readSample(r)))
  const tensors = Object.fromEntries(samples.map((s, i) => [`img_u.${i}`, bytesTensor(s.image)]))
  const r = await group.call(0, 'unlabeled_views', body, { tensors, timeoutMs: 600_000 })
  const palette = paletteFor(cfg.data.dataset)
  const at = (name: string, i: number) => r.tensors[`${name}.${i}`]!
  const varMax = maxOf(refs.map((_, i) => at('var', i).data as Float32Array))
  return refs.map((_, i) => {
    const [height, width] = at('weak', i).shape as [number, number, number]
    const panels: Panel[] = [
      { kind: 'rgb', data: at('weak', i).data as Uint8Array },
      { kind: 'classes', data: at('pseudo', i).data as Uint8Array },
      { kind: 'heat', data: at('conf', i).data as Float32Array, max: 1 },
      { kind: 'rgb', data: at('mixed', i).data as Uint8Array },
      { kind: 'classes', data: at('mixed_label', i).data as Uint8Array },
      { kind: 'heat', data: at('var', i).data as Float32Array, max: varMax },
    ]
    return { ...strip({ width, height, panels, palette }), varMax }
  })
}

/** Strips of the first `n` val images: the worker predicts classes and σ² and hands back the image
 *  as it decoded it; labels are read here (through the dataset's label LUT). */
export async function valStrips(group: WorkerGroup, cfg: ExperimentConfig, data: RunData, n: number, model: 'teacher' | 'student'): Promise<Array<Strip & { varMax: number }>> {
  const refs = data.val.slice(0, n)
  const samples = await Promise.all(refs.map((r) => readSample(r)))
  const tensors = Object.fromEntries(samples.map((s, i) => [`img.${i}`, bytesTensor(s.image)]))
  const r = await group.call(0, 'predict', { model, outputs: ['classes', 'var', 'image'] }, { tensors, timeoutMs: 600_000 })
  const lut = data.dataset.labelLut
  const palette = paletteFor(cfg.data.dataset)
  const vars = refs.map((_, i) => r.tensors[`var.${i}`]!.data as Float32Array)
  const varMax = maxOf(vars)
  return refs.map((ref, i) => {
    const image = r.tensors[`image.${i}`]!
    const [height, width] = image.shape as [number, number, number]
    const raw = samples[i]!.label ? decodeLabelPng(samples[i]!.label!, ref.label!).data : null
    const labels = raw && lut ? raw.map((v) => lut[v]!) : raw
    const pred = r.tensors[`classes.${i}`]!.data as Uint8Array
    const panels: Panel[] = [{ kind: 'rgb', data: image.data as Uint8Array }]
    if (labels) panels.push({ kind: 'classes', data: labels })
    panels.push({ kind: 'classes', data: pred }, { kind: 'heat', data: vars[i]!, max: varMax })
    return { ...strip({ width, height, panels, palette }), varMax }
  })
}

/** The largest value over the maps (0 when none is positive): one σ² scale for an evaluation. */
function maxOf(maps: Float32Array[]): number {
  let m = 0
  for (const v of maps) for (const x of v) if (x > m) m = x
  return m
}
