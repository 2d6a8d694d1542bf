"""Image and label decoding, ImageNet normalisation (prcl-method.md §5.1 step 5, §12.3).

All functions are pure and keep no shared state, so they can run in a
``concurrent.futures.ThreadPoolExecutor``: each call opens its own ``PIL.Image`` over its own
``BytesIO``, and PIL's decoders release the GIL while they work.
"""

import io

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = -1
_LABEL_MODES = ("P", "L")
# The largest image the worker decodes: read from the header before any pixel is allocated, so
# a small file that claims gigapixels (a PNG bomb) is refused at no cost. 64 megapixels and
# 16384 px a side hold every VOC and Cityscapes image many times over.
MAX_PIXELS = 64 * 2**20
MAX_SIDE = 16384


def _as_bytes(data):
    if isinstance(data, torch.Tensor):
        if data.dtype != torch.uint8 or data.dim() != 1:
            raise ValueError(
                f"encoded image tensor must be uint8 and 1-d, got {data.dtype} "
                f"with shape {tuple(data.shape)}")
        return data.detach().cpu().numpy().tobytes()
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, memoryview):
        return data.tobytes()
    raise ValueError(f"encoded image must be bytes, memoryview or a uint8 tensor, "
                     f"got {type(data).__name__}")


def _open(data):
    """Open and fully decode (``load``) an encoded image; PIL errors become ValueError."""
    buf = io.BytesIO(_as_bytes(data))
    try:
        img = Image.open(buf)  # reads the header only
    except Image.DecompressionBombError as e:  # PIL's own limit, above the worker's
        raise ValueError(f"image refused before decoding: {e}") from None
    except Exception as e:  # UnidentifiedImageError, ...
        raise ValueError(f"cannot decode image: {e}") from e
    w, h = img.size
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise ValueError(f"image of {w}x{h} pixels exceeds the worker's limit "
                         f"({MAX_SIDE} px a side, {MAX_PIXELS} pixels); refused before decoding")
    try:
        img.load()
    except Exception as e:  # UnidentifiedImageError, truncated files, bad chunks, ...
        raise ValueError(f"cannot decode image: {e}") from e
    return img


def decode_image(data):
    """Encoded JPEG/PNG → uint8 RGB tensor [3,H,W] (CPU)."""
    img = _open(data)
    try:
        arr = np.array(img.convert("RGB"), dtype=np.uint8)  # copy: writable, owns its memory
    except Exception as e:
        raise ValueError(f"cannot decode image: {e}") from e
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _check_lut(lut):
    if not isinstance(lut, torch.Tensor) or lut.shape != (256,):
        shape = tuple(lut.shape) if isinstance(lut, torch.Tensor) else type(lut).__name__
        raise ValueError(f"label lut must be a tensor of shape [256], got {shape}")
    if lut.is_floating_point() or lut.is_complex() or lut.dtype == torch.bool:
        raise ValueError(f"label lut must have an integer dtype, got {lut.dtype}")


def decode_label(data, lut=None):
    """Encoded palette ('P') or greyscale ('L') PNG → int64 label map [H,W] (CPU).

    The stored indices are used as they are (a palette image is never converted to RGB).
    ``lut`` (integer tensor [256], e.g. Cityscapes labelId → trainId, §12.3) is applied first,
    then 255 → -1 (ignore).
    """
    img = _open(data)
    if img.mode not in _LABEL_MODES:
        raise ValueError(
            f"label image must be a palette ('P') or greyscale ('L') image, got mode "
            f"'{img.mode}'")
    idx = torch.from_numpy(np.array(img, dtype=np.uint8)).long()
    if lut is not None:
        _check_lut(lut)
        idx = lut.detach().cpu().long()[idx]
    idx[idx == 255] = IGNORE_INDEX
    return idx


def decode_pair(image_bytes, label_bytes=None, lut=None):
    img = decode_image(image_bytes)
    if label_bytes is None:
        return img, None
    label = decode_label(label_bytes, lut=lut)
    if tuple(label.shape) != tuple(img.shape[-2:]):
        raise ValueError(f"label size {tuple(label.shape)} differs from image size "
                         f"{tuple(img.shape[-2:])}")
    return img, label


def decode_batch(items, pool=None, lut=None):
    """Decode a list of ``(image_bytes, label_bytes | None)``; returns a list of
    ``(uint8 [3,H,W], int64 [H,W] | None)`` in the same order.

    ``pool``: an optional ``concurrent.futures.Executor`` (threads recommended); the first
    error raised by any item propagates.
    """
    items = list(items)

    def one(item):
        try:
            image_bytes, label_bytes = item
        except (TypeError, ValueError):
            raise ValueError("decode_batch items must be (image_bytes, label_bytes | None) "
                             "pairs") from None
        return decode_pair(image_bytes, label_bytes, lut=lut)

    if pool is None:
        return [one(it) for it in items]
    return list(pool.map(one, items))


def _stats(ref):
    shape = (3, 1, 1)
    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=ref.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=dtype, device=ref.device).view(shape)
    return mean, std


def normalize(img):
    """uint8 image [...,3,H,W] in 0..255 → float32 ImageNet-normalised.

    A floating-point input is taken to be in [0,1] already and keeps its dtype.
    """
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f"normalize expects [...,3,H,W], got shape {tuple(img.shape)}")
    mean, std = _stats(img)
    if img.is_floating_point():
        x = img
    else:
        x = img.to(torch.float32) / 255.0
    return (x - mean) / std


def denormalize(img):
    """ImageNet-normalised float [...,3,H,W] → float in [0,1] (not clamped), same dtype."""
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f"denormalize expects [...,3,H,W], got shape {tuple(img.shape)}")
    if not img.is_floating_point():
        raise ValueError(f"denormalize expects a floating-point image, got {img.dtype}")
    mean, std = _stats(img)
    return img * std + mean
