"""The optimisation (§9): SGD for the network and for the uncertainty head, learning rates set
every step, AMP (bf16, or fp16 with a grad scaler on CUDA) and gradient clipping."""

import torch

from ..errors import InvalidArgument


class Optimisation:
    def __init__(self, net, optim, amp, device):
        main, head = net.param_groups(0.0, 0.0, optim["weight_decay"], optim["decay_norm_and_bias"])
        self.opt = torch.optim.SGD(main, lr=0.0, momentum=optim["momentum"], nesterov=optim["nesterov"])
        self.opt_head = torch.optim.SGD(head, lr=0.0, momentum=optim["momentum"], nesterov=optim["nesterov"])
        if amp == "fp16" and device.type != "cuda":
            raise InvalidArgument("amp 'fp16' needs a CUDA device; use 'bf16' or 'none' on CPU", "amp")
        self.amp = amp
        self.device_type = device.type
        self.scaler = torch.cuda.amp.GradScaler() if amp == "fp16" else None
        self.grad_clip = optim["grad_clip"]

    def set_lr(self, lr, head_lr):
        for g in self.opt.param_groups:
            g["lr"] = lr
        for g in self.opt_head.param_groups:
            g["lr"] = head_lr

    def autocast(self):
        if self.amp == "none":
            return torch.autocast(self.device_type, enabled=False)
        return torch.autocast(self.device_type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16)

    def params(self):
        return [p for g in self.opt.param_groups + self.opt_head.param_groups for p in g["params"]]

    def backward(self, total):
        """Backward of `total` (scaled, then unscaled, under fp16): the gradients of both
        optimisers' parameters, clipped when configured; the gradient norm before clipping (None
        without clipping, NaN or inf when the gradients are not finite)."""
        self.opt.zero_grad(set_to_none=True)
        self.opt_head.zero_grad(set_to_none=True)
        grad_norm = None
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.opt)
            self.scaler.unscale_(self.opt_head)
        else:
            total.backward()
        if self.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params(), self.grad_clip))
        return grad_norm

    def apply(self, skip=False):
        """One step of both optimisers, or none with `skip` (the non-finite guard's decision; the
        gradients are then dropped). Under fp16 the grad scaler keeps its own rule: it skips a step
        whose unscaled gradients hold inf/NaN (the guard skips that step too, having seen the same
        gradients) and its update halves the scale after such a step, grows it after 2000 clean
        ones. Returns the scale after the update under fp16, else None."""
        if skip:
            self.opt.zero_grad(set_to_none=True)
            self.opt_head.zero_grad(set_to_none=True)
        if self.scaler is not None:
            if not skip:
                self.scaler.step(self.opt)
                self.scaler.step(self.opt_head)
            self.scaler.update()
            return float(self.scaler.get_scale())
        if not skip:
            self.opt.step()
            self.opt_head.step()
        return None

    def discard(self):
        """Drop this step's gradients: no optimiser step and, under fp16, no scale update."""
        self.opt.zero_grad(set_to_none=True)
        self.opt_head.zero_grad(set_to_none=True)

    def step(self, total):
        """Backward of `total` and one step of both optimisers, unguarded; the gradient norm before
        clipping (None without clipping)."""
        grad_norm = self.backward(total)
        self.apply()
        return grad_norm
