// The worker's loss ops (py/prcl_worker/losses/): their inputs and parameter schemas, and the
// names a term may read. Every param is required: the worker holds no defaults. The driver checks
// a spec against this registry before anything starts; the worker loads it from
// schemas/losses.json and checks again what arrives.
import Type from 'typebox'

const Closed = { additionalProperties: false } as const
const Prob = Type.Number({ minimum: 0, maximum: 1 })

export const LOSS_OPS = {
  cross_entropy: {
    doc: 'Pixel-wise cross-entropy of logits [B,C,H,W] against target [B,H,W]; -1 = ignore.',
    inputs: ['logits', 'target'],
    params: Type.Object({ ignore_index: Type.Integer({ minimum: -1, maximum: 255 }) }, Closed),
  },
  unsup_ce: {
    doc: 'Confidence-proportion-weighted CE against pseudo-labels (spec §7.2), with the empty-mask NaN fixed.',
    inputs: ['logits', 'pseudo', 'conf'],
    params: Type.Object({
      threshold: Prob,
      variant: Type.Enum(['fixed', 'released']),
    }, Closed),
  },
  prcl: {
    doc: 'The PRCL probabilistic contrastive loss (spec §7.3–7.7).',
    inputs: ['rep', 'var', 'label', 'mask', 'prob'],
    params: Type.Object({
      strong_threshold: Prob,
      temp: Type.Number({ exclusiveMinimum: 0, maximum: 1e4 }),
      neg_temp: Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1e4 }), Type.Null()]),
      num_queries: Type.Integer({ minimum: 1, maximum: 65536 }),
      num_negatives: Type.Integer({ minimum: 1, maximum: 65536 }),
    }, Closed),
  },
  var_reg: {
    doc: 'Optional variance regulariser (off by default): mean of σ² (kind "mean") or of -log σ² (kind "neg_log") over valid pixels; the paper mentions regularising the variance without a formula.',
    inputs: ['var', 'mask'],
    params: Type.Object({ kind: Type.Enum(['mean', 'neg_log']) }, Closed),
  },
  sum: {
    doc: 'Sum of other terms\' values (inputs are term.<name> references).',
    inputs: ['a', 'b'],
    params: Type.Object({}, Closed),
  },
} as const

export type LossOpName = keyof typeof LOSS_OPS

/** What a step computes and a term may read: `model.<output>` and `batch.<tensor>`. */
export const LOSS_REFS = {
  model: ['logits_l', 'logits_u', 'rep', 'var', 'logits_all'],
  batch: ['y_l', 'pseudo', 'conf', 'feat_label', 'feat_mask', 'feat_prob'],
} as const

/** Names of the unlabeled images' ground truth (the lbl_u.<i> tensors, the worker's truth_u): for
 *  analysis only, never in the batch a loss reads; a reference to one is refused by name. */
export const ANALYSIS_ONLY = ['lbl_u', 'truth_u', 'gt_u', 'y_u'] as const

/** What a labeled-only step provides: a spec reading nothing else needs no unlabeled images. */
export const LABELED_ONLY_REFS: readonly string[] = ['model.logits_l', 'batch.y_l']
