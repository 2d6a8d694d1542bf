// What a run shows in TensorBoard, by tag: per step every loss term and its weight, the learning
// rates, the teacher's EMA decay, thresholds and other numeric loss params, pseudo-label
// statistics, gradient norm and the step's time split; per evaluation mIoU and per-class IoU.
import type { EvalEvent } from '../experiment/evaluate.ts'
import type { StepEvent } from '../experiment/metrics-log.ts'

export function stepScalars(ev: StepEvent): Record<string, number> {
  const out: Record<string, number> = { 'loss/total': ev.total }
  for (const [term, l] of Object.entries(ev.losses)) {
    out[`loss/${term}`] = l.value
    out[`weight/${term}`] = l.weight
  }
  out['lr/backbone'] = ev.lr
  out['lr/head'] = ev.head_lr
  out['teacher/ema_decay'] = ev.ema_decay
  out['threshold/weak'] = ev.weak_threshold
  for (const [term, params] of Object.entries(ev.params ?? {})) {
    for (const [name, v] of Object.entries(params ?? {})) if (typeof v === 'number') out[`param/${term}/${name}`] = v
  }
  const s = ev.stats
  // The share of unlabeled pixels whose pseudo-label passed the threshold (and so are trained on).
  out['pseudo/mask_ratio'] = s.mask_ratio
  out['pseudo/classes_present'] = s.classes_present
  out['prcl/anchor_classes'] = s.anchor_classes
  if (Array.isArray(s.hard_pixels_per_class)) out['prcl/hard_pixels'] = s.hard_pixels_per_class.reduce((a, b) => a + b, 0)
  if (typeof s.grad_norm === 'number') out['train/grad_norm'] = s.grad_norm
  const q = ev.pseudo_quality
  if (q) {
    // Against the unlabeled images' ground truth: how good the teacher's labels are, and how many
    // pass each confidence threshold.
    out['pseudo/accuracy'] = q.accuracy
    out['pseudo/miou'] = q.miou
    q.thresholds.forEach((t, i) => {
      out[`pseudo/coverage@${t}`] = q.coverage[i]!
      const a = q.accuracy_above[i]
      if (typeof a === 'number') out[`pseudo/accuracy@${t}`] = a
    })
  }
  // Waiting for the images to decode, and computing (the rest of the worker's step).
  for (const [k, ms] of Object.entries(ev.time_ms)) out[`time_ms/${k}`] = ms
  if (typeof ev.time_ms.total === 'number') out['time_ms/compute'] = ev.time_ms.total - (ev.time_ms.decode ?? 0)
  return out
}

export function evalScalars(ev: EvalEvent): Record<string, number> {
  const out: Record<string, number> = { [`eval/${ev.model}/miou`]: ev.miou }
  ev.classes.forEach((name, k) => {
    const v = ev.iou[k]
    if (typeof v === 'number') out[`eval/${ev.model}/iou/${name}`] = v
  })
  return out
}
