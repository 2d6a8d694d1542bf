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

    def step(self, total):
        """Backward of `total` and one step of both optimisers; the gradient norm before clipping
        (None without clipping)."""
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
            params = [p for g in self.opt.param_groups + self.opt_head.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.step(self.opt_head)
            self.scaler.update()
        else:
            self.opt.step()
            self.opt_head.step()
        return grad_norm
