"""Student DeepLabV3+, its EMA teacher and the uncertainty head (prcl-method.md §2.6, §3, §9).

* ``student_forward(x_l, x_u)``: two separate student forwards (BN statistics per half, §4
  step 6), then the head once on cat(feat_l, feat_u) (its BN spans both halves).
* ``teacher_forward(x, mode)``: no-grad teacher logits; ``mode='train'`` (released, Q-ema-2:
  batch-statistics BN, running stats updated) or ``'eval'``. Each submodule's previous
  train/eval flag is restored afterwards.
* ``ema_update(decay, buffers)``: θ_T ← decay·θ_T + (1 − decay)·θ_S over parameters, with the
  decay the driver resolved for the step (its warm-up min(1 − 1/(t+1), α) included). Buffers
  (Q-ema-1): ``'own'`` (released: untouched), ``'copy'`` (student's copied), ``'ema'`` (float
  buffers averaged with the same decay, integer ones such as ``num_batches_tracked`` copied).
* ``param_groups(...)``: the main optimizer's groups (the whole student) and the head
  optimizer's groups (§9); with ``decay_norm_and_bias=False`` every parameter with ≤ 1
  dimension (BN weights/biases, conv biases, the head's gamma/beta) goes into a
  weight-decay-0 subgroup (Q-opt-1).
"""

import copy

import torch
import torch.nn as nn

from .deeplab import DeepLabV3Plus
from .uncertainty import UncertaintyHead

EMA_BUFFER_MODES = ("own", "copy", "ema")
TEACHER_MODES = ("train", "eval")
_HAS_FOREACH = hasattr(torch, "_foreach_mul_") and hasattr(torch, "_foreach_add_")


def _check_choice(key, value, choices):
    if value not in choices:
        raise ValueError(f"{key}: must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_decay(decay):
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
        raise ValueError(f"ema decay: must be a number in [0, 1], got {decay!r}")
    return float(decay)


class PrclNet(nn.Module):
    def __init__(self, num_classes, backbone, output_stride, rep_dim, width):
        super().__init__()
        self.student = DeepLabV3Plus(num_classes, backbone, output_stride, rep_dim, width)
        self.head = UncertaintyHead(self.student.feat_channels, self.student.rep_dim)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ forwards
    def student_forward(self, x_l, x_u):
        return _student_pass(self.student, self.head, x_l, x_u)

    forward = student_forward

    def student_pass(self):
        """The student's whole pass of a step as one module (what DistributedDataParallel wraps)."""
        return StudentPass(self.student, self.head)

    def teacher_forward(self, x, mode):
        _check_choice("teacher mode", mode, TEACHER_MODES)
        modules = list(self.teacher.modules())
        previous = [m.training for m in modules]
        try:
            self.teacher.train(mode == "train")
            with torch.no_grad():
                return self.teacher(x)["logits"]
        finally:
            for m, flag in zip(modules, previous):
                m.training = flag

    # ------------------------------------------------------------------ EMA
    @torch.no_grad()
    def ema_update(self, decay, buffers):
        """θ_T ← decay·θ_T + (1 − decay)·θ_S; the teacher's buffers as ``buffers`` names."""
        decay = _check_decay(decay)
        _check_choice("ema_buffers", buffers, EMA_BUFFER_MODES)
        t_params = list(self.teacher.parameters())
        s_params = [p.detach() for p in self.student.parameters()]
        _ema_(t_params, s_params, decay)
        if buffers == "own":
            return
        t_bufs, s_bufs = list(self.teacher.buffers()), list(self.student.buffers())
        if buffers == "copy":
            for tb, sb in zip(t_bufs, s_bufs):
                tb.copy_(sb)
            return
        pairs = [(tb, sb) for tb, sb in zip(t_bufs, s_bufs) if tb.is_floating_point()]
        if pairs:
            _ema_([tb for tb, _ in pairs], [sb for _, sb in pairs], decay)
        for tb, sb in zip(t_bufs, s_bufs):
            if not tb.is_floating_point():
                tb.copy_(sb)

    # ------------------------------------------------------------------ optimizers
    def param_groups(self, lr, head_lr, weight_decay, decay_norm_and_bias):
        """``(main_groups, head_groups)``: lists of SGD param-group dicts (with a ``name`` key)."""
        return (_groups("student", self.student, lr, weight_decay, decay_norm_and_bias),
                _groups("head", self.head, head_lr, weight_decay, decay_norm_and_bias))


def _student_pass(student, head, x_l, x_u):
    out_l = student(x_l)
    out_u = student(x_u)
    var = head(torch.cat([out_l["feat"], out_u["feat"]], dim=0))
    return {
        "logits_l": out_l["logits"],
        "logits_u": out_u["logits"],
        "rep": torch.cat([out_l["rep"], out_u["rep"]], dim=0),
        "logits_all": torch.cat([out_l["logits"], out_u["logits"]], dim=0),
        "var": var,
    }


class StudentPass(nn.Module):
    """A step's student pass in one forward: the student on x_l alone (a labeled-only step:
    ``{'logits_l'}``), or on x_l and x_u separately and the head on both (``student_forward``).

    DistributedDataParallel expects one forward per backward, so this is the module it wraps
    (it shares the student's and head's parameters). Outputs not named in ``keep`` (when given)
    are detached: with ``find_unused_parameters`` DDP reduces exactly the parameters reachable
    from the outputs, so an output no loss term reads (σ² without a PRCL term) must not reach
    its parameters, or DDP would wait for gradients that never come. Detaching what no term
    reads changes nothing else (its forward still runs, BatchNorm statistics included)."""

    def __init__(self, student, head):
        super().__init__()
        self.student = student
        self.head = head

    def forward(self, x_l, x_u=None, keep=None):
        if x_u is None:
            out = {"logits_l": self.student(x_l)["logits"]}
        else:
            out = _student_pass(self.student, self.head, x_l, x_u)
        if keep is not None:
            out = {k: v if k in keep else v.detach() for k, v in out.items()}
        return out


def _ema_(dst, src, decay):
    """dst ← decay·dst + (1 − decay)·src, in place."""
    if _HAS_FOREACH:
        torch._foreach_mul_(dst, decay)
        torch._foreach_add_(dst, src, alpha=1.0 - decay)
    else:  # pragma: no cover - old torch
        for d, s in zip(dst, src):
            d.mul_(decay).add_(s, alpha=1.0 - decay)


def _groups(name, module, lr, weight_decay, decay_norm_and_bias):
    params = [p for p in module.parameters() if p.requires_grad]
    if decay_norm_and_bias:
        return [{"params": params, "lr": lr, "weight_decay": weight_decay, "name": name}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": name}]
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": name + "_no_decay"})
    return groups
