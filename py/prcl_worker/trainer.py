"""The training state of a configured worker and one semi-supervised step (spec §4).

Everything here executes decisions made by the driver: learning rates, loss weights, thresholds
and every augmentation parameter arrive with each request.
"""

import os
import time

import torch
import torch.nn.functional as F

from .graph import LossGraph
from .model import build_model
from .errors import InvalidArgument

from .names import BATCH_TENSORS, LABELED_ONLY, MODEL_OUTPUTS


def pick_threads(requested):
    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def up(x, size):
    """Bilinear upsampling with align_corners=True, as the released code does (§4)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def down_nearest(x, size):
    """PyTorch's legacy 'nearest' (§7.3): source index = floor(dst · in/out)."""
    return F.interpolate(x, size=size, mode="nearest")


class Trainer:
    def __init__(self, cfg, schemas, device):
        self.cfg = cfg
        self.device = torch.device(device)
        self.threads = pick_threads(cfg.get("threads"))
        torch.set_num_threads(self.threads)
        if cfg["deterministic"]:
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = True
        if cfg["teacher"]["bn_mode"] == "eval" and cfg["ema"]["buffers"] == "own":
            # The teacher's BatchNorm statistics only move through its own train-mode forwards:
            # in eval mode they would stay at their initial values (seen: mIoU collapsing to ~5%).
            raise InvalidArgument("teacher.bn_mode 'eval' needs ema.buffers 'copy' or 'ema': with 'own' the "
                                  "teacher's BatchNorm statistics never leave their initial values", "teacher.bn_mode")
        torch.manual_seed(cfg["seed"])
        m = cfg["model"]
        self.num_classes = m["num_classes"]
        self.net = build_model({
            "num_classes": m["num_classes"], "backbone": m["backbone"], "output_stride": m["output_stride"],
            "rep_dim": m["rep_dim"], "width": m["width"], "pretrained": m["pretrained"],
            "ema_alpha": cfg["ema"]["alpha"], "ema_buffers": cfg["ema"]["buffers"],
        }).to(self.device)
        if cfg["channels_last"]:
            self.net.to(memory_format=torch.channels_last)
        o = cfg["optim"]
        main, head = self.net.param_groups(0.0, 0.0, o["weight_decay"], o["decay_norm_and_bias"])
        self.opt = torch.optim.SGD(main, lr=0.0, momentum=o["momentum"], nesterov=o["nesterov"])
        self.opt_head = torch.optim.SGD(head, lr=0.0, momentum=o["momentum"], nesterov=o["nesterov"])
        self.amp = cfg["amp"]
        if self.amp == "fp16" and self.device.type != "cuda":
            raise InvalidArgument("amp 'fp16' needs a CUDA device; use 'bf16' or 'none' on CPU", "amp")
        self.scaler = torch.cuda.amp.GradScaler() if self.amp == "fp16" else None
        # The generator for the loss's sampling; its state is saved with the worker's state.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg["seed"] + 1)
        self.graph = LossGraph(cfg["loss"], schemas, MODEL_OUTPUTS, BATCH_TENSORS)
        self.step = None

    # -- helpers ------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp == "none":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _tensor(self, tensors, name, dtype, ndim):
        t = tensors.get(name)
        if t is None:
            raise InvalidArgument(f"train_step needs tensor '{name}'", f"tensors.{name}")
        if t.dtype != dtype or t.ndim != ndim:
            raise InvalidArgument(f"tensor '{name}' must be {dtype} with {ndim} dims, got {t.dtype} {list(t.shape)}",
                                  f"tensors.{name}")
        return t.to(self.device, non_blocking=True)

    # -- the step -------------------------------------------------------------------------------

    def _images(self, body, tensors, decoded):
        """x_l, y_l, x_u on the device, labeled augmentation applied; from decoded bytes or raw tensors.
        x_u is None when the request carries no unlabeled images."""
        from . import augment

        if decoded["img_l"]:
            imgs = [augment.normalize(t.to(self.device, non_blocking=True)) for t in decoded["img_l"]]
            lbls = [t.to(self.device, non_blocking=True) for t in decoded["lbl_l"]]
            # Sizes were checked when decoding; the class range needs the configured model.
            for i, lbl in enumerate(lbls):
                bad = (lbl >= self.num_classes) | (lbl < -1)
                if bool(bad.any()):
                    value = int(lbl[bad][0])
                    raise InvalidArgument(f"label lbl_l.{i} holds the value {value}, outside 0..{self.num_classes - 1} "
                                          f"(255 = ignore)", f"tensors.lbl_l.{i}")
            x_l, y_l, _ = augment.augment_batch(imgs, lbls, None, self._per_image(body.get("labeled_aug") or [{}] * len(imgs), imgs, "labeled_aug"))
        else:
            x_l = self._tensor(tensors, "x_l", torch.float32, 4)
            y_l = self._tensor(tensors, "y_l", torch.int64, 3)
            if x_l.shape[0] != y_l.shape[0] or x_l.shape[2:] != y_l.shape[1:]:
                raise InvalidArgument(f"x_l {list(x_l.shape)} and y_l {list(y_l.shape)} do not match", "tensors.y_l")
            lo, hi = torch.aminmax(y_l) if hasattr(torch, "aminmax") else (y_l.min(), y_l.max())
            if int(hi) >= self.num_classes or int(lo) < -1:
                raise InvalidArgument(f"y_l holds labels outside -1..{self.num_classes - 1}", "tensors.y_l")
            if body.get("labeled_aug"):
                x_l, y_l, _ = augment.augment_batch(x_l, y_l, None, self._per_image(body["labeled_aug"], x_l, "labeled_aug"))
        if not decoded["img_u"] and "x_u" not in tensors:
            x_u = None  # a labeled-only step (see train_step)
        elif decoded["img_u"]:
            imgs = [augment.normalize(t.to(self.device, non_blocking=True)) for t in decoded["img_u"]]
            x_u, _, _ = augment.augment_batch(imgs, None, None, self._per_image(body.get("unlabeled_crop") or [{}] * len(imgs), imgs, "unlabeled_crop"))
        else:
            x_u = self._tensor(tensors, "x_u", torch.float32, 4)
            if body.get("unlabeled_crop"):
                x_u, _, _ = augment.augment_batch(x_u, None, None, self._per_image(body["unlabeled_crop"], x_u, "unlabeled_crop"))
        if self.cfg["channels_last"]:
            x_l = x_l.contiguous(memory_format=torch.channels_last)
            x_u = None if x_u is None else x_u.contiguous(memory_format=torch.channels_last)
        return x_l, y_l, x_u

    def train_step(self, body, tensors, decoded, prefetch=lambda: None, decode_ms=0.0):
        times = {"decode": decode_ms}
        t0 = time.perf_counter()
        x_l, y_l, x_u = self._images(body, tensors, decoded)
        for g in self.opt.param_groups:
            g["lr"] = body["lr"]
        for g in self.opt_head.param_groups:
            g["lr"] = body["head_lr"]
        self._sync()
        times["augment_l"] = (time.perf_counter() - t0) * 1000

        if x_u is None:
            model, batch = self._labeled_only(x_l, y_l, times, prefetch)
        else:
            model, batch = self._semi_supervised(body, x_l, y_l, x_u, times, prefetch)

        t3 = time.perf_counter()
        total, values, stats = self.graph.run(model, batch, body["weights"], body.get("params"), self.generator)
        self._sync()
        times["loss"] = (time.perf_counter() - t3) * 1000

        t4 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        self.opt_head.zero_grad(set_to_none=True)
        grad_norm = None
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.opt)
            self.scaler.unscale_(self.opt_head)
        else:
            total.backward()
        clip = self.cfg["optim"]["grad_clip"]
        if clip is not None:
            params = [p for g in self.opt.param_groups + self.opt_head.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.step(self.opt_head)
            self.scaler.update()
        else:
            self.opt.step()
            self.opt_head.step()
        # A teacher with its own BatchNorm statistics moves them only in its forwards on unlabeled
        # images; a labeled-only step has none, so the teacher follows the student's instead.
        labeled_only = x_u is None and self.net.ema_buffers == "own"
        decay = self.net.ema_update(buffers="ema" if labeled_only else None)
        self._sync()
        times["backward"] = (time.perf_counter() - t4) * 1000
        self.step = body["step"]

        prcl_stats = next((v for v in stats.values() if "hard_pixels" in v), {})
        u_mask = batch["feat_mask"][y_l.shape[0]:] if "feat_mask" in batch else torch.zeros(0)
        times["total"] = (time.perf_counter() - t0) * 1000
        return {
            "step": body["step"],
            "total": float(total.detach()),
            "losses": {n: {"value": float(v.detach()), "weight": float(body["weights"][n])} for n, v in values.items()},
            "stats": {
                "mask_ratio": float(u_mask.mean()) if u_mask.numel() else 0.0,
                "classes_present": int(prcl_stats.get("classes_present", 0)),
                "anchor_classes": int(prcl_stats.get("anchor_classes", 0)),
                "hard_pixels_per_class": (prcl_stats["hard_pixels"].tolist() if "hard_pixels" in prcl_stats
                                          else [0] * self.num_classes),
                "grad_norm": grad_norm,
                "ema_decay": float(decay),
            },
            "time_ms": times,
        }

    def _labeled_only(self, x_l, y_l, times, prefetch):
        """The student on labeled images alone: a supervised-only loss needs no teacher, no
        unlabeled batch and no uncertainty head, so a baseline costs what its loss uses."""
        needing = self.graph.terms_needing_more_than(LABELED_ONLY)
        if needing:
            raise InvalidArgument(f"loss terms {needing} need unlabeled images, but the request has none "
                                  f"(img_u.<i> or x_u)", "tensors.img_u")
        times["teacher_augment_u"] = 0.0
        t2 = time.perf_counter()
        with self._autocast():
            out = self.net.student(x_l)
        prefetch()
        self._sync()
        times["forward"] = (time.perf_counter() - t2) * 1000
        return {"logits_l": up(out["logits"].float(), x_l.shape[2:])}, {"y_l": y_l}

    def _semi_supervised(self, body, x_l, y_l, x_u, times, prefetch):
        from . import augment  # imported lazily: PIL and torchvision transforms are not needed before

        policy = body["policy"]
        # Teacher on the raw unlabeled crop → pseudo-labels and confidences (§4 step 2).
        t1 = time.perf_counter()
        with self._autocast():
            t_logits = self.net.teacher_forward(x_u, self.cfg["teacher"]["bn_mode"])
        probs = torch.softmax(up(t_logits.float(), x_u.shape[2:]), 1)
        conf, pseudo = probs.max(1)
        if policy["conf_quantization"] == "uint8_trunc":
            conf = augment.quantize_conf(conf)
        # Re-crop, mix, then photometric augmentation of the unlabeled triple (§4 steps 3–5).
        u_aug = self._per_image(body.get("unlabeled_aug") or [], x_u, "unlabeled_aug")
        if u_aug:
            geo = [{"rescale": a["rescale"]} if "rescale" in a else {} for a in u_aug]
            x_u, pseudo, conf = augment.augment_batch(x_u, pseudo, conf, geo)
        if policy["mix"] != "none":
            mix = body.get("mix") or []
            if len(mix) != x_u.shape[0]:
                raise InvalidArgument(f"mix '{policy['mix']}' needs {x_u.shape[0]} entries in mix, got {len(mix)}", "mix")
            if policy["mix"] == "classmix":
                x_u, pseudo, conf, _ = augment.classmix(x_u, pseudo, conf, [m.get("seed", 0) for m in mix],
                                                        ignore_is_class=policy["classmix_ignore_is_class"])
            else:
                x_u, pseudo, conf = augment.apply_mix(policy["mix"], x_u, pseudo, conf, mix)[:3]
        if u_aug:
            photo = [{k: v for k, v in a.items() if k != "rescale"} for a in u_aug]
            x_u, pseudo, conf = augment.augment_batch(x_u, pseudo, conf, photo)
        self._sync()
        times["teacher_augment_u"] = (time.perf_counter() - t1) * 1000

        # Student (two forwards) and the uncertainty head (§4 step 6).
        t2 = time.perf_counter()
        with self._autocast():
            out = self.net.student_forward(x_l, x_u)
        h, w = out["rep"].shape[2:]
        model = {
            "logits_l": up(out["logits_l"].float(), x_l.shape[2:]),
            "logits_u": up(out["logits_u"].float(), x_u.shape[2:]),
            "rep": out["rep"].float(), "var": out["var"].float(), "logits_all": out["logits_all"].float(),
        }
        with torch.no_grad():
            labels = torch.cat([y_l, pseudo], 0)
            onehot = F.one_hot(labels.clamp(min=0), self.num_classes).permute(0, 3, 1, 2).float()
            weak = torch.cat([(y_l >= 0), (conf >= policy["weak_threshold"]) & (pseudo >= 0)], 0).float().unsqueeze(1)
            batch = {
                "y_l": y_l, "pseudo": pseudo, "conf": conf,
                "feat_label": down_nearest(onehot, (h, w)),
                "feat_mask": down_nearest(weak, (h, w)),
                "feat_prob": torch.softmax(model["logits_all"].detach(), 1),
            }
        # The next request has likely arrived by now: start decoding it while this one computes.
        prefetch()
        self._sync()
        times["forward"] = (time.perf_counter() - t2) * 1000

        return model, batch

    def _per_image(self, params, x, name):
        n = len(x) if isinstance(x, list) else x.shape[0]
        if params and len(params) != n:
            raise InvalidArgument(f"{name} has {len(params)} entries for {n} images", name)
        return params
