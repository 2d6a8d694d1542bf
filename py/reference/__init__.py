"""Literal reference implementation of the PRCL losses and schedules (spec: docs/prcl-method.md).

Slow and plain on purpose; the fast implementation is tested against it.
"""

from .prcl import flatten_inputs, mls, prcl_loss_reference, prcl_negative_class_probs, prototypes
from .schedules import ema_decay, poly_lr, ramp_down
from .unsup import unsup_loss, unsup_loss_released

__all__ = [
    "mls",
    "prototypes",
    "flatten_inputs",
    "prcl_negative_class_probs",
    "prcl_loss_reference",
    "unsup_loss_released",
    "unsup_loss",
    "ramp_down",
    "poly_lr",
    "ema_decay",
]
