"""Evaluation and prediction with the teacher or the student (spec §11)."""

import torch
import torch.nn.functional as F

from .errors import InvalidArgument


def _network(trainer, which):
    return trainer.net.teacher if which == "teacher" else trainer.net.student


@torch.no_grad()
def probabilities(trainer, which, x, mode="whole", window=None, stride=None, scales=(1.0,), flip=False):
    """Softmax probabilities [B,C,H,W] at the input size; `sliding` averages overlapping windows.

    Test-time augmentation: the image is also scored rescaled by each of ``scales`` (bilinear)
    and, with ``flip``, mirrored; the probabilities, brought back to the input size and
    orientation, are averaged. ``scales=(1,)`` without flip is the plain protocol."""
    if mode == "sliding" and window is None:
        raise InvalidArgument("sliding evaluation needs window [h, w]", "window")
    net = _network(trainer, which)
    was_training = net.training
    net.eval()
    try:
        h, w = x.shape[2:]
        total, views = None, 0
        for s in scales:
            xs = x if s == 1 else F.interpolate(x, size=(max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))),
                                                mode="bilinear", align_corners=False)
            for mirrored in ((False, True) if flip else (False,)):
                p = _view(net, xs.flip(3) if mirrored else xs, mode, window, stride)
                if mirrored:
                    p = p.flip(3)
                if s != 1:
                    p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
                total = p if total is None else total + p
                views += 1
        return total if views == 1 else total / views
    finally:
        net.train(was_training)


def _view(net, x, mode, window, stride):
    if mode == "whole":
        return torch.softmax(_logits_at(net, x, x.shape[2:]), 1)
    # Sliding: windows of the (zero-padded) image, overlapping probabilities averaged.
    wh, ww = window
    sh, sw = stride or (max(1, wh * 2 // 3), max(1, ww * 2 // 3))
    b, _, h, w = x.shape
    ph, pw = max(0, wh - h), max(0, ww - w)
    xp = F.pad(x, (0, pw, 0, ph)) if ph or pw else x
    H, W = xp.shape[2:]
    acc = None
    count = torch.zeros(1, 1, H, W, device=x.device)
    tops = list(range(0, max(H - wh, 0) + 1, sh))
    lefts = list(range(0, max(W - ww, 0) + 1, sw))
    if tops[-1] + wh < H:
        tops.append(H - wh)
    if lefts[-1] + ww < W:
        lefts.append(W - ww)
    for top in tops:
        for left in lefts:
            p = torch.softmax(_logits_at(net, xp[:, :, top:top + wh, left:left + ww], (wh, ww)), 1)
            if acc is None:
                acc = torch.zeros(b, p.shape[1], H, W, device=x.device)
            acc[:, :, top:top + wh, left:left + ww] += p
            count[:, :, top:top + wh, left:left + ww] += 1
    return (acc / count)[:, :, :h, :w]


def _logits_at(net, x, size):
    logits = net(x)["logits"].float()
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def confusion(pred, target, num_classes):
    """[C,C] counts, rows = ground truth, over pixels with 0 <= target < C."""
    keep = (target >= 0) & (target < num_classes)
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


@torch.no_grad()
def variance_map(trainer, which, x):
    """Mean over dimensions of σ² from the uncertainty head, upsampled to the input size."""
    net = _network(trainer, which)
    was = (net.training, trainer.net.head.training)
    net.eval()
    trainer.net.head.eval()
    try:
        feat = net(x)["feat"]
        var = trainer.net.head(feat).float().mean(1, keepdim=True)
        return F.interpolate(var, size=x.shape[2:], mode="bilinear", align_corners=True)
    finally:
        net.train(was[0])
        trainer.net.head.train(was[1])
