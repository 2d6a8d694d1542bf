"""What the unlabeled branch does to a few images, for pictures (op `unlabeled_views`): the crop
the teacher sees (the weak view), its pseudo-labels and confidence, the mixed and photometrically
augmented input the student is trained on, its mixed label, and the student's σ² on it.

Nothing of the run changes: no gradient, every buffer the forwards touch (train-mode BatchNorm)
put back, the torch RNG restored, and the mixing partner taken from these images only. No
collective, so one rank can draw it while the others wait: a synchronised teacher normalises over
these images alone."""

import torch

from ..augment import IGNORE_INDEX, augment_batch, denormalize, normalize
from ..errors import InvalidArgument
from ..evaluate import variance_map
from . import guard, parallel
from .inputs import per_image
from .unlabeled import augment_unlabeled, pseudo_label


def _uint8_image(x):
    return (denormalize(x.float()).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu()


def _uint8_label(y):
    return torch.where(y == IGNORE_INDEX, torch.full_like(y, 255), y).to(torch.uint8).cpu()


def unlabeled_views(tr, body, images):
    if not images:
        raise InvalidArgument("unlabeled_views needs encoded images img_u.<i>", "tensors")
    policy = dict(body["policy"], mix_partner="local_next")
    buffers = guard.BufferSnapshot(tr.net)
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        with torch.no_grad():
            imgs = [normalize(t.to(tr.device)) for t in images]
            crop = per_image(body.get("unlabeled_crop") or [{}] * len(imgs), imgs, "unlabeled_crop")
            x_u = augment_batch(imgs, None, None, crop)[0].to(tr.dtype)
            with parallel.local_batch_norm(tr.net.teacher):
                pseudo, conf = pseudo_label(tr.net, x_u, policy, tr.optim.autocast)
            x_m, label_m, _ = augment_unlabeled(body, policy, x_u, pseudo, conf)
            var = variance_map(tr, "student", x_m)
    finally:
        buffers.restore()
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    out = {}
    for i in range(x_u.shape[0]):
        out[f"weak.{i}"] = _uint8_image(x_u[i])
        out[f"pseudo.{i}"] = _uint8_label(pseudo[i])
        out[f"conf.{i}"] = conf[i].float().cpu()
        out[f"mixed.{i}"] = _uint8_image(x_m[i])
        out[f"mixed_label.{i}"] = _uint8_label(label_m[i])
        out[f"var.{i}"] = var[i, 0].float().cpu()
    return {"count": x_u.shape[0]}, out
