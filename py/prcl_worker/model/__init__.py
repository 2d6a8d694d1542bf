"""PRCL model: ResNet trunk, DeepLabV3+, uncertainty head, EMA teacher (prcl-method.md §2, §3, §9)."""

import numbers
import os

from .backbone import BACKBONES, OUTPUT_STRIDES, ResNetTrunk, nostride_dilate, torchvision_resnet
from .deeplab import ASPP, DeepLabV3Plus
from .prcl_net import EMA_BUFFER_MODES, PrclNet
from .uncertainty import UncertaintyHead, uncertainty_literal
from .weights import load_backbone_weights

__all__ = [
    "ASPP", "BACKBONES", "DeepLabV3Plus", "EMA_BUFFER_MODES", "MODEL_KEYS", "OUTPUT_STRIDES", "PrclNet",
    "ResNetTrunk", "UncertaintyHead", "build_model", "load_backbone_weights", "nostride_dilate",
    "torchvision_resnet", "uncertainty_literal",
]

# Every key of a model configuration; each one is required (the driver resolves them all).
MODEL_KEYS = ("num_classes", "backbone", "output_stride", "rep_dim", "width", "pretrained")


def _int(cfg, key, minimum=1):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{key}: must be an integer >= {minimum}, got {v!r}")
    return int(v)


def build_model(config):
    """Build a ``PrclNet`` from ``{num_classes, backbone, output_stride, rep_dim, width,
    pretrained}``, every key required. Missing or unknown keys and bad values raise ValueError
    naming the key. ``pretrained``: a local torchvision ImageNet state dict, as a path or as the driver sends it
    ({path, sha256, trusted}, model/weights.py), or None."""
    if not isinstance(config, dict):
        raise ValueError(f"model config: must be a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"model config: unknown key(s) {', '.join(map(str, unknown))}")
    missing = [k for k in MODEL_KEYS if k not in config]
    if missing:
        raise ValueError(f"{', '.join(missing)}: required")
    num_classes = _int(config, "num_classes")
    rep_dim = _int(config, "rep_dim")
    if config["backbone"] not in BACKBONES:
        raise ValueError(f"backbone: must be one of {', '.join(BACKBONES)}, got {config['backbone']!r}")
    os_ = config["output_stride"]
    if isinstance(os_, bool) or os_ not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride: must be 8 or 16, got {os_!r}")
    width = config["width"]
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not 0 < width <= 4:
        raise ValueError(f"width: must be a number in (0, 4], got {width!r}")
    if int(round(64 * width)) < 1:
        raise ValueError(f"width: {width!r} leaves the stem with no channels (need width >= 1/128)")
    pretrained = config["pretrained"]
    if isinstance(pretrained, (str, os.PathLike)):  # a caller's own file (Python API): trusted
        pretrained = {"path": pretrained, "sha256": None, "trusted": True}
    fields = {"path", "sha256", "trusted"}
    if pretrained is not None and not (isinstance(pretrained, dict) and set(pretrained) == fields):
        raise ValueError(f"pretrained: must be a file path, {{path, sha256, trusted}} or null, got {pretrained!r}")
    model = PrclNet(num_classes, config["backbone"], int(os_), rep_dim, float(width))
    if pretrained is not None:
        load_backbone_weights(model, pretrained["path"], pretrained["sha256"], bool(pretrained["trusted"]))
    return model
