"""Pseudo-label quality, for analysis only: when the driver sends the unlabeled images' ground
truth (`lbl_u.<i>`, cropped as their images are), the teacher's pseudo-labels are compared with it
before any mixing. Counts only (summed over ranks), from which the driver derives accuracy, mIoU,
and the coverage and accuracy above each threshold. The ground truth never enters the batch the
loss graph reads (and the driver's loss-spec check refuses any reference to it)."""

import torch

from .. import distributed

# The confidence thresholds at which coverage and accuracy are counted (the curves this field plots).
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def pseudo_quality(pseudo, conf, truth, num_classes):
    """Counts over the pixels whose ground truth is a class (not ignore, -1):

    * pixels, correct: all of them, and those whose pseudo-label is right;
    * confident[t], confident_correct[t]: those whose confidence is ≥ THRESHOLDS[t], and right;
    * confusion: num_classes × num_classes, ground truth (rows) by pseudo-label (columns)."""
    with torch.no_grad():
        valid = truth >= 0
        gt = truth[valid]
        pl = pseudo[valid]
        c = conf[valid].float()
        right = pl == gt
        thr = torch.tensor(THRESHOLDS, device=c.device)
        above = c.unsqueeze(0) >= thr.unsqueeze(1)  # [T, N]
        confusion = torch.bincount(gt * num_classes + pl, minlength=num_classes * num_classes)
        packed = torch.cat([
            torch.stack([valid.sum(), right.sum()]).long(),
            above.sum(1).long(), (above & right.unsqueeze(0)).sum(1).long(), confusion.long(),
        ])
        if distributed.world() > 1:
            packed = distributed.all_reduce_sum(packed, kind="analysis")
        out = packed.tolist()
    t = len(THRESHOLDS)
    return {
        "pixels": out[0], "correct": out[1], "thresholds": list(THRESHOLDS),
        "confident": out[2:2 + t], "confident_correct": out[2 + t:2 + 2 * t], "confusion": out[2 + 2 * t:],
    }
