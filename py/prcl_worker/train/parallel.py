"""Data parallelism of the student (DESIGN.md "Many workers"): DistributedDataParallel over the
student's whole pass, and synchronised BatchNorm.

* ``convert_sync_bn(module, device)``: every BatchNorm of ``module`` becomes a synchronised one,
  keeping its parameters and buffers (same objects, same state-dict keys). On CUDA that is
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``; on other devices ``SyncBatchNorm`` below,
  because torch 1.13's SyncBatchNorm refuses CPU tensors (gloo is the CPU backend).
* ``local_batch_norm(module)``: a context in which ``module``'s synchronised BatchNorms use this
  rank's batch alone (for work one rank does while the others wait: pictures).
* ``wrap(student_pass, device, broadcast_buffers)``: the DDP module, ``find_unused_parameters=True``
  (a labeled-only step does not use the uncertainty head; as released, prcl.py:L87).

Every collective here is counted (distributed.count): DDP's gradient all-reduce through a
communication hook that counts each bucket and then averages it as DDP's built-in all-reduce does
(the same bits: tested at 2 and 3 ranks); DDP's buffer broadcast (broadcast_buffers) in a
subclass; this module's CPU SyncBatchNorm where it calls the collectives; torch's CUDA
SyncBatchNorm, which calls ``torch.distributed.all_gather*`` / ``all_reduce`` from Python, through
pass-through wrappers of those functions that count only calls made from torch's SyncBatchNorm
function (``count_torch_sync_bn``).
"""

import contextlib
import functools
import sys

import torch
import torch.distributed as tdist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

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
        distributed.count("sync_bn_forward", local)
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
        distributed.count("sync_bn_backward", both)
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
        count_torch_sync_bn()
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


@contextlib.contextmanager
def local_batch_norm(module):
    """Within the block, every synchronised BatchNorm of ``module`` (this module's or torch's) is a
    plain BatchNorm over this rank's batch: no collective, so one rank may run it alone."""
    synced = [m for m in module.modules() if isinstance(m, (SyncBatchNorm, nn.SyncBatchNorm))]
    for m in synced:
        m.forward = functools.partial(_BatchNorm.forward, m)
    try:
        yield
    finally:
        for m in synced:
            del m.forward


# torch's SyncBatchNorm autograd function lives here and calls torch.distributed from Python:
# all_gather (gloo), all_gather_into_tensor (torch 2.x) or _all_gather_base (1.13) in its forward,
# all_reduce in its backward. Argument position of the tensor this rank hands in.
_TORCH_SYNC_BN_MODULE = "torch.nn.modules._functions"
_TORCH_SYNC_BN_CALLS = {"all_gather": (1, "tensor", "sync_bn_forward"),
                        "all_gather_into_tensor": (1, "input_tensor", "sync_bn_forward"),
                        "_all_gather_base": (1, "input_tensor", "sync_bn_forward"),
                        "all_reduce": (0, "tensor", "sync_bn_backward")}


def _counting(fn, position, keyword, kind):
    @functools.wraps(fn)
    def counted(*args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__") == _TORCH_SYNC_BN_MODULE:
            tensor = args[position] if len(args) > position else kwargs.get(keyword)
            if isinstance(tensor, torch.Tensor):
                distributed.count(kind, tensor)
        return fn(*args, **kwargs)
    counted.prcl_counting = True
    return counted


def count_torch_sync_bn():
    """Count the collectives of torch's SyncBatchNorm (CUDA): wrap the torch.distributed functions
    it calls, once per process, so that calls made from its module are counted and every call,
    its own or anyone's, goes through unchanged."""
    for name, (position, keyword, kind) in _TORCH_SYNC_BN_CALLS.items():
        fn = getattr(tdist, name, None)
        if fn is not None and not getattr(fn, "prcl_counting", False):
            setattr(tdist, name, _counting(fn, position, keyword, kind))


def _counted_allreduce_hook(state, bucket):
    """DDP's communication hook: count the bucket, then average it over the ranks exactly as DDP's
    built-in path does: multiply by 1/N, then all-reduce the sum. (torch's reference
    ``default_hooks.allreduce_hook`` divides by N instead, which is the same bits when N is a
    power of 2 and up to one ulp apart otherwise: measured at 3 ranks, parameters 2e-7 apart
    after 3 steps.)"""
    buffer = bucket.buffer()
    distributed.count("ddp_gradients", buffer)
    group = state if state is not None else tdist.group.WORLD
    buffer.mul_(1.0 / tdist.get_world_size(group))
    return tdist.all_reduce(buffer, group=group, async_op=True).get_future().then(lambda fut: fut.value()[0])


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


class _CountedDDP(DistributedDataParallel):
    """DDP counting its broadcast of the module's buffers before a forward (broadcast_buffers;
    torch 1.13 and 2.x route it through this method). Its one broadcast of the module's
    parameters and buffers at construction (configure) goes through torch.distributed.utils and
    is not counted."""

    def _distributed_broadcast_coalesced(self, tensors, *args, **kwargs):
        distributed.count("ddp_buffers", *tensors)
        return super()._distributed_broadcast_coalesced(tensors, *args, **kwargs)


def wrap(student_pass, device, broadcast_buffers):
    """The student's pass under DistributedDataParallel (one process per device), its gradient
    all-reduce counted."""
    device = torch.device(device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    ddp = _CountedDDP(student_pass, device_ids=ids, output_device=ids[0] if ids else None,
                     broadcast_buffers=broadcast_buffers, find_unused_parameters=True)
    ddp.register_comm_hook(None, _counted_allreduce_hook)
    return ddp
