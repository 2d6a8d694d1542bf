// Building loss specs in TypeScript and resolving their weights for a step.
import type { LossSpec, LossTerm } from './spec.ts'
import { evaluate, type ScheduleOrNumber } from './schedule.ts'

export function term(name: string, op: string, inputs: Record<string, string>, weight: ScheduleOrNumber = 1,
  params: LossTerm['params'] = undefined): LossTerm {
  return params === undefined ? { name, op, inputs, weight } : { name, op, inputs, params, weight }
}

/** The weight of every enabled term at progress t (an epoch or a step, as the schedules mean it). */
export function resolveWeights(spec: LossSpec, t: number): Record<string, number> {
  const out: Record<string, number> = {}
  for (const tm of spec.terms) if (tm.enabled !== false) out[tm.name] = evaluate(tm.weight, t)
  return out
}

export interface PrclLossOptions {
  unsupThreshold?: number
  strongThreshold?: number
  temp?: number
  numQueries?: number
  numNegatives?: number
  /** λc: PRCL's Gaussian ramp-down over `epochs` by default (spec §8.1). */
  prclWeight?: ScheduleOrNumber
  epochs?: number
  /** Include the PRCL term at all (false gives the supervised + unsupervised baseline). */
  prcl?: boolean
  /** Include the unsupervised term (false gives supervised-only). */
  unsup?: boolean
}

/** The paper's composition: supervised CE + unsupervised CE + λc(epoch)·PRCL. */
export function prclLoss(o: PrclLossOptions = {}): LossSpec {
  const terms: LossTerm[] = [
    term('sup', 'cross_entropy', { logits: 'model.logits_l', target: 'batch.y_l' }, 1, { ignore_index: -1 }),
  ]
  if (o.unsup !== false) {
    terms.push(term('unsup', 'unsup_ce', { logits: 'model.logits_u', pseudo: 'batch.pseudo', conf: 'batch.conf' }, 1,
      { threshold: o.unsupThreshold ?? 0.97, variant: 'fixed' }))
  }
  if (o.prcl !== false) {
    terms.push(term('prcl', 'prcl',
      { rep: 'model.rep', var: 'model.var', label: 'batch.feat_label', mask: 'batch.feat_mask', prob: 'batch.feat_prob' },
      o.prclWeight ?? { kind: 'rampdown', begin: 0, end: o.epochs ?? 200, max: 1, min: 0, mult: -5 },
      {
        strong_threshold: o.strongThreshold ?? 0.8, temp: o.temp ?? 100,
        num_queries: o.numQueries ?? 256, num_negatives: o.numNegatives ?? 512,
      }))
  }
  return { version: 1, terms }
}
