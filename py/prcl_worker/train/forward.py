"""The student's forwards and what a loss term reads (§4 step 6): `model.<output>` and
`batch.<tensor>`, the names the driver declares (schemas/losses.json `refs`)."""

import torch
import torch.nn.functional as F

from ..losses.basic import wide
from .resize import down_nearest, up


def labeled_only(student_pass, x_l, y_l, autocast):
    """The student on labeled images alone: a supervised-only loss needs no teacher, no unlabeled
    batch and no uncertainty head, so a baseline costs what its loss uses. `student_pass` is the
    trainer's (model.prcl_net.StudentPass, under DDP at world size > 1)."""
    with autocast():
        out = student_pass(x_l)
    return {"logits_l": up(wide(out["logits_l"]), x_l.shape[2:])}, {"y_l": y_l}


def semi_supervised(student_pass, x_l, y_l, x_u, pseudo, conf, weak_threshold, num_classes, autocast, keep):
    """Two student forwards and the uncertainty head on both halves, in one call of `student_pass`
    (outputs outside `keep`, the model outputs the loss reads, come back detached); the PRCL pool's
    labels, mask (labeled pixels, and unlabeled ones at least `weak_threshold` confident) and
    probabilities at the representation's size."""
    with autocast():
        out = student_pass(x_l, x_u, keep=keep)
    h, w = out["rep"].shape[2:]
    model = {
        "logits_l": up(wide(out["logits_l"]), x_l.shape[2:]),
        "logits_u": up(wide(out["logits_u"]), x_u.shape[2:]),
        "rep": wide(out["rep"]), "var": wide(out["var"]), "logits_all": wide(out["logits_all"]),
    }
    with torch.no_grad():
        labels = torch.cat([y_l, pseudo], 0)
        onehot = F.one_hot(labels.clamp(min=0), num_classes).permute(0, 3, 1, 2).float()
        weak = torch.cat([(y_l >= 0), (conf >= weak_threshold) & (pseudo >= 0)], 0).float().unsqueeze(1)
        batch = {
            "y_l": y_l, "pseudo": pseudo, "conf": conf,
            "feat_label": down_nearest(onehot, (h, w)),
            "feat_mask": down_nearest(weak, (h, w)),
            "feat_prob": torch.softmax(model["logits_all"].detach(), 1),
        }
    return model, batch
