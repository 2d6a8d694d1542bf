"""PRCL model: ResNet trunk, DeepLabV3+, uncertainty head, EMA teacher (prcl-method.md §2, §3, §9)."""

import numbers
import os

from .backbone import BACKBONES, OUTPUT_STRIDES, ResNetTrunk, nostride_dilate, torchvision_resnet
from .deeplab import ASPP, DeepLabV3Plus
from .prcl_net import EMA_BUFFER_MODES, PrclNet
from .uncertainty import UncertaintyHead, uncertainty_literal
from .weights import load_backbone_weights

__all__ = [
    "ASPP", "BACKBONES", "DeepLabV3Plus", "EMA_BUFFER_MODES", "OUTPUT_STRIDES", "PrclNet",
    "ResNetTrunk", "UncertaintyHead", "build_model", "load_backbone_weights", "nostride_dilate",
    "torchvision_resnet", "uncertainty_literal", "MODEL_DEFAULTS",
]

# Paper defaults for every optional key (num_classes is required).
MODEL_DEFAULTS = {
    "backbone": "resnet101",
    "output_stride": 16,
    "rep_dim": 256,
    "width": 1.0,
    "pretrained": None,
    "ema_alpha": 0.99,
    "ema_buffers": "own",
}


def _int(cfg, key, minimum=1):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{key}: must be an integer >= {minimum}, got {v!r}")
    return int(v)


def build_model(config):
    """Build a ``PrclNet`` from ``{num_classes, backbone, output_stride, rep_dim, width,
    pretrained, ema_alpha, ema_buffers}``; every key but ``num_classes`` is optional (paper
    defaults, ``MODEL_DEFAULTS``). Unknown keys and bad values raise ValueError naming the key.
    ``pretrained`` is a local path to a torchvision ImageNet state dict, or None."""
    if not isinstance(config, dict):
        raise ValueError(f"model config: must be a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - set(MODEL_DEFAULTS) - {"num_classes"})
    if unknown:
        raise ValueError(f"model config: unknown key(s) {', '.join(map(str, unknown))}")
    if "num_classes" not in config:
        raise ValueError("num_classes: required")
    cfg = dict(MODEL_DEFAULTS, **config)
    num_classes = _int(cfg, "num_classes")
    rep_dim = _int(cfg, "rep_dim")
    if cfg["backbone"] not in BACKBONES:
        raise ValueError(f"backbone: must be one of {', '.join(BACKBONES)}, got {cfg['backbone']!r}")
    os_ = cfg["output_stride"]
    if isinstance(os_, bool) or os_ not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride: must be 8 or 16, got {os_!r}")
    width = cfg["width"]
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not 0 < width <= 4:
        raise ValueError(f"width: must be a number in (0, 4], got {width!r}")
    if int(round(64 * width)) < 1:
        raise ValueError(f"width: {width!r} leaves the stem with no channels (need width >= 1/128)")
    pretrained = cfg["pretrained"]
    if pretrained is not None and not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(f"pretrained: must be a file path or null, got {pretrained!r}")
    alpha = cfg["ema_alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"ema_alpha: must be a number in [0, 1], got {alpha!r}")
    if cfg["ema_buffers"] not in EMA_BUFFER_MODES:
        raise ValueError(f"ema_buffers: must be one of {', '.join(EMA_BUFFER_MODES)}, "
                         f"got {cfg['ema_buffers']!r}")
    model = PrclNet(num_classes, cfg["backbone"], int(os_), rep_dim, float(width),
                    alpha=float(alpha), ema_buffers=cfg["ema_buffers"])
    if pretrained is not None:
        load_backbone_weights(model, pretrained)
    return model
