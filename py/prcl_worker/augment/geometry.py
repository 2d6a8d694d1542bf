"""Rescale, pad, crop and flip of one (image, label, confidence) triple (prcl-method.md §5.1
steps 1-3 and 4c). Every random choice (scale, crop offsets, flip) is a parameter."""

import inspect
import math

import torch
import torch.nn.functional as F

from .decode import IGNORE_INDEX

_HAS_ANTIALIAS = "antialias" in inspect.signature(F.interpolate).parameters


def reflect_pad(x, left, right, top, bottom):
    """Reflect-pad the last two dims of ``x`` [..., H, W] (float) with NumPy's 'reflect'
    semantics for any pad size.

    ``F.pad(mode='reflect')`` needs each pad to be smaller than the dimension. The reference
    pads PIL images through torchvision, i.e. ``np.pad(mode='reflect')``, which accepts any pad
    and repeats the mirror image (period 2(n-1)). That case is common here, not an edge case:
    a 321 crop rescaled by 0.5 is 160 wide and needs 161 columns of padding. So we pad in
    rounds, each at most (current size - 1) per side; every full round ends on a mirror axis of
    the periodic extension, which makes the result equal to np.pad's. A dimension of size 1 has
    nothing to mirror: np.pad then repeats the single value, so we fall back to 'replicate'
    there (the only case where reflection is impossible).
    """
    pads = [int(left), int(right), int(top), int(bottom)]
    if min(pads) < 0:
        raise ValueError(f"negative padding {pads}")
    if not any(pads):
        return x
    shape = x.shape
    h, w = shape[-2], shape[-1]
    if h == 0 or w == 0:
        raise ValueError(f"cannot pad an empty image of size {h}x{w}")
    y = x.reshape(1, -1, h, w)
    l, r, t, b = pads
    while l or r or t or b:
        h, w = y.shape[-2], y.shape[-1]
        if w == 1 and (l or r):
            y = F.pad(y, (l, r, 0, 0), mode="replicate")
            l = r = 0
            continue
        if h == 1 and (t or b):
            y = F.pad(y, (0, 0, t, b), mode="replicate")
            t = b = 0
            continue
        step = (min(l, w - 1), min(r, w - 1), min(t, h - 1), min(b, h - 1))
        y = F.pad(y, step, mode="reflect")
        l, r, t, b = l - step[0], r - step[1], t - step[2], b - step[3]
    return y.reshape(shape[:-2] + y.shape[-2:])


def _resize_image(img, size):
    down = size[0] < img.shape[-2] or size[1] < img.shape[-1]
    kw = {"antialias": True} if (down and _HAS_ANTIALIAS) else {}
    return F.interpolate(img.unsqueeze(0), size=size, mode="bilinear", align_corners=False,
                         **kw)[0]


def _resize_nearest(x, size):
    y = F.interpolate(x.unsqueeze(0).unsqueeze(0).to(torch.float32 if not x.is_floating_point()
                                                     else x.dtype),
                      size=size, mode="nearest")[0, 0]
    return y.to(x.dtype)


def _check_triple(img, label, conf):
    if not isinstance(img, torch.Tensor) or img.dim() != 3:
        raise ValueError(f"image must be a tensor [C,H,W], got "
                         f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img)}")
    if not img.is_floating_point():
        raise ValueError(f"image must be floating point (normalised), got {img.dtype}")
    hw = tuple(img.shape[-2:])
    for name, t in (("label", label), ("conf", conf)):
        if t is not None and tuple(t.shape) != hw:
            raise ValueError(f"{name} shape {tuple(t.shape)} differs from image size {hw}")


# The largest rescaled image the worker allocates (before the crop): 128 megapixels, 1.5 GB as
# float32 RGB; Cityscapes at scale 2 is 8.
MAX_RESCALED_PIXELS = 128 * 2**20


def crop_params_valid(H, W, *, scale, top, left, crop_h, crop_w):
    """Return None if the crop fits the rescaled-and-padded size, else an error message."""
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        return f"scale must be a number, got {scale!r}"
    if not (math.isfinite(scale) and scale > 0):
        return f"scale must be finite and > 0, got {scale}"
    nh, nw = math.floor(H * scale), math.floor(W * scale)
    if nh < 1 or nw < 1:
        return f"scale {scale} shrinks the {H}x{W} image to {nh}x{nw}"
    if nh * nw > MAX_RESCALED_PIXELS:
        return (f"scale {scale} grows the {H}x{W} image to {nh}x{nw}, over the worker's limit of "
                f"{MAX_RESCALED_PIXELS} pixels")
    if crop_h < 1 or crop_w < 1:
        return f"crop size must be positive, got {crop_h}x{crop_w}"
    ph, pw = max(nh, crop_h), max(nw, crop_w)
    if top < 0 or left < 0 or top + crop_h > ph or left + crop_w > pw:
        return (f"crop (top={top}, left={left}, crop_h={crop_h}, crop_w={crop_w}) does not fit "
                f"the rescaled and padded size {ph}x{pw} (image {H}x{W}, scale {scale} → "
                f"{nh}x{nw}); need 0 <= top <= {ph - crop_h} and 0 <= left <= {pw - crop_w}")
    return None


def _as_int(name, v):
    if isinstance(v, bool) or int(v) != v:
        raise ValueError(f"{name} must be an integer, got {v!r}")
    return int(v)


def rescale_pad_crop(img, label=None, conf=None, *, scale, top, left, crop_h, crop_w):
    """§5.1 steps 1-3 for one image.

    img float [C,H,W] (normalised); label int [H,W] (-1 ignore) or None; conf float [H,W] or
    None. Resize to (floor(H*scale), floor(W*scale)) (image bilinear, align_corners False,
    antialiased when shrinking if torch supports it; label and conf nearest), pad right/bottom
    up to the crop (image reflect, label -1, conf 0), crop [top:top+crop_h, left:left+crop_w].
    Returns (img, label, conf); outputs may share memory with the inputs.
    """
    _check_triple(img, label, conf)
    top, left = _as_int("top", top), _as_int("left", left)
    crop_h, crop_w = _as_int("crop_h", crop_h), _as_int("crop_w", crop_w)
    H, W = img.shape[-2], img.shape[-1]
    err = crop_params_valid(H, W, scale=scale, top=top, left=left, crop_h=crop_h, crop_w=crop_w)
    if err is not None:
        raise ValueError(err)
    scale = float(scale)
    size = (math.floor(H * scale), math.floor(W * scale))
    if size != (H, W):
        img = _resize_image(img, size)
        if label is not None:
            label = _resize_nearest(label, size)
        if conf is not None:
            conf = _resize_nearest(conf, size)
    ph, pw = max(crop_h - size[0], 0), max(crop_w - size[1], 0)
    if ph or pw:
        img = reflect_pad(img, 0, pw, 0, ph)
        if label is not None:
            label = F.pad(label, (0, pw, 0, ph), mode="constant", value=IGNORE_INDEX)
        if conf is not None:
            conf = F.pad(conf, (0, pw, 0, ph), mode="constant", value=0)
    sl = (slice(top, top + crop_h), slice(left, left + crop_w))
    img = img[(slice(None),) + sl]
    if label is not None:
        label = label[sl]
    if conf is not None:
        conf = conf[sl]
    return img, label, conf


def hflip(img, label=None, conf=None):
    """Flip every given tensor along its last (width) dimension; None passes through."""
    flip = lambda t: None if t is None else torch.flip(t, dims=[-1])  # noqa: E731
    return flip(img), flip(label), flip(conf)
