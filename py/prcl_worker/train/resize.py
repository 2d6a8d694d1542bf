"""The two resizes of a step, as the released code does them."""

import torch.nn.functional as F


def up(x, size):
    """Bilinear upsampling with align_corners=True (§4)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def down_nearest(x, size):
    """PyTorch's legacy 'nearest' (§7.3): source index = floor(dst · in/out)."""
    return F.interpolate(x, size=size, mode="nearest")
