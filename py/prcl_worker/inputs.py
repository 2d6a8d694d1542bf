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


def decode_pairs(body, tensors, image_prefix, label_prefix):
    """[(uint8 [3,H,W], int64 [H,W])] from `<image_prefix>.<i>` / `<label_prefix>.<i>` tensors."""
    from .augment import decode_image, decode_label

    pattern = re.compile(rf"^({image_prefix}|{label_prefix})\.(\d+)$")
    found = {image_prefix: {}, label_prefix: {}}
    for name, t in tensors.items():
        m = pattern.match(name)
        if m:
            found[m.group(1)][int(m.group(2))] = t
    if not found[image_prefix]:
        return []
    n = len(found[image_prefix])
    if sorted(found[image_prefix]) != list(range(n)) or sorted(found[label_prefix]) != list(range(n)):
        raise InvalidArgument(f"{image_prefix}.<i> and {label_prefix}.<i> must both be numbered 0..{n - 1}", "tensors")
    lut = body.get("label_lut")
    lut_t = torch.tensor(lut, dtype=torch.uint8) if lut else None
    out = []
    for i in range(n):
        try:
            img = decode_image(memoryview(found[image_prefix][i].numpy()))
        except ValueError as exc:
            raise InvalidArgument(f"{image_prefix}.{i}: {exc}", f"tensors.{image_prefix}.{i}") from None
        try:
            lbl = decode_label(memoryview(found[label_prefix][i].numpy()), lut=lut_t)
        except ValueError as exc:
            raise InvalidArgument(f"{label_prefix}.{i}: {exc}", f"tensors.{label_prefix}.{i}") from None
        if tuple(lbl.shape) != tuple(img.shape[1:]):
            raise InvalidArgument(f"{label_prefix}.{i} is {list(lbl.shape)} but its image is {list(img.shape[1:])}",
                                  f"tensors.{label_prefix}.{i}")
        out.append((img, lbl))
    return out


def decode_images(tensors, prefix):
    """[uint8 [3,H,W]] from `<prefix>.<i>` tensors, in index order (empty when there are none)."""
    from .augment import decode_image

    pattern = re.compile(rf"^{prefix}\.(\d+)$")
    found = {int(m.group(1)): t for name, t in tensors.items() if (m := pattern.match(name))}
    if sorted(found) != list(range(len(found))):
        raise InvalidArgument(f"{prefix}.<i> tensors must be numbered 0..{len(found) - 1}", "tensors")
    out = []
    for i in range(len(found)):
        try:
            out.append(decode_image(memoryview(found[i].numpy())))
        except ValueError as exc:
            raise InvalidArgument(f"{prefix}.{i}: {exc}", f"tensors.{prefix}.{i}") from None
    return out
