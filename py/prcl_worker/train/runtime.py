"""The process's compute settings (torch threads, determinism) and the device synchronisation
that makes a step's per-phase timings honest on CUDA."""

import os
import time

import torch


def pick_threads(requested):
    """`requested`, else OMP_NUM_THREADS's setting, else the CPUs this process may use, shared
    among the ranks of this host (LOCAL_WORLD_SIZE, as torchrun sets it) when there are several."""
    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    try:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_ranks = 1
    return max(1, cpus // local_ranks)


def set_up(threads, deterministic):
    """Apply the configured thread count (None: see pick_threads) and determinism (True, 'cudnn':
    cuDNN's deterministic convolutions alone, as released, or False); returns the threads."""
    threads = pick_threads(threads)
    torch.set_num_threads(threads)
    # Every flag set either way: a worker configured again does not keep the earlier setting.
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic is True, warn_only=True)
    return threads


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_since(start):
    return (time.perf_counter() - start) * 1000
