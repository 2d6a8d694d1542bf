"""ResNet trunks (torchvision layout) with the PRCL output-stride rewrite (prcl-method.md §2.1).

A trunk is the torchvision ResNet without ``avgpool``/``fc``: ``conv1 bn1 relu maxpool layer1..4``
under the same attribute names, so its ``state_dict`` keys are those of a torchvision ImageNet
checkpoint minus ``fc.*``. ``forward`` returns ``(low, high)`` = (layer1 output, layer4 output);
``low_channels``/``high_channels`` give their channel counts.

* ``width == 1``: the network comes from torchvision's own builder (``resnet18/50/101``, v1.5:
  the stride of a Bottleneck sits on its 3×3 conv), built without weights.
* ``width != 1``: a reduced-width copy for tests and CPU demos. torchvision's ``BasicBlock`` /
  ``Bottleneck`` are reused and the layer construction of ``torchvision.models.ResNet``
  (``_make_layer`` and the weight init) is replicated, with every stage width multiplied by
  ``width`` (0.25 → ResNet-18 stages 16/32/64/128 and a 16-channel stem).

Output stride (the released ``_nostride_dilate`` rule, applied to every conv of a layer):

* a conv with stride 2 gets stride 1; if it is 3×3 it gets dilation = padding = d/2;
* every other 3×3 conv of the layer gets dilation = padding = d;
* OS16: layer4 with d = 2.  OS8: layer3 with d = 2 and layer4 with d = 4.

The rule is applied to BasicBlock trunks unchanged (a BasicBlock's conv1 is its strided 3×3).
"""

import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

# name -> (block, blocks per stage)
ARCHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}
BACKBONES = tuple(ARCHS)
OUTPUT_STRIDES = (8, 16)
# (layer name, d) pairs rewritten for each output stride
_DILATE = {16: (("layer4", 2),), 8: (("layer3", 2), ("layer4", 4))}


def torchvision_resnet(name):
    """An untrained torchvision ResNet; never downloads (``weights=None`` / ``pretrained=False``)."""
    if name not in ARCHS:
        raise ValueError(f"backbone: unknown ResNet {name!r} (expected one of {', '.join(BACKBONES)})")
    builder = getattr(torchvision.models, name)
    try:
        return builder(weights=None)  # torchvision >= 0.13
    except TypeError:
        return builder(pretrained=False)  # older torchvision


def stage_channels(width, base=64):
    """Per-stage 'planes' for a width factor: round(base·2^i·width), at least 1."""
    return tuple(max(1, int(round(base * (2 ** i) * width))) for i in range(4))


def nostride_dilate(layer, d):
    """Rewrite every conv of ``layer`` in place with the released stride/dilation rule."""
    for m in layer.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.stride == (2, 2):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation = (d // 2, d // 2)
                m.padding = (d // 2, d // 2)
        elif m.kernel_size == (3, 3):
            m.dilation = (d, d)
            m.padding = (d, d)


class ResNetTrunk(nn.Module):
    """conv1 → bn1 → relu → maxpool → layer1..4; forward returns (layer1 out, layer4 out)."""

    def __init__(self, name="resnet101", output_stride=16, width=1.0):
        super().__init__()
        if name not in ARCHS:
            raise ValueError(f"backbone: unknown ResNet {name!r} (expected one of {', '.join(BACKBONES)})")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride: must be 8 or 16, got {output_stride!r}")
        if not width > 0:
            raise ValueError(f"width: must be > 0, got {width!r}")
        block, layers = ARCHS[name]
        self.name, self.output_stride, self.width = name, output_stride, float(width)
        if float(width) == 1.0:
            net = torchvision_resnet(name)
            planes = stage_channels(1.0)
            for attr in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
                setattr(self, attr, getattr(net, attr))
        else:
            planes = stage_channels(width)
            self._build_reduced(block, layers, planes)
        self.low_channels = planes[0] * block.expansion
        self.high_channels = planes[3] * block.expansion
        for layer_name, d in _DILATE[output_stride]:
            nostride_dilate(getattr(self, layer_name), d)

    def _build_reduced(self, block, layers, planes):
        # Replicates torchvision.models.ResNet.__init__/_make_layer (groups 1, base width 64,
        # no replace_stride_with_dilation, zero_init_residual False) at reduced widths.
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        del self.inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        high = self.layer4(self.layer3(self.layer2(low)))
        return low, high
