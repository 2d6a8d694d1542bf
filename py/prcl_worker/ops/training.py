"""Training ops: thin wrappers over the trainer, its step, evaluation and state (the work lives there)."""

import time

import torch

from ..errors import InvalidArgument, WireError
from . import register


class NotConfigured(WireError):
    type = "NotConfigured"


def _trainer(ctx):
    trainer = ctx.state.get("trainer")
    if trainer is None:
        raise NotConfigured("the worker is not configured: send configure first")
    return trainer


@register("configure")
def configure(ctx, body, tensors):
    from ..paths import PathPolicy
    from ..train.trainer import Trainer
    ctx.state.pop("trainer", None)
    ctx.state.pop("paths", None)
    policy = PathPolicy.from_args(body.get("paths"))
    pretrained = body["model"]["pretrained"]
    if pretrained is not None and policy is not None:
        # The resolved path is the one read: a symlink changed after the check cannot redirect it.
        checked = policy.check(pretrained["path"], "read", "model.pretrained")
        body = {**body, "model": {**body["model"], "pretrained": {**pretrained, "path": checked}}}
    trainer = Trainer(body, ctx.schemas, ctx.device)
    ctx.state["trainer"] = trainer
    ctx.state["paths"] = policy
    from ..inputs import set_data_root
    set_data_root(body.get("data_root"))
    net = trainer.net
    return {
        "parameters": sum(p.numel() for p in net.student.parameters()),
        "head_parameters": sum(p.numel() for p in net.head.parameters()),
        "outputs": list(ctx.schemas.model_outputs), "batch_tensors": list(ctx.schemas.batch_tensors),
        "device": str(trainer.device), "threads": trainer.threads,
    }


def prepare_train_inputs(body, tensors):
    from ..inputs import decode_inputs
    return decode_inputs(body, tensors)


@register("train_step", tensors="any", prepare=prepare_train_inputs)
def train_step(ctx, body, tensors):
    from ..train.step import train_step as step
    trainer = _trainer(ctx)
    start = time.perf_counter()
    # Decoded ahead in the pool when this request arrived during the previous step; the time here
    # is then only what the step still had to wait for.
    decoded = ctx.prepared(lambda: prepare_train_inputs(body, tensors))
    decode_ms = (time.perf_counter() - start) * 1000
    return step(trainer, body, tensors, decoded, ctx.prefetch, decode_ms, ctx.cancelled)


def _images(trainer, tensors, name="x"):
    x = tensors.get(name)
    if x is None or x.dtype != torch.float32 or x.ndim != 4:
        raise InvalidArgument(f"tensor '{name}' must be float32 [B,3,H,W]", f"tensors.{name}")
    return x.to(trainer.device)


def prepare_eval_inputs(body, tensors):
    from ..inputs import decode_pairs
    return decode_pairs(body, tensors, "img", "lbl")


@register("eval_step", tensors="any", prepare=prepare_eval_inputs)
def eval_step(ctx, body, tensors):
    from ..augment import normalize
    from ..evaluate import confusion, probabilities
    trainer = _trainer(ctx)
    start = time.perf_counter()
    pairs = ctx.prepared(lambda: prepare_eval_inputs(body, tensors))
    if pairs and body["mode"] == "crop":
        batches = [random_crops(pairs, body, trainer.device)]
    elif pairs:
        # Encoded images, each scored at its own size (as VOC is), same sizes in one forward.
        batches = [(normalize(torch.stack([pairs[k][0] for k in group]).to(trainer.device)),
                    torch.stack([pairs[k][1] for k in group]).to(trainer.device))
                   for group in same_size_groups([img for img, _ in pairs])]
    else:
        x = _images(trainer, tensors)
        y = tensors.get("y")
        if y is None or y.dtype != torch.int64 or y.shape != (x.shape[0],) + tuple(x.shape[2:]):
            raise InvalidArgument("tensor 'y' must be int64 [B,H,W] matching x", "tensors.y")
        batches = [(x, y.to(trainer.device))]
    if body["mode"] == "crop" and not pairs:
        raise InvalidArgument("mode 'crop' scores encoded images (img.<i>, lbl.<i>)", "mode")
    cm = None
    mode = "whole" if body["mode"] == "crop" else body["mode"]
    for x, y in batches:
        probs = probabilities(trainer, body["model"], x, mode, body.get("window"), body.get("stride"),
                              body.get("scales", [1.0]), body.get("flip", False))
        part = confusion(probs.argmax(1), y, trainer.num_classes)
        cm = part if cm is None else cm + part
    return ({"pixels": int(cm.sum()), "time_ms": (time.perf_counter() - start) * 1000},
            {"confusion": cm.cpu()})


