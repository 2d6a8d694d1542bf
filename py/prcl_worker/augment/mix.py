"""Batch mixing (prcl-method.md §6, Q-aug-5, Q-aug-7).

Partner of image i is j = (i+1) mod B. A binary mask M (1 = keep image i) combines image,
label and confidence alike: v = v_i*M + v_j*(1-M) (computed with ``torch.where``, which is the
same for a 0/1 mask and exact for integer labels). Every function returns
``(imgs, labels, confs, masks)``; masks are [B,H,W] in the images' dtype with values 0/1.
Inputs are never modified in place. labels/confs may be None where the mode does not need them.
"""

import torch

from .decode import IGNORE_INDEX

MIX_MODES = ("classmix", "cutmix", "cutout", "none")


def isin(x, values):
    """``torch.isin(x, values)``, with a fallback for torch versions that lack it."""
    values = values.to(device=x.device, dtype=x.dtype)
    if hasattr(torch, "isin"):
        return torch.isin(x, values)
    out = torch.zeros_like(x, dtype=torch.bool)
    for v in values.reshape(-1):
        out |= x == v
    return out


def _partner(t):
    return None if t is None else torch.roll(t, shifts=-1, dims=0)  # out[i] = t[(i+1) % B]


def _check_batch(imgs, labels, confs):
    if not isinstance(imgs, torch.Tensor) or imgs.dim() != 4:
        raise ValueError(f"imgs must be a tensor [B,C,H,W], got "
                         f"{tuple(imgs.shape) if isinstance(imgs, torch.Tensor) else type(imgs)}")
    bhw = (imgs.shape[0],) + tuple(imgs.shape[-2:])
    for name, t in (("labels", labels), ("confs", confs)):
        if t is not None and tuple(t.shape) != bhw:
            raise ValueError(f"{name} shape {tuple(t.shape)} differs from [B,H,W] = {bhw}")
    return bhw


def _check_len(name, seq, B):
    if seq is None or len(seq) != B:
        raise ValueError(f"need {B} {name} (one per image), got "
                         f"{'None' if seq is None else len(seq)}")


def _mix_with_mask(imgs, labels, confs, keep):
    """keep: bool [B,H,W], True = image i's own pixel."""
    k4 = keep.unsqueeze(1)
    out_img = torch.where(k4, imgs, _partner(imgs))
    out_lab = None if labels is None else torch.where(keep, labels, _partner(labels))
    out_conf = None if confs is None else torch.where(keep, confs, _partner(confs))
    return out_img, out_lab, out_conf, keep.to(imgs.dtype)


def classmix_mask(label, seed, ignore_is_class):
    """ClassMix mask for one label map [H,W]: shuffle its sorted distinct values with
    ``torch.randperm(n, generator=Generator().manual_seed(seed))`` (CPU), keep the first
    floor(n/2), M = label in kept. With ignore_is_class False, -1 is never a candidate, so
    ignore pixels always come from the partner."""
    try:
        ok = not isinstance(seed, bool) and int(seed) == seed
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"classmix seed must be an integer, got {seed!r}")
    vals = torch.unique(label, sorted=True)
    if not ignore_is_class:
        vals = vals[vals != IGNORE_INDEX]
    n = vals.numel()
    try:
        gen = torch.Generator().manual_seed(int(seed))
    except RuntimeError as e:  # out of the generator's 64-bit range
        raise ValueError(f"classmix seed {seed} is not usable: {e}") from None
    perm = torch.randperm(n, generator=gen).to(vals.device)
    kept = vals[perm[: n // 2]]
    return isin(label, kept)


def classmix(imgs, labels, confs, seeds, ignore_is_class):
    """ClassMix (§6): imgs [B,3,H,W], labels [B,H,W] (-1 ignore), confs [B,H,W] or None,
    seeds: B integers. Returns (imgs, labels, confs, masks)."""
    B = _check_batch(imgs, labels, confs)[0]
    if labels is None:
        raise ValueError("classmix needs labels")
    _check_len("seeds", seeds, B)
    keep = torch.stack([classmix_mask(labels[i], seeds[i], ignore_is_class) for i in range(B)])
    return _mix_with_mask(imgs, labels, confs, keep)


def valid_box(box, H, W):
    """Check a box (top, left, h, w) fits an H×W map; returns it as a tuple of ints."""
    try:
        vals = [v.item() if isinstance(v, torch.Tensor) else v for v in box]
        if len(vals) != 4 or any(isinstance(v, bool) or int(v) != v for v in vals):
            raise TypeError
        top, left, h, w = (int(v) for v in vals)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 integers (top, left, h, w), got {box!r}") from None
    if h < 0 or w < 0 or top < 0 or left < 0 or top + h > H or left + w > W:
        raise ValueError(f"box (top={top}, left={left}, h={h}, w={w}) does not fit a "
                         f"{H}x{W} map")
    return top, left, h, w


def _box_keep(boxes, B, H, W, device):
    _check_len("boxes", boxes, B)
    keep = torch.ones((B, H, W), dtype=torch.bool, device=device)
    for i, box in enumerate(boxes):
        top, left, h, w = valid_box(box, H, W)
        keep[i, top:top + h, left:left + w] = False
    return keep


def cutmix(imgs, labels, confs, boxes):
    """CutMix (§6): inside image i's box (top, left, h, w) the partner's pixels come in."""
    B, H, W = _check_batch(imgs, labels, confs)
    keep = _box_keep(boxes, B, H, W, imgs.device)
    return _mix_with_mask(imgs, labels, confs, keep)


def cutout(imgs, labels, confs, boxes):
    """CutOut (§6): no partner; inside the box image = 0 (normalised space), label = -1,
    conf = 0."""
    B, H, W = _check_batch(imgs, labels, confs)
    keep = _box_keep(boxes, B, H, W, imgs.device)
    out_img = torch.where(keep.unsqueeze(1), imgs, torch.zeros((), dtype=imgs.dtype,
                                                                 device=imgs.device))
    out_lab = None if labels is None else torch.where(
        keep, labels, torch.full((), IGNORE_INDEX, dtype=labels.dtype, device=labels.device))
    out_conf = None if confs is None else torch.where(
        keep, confs, torch.zeros((), dtype=confs.dtype, device=confs.device))
    return out_img, out_lab, out_conf, keep.to(imgs.dtype)


def _param(params, i, key, mode):
    p = params[i]
    if not isinstance(p, dict) or key not in p:
        raise ValueError(f"{mode}: params[{i}] must be a dict with key '{key}', got {p!r}")
    return p[key]


def apply_mix(mode, imgs, labels, confs, params, ignore_is_class):
    """Dispatch on ``mode`` in MIX_MODES; ``params`` is a list of per-image dicts:
    ``{seed}`` for classmix, ``{box: [top, left, h, w]}`` for cutmix/cutout, ignored for none.
    Returns (imgs, labels, confs, masks)."""
    if mode not in MIX_MODES:
        raise ValueError(f"unknown mix mode {mode!r}; expected one of {list(MIX_MODES)}")
    B, H, W = _check_batch(imgs, labels, confs)
    if mode == "none":
        return imgs, labels, confs, torch.ones((B, H, W), dtype=imgs.dtype, device=imgs.device)
    _check_len("params", params, B)
    if mode == "classmix":
        seeds = [_param(params, i, "seed", mode) for i in range(B)]
        return classmix(imgs, labels, confs, seeds, ignore_is_class=ignore_is_class)
    boxes = [_param(params, i, "box", mode) for i in range(B)]
    fn = cutmix if mode == "cutmix" else cutout
    return fn(imgs, labels, confs, boxes)
