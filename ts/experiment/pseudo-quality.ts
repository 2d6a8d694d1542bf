// A step's pseudo-label quality, from the worker's counts (py/prcl_worker/train/quality.py): what
// metrics.jsonl, TensorBoard and the report show.
import type { OpResult } from '../wire/ops/index.ts'
import { iouFromConfusion } from './metrics.ts'

export interface PseudoQuality {
  /** Share of pixels (with a ground-truth class) whose pseudo-label is right. */
  accuracy: number
  /** mIoU of the pseudo-labels against the ground truth (classes absent from both excluded). */
  miou: number
  thresholds: number[]
  /** Per threshold: the share of pixels at least that confident, and the accuracy among them. */
  coverage: number[]
  accuracy_above: Array<number | null>
  /** Pixels pseudo-labelled as each class. */
  per_class: number[]
}

export function pseudoQuality(q: NonNullable<OpResult<'train_step'>['pseudo_quality']>): PseudoQuality | null {
  if (q.pixels === 0) return null
  const c = Math.round(Math.sqrt(q.confusion.length))
  const perClass = new Array<number>(c).fill(0)
  q.confusion.forEach((v, i) => { perClass[i % c]! += v })
  return {
    accuracy: q.correct / q.pixels,
    miou: iouFromConfusion(q.confusion, c).miou,
    thresholds: q.thresholds,
    coverage: q.confident.map((n) => n / q.pixels),
    accuracy_above: q.confident.map((n, t) => (n ? q.confident_correct[t]! / n : null)),
    per_class: perClass,
  }
}
