"""One training step (§4), executing the driver's plan: every learning rate, loss weight and
param, threshold, augmentation parameter and the teacher's update arrive with the request."""

import time

import torch

from ..errors import InvalidArgument
from . import forward
from .inputs import step_inputs
from .runtime import ms_since, sync
from .unlabeled import augment_unlabeled, pseudo_label


def train_step(tr, body, tensors, decoded, prefetch, decode_ms):
    times = {"decode": decode_ms}
    t0 = time.perf_counter()
    x_l, y_l, x_u = step_inputs(body, tensors, decoded, tr.device, tr.num_classes, tr.channels_last)
    needing = tr.graph.needing_unlabeled() if x_u is None else []
    if needing:
        raise InvalidArgument(f"loss terms {needing} need unlabeled images, but the request has none "
                              f"(img_u.<i> or x_u)", "tensors.img_u")
    tr.graph.check_request(body["weights"], body["params"])
    tr.optim.set_lr(body["lr"], body["head_lr"])
    sync(tr.device)
    times["augment_l"] = ms_since(t0)

    policy = body["policy"]
    if x_u is None:
        times["teacher_augment_u"] = 0.0
        t = time.perf_counter()
        model, batch = forward.labeled_only(tr.net, x_l, y_l, tr.optim.autocast)
    else:
        t = time.perf_counter()
        pseudo, conf = pseudo_label(tr.net, x_u, policy, tr.optim.autocast)
        x_u, pseudo, conf = augment_unlabeled(body, policy, x_u, pseudo, conf)
        sync(tr.device)
        times["teacher_augment_u"] = ms_since(t)
        t = time.perf_counter()
        model, batch = forward.semi_supervised(tr.net, x_l, y_l, x_u, pseudo, conf, policy["weak_threshold"],
                                               tr.num_classes, tr.optim.autocast)
    # The next request has likely arrived by now: start decoding it while this one computes.
    prefetch()
    sync(tr.device)
    times["forward"] = ms_since(t)

    t = time.perf_counter()
    total, values, stats = tr.graph.run(model, batch, body["weights"], body["params"], tr.generator)
    sync(tr.device)
    times["loss"] = ms_since(t)

    t = time.perf_counter()
    grad_norm = tr.optim.step(total)
    tr.net.ema_update(body["ema"]["decay"], body["ema"]["buffers"])
    sync(tr.device)
    times["backward"] = ms_since(t)
    tr.step = body["step"]

    prcl_stats = next((v for v in stats.values() if "hard_pixels" in v), {})
    u_mask = batch["feat_mask"][y_l.shape[0]:] if "feat_mask" in batch else torch.zeros(0)
    times["total"] = ms_since(t0)
    return {
        "step": body["step"],
        "total": float(total.detach()),
        "losses": {n: {"value": float(v.detach()), "weight": float(body["weights"][n])} for n, v in values.items()},
        "stats": {
            "mask_ratio": float(u_mask.mean()) if u_mask.numel() else 0.0,
            "classes_present": int(prcl_stats.get("classes_present", 0)),
            "anchor_classes": int(prcl_stats.get("anchor_classes", 0)),
            "hard_pixels_per_class": (prcl_stats["hard_pixels"].tolist() if "hard_pixels" in prcl_stats
                                      else [0] * tr.num_classes),
            "grad_norm": grad_norm,
        },
        "time_ms": times,
    }
