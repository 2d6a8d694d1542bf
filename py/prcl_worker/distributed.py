"""The worker's place in a torch.distributed group, and the collectives training uses
(DESIGN.md "Many workers", prcl-method.md §7.10, Q-env-1).

A worker is one rank of a data-parallel group when the torchrun environment names it:
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (as `torchrun`, `srun` wrappers or the
driver set them). It then joins the group at start-up, before it says hello (`init_method
'env://'`; NCCL on CUDA, gloo on CPU), with the timeout PRCL_DIST_TIMEOUT_S (default 300 s) so a
rank that dies or stalls makes the others' collectives fail instead of hanging forever. Without
RANK and WORLD_SIZE the worker runs alone (hello.dist is null) and every helper here is the
identity. A half-set or malformed environment is refused with a message naming the variable.

Helpers: `is_dist()`, `rank()`, `world()`, `local_rank()`, `all_reduce_sum`, `all_reduce_mean`,
`all_reduce_max`, `broadcast_`, `reduce_sums` (PRCL's prototype statistics), `all_gather` (the
mixing partners of Q-aug-6).

Counters: every collective the worker issues is counted by kind, always (a lock and two integer
additions per collective; the tensors and their order are untouched, so no number changes):
calls, and bytes = numel × element size of what this rank hands in (the input of an all_gather,
the buffer of an all_reduce or a broadcast; "size" as nccl-tests counts it). `count(kind,
*tensors)` records one; `collective_counts()` is the `stats` op's `collectives` (None when alone).
Kinds: `ddp_gradients` (DDP's bucket all-reduces, through a communication hook: train/parallel.py),
`ddp_buffers` (DDP's broadcast_buffers), `sync_bn_forward` / `sync_bn_backward` (SyncBatchNorm's
statistics all_gather and gradient-sums all_reduce), `prcl_prototypes`, `results` (a step's
reduced numbers), `broadcast` (the teacher at configure, its buffers with broadcast_buffers),
`mix_partners`. Not counted: DDP's own small all-reduce of its unused-parameter map
(find_unused_parameters), which runs inside torch's C++ reducer, and DDP's one broadcast of the
module at construction (configure).
"""

import datetime
import os
import re
import threading
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as tdist

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT_VARIABLE = "PRCL_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0


class DistEnvError(ValueError):
    """The torchrun environment is incomplete or malformed; the message names the variable."""


class DistInitError(RuntimeError):
    """The group could not be joined (rendezvous unreachable, timed out, port taken...)."""


@dataclass(frozen=True)
class Placement:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    timeout_s: float


_placement: Optional[Placement] = None


def _get(env, name):
    value = env.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def _integer(env, name, minimum=0):
    value = _get(env, name)
    if value is None:
        raise DistEnvError(f"{name} is not set, but RANK and WORLD_SIZE are: a distributed worker needs all of "
                           f"{', '.join(VARIABLES)} (as torchrun sets them)")
    try:
        number = int(value, 10)
    except ValueError:
        raise DistEnvError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise DistEnvError(f"{name} must be >= {minimum}, got {number}")
    return number


