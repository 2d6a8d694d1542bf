"""The uncertainty head: per-pixel diagonal variance σ² of the representation (prcl-method.md §2.4).

Per pixel (a 1×1 linear map over channels):
x · normalize_rows(fc1)ᵀ → BN1 (affine) → ReLU → x · normalize_rows(fc2)ᵀ → BN2 (no affine)
→ gamma·x + beta → logaddexp(x, ln 1e-6) → sigmoid = σ² ∈ (≈1e-6, 1).

The released code names the output log σ² but uses it as σ² (Q-loss-9); here it is σ².
Step 6 is ``logaddexp(x, ln 1e-6)`` instead of the released ``log(exp(x) + 1e-6)`` (Q-loss-8):
equal in value, but it neither overflows (x ≳ 88 in fp32) nor produces NaN gradients.
``gamma``/``beta`` have shape (1,) as in the released checkpoint layout.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_EPS = math.log(1e-6)


class UncertaintyHead(nn.Module):
    def __init__(self, in_ch=304, dim=256):
        super().__init__()
        self.in_ch, self.dim = int(in_ch), int(dim)
        self.fc1 = nn.Parameter(torch.empty(self.dim, self.in_ch))
        self.bn1 = nn.BatchNorm2d(self.dim, affine=True)
        self.fc2 = nn.Parameter(torch.empty(self.dim, self.dim))
        self.bn2 = nn.BatchNorm2d(self.dim, affine=False)
        self.gamma = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(1))
        nn.init.kaiming_normal_(self.fc1)  # fan-in (dim 1), gain sqrt(2)
        nn.init.kaiming_normal_(self.fc2)

    @staticmethod
    def _pixel_linear(x, w):
        # x [B,Cin,h,w], w [Cout,Cin] with L2-normalised rows: a 1×1 conv, no bias.
        w = F.normalize(w, dim=-1)
        return F.conv2d(x, w[:, :, None, None])

    def pre_activation(self, x):
        """Steps 1–5: the value that goes into the log/sigmoid."""
        x = F.relu(self.bn1(self._pixel_linear(x, self.fc1)))
        x = self.bn2(self._pixel_linear(x, self.fc2))
        return self.gamma * x + self.beta

    def forward(self, x):
        z = self.pre_activation(x)
        z = torch.logaddexp(z, torch.tensor(LOG_EPS, dtype=z.dtype, device=z.device))
        return torch.sigmoid(z)


def uncertainty_literal(x, head):
    """The released step 6 verbatim, ``sigmoid(log(exp(z) + 1e-6))`` — for tests only
    (overflows to inf for z ≳ 88 in fp32; its gradient is then NaN)."""
    z = head.pre_activation(x)
    return torch.sigmoid(torch.log(torch.exp(z) + 1e-6))
