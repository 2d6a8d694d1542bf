"""Batch mixing (prcl-method.md §6, Q-aug-5, Q-aug-6, Q-aug-7).

Partner of image i is j = (i+1) mod B. A binary mask M (1 = keep image i) combines image,
label and confidence alike: v = v_i*M + v_j*(1-M) (computed with ``torch.where``, which is the
same for a 0/1 mask and exact for integer labels). Every function returns
``(imgs, labels, confs, masks)``; masks are [B,H,W] in the images' dtype with values 0/1.
Inputs are never modified in place. labels/confs may be None where the mode does not need them.

Under data parallelism the partner may live on another rank (Q-aug-6, ``MIX_PARTNERS``):
``partner_triple`` gathers every rank's triples and picks each image's partner, and the mixing
functions take it as ``partner=(imgs, labels, confs)`` (entry i: image i's partner). The mask of
image i is always computed from image i's own label and its own seed or box.
"""

import torch

from .decode import IGNORE_INDEX

MIX_MODES = ("classmix", "cutmix", "cutout", "none")
# Partner of image i of rank r (local batch B, N ranks, global index g = r*B + i): local_next
# (i+1) mod B of the rank's own batch (as single-GPU); global_next (g+1) mod N*B of all ranks'
# images; prcl_rank0 (g+1) mod B of all ranks' images (the released DDP code: every image of
# ranks > 0 mixes with one of rank 0's). The same at world size 1.
MIX_PARTNERS = ("local_next", "global_next", "prcl_rank0")


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


def partner_index(how, rank, world, B):
    """Where each of rank ``rank``'s B images finds its partner in the gathered batch (every
    rank's B images in rank order, world*B): an int64 tensor [B] (see MIX_PARTNERS)."""
    if how not in MIX_PARTNERS:
        raise ValueError(f"unknown mix partner {how!r}; expected one of {list(MIX_PARTNERS)}")
    if not (isinstance(world, int) and isinstance(rank, int) and isinstance(B, int)
            and world >= 1 and 0 <= rank < world and B >= 1):
        raise ValueError(f"need 0 <= rank < world and B >= 1, got rank={rank!r}, world={world!r}, B={B!r}")
    i = torch.arange(B)
    g = rank * B + i
    if how == "local_next":
        return rank * B + (i + 1) % B
    if how == "global_next":
        return (g + 1) % (world * B)
    return (g + 1) % B  # prcl_rank0


def partner_triple(how, imgs, labels, confs, rank, world, gather):
    """The partners ``(imgs, labels, confs)`` of this rank's images for ``how`` in MIX_PARTNERS,
    or None for the rank's own batch rolled by one (local_next, and any mode at world size 1: no
    collective). ``gather(*tensors)`` returns every rank's tensors concatenated along dim 0 in rank
    order (``distributed.all_gather``); every rank calls it with tensors of the same shapes."""
    B = _check_batch(imgs, labels, confs)[0]
    index = partner_index(how, rank, world, B)
    if world == 1 or how == "local_next":
        return None
    present = [t for t in (imgs, labels, confs) if t is not None]
    gathered = list(gather(*present))
    if len(gathered) != len(present) or any(g.shape[0] != world * B for g in gathered):
        raise ValueError(f"gather must return {len(present)} tensors of {world * B} rows, got "
                         f"{[tuple(g.shape) for g in gathered]}")
    out = iter(g[index.to(g.device)] for g in gathered)
    return tuple(None if t is None else next(out) for t in (imgs, labels, confs))


def _check_partner(partner, imgs, labels, confs):
    if partner is None:
        return None
    if not isinstance(partner, (tuple, list)) or len(partner) != 3:
        raise ValueError("partner must be (imgs, labels, confs) of the partners, entry i image i's")
    for name, own, p in zip(("imgs", "labels", "confs"), (imgs, labels, confs), partner):
        if (own is None) != (p is None) or (own is not None and (tuple(p.shape) != tuple(own.shape)
                                                                 or p.dtype != own.dtype)):
            raise ValueError(f"partner {name} must match the batch's "
                             f"({None if own is None else (tuple(own.shape), own.dtype)}), got "
                             f"{None if p is None else (tuple(p.shape), p.dtype)}")
    return tuple(partner)


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


def _mix_with_mask(imgs, labels, confs, keep, partner=None):
    """keep: bool [B,H,W], True = image i's own pixel; partner: see the module docstring (None:
    the batch rolled by one)."""
    p_img, p_lab, p_conf = _check_partner(partner, imgs, labels, confs) or (
        _partner(imgs), _partner(labels), _partner(confs))
    k4 = keep.unsqueeze(1)
    out_img = torch.where(k4, imgs, p_img)
    out_lab = None if labels is None else torch.where(keep, labels, p_lab)
    out_conf = None if confs is None else torch.where(keep, confs, p_conf)
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


def classmix(imgs, labels, confs, seeds, ignore_is_class, partner=None):
    """ClassMix (§6): imgs [B,3,H,W], labels [B,H,W] (-1 ignore), confs [B,H,W] or None,
    seeds: B integers; partner: (imgs, labels, confs) of each image's partner, or None for
    (i+1) mod B. Returns (imgs, labels, confs, masks)."""
    B = _check_batch(imgs, labels, confs)[0]
    if labels is None:
        raise ValueError("classmix needs labels")
    _check_len("seeds", seeds, B)
    keep = torch.stack([classmix_mask(labels[i], seeds[i], ignore_is_class) for i in range(B)])
    return _mix_with_mask(imgs, labels, confs, keep, partner)


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


def cutmix(imgs, labels, confs, boxes, partner=None):
    """CutMix (§6): inside image i's box (top, left, h, w) the partner's pixels come in
    (partner as for classmix)."""
    B, H, W = _check_batch(imgs, labels, confs)
    keep = _box_keep(boxes, B, H, W, imgs.device)
    return _mix_with_mask(imgs, labels, confs, keep, partner)


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


def apply_mix(mode, imgs, labels, confs, params, ignore_is_class, partner=None):
    """Dispatch on ``mode`` in MIX_MODES; ``params`` is a list of per-image dicts:
    ``{seed}`` for classmix, ``{box: [top, left, h, w]}`` for cutmix/cutout, ignored for none;
    ``partner`` for classmix and cutmix (see classmix; cutout and none have none).
    Returns (imgs, labels, confs, masks)."""
    if mode not in MIX_MODES:
        raise ValueError(f"unknown mix mode {mode!r}; expected one of {list(MIX_MODES)}")
    B, H, W = _check_batch(imgs, labels, confs)
    if mode == "none":
        return imgs, labels, confs, torch.ones((B, H, W), dtype=imgs.dtype, device=imgs.device)
    _check_len("params", params, B)
    if mode == "classmix":
        seeds = [_param(params, i, "seed", mode) for i in range(B)]
        return classmix(imgs, labels, confs, seeds, ignore_is_class=ignore_is_class, partner=partner)
    boxes = [_param(params, i, "box", mode) for i in range(B)]
    if mode == "cutmix":
        return cutmix(imgs, labels, confs, boxes, partner=partner)
    return cutout(imgs, labels, confs, boxes)
