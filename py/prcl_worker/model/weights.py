"""Loading a local torchvision ImageNet checkpoint into the ResNet trunk. Never downloads.

The file must be a plain state_dict (name → tensor): safetensors (nothing in it can run code), or
a torch file as torchvision publishes it, e.g. ``resnet101-63fe2227.pth``, read with
``weights_only=True`` after refusing TorchScript archives. ``fc.*`` entries are ignored. A checkpoint without BN
``num_batches_tracked`` entries (old torchvision files) is accepted; those counters load as 0.
"""

import os
from collections.abc import Mapping

import safetensors.torch
import torch

from .backbone import ResNetTrunk

_MAX_LISTED = 10


def read_state_dict(path):
    """Read a plain state dict from ``path`` on the CPU: safetensors, or a torch file (weights only)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    from ..state import is_safetensors, safe_torch_load
    try:
        if is_safetensors(path):
            obj = safetensors.torch.load_file(path, device="cpu")
        else:
            # weights_only (a foreign pickle never runs code here), TorchScript archives refused.
            obj = safe_torch_load(path)
    except Exception as e:
        raise ValueError(f"backbone weights file {path}: cannot be read as a torch state dict "
                         f"({type(e).__name__}: {e})") from e
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"backbone weights file {path}: expected a plain state dict "
                         f"(parameter name -> tensor), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"backbone weights file {path}: expected a plain state dict "
                         f"(parameter name -> tensor); non-tensor entries: "
                         f"{', '.join(map(str, bad[:_MAX_LISTED]))}")
    return obj


def _trunks(model):
    if isinstance(model, ResNetTrunk):
        return [model]
    if hasattr(model, "student"):  # PrclNet
        return [model.student.backbone, model.teacher.backbone]
    if isinstance(getattr(model, "backbone", None), ResNetTrunk):  # DeepLabV3Plus
        return [model.backbone]
    raise TypeError(f"load_backbone_weights: no ResNet trunk in {type(model).__name__}")


def _shape(t):
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_state_dict(trunk, sd, path):
    """Raise ValueError naming ``path`` and the first mismatching keys (with shapes)."""
    expected = trunk.state_dict()
    problems = []
    for k, v in expected.items():
        if k not in sd:
            if not k.endswith("num_batches_tracked"):
                problems.append(f"missing {k} {_shape(v)}")
        elif tuple(sd[k].shape) != tuple(v.shape):
            problems.append(f"shape {k}: checkpoint {_shape(sd[k])} vs model {_shape(v)}")
    for k, v in sd.items():
        if k not in expected:
            problems.append(f"unexpected {k} {_shape(v)}")
    if problems:
        more = len(problems) - _MAX_LISTED
        listed = "; ".join(problems[:_MAX_LISTED]) + (f"; ... and {more} more" if more > 0 else "")
        raise ValueError(f"backbone weights file {path} does not match the {trunk.name} trunk "
                         f"(width {trunk.width:g}): {len(problems)} mismatching key(s): {listed}")


def load_backbone_weights(model, path):
    """Load ``path`` into every trunk of ``model`` (PrclNet: student and teacher;
    DeepLabV3Plus; or a ResNetTrunk). Returns the list of keys loaded."""
    path = os.fspath(path)
    raw = read_state_dict(path)
    sd = {k: v for k, v in raw.items() if not k.startswith("fc.")}
    trunks = _trunks(model)
    check_state_dict(trunks[0], sd, path)
    for trunk in trunks:
        trunk.load_state_dict(dict(sd), strict=True)
    return sorted(sd)