def from_env(env=None):
    """The Placement the environment names, or None when neither RANK nor WORLD_SIZE is set.
    Raises DistEnvError naming the first variable that is missing or malformed."""
    env = os.environ if env is None else env
    has_rank, has_world = _get(env, "RANK") is not None, _get(env, "WORLD_SIZE") is not None
    if not has_rank and not has_world:
        return None
    if not has_rank:
        raise DistEnvError(f"WORLD_SIZE is set ({env['WORLD_SIZE']!r}) but RANK is not: set RANK (0..WORLD_SIZE-1) "
                           "for a distributed worker, or unset WORLD_SIZE to run alone")
    if not has_world:
        raise DistEnvError(f"RANK is set ({env['RANK']!r}) but WORLD_SIZE is not: set WORLD_SIZE for a distributed "
                           "worker, or unset RANK to run alone")
    world_size = _integer(env, "WORLD_SIZE", 1)
    rank = _integer(env, "RANK", 0)
    if rank >= world_size:
        raise DistEnvError(f"RANK={rank} must be below WORLD_SIZE={world_size}")
    local_rank = _integer(env, "LOCAL_RANK", 0)
    addr = _get(env, "MASTER_ADDR")
    if addr is None:
        raise DistEnvError("MASTER_ADDR is not set, but RANK and WORLD_SIZE are: it names the host of rank 0's "
                           "rendezvous (e.g. 127.0.0.1)")
    port = _integer(env, "MASTER_PORT", 1)
    if port > 65535:
        raise DistEnvError(f"MASTER_PORT must be a TCP port (1..65535), got {port}")
    timeout = _get(env, TIMEOUT_VARIABLE)
    try:
        timeout_s = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
    except ValueError:
        raise DistEnvError(f"{TIMEOUT_VARIABLE} must be a number of seconds, got {timeout!r}") from None
    if not timeout_s > 0 or timeout_s == float("inf"):
        raise DistEnvError(f"{TIMEOUT_VARIABLE} must be a positive, finite number of seconds, got {timeout!r}")
    return Placement(rank, world_size, local_rank, addr, port, timeout_s)


def start(device):
    """Join the group the environment names (once per process), before the worker says hello.

    `device` is the resolved device ('cpu', 'cuda' or 'cuda:N'); 'cuda' becomes cuda:LOCAL_RANK.
    Returns (device, hello's `dist`: {rank, world_size, local_rank, backend, master} or None).
    Raises DistEnvError for a bad environment, DistInitError when the group cannot be joined."""
    global _placement
    placement = from_env()
    if placement is None:
        return device, None
    if device.startswith("cuda"):
        if device == "cuda":
            count = torch.cuda.device_count()
            if placement.local_rank >= count:
                raise DistEnvError(f"LOCAL_RANK={placement.local_rank} names no CUDA device: this host has {count}")
            device = f"cuda:{placement.local_rank}"
        torch.cuda.set_device(torch.device(device))
        backend = "nccl"
        if _torch_version() < (2, 2):
            # Let NCCL honour the timeout (a dead peer fails the collective instead of blocking);
            # torch >= 2.2 does so by default (TORCH_NCCL_ASYNC_ERROR_HANDLING).
            os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")
    else:
        backend = "gloo"
    if not tdist.is_initialized():
        try:
            tdist.init_process_group(backend, init_method="env://", rank=placement.rank,
                                     world_size=placement.world_size,
                                     timeout=datetime.timedelta(seconds=placement.timeout_s))
        except Exception as exc:  # noqa: BLE001 - reported with where it tried to go
            raise DistInitError(f"could not join the {backend} group at {placement.master_addr}:"
                                f"{placement.master_port} as rank {placement.rank} of {placement.world_size}: "
                                f"{type(exc).__name__}: {exc}") from exc
    _placement = placement
    return device, describe()


def _torch_version():
    parts = re.findall(r"\d+", torch.__version__)[:2]
    return tuple(int(p) for p in parts) if len(parts) == 2 else (0, 0)


def stop():
    """Leave the group (at exit); nothing when alone."""
    global _placement
    if is_dist():
        try:
            tdist.destroy_process_group()
        except Exception:  # noqa: BLE001 - leaving a broken group must not mask the exit's reason
            pass
    _placement = None


