"""The student's forwards and what a loss term reads (§4 step 6): `model.<output>` and
`batch.<tensor>`, the names the driver declares (schemas/losses.json `refs`)."""

import torch
import torch.nn.functional as F

from .resize import down_nearest, up


def labeled_only(net, x_l, y_l, autocast):
    """The student on labeled images alone: a supervised-only loss needs no teacher, no unlabeled
    batch and no uncertainty head, so a baseline costs what its loss uses."""
    with autocast():
        out = net.student(x_l)
    return {"logits_l": up(out["logits"].float(), x_l.shape[2:])}, {"y_l": y_l}


def semi_supervised(net, x_l, y_l, x_u, pseudo, conf, weak_threshold, num_classes, autocast):
    """Two student forwards and the uncertainty head on both halves; the PRCL pool's labels, mask
    (labeled pixels, and unlabeled ones at least `weak_threshold` confident) and probabilities at
    the representation's size."""
    with autocast():
        out = net.student_forward(x_l, x_u)
    h, w = out["rep"].shape[2:]
    model = {
        "logits_l": up(out["logits_l"].float(), x_l.shape[2:]),
        "logits_u": up(out["logits_u"].float(), x_u.shape[2:]),
        "rep": out["rep"].float(), "var": out["var"].float(), "logits_all": out["logits_all"].float(),
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
