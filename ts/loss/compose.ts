// Building loss specs in TypeScript and resolving their weights for a step.
import type { LossSpec, LossTerm } from './spec.ts'
import type { ScheduleOrNumber } from './schedule.ts'

export function term(name: string, op: string, inputs: Record<string, string>, weight: ScheduleOrNumber = 1,
  params: LossTerm['params'] = undefined): LossTerm {
  return params === undefined ? { name, op, inputs, weight } : { name, op, inputs, params, weight }
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

/** The released values (method spec §13), declared here once. */
export const PAPER_LOSS = { unsupThreshold: 0.97, strongThreshold: 0.8, temp: 100, numQueries: 256, numNegatives: 512, epochs: 200 } as const

/** The paper's composition: supervised CE + unsupervised CE + λc(epoch)·PRCL. */
export function prclLoss(options: PrclLossOptions = {}): LossSpec {
  const o = { ...PAPER_LOSS, ...options }
  const terms: LossTerm[] = [
    term('sup', 'cross_entropy', { logits: 'model.logits_l', target: 'batch.y_l' }, 1, { ignore_index: -1 }),
  ]
  if (o.unsup !== false) {
    terms.push(term('unsup', 'unsup_ce', { logits: 'model.logits_u', pseudo: 'batch.pseudo', conf: 'batch.conf' }, 1,
      { threshold: o.unsupThreshold, variant: 'fixed' }))
  }
  if (o.prcl !== false) {
    terms.push(term('prcl', 'prcl',
      { rep: 'model.rep', var: 'model.var', label: 'batch.feat_label', mask: 'batch.feat_mask', prob: 'batch.feat_prob' },
      o.prclWeight ?? { kind: 'rampdown', begin: 0, end: o.epochs, max: 1, min: 0, mult: -5 },
      {
        strong_threshold: o.strongThreshold, temp: o.temp, neg_temp: null,
        num_queries: o.numQueries, num_negatives: o.numNegatives,
      }))
  }
  return { version: 1, terms }
}
