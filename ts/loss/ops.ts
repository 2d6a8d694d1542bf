// Parameter schemas of the worker's loss ops (py/prcl_worker/losses/). The worker loads them
// from schemas/losses.json and refuses a term whose params do not fit, naming the term.
import Type from 'typebox'

const Closed = { additionalProperties: false } as const
const Prob = Type.Number({ minimum: 0, maximum: 1 })

export const LOSS_OPS = {
  cross_entropy: {
    doc: 'Pixel-wise cross-entropy of logits [B,C,H,W] against target [B,H,W]; -1 = ignore.',
    inputs: ['logits', 'target'],
    params: Type.Object({ ignore_index: Type.Optional(Type.Integer()) }, Closed),
  },
  unsup_ce: {
    doc: 'Confidence-proportion-weighted CE against pseudo-labels (spec §7.2), with the empty-mask NaN fixed.',
    inputs: ['logits', 'pseudo', 'conf'],
    params: Type.Object({
      threshold: Type.Optional(Prob),
      variant: Type.Optional(Type.Enum(['fixed', 'released'])),
    }, Closed),
  },
  prcl: {
    doc: 'The PRCL probabilistic contrastive loss (spec §7.3–7.7).',
    inputs: ['rep', 'var', 'label', 'mask', 'prob'],
    params: Type.Object({
      strong_threshold: Type.Optional(Prob),
      temp: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e4 })),
      neg_temp: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1e4 }), Type.Null()])),
      num_queries: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
      num_negatives: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
    }, Closed),
  },
  var_reg: {
    doc: 'Optional variance regulariser (off by default): mean of σ² (kind "mean") or of -log σ² (kind "neg_log") over valid pixels; the paper mentions regularising the variance without a formula.',
    inputs: ['var', 'mask'],
    params: Type.Object({ kind: Type.Optional(Type.Enum(['mean', 'neg_log'])) }, Closed),
  },
  sum: {
    doc: 'Sum of other terms\' values (inputs are term.<name> references).',
    inputs: ['a', 'b'],
    params: Type.Object({}, Closed),
  },
} as const

export type LossOpName = keyof typeof LOSS_OPS
