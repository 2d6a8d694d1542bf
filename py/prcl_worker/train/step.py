"""One training step (§4), executing the driver's plan: every learning rate, loss weight and
param, threshold, augmentation parameter and the teacher's update arrive with the request."""

import time

import torch

from .. import distributed
from ..errors import Cancelled, InvalidArgument
from . import forward, guard
from .inputs import step_inputs
from .quality import pseudo_quality
from .runtime import ms_since, sync
from .unlabeled import augment_unlabeled, pseudo_label


def train_step(tr, body, tensors, decoded, prefetch, decode_ms, cancelled=lambda: False):
    times = {"decode": decode_ms}
    t0 = time.perf_counter()
    x_l, y_l, x_u, truth_u = step_inputs(body, tensors, decoded, tr.device, tr.num_classes, tr.channels_last, tr.dtype)
    needing = tr.graph.needing_unlabeled() if x_u is None else []
    if needing:
        raise InvalidArgument(f"loss terms {needing} need unlabeled images, but the request has none "
                              f"(img_u.<i> or x_u)", "tensors.img_u")
    tr.graph.check_request(body["weights"], body["params"])
    tr.optim.set_lr(body["lr"], body["head_lr"])
    # The step's own modes, whatever an earlier op left: the student and head train (batch
    # statistics, running statistics updated); the teacher's mode is the policy's (teacher_forward).
    tr.student_pass.train()
    sync(tr.device)
    times["augment_l"] = ms_since(t0)

    # Put back if the step is skipped: the forwards' BatchNorm statistics (student, head, teacher).
    buffers = guard.BufferSnapshot(tr.net)
    policy = body["policy"]
    quality = None
    if x_u is None:
        times["teacher_augment_u"] = 0.0
        t = time.perf_counter()
        model, batch = forward.labeled_only(tr.student_pass, x_l, y_l, tr.optim.autocast)
    else:
        t = time.perf_counter()
        pseudo, conf = pseudo_label(tr.net, x_u, policy, tr.optim.autocast)
        if truth_u is not None:
            quality = pseudo_quality(pseudo, conf, truth_u, tr.num_classes)
        x_u, pseudo, conf = augment_unlabeled(body, policy, x_u, pseudo, conf)
        sync(tr.device)
        times["teacher_augment_u"] = ms_since(t)
        t = time.perf_counter()
        model, batch = forward.semi_supervised(tr.student_pass, x_l, y_l, x_u, pseudo, conf,
                                               policy["weak_threshold"], tr.num_classes, tr.optim.autocast,
                                               tr.graph.model_refs())
    # The next request has likely arrived by now: start decoding it while this one computes.
    prefetch()
    sync(tr.device)
    times["forward"] = ms_since(t)

    t = time.perf_counter()
    total, values, stats = tr.graph.run(model, batch, body["weights"], body["params"], tr.generator,
                                        tr.prototype_reduce)
    total, values = guard.inject_test_nan(body["step"], tr.rank, total, values)  # test-only (guard.py)
    sync(tr.device)
    times["loss"] = ms_since(t)

    t = time.perf_counter()
    grad_norm = tr.optim.backward(total)
    # The non-finite guard: every rank decides the same (the flags are all-reduced). A skipped step
    # changes no parameter, optimiser state, teacher or BatchNorm statistic (fp16: see Optimisation.apply).
    bad = guard.non_finite(total, values, grad_norm, tr.optim.params(), cancelled=cancelled())
    if guard.CANCELLED in bad:
        # The driver gave up on this request (deadline): applying it would make a retry apply it twice.
        tr.optim.discard()
        buffers.restore()
        raise Cancelled(f"step {body['step']} was cancelled (its deadline passed) and was not applied")
    grad_scale = tr.optim.apply(skip=bool(bad))
    if bad:
        buffers.restore()
    else:
        tr.net.ema_update(body["ema"]["decay"], body["ema"]["buffers"])
        tr.sync_teacher_buffers()
    sync(tr.device)
    times["backward"] = ms_since(t)
    tr.step = body["step"]

    prcl_stats = next((v for v in stats.values() if "hard_pixels" in v), {})
    u_mask = batch["feat_mask"][y_l.shape[0]:] if "feat_mask" in batch else torch.zeros(0)
    mask_ratio = u_mask.mean() if u_mask.numel() else torch.zeros(())
    hard = prcl_stats["hard_pixels"] if "hard_pixels" in prcl_stats else torch.zeros(tr.num_classes)
    total_v, term_v, mask_ratio, hard, present, anchors = reduce_results(
        total, list(values.values()), mask_ratio, hard,
        prcl_stats.get("classes_present", 0), prcl_stats.get("anchor_classes", 0))
    times["total"] = ms_since(t0)
    return {
        "step": body["step"],
        "total": total_v,
        "losses": {n: {"value": v, "weight": float(body["weights"][n])} for n, v in zip(values, term_v)},
        "stats": {
            "mask_ratio": mask_ratio,
            "classes_present": present,
            "anchor_classes": anchors,
            "hard_pixels_per_class": hard,
            "grad_norm": grad_norm,
        },
        "time_ms": times,
        # Not applied (no optimiser step, no teacher update, BatchNorm statistics put back), and why.
        "skipped": bool(bad),
        "non_finite": bad,
        "grad_scale": grad_scale,
        # Against the unlabeled images' ground truth, when the driver sent it (analysis only).
        "pseudo_quality": quality,
    }


def reduce_results(total, values, mask_ratio, hard_pixels, classes_present, anchor_classes):
    """A step's numbers as Python values, the same on every rank (two small all-reduces at world
    size > 1, then the host reads them back):

    * the total, each term's value and mask_ratio: the mean over ranks (each rank's value is a mean
      over its own pixels, so this is the global mean when ranks hold as many valid pixels);
    * hard_pixels_per_class: the sum over ranks (anchor candidates of the whole global batch);
    * classes_present and anchor_classes: the maximum over ranks (integers; class presence is
      per rank, §7.10, and the maximum is the most any rank's PRCL term used).
    grad_norm needs no reduction: it is taken after DDP averaged the gradients."""
    world = distributed.world()
    means = torch.stack([total.detach().double().reshape(())]
                        + [v.detach().double().reshape(()).to(total.device) for v in values]
                        + [torch.as_tensor(mask_ratio, dtype=torch.float64, device=total.device).reshape(())])
    packed = torch.cat([means, hard_pixels.detach().to(total.device, torch.float64).reshape(-1)])
    counts = torch.stack([torch.as_tensor(classes_present, device=total.device).long().reshape(()),
                          torch.as_tensor(anchor_classes, device=total.device).long().reshape(())])
    if world > 1:
        packed = distributed.all_reduce_sum(packed)
        packed[: means.numel()] /= world
        counts = distributed.all_reduce_max(counts)
    out = packed.tolist()
    k = len(values)
    present, anchors = counts.tolist()
    return out[0], out[1:1 + k], out[1 + k], [int(round(h)) for h in out[2 + k:]], int(present), int(anchors)
