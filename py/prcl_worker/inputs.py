"""A train_step's images: encoded bytes decoded on the host (in the prepare pool), or raw tensors.

Encoded inputs travel as uint8 tensors named `img_l.<i>` (JPEG/PNG), `lbl_l.<i>` (PNG label) and
`img_u.<i>`; raw ones as `x_l` [B,3,H,W] float32 (normalised), `y_l` [B,H,W] int64 (-1 ignore)
and `x_u`. Decoding is plain CPU work that releases the GIL, so it runs while the previous step
computes; everything after decoding runs on the worker's device.
"""

import re

import torch

from .errors import InvalidArgument

_NAME = re.compile(r"^(img_l|lbl_l|img_u)\.(\d+)$")


def _indexed(tensors):
    groups = {"img_l": {}, "lbl_l": {}, "img_u": {}}
    for name, t in tensors.items():
        m = _NAME.match(name)
        if m:
            if t.dtype != torch.uint8 or t.ndim != 1:
                raise InvalidArgument(f"tensor '{name}' must hold encoded bytes (uint8, 1-d)", f"tensors.{name}")
            groups[m.group(1)][int(m.group(2))] = t
    out = {}
    for key, items in groups.items():
        if sorted(items) != list(range(len(items))):
            raise InvalidArgument(f"{key}.<i> tensors must be numbered 0..{len(items) - 1}, got {sorted(items)}",
                                  "tensors")
        out[key] = [items[i] for i in range(len(items))]
    return out


def decode_inputs(body, tensors):
    """{'img_l': [uint8 [3,H,W]], 'lbl_l': [int64 [H,W]], 'img_u': [...]} decoded on the host."""
    from .augment import decode_image, decode_label

    groups = _indexed(tensors)
    if len(groups["lbl_l"]) != len(groups["img_l"]):
        raise InvalidArgument(f"{len(groups['img_l'])} labeled images but {len(groups['lbl_l'])} labels", "tensors")
    lut = body.get("label_lut")
    lut_t = torch.tensor(lut, dtype=torch.uint8) if lut else None
    pin = torch.cuda.is_available()

    def host(t):
        return t.pin_memory() if pin else t

    def decode(fn, t, name, i, **kw):
        try:
            return host(fn(t.numpy().tobytes() if not t.is_contiguous() else memoryview(t.numpy()), **kw))
        except ValueError as exc:
            raise InvalidArgument(f"{name}.{i}: {exc}", f"tensors.{name}.{i}") from None

    return {
        "img_l": [decode(decode_image, t, "img_l", i) for i, t in enumerate(groups["img_l"])],
        "lbl_l": [decode(decode_label, t, "lbl_l", i, lut=lut_t) for i, t in enumerate(groups["lbl_l"])],
        "img_u": [decode(decode_image, t, "img_u", i) for i, t in enumerate(groups["img_u"])],
    }