def describe():
    """hello's `dist`, or None when alone."""
    if not is_dist():
        return None
    p = _placement
    addr, port = (p.master_addr, p.master_port) if p else (os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"))
    master = f"{addr}:{port}"
    return {"rank": rank(), "world_size": world(), "local_rank": local_rank(), "backend": str(tdist.get_backend()),
            "master": master}


def is_dist():
    return tdist.is_available() and tdist.is_initialized()


def rank():
    return tdist.get_rank() if is_dist() else 0


def world():
    return tdist.get_world_size() if is_dist() else 1


def local_rank():
    if not is_dist():
        return 0
    return _placement.local_rank if _placement is not None else int(os.environ.get("LOCAL_RANK", "0"))


KINDS = ("ddp_gradients", "ddp_buffers", "sync_bn_forward", "sync_bn_backward", "prcl_prototypes", "results",
         "broadcast", "mix_partners")
_counts = {}
_counts_lock = threading.Lock()  # DDP's hook and a CUDA SyncBN's backward count from autograd's threads


def count(kind, *tensors):
    """Record one collective of `kind` to which this rank hands `tensors`."""
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    with _counts_lock:
        entry = _counts.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += nbytes


def collective_counts():
    """{kind: {calls, bytes}} since the worker started (every kind of KINDS, zeros included, and any
    other kind counted), or None when the worker is not one rank of a group."""
    if not is_dist():
        return None
    with _counts_lock:
        counted = {k: list(v) for k, v in _counts.items()}
    kinds = list(KINDS) + sorted(k for k in counted if k not in KINDS)
    return {k: {"calls": counted.get(k, [0, 0])[0], "bytes": counted.get(k, [0, 0])[1]} for k in kinds}


def _all_reduce(tensor, op, kind):
    """`op` over ranks, counted as `kind` (a new tensor; `tensor` itself when alone). Not differentiable."""
    if world() == 1:
        return tensor
    out = tensor.detach().clone()
    count(kind, out)
    tdist.all_reduce(out, op=op)
    return out


def all_reduce_sum(tensor, kind="results"):
    """The sum over ranks (a new tensor; `tensor` itself when alone). Not differentiable."""
    return _all_reduce(tensor, tdist.ReduceOp.SUM, kind)


def all_reduce_mean(tensor, kind="results"):
    """The mean over ranks of a floating tensor."""
    return tensor if world() == 1 else all_reduce_sum(tensor, kind) / world()


def all_reduce_max(tensor, kind="results"):
    return _all_reduce(tensor, tdist.ReduceOp.MAX, kind)


def broadcast_(tensors, src=0, kind="broadcast"):
    """Overwrite `tensors` (in place, any memory format) with rank `src`'s values: one collective
    per dtype, through a flat buffer."""
    if world() == 1:
        return
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            count(kind, flat)
            tdist.broadcast(flat, src)
            start = 0
            for t in group:
                t.copy_(flat[start:start + t.numel()].view(t.shape))
                start += t.numel()


def reduce_sums(*tensors, kind="prcl_prototypes"):
    """Sum each of `tensors` over ranks with one collective (they are packed into one flat buffer
    of the first one's dtype): PRCL's per-class prototype statistics (§15.5)."""
    if world() == 1:
        return tensors
    dtype = tensors[0].dtype
    flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
    count(kind, flat)
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].view(t.shape).to(t.dtype))
        start += t.numel()
    return tuple(out)


def all_gather(*tensors):
    """Every rank's `tensors`, each concatenated along dim 0 in rank order (rank r's rows at
    [r·n, (r+1)·n)): a tuple of new tensors; `tensors` themselves when alone. Every rank passes
    tensors of the same shapes and dtypes (the collective cannot check it). One collective per
    dtype, through a flat buffer. Not differentiable."""
    if world() == 1:
        return tuple(tensors)
    n = world()
    by_dtype = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    out = [None] * len(tensors)
    with torch.no_grad():
        for idx in by_dtype.values():
            flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx])
            parts = [torch.empty_like(flat) for _ in range(n)]
            count("mix_partners", flat)
            tdist.all_gather(parts, flat)
            start = 0
            for i in idx:
                t = tensors[i]
                out[i] = torch.cat([p[start:start + t.numel()].view(t.shape) for p in parts])
                start += t.numel()
    return tuple(out)
