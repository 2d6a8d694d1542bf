"""Data parallelism of the student (DESIGN.md "Many workers"): DistributedDataParallel over the
student's whole pass, and synchronised BatchNorm.

* ``convert_sync_bn(module, device)``: every BatchNorm of ``module`` becomes a synchronised one,
  keeping its parameters and buffers (same objects, same state-dict keys). On CUDA that is
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``; on other devices ``SyncBatchNorm`` below,
  because torch 1.13's SyncBatchNorm refuses CPU tensors (gloo is the CPU backend).
* ``wrap(student_pass, device, broadcast_buffers)``: the DDP module, ``find_unused_parameters=True``
  (a labeled-only step does not use the uncertainty head; as released, prcl.py:L87).
"""

import torch
import torch.distributed as tdist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .. import distributed


class _SyncBatchNormFn(torch.autograd.Function):
    """Batch normalisation over every rank's batch: the forward gathers each rank's per-channel
    (mean, M2, count) and combines them exactly (Chan et al.; no E[x²] − E[x]² cancellation); the
    backward all-reduces Σdy and Σdy·x̂ so each rank's input gradient is that of the loss summed
    over ranks, as torch's SyncBatchNorm does. The weight's and bias's gradients are local (DDP
    averages them). Statistics and sums accumulate in float64, as torch's CPU BatchNorm does: the
    BatchNorm backward cancels large terms, and float32 sums would leave ~1e-5 relative noise in
    the gradients of small batches."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group, world):
        dims = [0] + list(range(2, x.dim()))
        c = x.shape[1]
        xd = x.double()
        count = x.numel() // c
        mean = xd.mean(dims)
        var = (xd - mean.view([1, c] + [1] * (x.dim() - 2))).pow(2).mean(dims)
        local = torch.cat([mean, var * count, xd.new_full((1,), float(count))])
        gathered = [torch.empty_like(local) for _ in range(world)]
        tdist.all_gather(gathered, local, group=group)
        stats = torch.stack(gathered)                                # [world, 2C + 1]
        means, m2s, counts = stats[:, :c], stats[:, c:2 * c], stats[:, 2 * c:]
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_m2 = (m2s + counts * (means - g_mean) ** 2).sum(0)
        invstd = torch.rsqrt(g_m2 / total + eps)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xd - g_mean.view(shape)) * invstd.view(shape)
        if weight is not None:
            y = y * weight.double().view(shape) + bias.double().view(shape)
        ctx.save_for_backward(x, g_mean, invstd, weight)
        ctx.total, ctx.group, ctx.dims = total, group, dims
        ctx.has_bias = bias is not None
        unbiased = (g_m2 / (total - 1).clamp(min=1)).to(x.dtype)
        g_mean = g_mean.to(x.dtype)
        ctx.mark_non_differentiable(g_mean, unbiased)
        return y.to(x.dtype), g_mean, unbiased

    @staticmethod
    def backward(ctx, dy, _dmean, _dvar):
        x, mean, invstd, weight = ctx.saved_tensors
        dims, c = ctx.dims, x.shape[1]
        shape = [1, c] + [1] * (x.dim() - 2)
        xhat = (x.double() - mean.view(shape)) * invstd.view(shape)
        dy = dy.double()
        sum_dy = dy.sum(dims)
        sum_dy_xhat = (dy * xhat).sum(dims)
        both = torch.cat([sum_dy, sum_dy_xhat])
        tdist.all_reduce(both, op=tdist.ReduceOp.SUM, group=ctx.group)
        g_sum_dy, g_sum_dy_xhat = both[:c] / ctx.total, both[c:] / ctx.total
        scale = invstd if weight is None else invstd * weight.double()
        dx = (dy - g_sum_dy.view(shape) - xhat * g_sum_dy_xhat.view(shape)) * scale.view(shape)
        d_weight = sum_dy_xhat.to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        d_bias = sum_dy.to(weight.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx.to(x.dtype), d_weight, d_bias, None, None, None


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose training-mode statistics span every rank of the group (any device, any
    backend with all_gather and all_reduce: gloo on CPU). Same parameters, buffers and running-
    statistics rules as torch.nn.BatchNorm (unbiased variance over the global count). In eval mode,
    or alone, it is a plain BatchNorm and runs no collective."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input):
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        batch_stats = self.training or self.running_mean is None
        group = self.process_group or tdist.group.WORLD
        world = tdist.get_world_size(group) if batch_stats and distributed.is_dist() else 1
        if not batch_stats or world == 1:
            return F.batch_norm(input, self.running_mean if not self.training or self.track_running_stats else None,
                                self.running_var if not self.training or self.track_running_stats else None,
                                self.weight, self.bias, batch_stats, factor, self.eps)
        y, mean, var = _SyncBatchNormFn.apply(input, self.weight, self.bias, self.eps, group, world)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.to(self.running_var.dtype), alpha=factor)
        return y


def convert_sync_bn(module, device):
    """``module`` with every BatchNorm synchronised across ranks (parameters and buffers kept)."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module):
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out


def wrap(student_pass, device, broadcast_buffers):
    """The student's pass under DistributedDataParallel (one process per device)."""
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(student_pass, device_ids=ids, output_device=ids[0] if ids else None,
                                   broadcast_buffers=broadcast_buffers, find_unused_parameters=True)
