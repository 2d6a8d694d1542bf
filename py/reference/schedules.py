"""Schedules (spec §3, §8): EMA decay, lambda_c ramp-down, poly learning rate."""

import math

__all__ = ["ramp_down", "poly_lr", "ema_decay"]


def ramp_down(epoch, begin=0, max_epoch=200, max_value=1.0, min_value=0.0, mult=-5.0):
    """Gaussian ramp-down of the contrastive weight (§8.1, `rampscheduler.py:L27-54`).

    0 before `begin`; max_value * exp(mult * ((e - begin) / (max_epoch - begin))^2) on
    [begin, max_epoch); min_value from max_epoch on; then clipped below at min_value.
    """
    if epoch < begin:
        value = 0.0
    elif epoch >= max_epoch:
        value = min_value
    else:
        value = max_value * math.exp(mult * (float(epoch - begin) / (max_epoch - begin)) ** 2)
    if value < min_value:
        value = min_value
    return value


def poly_lr(base_lr, epoch, max_epoch=200, power=0.9, min_lr=1e-6):
    """Poly learning rate, per epoch (§8.2, `my_lr_scheduler.py:L4-13`).

    max(base_lr * (1 - epoch / max_epoch)^power, min_lr). The release is never stepped past
    max_epoch, where the formula leaves the reals; we refuse such epochs instead of guessing.
    """
    if epoch < 0 or epoch > max_epoch:
        raise ValueError(f"epoch must lie in [0, max_epoch={max_epoch}], got {epoch}")
    return max(base_lr * (1 - epoch / max_epoch) ** power, min_lr)


def ema_decay(t, alpha=0.99):
    """EMA decay after t earlier updates (§3): min(1 - 1/(t + 1), alpha)."""
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    return min(1.0 - 1.0 / (t + 1), alpha)
