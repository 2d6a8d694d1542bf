"""The worker's whole state on disk: model, teacher, head, optimizers, scaler, RNG, step.

The model is the unwrapped PrclNet's state dict (student, head, teacher; never DDP's `module.`
keys, and SyncBatchNorm keeps BatchNorm's keys), so a file written at one world size loads at
another. At world size > 1 every rank writes its own file to the path it is given (the driver
names per-rank paths): the model and optimizers are the same on every rank, the loss generator's
state is the rank's own. The file records the rank and world size that wrote it; loading a file
another rank wrote (the world size changed) gives this rank a generator stream of its own,
seeded from (seed, rank, step), instead of repeating the writer's draws.

Written to `<path>.tmp` and renamed, so a crash mid-save never leaves a file that looks whole.
The file is safetensors: the tensors (named by their index) and, in its metadata, the format and
one JSON string holding everything else (tensors replaced by their index). Nothing in it is
pickle, so loading it cannot run code on any torch. Files of the earlier format (a torch zip of
the same tensors and JSON) still load, through torch's weights-only unpickler, after TorchScript
archives are refused.

`network_hash(module)`: the `state_hash` op's digest of a network's parameters and buffers, which
the driver compares across ranks before each evaluation (after `align_buffers`).
"""

import errno
import hashlib
import inspect
import json
import os
import shutil
import zipfile

import safetensors
import safetensors.torch
import torch

from .errors import WireError

FORMAT = "prcl-worker-state/1"


def _split(value, tensors):
    if torch.is_tensor(value):
        tensors.append(value.detach().cpu())
        return {"__tensor__": len(tensors) - 1}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError("state dict keys must be strings or integers")
        # JSON keys are strings: remember which were integers (optimizer state is keyed by int).
        return {"__dict__": [[k, _split(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_split(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in the worker state")


def _join(value, tensors):
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        return {k: _join(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    return value


def refuse_torchscript(path, source=None):
    """Raise ValueError when ``path`` (or the file object ``source`` read from it) is a TorchScript
    archive (a zip holding ``constants.pkl`` or ``code/``): torch.load hands those to the
    TorchScript loader, which runs code even with ``weights_only=True`` on torch < 2.6
    (CVE-2025-32434). Checked before torch.load sees it."""
    source = path if source is None else source
    if not zipfile.is_zipfile(source):
        return
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path}: unreadable zip archive ({exc})") from None
    for name in names:
        parts = name.split("/")
        inner = parts[1:] if len(parts) > 1 else parts
        if inner and (inner[0] in ("constants.pkl", "code") or name.startswith("code/")):
            raise ValueError(f"{path} is a TorchScript archive (it holds {name}); "
                             "the worker loads only plain tensor checkpoints")


def safe_torch_load(path, source=None):
    """torch.load of a checkpoint with ``weights_only=True`` (no pickle code can run), after
    refusing TorchScript archives; ``source``: a seekable file object holding ``path``'s bytes.
    Refuses outright on a torch without ``weights_only`` (< 1.13)."""
    refuse_torchscript(path, source)
    try:
        supported = "weights_only" in inspect.signature(torch.load).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature unavailable
        supported = False
    if not supported:
        raise ValueError(f"{path}: torch {torch.__version__} cannot load a checkpoint without running "
                         "its pickle code (weights_only needs torch >= 1.13); refused")
    if source is not None:
        source.seek(0)
    return torch.load(path if source is None else source, map_location="cpu", weights_only=True)


def is_safetensors(path, head=None):
    """A safetensors file: an 8-byte little-endian header length, then the JSON header
    (``head``: the file's first bytes, when they are already read)."""
    if head is None:
        with open(path, "rb") as f:
            head = f.read(9)
    head = bytes(head[:9])
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= 100 << 20


def _read_state_file(path):
    """{format, meta, tensors} of a state file: safetensors, or the earlier torch zip."""
    if not is_safetensors(path):
        return safe_torch_load(path)
    with safetensors.safe_open(path, framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        tensors = [f.get_tensor(str(i)) for i in range(len(list(f.keys())))]
    return {"format": meta.get("format"), "meta": meta.get("meta", "null"), "tensors": tensors}


def network_hash(module):
    """sha256 (hex) of `module`'s parameters, then its buffers, each in the module's order: each
    one's name, dtype, shape and bytes (copied to the CPU, contiguous, so the device and memory
    format do not matter). Buffers are compared too: between evaluations they may differ between
    ranks by design (a teacher's own BatchNorm statistics), and `align_buffers` makes them rank 0's
    before each evaluation."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, p in [*module.named_parameters(), *(("buffer:" + n, b) for n, b in module.named_buffers())]:
            t = p.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{t.dtype}|{tuple(p.shape)}\n".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_state(trainer, path):
    state = {
        "format": FORMAT,
        "step": trainer.step,
        "dist": {"rank": trainer.rank, "world_size": trainer.world},
        "net": trainer.net.state_dict(),
        "opt": trainer.optim.opt.state_dict(),
        "opt_head": trainer.optim.opt_head.state_dict(),
        "scaler": trainer.optim.scaler.state_dict() if trainer.optim.scaler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loss": trainer.generator.get_state(),
        },
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tensors = []
    meta = json.dumps(_split(state, tensors))
    tmp = _tmp_path(path)
    needed = sum(t.numel() * t.element_size() for t in tensors)
    if _free(directory) < needed + (64 << 20):
        raise _disk_full(directory, path, needed)
    # Serialised in memory, then written with a plain write (a full disk is ENOSPC, not a torch
    # error). Cloned: safetensors refuses tensors that share memory.
    payload = safetensors.torch.save({str(i): t.contiguous().clone() for i, t in enumerate(tensors)},
                                     metadata={"format": FORMAT, "meta": meta})
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if os.path.isfile(tmp):
            os.remove(tmp)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(directory, path, needed) from e
        raise
    os.replace(tmp, path)
    _fsync_dir(directory)
    return os.path.getsize(path)


class DiskFull(WireError):
    type = "DiskFull"


def _tmp_path(path):
    return f"{path}.tmp"


def _free(directory):
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return float("inf")


def _disk_full(directory, path, needed):
    return DiskFull(f"the disk holding {directory} is full ({_free(directory):,} bytes free; this state needs about "
                    f"{needed:,} and 64 MiB to spare): {path} was not written, and what was saved before is "
                    f"unchanged. Free some space, then resume the run")


def _fsync_dir(directory):
    """fsync a directory, so that a rename in it survives a power cut (skipped where the platform
    cannot open a directory, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_state(trainer, path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no worker state at {path}")
    try:
        raw = _read_state_file(path)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"not a worker state of format {FORMAT}")
        state = _join(json.loads(raw["meta"]), raw["tensors"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported with its name
        raise ValueError(f"{path} is not a readable worker state ({type(exc).__name__}: {exc})") from None
    # Files written before the driver took over the EMA schedule hold the model's step counter.
    state["net"].pop("ema_steps", None)
    try:
        trainer.net.load_state_dict(state["net"])
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit the configured model: {exc}") from None
    trainer.optim.opt.load_state_dict(state["opt"])
    trainer.optim.opt_head.load_state_dict(state["opt_head"])
    if trainer.optim.scaler is not None and state["scaler"] is not None:
        trainer.optim.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    writer = (state.get("dist") or {}).get("rank", 0)  # files from before data parallelism: one process
    if writer == trainer.rank:
        trainer.generator.set_state(state["rng"]["loss"])
    else:
        trainer.generator.manual_seed(trainer.loss_seed(state["step"]))
    trainer.step = state["step"]
    return state["step"]
