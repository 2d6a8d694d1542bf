"""Colour jitter, Gaussian blur and confidence quantisation (prcl-method.md §5.1 steps 4a-4b,
§5.4, Q-aug-1). Images are ImageNet-normalised float tensors [3,H,W] (a leading batch dim also
works); label and confidence maps are never touched here."""

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from .decode import denormalize, normalize
from .geometry import reflect_pad

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def _check_order(order):
    if isinstance(order, torch.Tensor):
        order = order.tolist()
    try:
        order = [int(o) for o in order]
    except (TypeError, ValueError):
        raise ValueError(f"jitter order must be a permutation of [0,1,2,3], got {order!r}") \
            from None
    if sorted(order) != [0, 1, 2, 3]:
        raise ValueError(f"jitter order must be a permutation of [0,1,2,3], got {order}")
    return order


def _check_image(img, fn):
    if not isinstance(img, torch.Tensor) or img.dim() < 3 or img.shape[-3] != 3:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"{fn} expects an image [...,3,H,W], got {shape}")
    if not img.is_floating_point():
        raise ValueError(f"{fn} expects a floating-point (normalised) image, got {img.dtype}")


def color_jitter(img, brightness, contrast, saturation, hue, order):
    """torchvision ColorJitter with given factors and op order (``fn_idx`` of
    ``ColorJitter.get_params``: 0 brightness, 1 contrast, 2 saturation, 3 hue).

    brightness/contrast/saturation: factors >= 0 (1 = identity); hue: shift in [-0.5, 0.5]
    (0 = identity). A factor of None skips that op. Works in [0,1] space: denormalise, clamp,
    adjust (each torchvision adjustment clamps to [0,1] itself), clamp, renormalise.
    """
    _check_image(img, "color_jitter")
    order = _check_order(order)
    for name, f in (("brightness", brightness), ("contrast", contrast),
                    ("saturation", saturation)):
        if f is not None and not (math.isfinite(float(f)) and float(f) >= 0):
            raise ValueError(f"{name} factor must be finite and >= 0, got {f}")
    if hue is not None and not (-0.5 <= float(hue) <= 0.5):
        raise ValueError(f"hue factor must be in [-0.5, 0.5], got {hue}")
    x = denormalize(img).clamp(0.0, 1.0)
    for i in order:
        if i == 0 and brightness is not None:
            x = TF.adjust_brightness(x, float(brightness))
        elif i == 1 and contrast is not None:
            x = TF.adjust_contrast(x, float(contrast))
        elif i == 2 and saturation is not None:
            x = TF.adjust_saturation(x, float(saturation))
        elif i == 3 and hue is not None:
            x = TF.adjust_hue(x, float(hue))
    return normalize(x.clamp(0.0, 1.0))


def gaussian_kernel1d(sigma, dtype=torch.float32, device=None):
    """Normalised 1-d Gaussian of std ``sigma`` with 2*ceil(3*sigma)+1 taps."""
    r = int(math.ceil(3.0 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(img, sigma):
    """Separable Gaussian blur with std ``sigma`` (PIL GaussianBlur's radius), kernel size
    2*ceil(3*sigma)+1, reflect padding; sigma 0 is the identity.

    The spec blurs the de-normalised image and renormalises. A per-channel affine map commutes
    with a convolution whose taps sum to 1 and with reflect padding, so blurring the normalised
    image directly gives the same result (up to rounding) without the two extra passes.
    """
    _check_image(img, "gaussian_blur")
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"blur sigma must be finite and >= 0, got {sigma}")
    if sigma == 0:
        return img
    k = gaussian_kernel1d(sigma, img.dtype, img.device)
    r = (k.numel() - 1) // 2
    shape = img.shape
    c = shape[-3]
    x = img.reshape((-1, c) + tuple(shape[-2:]))
    x = reflect_pad(x, r, r, r, r)
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x.reshape(shape)


def quantize_conf(conf):
    """The released code's 8-bit truncation of confidence maps: floor(255*c)/255 (§5.4,
    option ``conf_quantization='uint8_trunc'``). Computed in the input's dtype (float32 in the
    reference, where e.g. 0.7 → 178/255); idempotent."""
    if not conf.is_floating_point():
        raise ValueError(f"quantize_conf expects a floating-point map, got {conf.dtype}")
    return torch.floor(conf.clamp(0.0, 1.0) * 255.0) / 255.0
