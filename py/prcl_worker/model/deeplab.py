"""DeepLabV3+ as PRCL uses it (prcl-method.md §2.2–2.3).

ResNet trunk → ASPP (5 branches, 256 ch each, no conv bias, BN+ReLU; concat → 1×1 → BN → ReLU,
no dropout) → upsample bilinear (align_corners=True) to the layer1 size → concat after the
projected low-level map (1×1 → 48, BN, ReLU) → ``feat`` (304 ch) → two heads of the same shape:
3×3 conv 304→256 (no bias) → BN → ReLU → 1×1 conv (bias) to C classes (``logits``) or to
``rep_dim`` (``rep``, μ, not normalised). All decoder layers keep PyTorch default init.

Width: ``width`` scales only the ResNet trunk. ASPP, low-level projection and heads keep the
paper's widths (256 / 48 / 256, so ``feat`` always has 304 channels); their input channels
follow the trunk (``trunk.high_channels`` into ASPP, ``trunk.low_channels`` into the projection).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import ResNetTrunk

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
ASPP_CHANNELS = 256
LOW_CHANNELS = 48
HEAD_CHANNELS = 256


def _conv_bn_relu(cin, cout, k, dilation=1):
    pad = 0 if k == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Module):
    """Global average pool → 1×1 conv → BN → ReLU → bilinear back (align_corners=False)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = _conv_bn_relu(cin, cout, 1)

    def forward(self, x):
        y = self.conv(self.pool(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin, rates=(6, 12, 18), cout=ASPP_CHANNELS):
        super().__init__()
        branches = [_conv_bn_relu(cin, cout, 1)]
        branches += [_conv_bn_relu(cin, cout, 3, dilation=r) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = _conv_bn_relu(cout * len(branches), cout, 1)

    def forward(self, x):
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))


def _head(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, HEAD_CHANNELS, 3, padding=1, bias=False),
        nn.BatchNorm2d(HEAD_CHANNELS),
        nn.ReLU(inplace=True),
        nn.Conv2d(HEAD_CHANNELS, cout, 1),
    )


class DeepLabV3Plus(nn.Module):
    """``forward(x)`` → ``{'logits': [B,C,h,w], 'rep': [B,rep_dim,h,w], 'feat': [B,304,h,w]}``
    with h×w the layer1 size (stride 4)."""

    OUTPUTS = ("logits", "rep", "feat")

    def __init__(self, num_classes, backbone="resnet101", output_stride=16, rep_dim=256, width=1.0):
        super().__init__()
        self.num_classes, self.rep_dim = int(num_classes), int(rep_dim)
        self.backbone = ResNetTrunk(backbone, output_stride=output_stride, width=width)
        self.aspp = ASPP(self.backbone.high_channels, ASPP_RATES[output_stride])
        self.project = _conv_bn_relu(self.backbone.low_channels, LOW_CHANNELS, 1)
        self.feat_channels = LOW_CHANNELS + ASPP_CHANNELS
        self.classifier = _head(self.feat_channels, self.num_classes)
        self.representation = _head(self.feat_channels, self.rep_dim)

    def forward(self, x):
        low, high = self.backbone(x)
        a = self.aspp(high)
        a = F.interpolate(a, size=low.shape[-2:], mode="bilinear", align_corners=True)
        feat = torch.cat([self.project(low), a], dim=1)
        return {"logits": self.classifier(feat), "rep": self.representation(feat), "feat": feat}
