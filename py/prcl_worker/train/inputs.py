"""A step's images on the device: x_l, y_l (labeled, augmented) and x_u (the unlabeled loader
crop, or None for a labeled-only step), from decoded bytes or raw tensors, with their checks."""

import torch

from ..errors import InvalidArgument


def step_inputs(body, tensors, decoded, device, num_classes, channels_last, dtype=torch.float32):
    """`dtype` is the network's: float32, or float64 in a process whose default dtype is double
    (the data-parallel equivalence test runs so, where float32 rounding would flip ReLUs)."""
    x_l, y_l = labeled(body, tensors, decoded, device, num_classes)
    x_u, truth_u = unlabeled(body, tensors, decoded, device)
    if x_l.dtype != dtype:
        x_l = x_l.to(dtype)
        x_u = None if x_u is None else x_u.to(dtype)
    if channels_last:
        x_l = x_l.contiguous(memory_format=torch.channels_last)
        x_u = None if x_u is None else x_u.contiguous(memory_format=torch.channels_last)
    return x_l, y_l, x_u, truth_u


def labeled(body, tensors, decoded, device, num_classes):
    from .. import augment  # imported lazily: PIL and torchvision transforms are not needed before

    if decoded["img_l"]:
        imgs = [augment.normalize(t.to(device, non_blocking=True)) for t in decoded["img_l"]]
        lbls = [t.to(device, non_blocking=True) for t in decoded["lbl_l"]]
        # Sizes were checked when decoding; the class range needs the configured model.
        for i, lbl in enumerate(lbls):
            bad = (lbl >= num_classes) | (lbl < -1)
            if bool(bad.any()):
                value = int(lbl[bad][0])
                raise InvalidArgument(f"label lbl_l.{i} holds the value {value}, outside 0..{num_classes - 1} "
                                      f"(255 = ignore)", f"tensors.lbl_l.{i}")
        aug = per_image(body.get("labeled_aug") or [{}] * len(imgs), imgs, "labeled_aug")
        x_l, y_l, _ = augment.augment_batch(imgs, lbls, None, aug)
        return x_l, y_l
    x_l = _tensor(tensors, "x_l", torch.float32, 4, device)
    y_l = _tensor(tensors, "y_l", torch.int64, 3, device)
    if x_l.shape[0] != y_l.shape[0] or x_l.shape[2:] != y_l.shape[1:]:
        raise InvalidArgument(f"x_l {list(x_l.shape)} and y_l {list(y_l.shape)} do not match", "tensors.y_l")
    lo, hi = torch.aminmax(y_l) if hasattr(torch, "aminmax") else (y_l.min(), y_l.max())
    if int(hi) >= num_classes or int(lo) < -1:
        raise InvalidArgument(f"y_l holds labels outside -1..{num_classes - 1}", "tensors.y_l")
    if body.get("labeled_aug"):
        x_l, y_l, _ = augment.augment_batch(x_l, y_l, None, per_image(body["labeled_aug"], x_l, "labeled_aug"))
    return x_l, y_l


def unlabeled(body, tensors, decoded, device):
    """(the unlabeled crop the teacher sees, its ground truth cropped alike when the request carries
    one for analysis, else None), or (None, None) when the request carries no unlabeled images."""
    from .. import augment

    if decoded["img_u"]:
        imgs = [augment.normalize(t.to(device, non_blocking=True)) for t in decoded["img_u"]]
        truth = [t.to(device, non_blocking=True) for t in decoded["lbl_u"]] if decoded.get("lbl_u") else None
        crop = per_image(body.get("unlabeled_crop") or [{}] * len(imgs), imgs, "unlabeled_crop")
        x_u, truth_u, _ = augment.augment_batch(imgs, truth, None, crop)
        return x_u, truth_u
    if "x_u" not in tensors:
        return None, None
    x_u = _tensor(tensors, "x_u", torch.float32, 4, device)
    if body.get("unlabeled_crop"):
        x_u = augment.augment_batch(x_u, None, None, per_image(body["unlabeled_crop"], x_u, "unlabeled_crop"))[0]
    return x_u, None


def per_image(params, x, name):
    """`params` (one entry per image of x, or empty), refused when the counts differ."""
    n = len(x) if isinstance(x, list) else x.shape[0]
    if params and len(params) != n:
        raise InvalidArgument(f"{name} has {len(params)} entries for {n} images", name)
    return params


def _tensor(tensors, name, dtype, ndim, device):
    t = tensors.get(name)
    if t is None:
        raise InvalidArgument(f"train_step needs tensor '{name}'", f"tensors.{name}")
    if t.dtype != dtype or t.ndim != ndim:
        raise InvalidArgument(f"tensor '{name}' must be {dtype} with {ndim} dims, got {t.dtype} {list(t.shape)}",
                              f"tensors.{name}")
    return t.to(device, non_blocking=True)
