"""PRCL loss benchmark: forward + backward of the worker's loss against the literal reference.

Run through `npx prcl bench prcl-loss`, which starts this program once per implementation so each
one's peak memory is its own. Prints one JSON line.

    python bench/prcl_loss.py --impl worker|reference [--repeats N] [--device cpu|cuda] [shape options]
"""

import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

PY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py")


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def inputs(a, device):
    g = torch.Generator().manual_seed(a.seed)
    shape = (a.batch, a.dim, a.size, a.size)
    mu = torch.randn(*shape, generator=g)
    var = torch.rand(*shape, generator=g) * 0.9 + 0.05
    labels = torch.randint(a.classes, (a.batch, a.size, a.size), generator=g)
    label = F.one_hot(labels, a.classes).permute(0, 3, 1, 2).float()
    mask = (torch.rand(a.batch, 1, a.size, a.size, generator=g) < 0.8).float()
    prob = torch.softmax(torch.randn(a.batch, a.classes, a.size, a.size, generator=g), 1)
    return [t.to(device) for t in (mu, var, label, mask, prob)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["worker", "reference"], required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--size", type=int, default=81)
    p.add_argument("--classes", type=int, default=21)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--negatives", type=int, default=512)
    p.add_argument("--temp", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    mu, var, label, mask, prob = inputs(a, device)
    sys.path.insert(0, PY_DIR)
    if a.impl == "worker":
        from prcl_worker.losses.prcl import prcl_loss as fn
    else:
        from reference.prcl import prcl_loss_reference as fn
    params = {"strong_threshold": 0.8, "temp": a.temp, "neg_temp": None, "num_queries": a.queries,
              "num_negatives": a.negatives}
    base_rss = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    times, value = [], None
    for i in range(a.repeats):
        m, v = mu.clone().requires_grad_(), var.clone().requires_grad_()
        g = torch.Generator(device=device).manual_seed(a.seed + i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        loss = fn(m, v, label, mask, prob, generator=g, **params)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000)
        value = float(loss)
    out = {
        "impl": a.impl, "ms": sorted(times)[len(times) // 2], "all_ms": times, "loss": value,
        "peak_mb": peak_mb() - base_rss,
        "device": str(device), "threads": a.threads, "torch": torch.__version__,
        "shape": {"batch": a.batch, "dim": a.dim, "size": a.size, "classes": a.classes,
                  "queries": a.queries, "negatives": a.negatives, "temp": a.temp},
    }
    if device.type == "cuda":
        out["peak_mb"] = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20
        out["device_name"] = torch.cuda.get_device_name(device)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