def random_crops(pairs, body, device):
    """The released protocol (spec §11.1): each image and label padded up to the crop (image
    reflect, label ignore) and cropped where the driver drew: crop_at[i] = [u, v] in [0, 1) picks
    the top and left among the positions the padded image allows. Returns one batch (x, y)."""
    from ..augment import normalize
    from ..augment.geometry import rescale_pad_crop
    crop, at = body.get("crop"), body.get("crop_at")
    if crop is None or at is None or len(at) != len(pairs):
        raise InvalidArgument(f"mode 'crop' needs crop [h, w] and crop_at with one [u, v] per image ({len(pairs)})",
                              "crop_at")
    ch, cw = crop
    xs, ys = [], []
    for (img, lbl), (u, v) in zip(pairs, at):
        x = normalize(img.unsqueeze(0).to(device))[0]
        h, w = max(ch, x.shape[1]), max(cw, x.shape[2])
        top, left = min(int(u * (h - ch + 1)), h - ch), min(int(v * (w - cw + 1)), w - cw)
        x, y, _ = rescale_pad_crop(x, lbl.to(device), scale=1.0, top=top, left=left, crop_h=ch, crop_w=cw)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def same_size_groups(images):
    """Indices of the images [3,H,W] grouped by size, in order. Images of one size share a forward:
    in eval mode that changes nothing per image, and a batch of one small image sends dilated
    convolutions to torch's slow CPU kernel (`slow_conv_dilated2d`, ~5-10x slower)."""
    groups = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[1:]), []).append(i)
    return list(groups.values())


def prepare_predict_inputs(body, tensors):
    from ..inputs import decode_images
    return decode_images(tensors, "img")


@register("predict", tensors="any", prepare=prepare_predict_inputs)
def predict(ctx, body, tensors):
    from ..augment import normalize
    from ..evaluate import probabilities, variance_map
    trainer = _trainer(ctx)
    images = ctx.prepared(lambda: prepare_predict_inputs(body, tensors))
    if images:
        # Encoded images, each at its own size (same sizes in one forward); outputs named per image.
        out = {}
        for group in same_size_groups(images):
            x = normalize(torch.stack([images[i] for i in group]).to(trainer.device))
            probs = probabilities(trainer, body["model"], x)
            var = variance_map(trainer, body["model"], x) if "var" in body["outputs"] else None
            for j, i in enumerate(group):
                if "classes" in body["outputs"]:
                    out[f"classes.{i}"] = probs[j].argmax(0).to(torch.uint8)
                if "probs" in body["outputs"]:
                    out[f"probs.{i}"] = probs[j]
                if var is not None:
                    out[f"var.{i}"] = var[j, 0]
                if "image" in body["outputs"]:
                    out[f"image.{i}"] = images[i].permute(1, 2, 0).contiguous()  # as decoded: uint8 [H,W,3]
        return {"shape": [len(images)]}, out
    x = _images(trainer, tensors)
    out = {}
    probs = probabilities(trainer, body["model"], x)
    if "classes" in body["outputs"]:
        out["classes"] = probs.argmax(1)
    if "probs" in body["outputs"]:
        out["probs"] = probs
    if "var" in body["outputs"]:
        out["var"] = variance_map(trainer, body["model"], x)
    return {"shape": list(x.shape)}, out


def prepare_views_inputs(body, tensors):
    from ..inputs import decode_images
    return decode_images(tensors, "img_u")


@register("unlabeled_views", tensors="any", prepare=prepare_views_inputs)
def unlabeled_views(ctx, body, tensors):
    from ..train.views import unlabeled_views as views
    trainer = _trainer(ctx)
    return views(trainer, body, ctx.prepared(lambda: prepare_views_inputs(body, tensors)))


@register("save")
def save(ctx, body, tensors):
    from ..paths import check
    from ..state import save_state
    trainer = _trainer(ctx)
    from ..train.guard import assert_finite
    assert_finite(trainer)  # never a file of NaN/inf weights (issue 10): an error naming the tensor
    return {"path": body["path"], "bytes": save_state(trainer, check(ctx, body["path"], "write"))}


@register("load")
def load(ctx, body, tensors):
    from ..paths import check
    from ..state import load_state
    trainer = _trainer(ctx)
    path = check(ctx, body["path"], "read")
    try:
        step = load_state(trainer, path)
    except (FileNotFoundError, ValueError) as exc:
        raise InvalidArgument(str(exc), "path") from None
    return {"path": body["path"], "step": step}


@register("reset")
def reset(ctx, body, tensors):
    was = ctx.state.pop("trainer", None) is not None
    ctx.state.pop("paths", None)
    return {"was_configured": was}


@register("state_hash")
def state_hash(ctx, body, tensors):
    from ..state import network_hash
    net = _trainer(ctx).net
    return {"hashes": {name: network_hash(getattr(net, name)) for name in body["networks"]}}


@register("data_files")
def data_files(ctx, body, tensors):
    """The size of each named file under this rank's data root (-1: none): the driver compares them
    with its own before a run whose ranks read their own data."""
    from ..inputs import data_root, file_sizes
    _trainer(ctx)
    return {"root": data_root(), "sizes": file_sizes(body["files"])}


@register("align_buffers")
def align_buffers(ctx, body, tensors):
    """Every rank takes rank 0's BatchNorm buffers of the teacher, student and head (a collective:
    every rank of the group calls it). Without broadcast_buffers or SyncBN they drift apart between
    evaluations; evaluation deals the val images over the ranks, so each must score the same model."""
    from .. import distributed
    net = _trainer(ctx).net
    buffers = [b for m in (net.teacher, net.student, net.head) for b in m.buffers()]
    if distributed.world() > 1:
        distributed.broadcast_(buffers)
    return {"buffers": len(buffers), "bytes": sum(b.numel() * b.element_size() for b in buffers)}
