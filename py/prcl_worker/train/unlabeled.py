"""The unlabeled branch (§4 steps 2–5): the teacher pseudo-labels the raw crop, then the crop, its
pseudo-labels and confidences are re-cropped, mixed and photometrically augmented together."""

import torch

from .. import distributed
from ..errors import InvalidArgument
from ..losses.basic import wide
from .inputs import per_image
from .resize import up


def pseudo_label(net, x_u, policy, autocast):
    """(pseudo [B,H,W], conf [B,H,W]): the teacher's arg-max and its probability at the crop's size."""
    from .. import augment  # imported lazily: PIL and torchvision transforms are not needed before

    with autocast():
        t_logits = net.teacher_forward(x_u, policy["teacher_bn"])
    probs = torch.softmax(up(wide(t_logits), x_u.shape[2:]), 1)
    conf, pseudo = probs.max(1)
    if policy["conf_quantization"] == "uint8_trunc":
        conf = augment.quantize_conf(conf)
    return pseudo, conf


def augment_unlabeled(body, policy, x_u, pseudo, conf):
    """Re-crop (the `rescale` of unlabeled_aug), mix as the policy names, then the photometric rest.
    Under data parallelism a ClassMix/CutMix partner may be another rank's image (policy
    `mix_partner`, Q-aug-6): every rank's re-cropped triples are then gathered (one all-gather per
    dtype; all ranks' crops have the same size), and each rank keeps its own images mixed."""
    from .. import augment

    u_aug = per_image(body.get("unlabeled_aug") or [], x_u, "unlabeled_aug")
    if u_aug:
        geo = [{"rescale": a["rescale"]} if "rescale" in a else {} for a in u_aug]
        x_u, pseudo, conf = augment.augment_batch(x_u, pseudo, conf, geo)
    if policy["mix"] != "none":
        mix = body.get("mix") or []
        if len(mix) != x_u.shape[0]:
            raise InvalidArgument(f"mix '{policy['mix']}' needs {x_u.shape[0]} entries in mix, got {len(mix)}", "mix")
        partner = None
        if policy["mix"] in ("classmix", "cutmix"):
            partner = augment.partner_triple(policy["mix_partner"], x_u, pseudo, conf, distributed.rank(),
                                             distributed.world(), distributed.all_gather)
        x_u, pseudo, conf, _ = augment.apply_mix(policy["mix"], x_u, pseudo, conf, mix,
                                                 ignore_is_class=policy["classmix_ignore_is_class"],
                                                 partner=partner)
    if u_aug:
        photo = [{k: v for k, v in a.items() if k != "rescale"} for a in u_aug]
        x_u, pseudo, conf = augment.augment_batch(x_u, pseudo, conf, photo)
    return x_u, pseudo, conf
