"""prcl_worker.augment: deterministic tensor augmentations (prcl-method.md §4 steps 3-5, §5,
§6, Q-aug-*).

Every random choice arrives as an explicit parameter (or an integer seed) from the driver, so
the same parameters give the same pixels. Tensors stay on the input's device.

Per-image parameter dict for ``augment_one`` (all keys optional)::

    {"rescale": {"scale", "top", "left", "crop_h", "crop_w"},   # §5.1 steps 1-3
     "jitter":  {"brightness", "contrast", "saturation", "hue", "order"} | None,   # 4a
     "blur":    {"sigma"} | None,                                                  # 4b
     "flip":    bool}                                                              # 4c

Ops run in the reference order rescale → jitter → blur → flip (§5.1). Flip commutes with the
photometric ops (they are pointwise or use symmetric kernels / global means), so the order of
the last three does not change the result beyond rounding.
"""

import torch

from .decode import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    decode_batch,
    decode_image,
    decode_label,
    decode_pair,
    denormalize,
    normalize,
)
from .geometry import crop_params_valid, hflip, reflect_pad, rescale_pad_crop
from .mix import (
    MIX_MODES,
    MIX_PARTNERS,
    apply_mix,
    classmix,
    classmix_mask,
    cutmix,
    cutout,
    isin,
    partner_index,
    partner_triple,
    valid_box,
)
from .photometric import JITTER_OPS, color_jitter, gaussian_blur, gaussian_kernel1d, quantize_conf

__all__ = [
    "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "JITTER_OPS", "MIX_MODES", "MIX_PARTNERS",
    "apply_mix", "augment_batch", "augment_one", "classmix", "classmix_mask", "color_jitter",
    "crop_params_valid", "cutmix", "cutout", "decode_batch", "decode_image", "decode_label",
    "decode_pair", "denormalize", "gaussian_blur", "gaussian_kernel1d", "hflip", "isin",
    "normalize", "partner_index", "partner_triple", "quantize_conf", "reflect_pad",
    "rescale_pad_crop", "valid_box",
]

AUGMENT_KEYS = ("rescale", "flip", "jitter", "blur")
_RESCALE_KEYS = ("scale", "top", "left", "crop_h", "crop_w")
_JITTER_KEYS = ("brightness", "contrast", "saturation", "hue", "order")


def _sub(params, key, keys):
    d = params[key]
    if not isinstance(d, dict):
        raise ValueError(f"augment param '{key}' must be a dict with keys {list(keys)}, "
                         f"got {d!r}")
    missing = [k for k in keys if k not in d]
    extra = [k for k in d if k not in keys]
    if missing or extra:
        raise ValueError(f"augment param '{key}' must have exactly the keys {list(keys)}; "
                         f"missing {missing}, unknown {extra}")
    return d


def augment_one(img, label, conf, params):
    """Apply one image's augmentation parameters (see the module docstring).

    img float [3,H,W] normalised; label int [H,W] or None; conf float [H,W] or None.
    Photometric ops touch only the image; rescale and flip apply to all three.
    Returns (img, label, conf).
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"augment params must be a dict, got {type(params).__name__}")
    unknown = [k for k in params if k not in AUGMENT_KEYS]
    if unknown:
        raise ValueError(f"unknown augment params {unknown}; expected keys from "
                         f"{list(AUGMENT_KEYS)}")
    if params.get("rescale") is not None:
        r = _sub(params, "rescale", _RESCALE_KEYS)
        img, label, conf = rescale_pad_crop(img, label, conf, **r)
    if params.get("jitter") is not None:
        j = _sub(params, "jitter", _JITTER_KEYS)
        img = color_jitter(img, j["brightness"], j["contrast"], j["saturation"], j["hue"],
                           j["order"])
    if params.get("blur") is not None:
        b = _sub(params, "blur", ("sigma",))
        img = gaussian_blur(img, b["sigma"])
    flip = params.get("flip") or False
    if isinstance(flip, (str, float)) or flip not in (True, False):
        raise ValueError(f"augment param 'flip' must be a bool, got {flip!r}")
    if flip:
        img, label, conf = hflip(img, label, conf)
    return img, label, conf


def _per_image(name, x, B):
    if x is None:
        return [None] * B
    if isinstance(x, torch.Tensor):
        if x.shape[0] != B:
            raise ValueError(f"{name} has batch size {x.shape[0]}, images have {B}")
        return list(x.unbind(0))
    x = list(x)
    if len(x) != B:
        raise ValueError(f"{name} has {len(x)} entries, images have {B}")
    return x


def _stack(name, xs):
    present = [x is not None for x in xs]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(f"{name}: either every image has one or none does")
    sizes = sorted({tuple(x.shape) for x in xs})
    if len(sizes) != 1:
        raise ValueError(f"{name}: augmented outputs differ in size {sizes}; give every image "
                         f"the same crop size")
    return torch.stack(xs)


def augment_batch(imgs, labels, confs, params_list):
    """``augment_one`` per image and stack. imgs: [B,3,H,W] or a list of [3,H_i,W_i];
    labels/confs: matching tensor, list (entries may be None only if all are) or None.
    Returns (imgs [B,3,h,w], labels [B,h,w] | None, confs [B,h,w] | None)."""
    imgs = list(imgs.unbind(0)) if isinstance(imgs, torch.Tensor) else list(imgs)
    B = len(imgs)
    if B == 0:
        raise ValueError("augment_batch needs at least one image")
    labels = _per_image("labels", labels, B)
    confs = _per_image("confs", confs, B)
    params_list = _per_image("params_list", params_list, B) if params_list is not None \
        else [None] * B
    outs = [augment_one(imgs[i], labels[i], confs[i], params_list[i]) for i in range(B)]
    return (_stack("imgs", [o[0] for o in outs]), _stack("labels", [o[1] for o in outs]),
            _stack("confs", [o[2] for o in outs]))
