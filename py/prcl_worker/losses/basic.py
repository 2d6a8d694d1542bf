"""Cross-entropy losses: supervised, and the confidence-weighted unsupervised one (spec §7.1–7.2)."""

import torch
import torch.nn.functional as F


def wide(x):
    """`x` in float32 (from bf16/fp16 under AMP), or as it is when already float64 (a network run in
    double, as the data-parallel equivalence test does)."""
    return x if x.dtype == torch.float64 else x.float()


def cross_entropy(logits, target, ignore_index):
    """Mean CE over non-ignored pixels; 0 attached to the graph when every pixel is ignored."""
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(wide(logits), target, ignore_index=ignore_index)


def unsup_ce(logits, pseudo, conf, threshold, variant):
    """Per-image weight = fraction of the image's valid pseudo-labelled pixels whose confidence is
    at least `threshold`; the loss averages weight × CE over valid pixels (§7.2).

    `released` keeps the released code's arithmetic (mean over pixels with CE > 0, NaN on an empty
    batch); `fixed` averages over valid pixels and gives an image without valid pixels
    weight 0, and the batch a zero attached to the graph when nothing is valid (Q-loss-1).
    """
    valid = pseudo >= 0
    ce = F.cross_entropy(wide(logits), pseudo, ignore_index=-1, reduction="none")
    # Confident pixels are counted over the whole image, as released (ignored pixels carry
    # confidence 0 in the pipeline, so this equals counting valid ones).
    confident = (conf >= threshold).flatten(1).sum(1).to(ce.dtype)
    counts = valid.flatten(1).sum(1).to(ce.dtype)
    if variant == "released":
        weight = confident / counts
        weighted = ce * weight.view(-1, 1, 1)
        return weighted[ce > 0].mean()
    weight = torch.where(counts > 0, confident / counts.clamp(min=1), torch.zeros_like(counts))
    weighted = ce * weight.view(-1, 1, 1)
    n_valid = valid.sum()
    return torch.where(n_valid > 0, (weighted * valid).sum() / n_valid.clamp(min=1), logits.sum() * 0.0)


def var_reg(var, mask, kind):
    """Optional variance regulariser (off unless a spec names it): mean over pixels in `mask` of
    mean-over-dimensions σ² ('mean') or -log σ² ('neg_log'). The paper says the variance is
    regularised but gives no formula (spec §7.11); this is an ablation hook, not the method."""
    m = mask.to(var.dtype)
    per_pixel = var.mean(1, keepdim=True) if kind == "mean" else (-torch.log(var)).mean(1, keepdim=True)
    return (per_pixel * m).sum() / m.sum().clamp(min=1)
