"""The fixed registry of loss ops. A loss spec names ops from here; nothing else is callable.

Each op takes named input tensors and its params, and returns a scalar tensor, or a
(scalar, stats) pair whose stats are plain numbers for logging.
"""

from dataclasses import dataclass
from typing import Callable, Tuple

from .basic import cross_entropy, unsup_ce, var_reg
from .prcl import prcl_loss


@dataclass(frozen=True)
class LossOp:
    fn: Callable  # fn(generator, **extras, **inputs, **params): every param comes from the step's request
    inputs: Tuple[str, ...]
    # What the step supplies besides the generator: 'prototype_reduce' (None, or the sum over
    # ranks of PRCL's prototype statistics at world size > 1 with global prototypes).
    extras: Tuple[str, ...] = ()


def _prcl(rep, var, label, mask, prob, generator, prototype_reduce=None, **params):
    return prcl_loss(rep.float(), var.float(), label, mask, prob, generator=generator, return_stats=True,
                     prototype_reduce=prototype_reduce, **params)


LOSS_OPS = {
    "cross_entropy": LossOp(lambda logits, target, generator, **p: cross_entropy(logits, target, **p),
                            ("logits", "target")),
    "unsup_ce": LossOp(lambda logits, pseudo, conf, generator, **p: unsup_ce(logits, pseudo, conf, **p),
                       ("logits", "pseudo", "conf")),
    "prcl": LossOp(_prcl, ("rep", "var", "label", "mask", "prob"), ("prototype_reduce",)),
    "var_reg": LossOp(lambda var, mask, generator, **p: var_reg(var, mask, **p), ("var", "mask")),
    "sum": LossOp(lambda a, b, generator: a + b, ("a", "b")),
}
