"""Encoded images in a request, decoded on the host (in the prepare pool), for every op that takes
them: train_step (`img_l.<i>`, `lbl_l.<i>`, `img_u.<i>`), eval_step (`img.<i>`, `lbl.<i>`) and
predict (`img.<i>`). Each travels as a uint8 1-d tensor of JPEG/PNG bytes. Raw tensors (`x_l`, `y_l`,
`x_u`, `x`, `y`) are the alternative and are read by the ops themselves. Decoding is plain CPU
work that releases the GIL, so it runs while the previous request computes, and the images of
one request are decoded side by side on `decode_threads` threads (`--decode-threads`): a
Cityscapes PNG takes tens of milliseconds, a step holds a dozen.

A rank may read its own files instead (`data.reader: rank`): a train_step's `files` names each
image and label by its path relative to the data root (configure's `data_root`, or the worker's
`--data-root` for a rank whose machine mounts the data elsewhere); the bytes are read in the same
pool and then decoded exactly as sent ones. A path that leaves the root (absolute, `..`, a
symlink) is refused.
"""

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from .errors import InvalidArgument

_pool = {"threads": 1, "executor": None}
_data = {"root": None, "override": None}
FILE_KINDS = ("img_l", "lbl_l", "img_u", "lbl_u")
# An encoded image or label larger than this is refused before it is read (the decoder's own
# 64-megapixel rule then bounds the pixels).
MAX_FILE_BYTES = 256 << 20
_pool_lock = threading.Lock()


def default_decode_threads():
    """The CPUs this process may use, at most 8 (decoding is one of several host jobs)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, usable))


def set_decode_threads(n):
    """Decode each request's images on `n` threads (1: one after another)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
        raise ValueError(f"decode threads: an integer from 1 to 256, got {n!r}")
    with _pool_lock:
        old, _pool["executor"], _pool["threads"] = _pool["executor"], None, n
    if old is not None:
        old.shutdown(wait=False)


def decode_threads():
    return _pool["threads"]


def _map(fn, items):
    if _pool["threads"] <= 1 or len(items) <= 1:
        return [fn(*it) for it in items]
    with _pool_lock:
        if _pool["executor"] is None:
            _pool["executor"] = ThreadPoolExecutor(_pool["threads"], thread_name_prefix="prcl-decode")
        executor = _pool["executor"]
    return list(executor.map(lambda it: fn(*it), items))


def set_data_root(root):
    """The data root configure named (None: the driver sends the bytes)."""
    _data["root"] = os.path.realpath(root) if root else None


def set_data_root_override(root):
    """--data-root: where this rank's machine holds the data, whatever configure says."""
    _data["override"] = os.path.realpath(root) if root else None


def data_root():
    return _data["override"] or _data["root"]


def _required_root():
    root = data_root()
    if root is None:
        raise InvalidArgument("files: this worker has no data root (configure's data_root, or --data-root)", "files")
    return root


def _confined(root, rel, field):
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or "\0" in rel:
        raise InvalidArgument(f"{field}: {rel!r} is not a path relative to the data root", field)
    real = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([real, root]) != root:
        raise InvalidArgument(f"{field}: {rel} leads outside the data root", field)
    return real


def _read_file(root, kind, i, rel):
    field = f"files.{kind}.{i}"
    path = _confined(root, rel, field)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgument(f"{field}: {rel} cannot be read under the data root {root} "
                              f"({exc.strerror or exc})", field) from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidArgument(f"{field}: {rel} is larger than {MAX_FILE_BYTES >> 20} MiB", field)
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    return f"{kind}.{i}", t


def read_files(body, tensors):
    """`tensors` with the request's `files` read from the data root as `<kind>.<i>` byte tensors."""
    files = body.get("files")
    if not files:
        return tensors
    root = _required_root()
    sent = [k for k in tensors if k.split(".")[0] in FILE_KINDS]
    if sent:
        raise InvalidArgument(f"files and encoded tensors ({', '.join(sorted(sent))}) in one request", "files")
    items = [(root, kind, i, rel) for kind in FILE_KINDS for i, rel in enumerate(files.get(kind) or [])]
    return {**tensors, **dict(_map(_read_file, items))}


