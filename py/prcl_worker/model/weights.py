"""Loading a local torchvision ImageNet checkpoint into the ResNet trunk. Never downloads.

The file must be a plain state_dict (name -> tensor): safetensors (nothing in it can run code), or
a torch file as torchvision publishes it, e.g. ``resnet101-63fe2227.pth``, read with
``weights_only=True`` after refusing TorchScript archives. ``fc.*`` entries are ignored. A checkpoint without BN
``num_batches_tracked`` entries (old torchvision files) is accepted; those counters load as 0.

From the driver the file comes with the sha256 it vetted: the bytes are read once, checked
against it, and parsed from memory, so a file swapped after the check is refused. A torch file
(pickle) that is not ``trusted`` (its sha256 pinned by the driver's catalog, or the user's word)
is refused on torch < 2.6, whose weights-only unpickler can be made to run code
(CVE-2025-32434); safetensors files need no trust.
"""

import hashlib
import io
import os
import re
from collections.abc import Mapping

import safetensors.torch
import torch

from .backbone import ResNetTrunk

_MAX_LISTED = 10


def torch_version():
    """(major, minor) of the running torch."""
    major, minor = (int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    return major, minor


def _read_bytes(path, sha256):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"backbone weights file {path}: cannot be read ({e.strerror or e})") from None
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise ValueError(f"backbone weights file {path}: sha256 {got}, but the driver checked a file with "
                             f"sha256 {sha256}; it changed in between and is not loaded")
    return data


def read_state_dict(path, sha256=None, trusted=True):
    """Read a plain state dict from ``path`` on the CPU: safetensors, or a torch file (weights only).
    ``sha256``: the digest the bytes must have; ``trusted``: a torch file may be read on torch < 2.6."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    data = _read_bytes(path, sha256)
    from ..state import is_safetensors, safe_torch_load
    safe_format = is_safetensors(path, data[:9])
    if not safe_format and not trusted and torch_version() < (2, 6):
        raise ValueError(
            f"backbone weights file {path} is a pickle-based torch file that prcl does not know by its sha256 "
            f"({hashlib.sha256(data).hexdigest()}), and torch {torch.__version__}'s weights-only loader can be made "
            "to run code (CVE-2025-32434, fixed in torch 2.6). Use the published file (prcl weights fetch), "
            "a safetensors copy, torch >= 2.6, or --trust-weights if you trust where it came from")
    try:
        if safe_format:
            obj = safetensors.torch.load(data)
        else:
            # weights_only (a foreign pickle never runs code here), TorchScript archives refused.
            obj = safe_torch_load(path, io.BytesIO(data))
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


def load_backbone_weights(model, path, sha256=None, trusted=True):
    """Load ``path`` into every trunk of ``model`` (PrclNet: student and teacher;
    DeepLabV3Plus; or a ResNetTrunk). Returns the list of keys loaded."""
    path = os.fspath(path)
    raw = read_state_dict(path, sha256, trusted)
    sd = {k: v for k, v in raw.items() if not k.startswith("fc.")}
    trunks = _trunks(model)
    check_state_dict(trunks[0], sd, path)
    for trunk in trunks:
        trunk.load_state_dict(dict(sd), strict=True)
    return sorted(sd)
