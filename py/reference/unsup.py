"""Unsupervised loss: confidence-proportion-weighted CE against pseudo-labels (spec §7.2).

Two versions:

* `unsup_loss_released` - literal copy of the release's `Attention_Threshold_Loss`
  (`Haoyu-Xie/PRCL@d8829da:generalframeworks/loss/loss.py:L8-24`), failure modes included.
* `unsup_loss` - the fixed version of spec §14.4, Q-loss-1.

Reading of the per-image weight (both versions). The release computes
    logits.view(B, -1).ge(threshold).sum(-1) / (pseudo >= 0).view(B, -1).sum(-1)
i.e. the numerator counts *every* pixel of image b whose confidence is >= threshold, whether or
not its pseudo-label is valid; only the denominator is restricted to valid pixels (§7.2:
"#{pixels of image b with c >= delta_u} / #{pixels of image b with y >= 0}"). We keep that count
over all pixels in the fixed version too: Q-loss-1 only fixes the division by zero, the empty
selection and the `loss > 0` filter. In the training pipeline the two readings coincide, because
an ignored pixel (padding or cutout, -1) always carries confidence 0 (§4, §5.1, §6); they differ
only for synthetic inputs with conf >= threshold on an ignored pixel.
"""

import torch
import torch.nn.functional as F

__all__ = ["unsup_loss_released", "unsup_loss"]


def _check(logits, pseudo, conf, threshold):
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        raise ValueError(f"logits must be a 4-D tensor [B, C, H, W], got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    b, _, h, w = logits.shape
    if not isinstance(pseudo, torch.Tensor) or tuple(pseudo.shape) != (b, h, w) \
            or pseudo.dtype != torch.long:
        raise ValueError(f"pseudo must be a torch.long tensor [B, H, W] = [{b}, {h}, {w}]")
    if not isinstance(conf, torch.Tensor) or tuple(conf.shape) != (b, h, w) \
            or not conf.is_floating_point():
        raise ValueError(f"conf must be a float tensor [B, H, W] = [{b}, {h}, {w}]")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold must be a number, got {threshold!r}")


def unsup_loss_released(logits, pseudo, conf, threshold=0.97):
    """As released (§7.2): may return NaN or inf (image without valid pixel, empty selection)."""
    _check(logits, pseudo, conf, threshold)
    batch_size = logits.shape[0]
    valid_mask = (pseudo >= 0).float()
    weighting = conf.reshape(batch_size, -1).ge(threshold).sum(-1) \
        / valid_mask.reshape(batch_size, -1).sum(-1)
    loss = F.cross_entropy(logits, pseudo, reduction="none", ignore_index=-1)
    return torch.mean(torch.masked_select(weighting[:, None, None] * loss, loss > 0))


def unsup_loss(logits, pseudo, conf, threshold=0.97):
    """Fixed version (Q-loss-1).

    w_b = #{pixels of image b with conf >= threshold} / #{pixels of image b with pseudo >= 0},
    and w_b = 0 for an image without valid pixel; loss = mean of w_b * CE over the *valid*
    pixels (pseudo >= 0), a CE of exactly 0 included; a zero attached to the graph when no pixel
    is valid.
    """
    _check(logits, pseudo, conf, threshold)
    batch_size = logits.shape[0]
    valid = pseudo >= 0                                                   # [B, H, W]
    if not bool(valid.any()):
        return logits.sum() * 0.0
    n_valid = valid.reshape(batch_size, -1).sum(-1)                       # [B]
    n_confident = conf.reshape(batch_size, -1).ge(threshold).sum(-1)      # [B], all pixels
    # The weight is computed in the logits' dtype (the release always uses float32).
    weighting = torch.zeros(batch_size, dtype=logits.dtype, device=logits.device)
    for b in range(batch_size):
        if int(n_valid[b]) > 0:
            weighting[b] = n_confident[b].to(logits.dtype) / n_valid[b].to(logits.dtype)
    loss = F.cross_entropy(logits, pseudo, reduction="none", ignore_index=-1)   # [B, H, W]
    weighted = weighting[:, None, None] * loss
    return torch.mean(weighted[valid])