def file_sizes(rels):
    """Each path's size under the data root, -1 where there is no readable file (the start-up
    check that a rank sees the driver's data)."""
    root = _required_root()
    out = []
    for i, rel in enumerate(rels):
        path = _confined(root, rel, f"files.{i}")
        try:
            out.append(os.stat(path).st_size if os.path.isfile(path) else -1)
        except OSError:
            out.append(-1)
    return out


def numbered(tensors, prefix):
    """The tensors `<prefix>.0`, `<prefix>.1`, … in index order (empty when there are none)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)$")
    found = {}
    for name, t in tensors.items():
        m = pattern.match(name)
        if m:
            if t.dtype != torch.uint8 or t.ndim != 1:
                raise InvalidArgument(f"tensor '{name}' must hold encoded bytes (uint8, 1-d)", f"tensors.{name}")
            found[int(m.group(1))] = t
    if sorted(found) != list(range(len(found))):
        raise InvalidArgument(f"{prefix}.<i> tensors must be numbered 0..{len(found) - 1}, got {sorted(found)}",
                              "tensors")
    return [found[i] for i in range(len(found))]


def _decode(fn, t, name, **kw):
    """fn over the bytes of tensor `name`; a file that does not decode is the request's error."""
    try:
        return fn(memoryview(t.contiguous().numpy()), **kw)
    except ValueError as exc:
        raise InvalidArgument(f"{name}: {exc}", f"tensors.{name}") from None


def _lut(body):
    lut = body.get("label_lut")
    return torch.tensor(lut, dtype=torch.uint8) if lut else None


def decode_images(tensors, prefix):
    """[uint8 [3,H,W]] from `<prefix>.<i>` tensors."""
    from .augment import decode_image
    return _map(lambda i, t: _decode(decode_image, t, f"{prefix}.{i}"), list(enumerate(numbered(tensors, prefix))))


def decode_labels(body, tensors, prefix, count):
    """[int64 [H,W]] from `<prefix>.<i>` tensors (255 -> -1, the body's label_lut applied), one per image."""
    from .augment import decode_label
    found = numbered(tensors, prefix)
    if len(found) != count:
        raise InvalidArgument(f"{count} images but {len(found)} {prefix}.<i> labels", "tensors")
    lut = _lut(body)
    return _map(lambda i, t: _decode(decode_label, t, f"{prefix}.{i}", lut=lut), list(enumerate(found)))


def decode_inputs(body, tensors):
    """train_step: {'img_l': [uint8 [3,H,W]], 'lbl_l': [int64 [H,W]], 'img_u': [...]}."""
    tensors = read_files(body, tensors)
    labeled = decode_pairs(body, tensors, "img_l", "lbl_l")
    out = {"img_l": [img for img, _ in labeled], "lbl_l": [lbl for _, lbl in labeled]}
    if numbered(tensors, "lbl_u"):
        # The unlabeled images' ground truth, for pseudo-label quality only (train/quality.py).
        unlabeled = decode_pairs(body, tensors, "img_u", "lbl_u")
        out["img_u"], out["lbl_u"] = [img for img, _ in unlabeled], [lbl for _, lbl in unlabeled]
    else:
        out["img_u"] = decode_images(tensors, "img_u")
    if torch.cuda.is_available():
        # Pinned host memory lets the copy to the device run asynchronously.
        out = {k: [t.pin_memory() for t in v] for k, v in out.items()}
    return out


def decode_pairs(body, tensors, image_prefix, label_prefix):
    """[(uint8 [3,H,W], int64 [H,W])] from `<image_prefix>.<i>` / `<label_prefix>.<i>` tensors."""
    images = decode_images(tensors, image_prefix)
    labels = decode_labels(body, tensors, label_prefix, len(images))
    for i, (img, lbl) in enumerate(zip(images, labels)):
        if tuple(lbl.shape) != tuple(img.shape[1:]):
            raise InvalidArgument(f"{label_prefix}.{i} is {list(lbl.shape)} but its image is {list(img.shape[1:])}",
                                  f"tensors.{label_prefix}.{i}")
    return list(zip(images, labels))
