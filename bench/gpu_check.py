"""The worker-side GPU check (bench/gpu-check.sh runs it; issue 12): no Node needed.

Reads bench/gpu/inputs.json (each case's configure settings and train_step arguments, resolved by
the driver: `prcl bench gpu-inputs`) and runs the worker's own op functions in-process:

* DeepLabV3+-R101 train steps at 321² for 2 + 2 and 8 + 8 images, fp32, bf16 and channels-last:
  median step time over the timed steps, peak GPU memory;
* 50 steps of the demo preset (its settings, 48² crops, 8 + 8): total and per-step time;
* the input path (prcl bench data's requests: VOC 500×375 JPEG 2 + 2, Cityscapes 2048×1024 PNG
  6 + 6): decode on 1, 2, 4, 8 threads and augmentation on the device, per request.

Random raw tensors (normalised images, labels); the numbers are times, not accuracy. Prints one
JSON object and, with --out, writes it there.

    PYTHONPATH=py python3 bench/gpu_check.py [--device cuda] [--quick] [--out FILE]
"""

import argparse
import copy
import json
import os
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "py"))

from prcl_worker.ops import REGISTRY  # noqa: E402
from prcl_worker.replay import ReplayContext  # noqa: E402
from prcl_worker.schemas import Schemas  # noqa: E402


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def batch(n, size, classes, device, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n, size, size), generator=g)
    return {"x_l": x.to(device), "y_l": y.to(device), "x_u": torch.randn(n, 3, size, size, generator=g).to(device)}


def run_case(schemas, device, case, n, steps, warmup, amp="none", channels_last=False):
    settings = copy.deepcopy(case["settings"])
    settings["amp"] = amp
    settings["channels_last"] = channels_last
    ctx = ReplayContext(device, schemas)
    REGISTRY["configure"].fn(ctx, settings, {})
    tensors = batch(n, case["size"], case["classes"], device, 7)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    args = case["steps"]
    for s in range(warmup + steps):
        body = dict(args[s % len(args)])
        if body["policy"]["mix"] != "none":
            body["mix"] = [{"seed": 1000 * s + i} for i in range(n)]
        sync(device)
        t0 = time.perf_counter()
        out = REGISTRY["train_step"].fn(ctx, body, tensors)
        result = out[0] if isinstance(out, tuple) else out
        sync(device)
        if s >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
            losses.append(result["total"])
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    del ctx
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    times.sort()
    return {
        "images": f"{n}+{n}", "size": case["size"], "amp": amp, "channels_last": channels_last, "steps": steps,
        "step_ms_p50": round(times[len(times) // 2], 2), "step_ms_min": round(times[0], 2),
        "total_ms": round(sum(times), 1), "peak_mb": None if peak is None else round(peak, 1),
        "losses_finite": all(v == v and abs(v) != float("inf") for v in losses),
    }


def run_data(schemas, device, cases, quick):
    """The input path on this host (prcl bench data's requests, without Node): each request's
    images decoded on 1, 2, 4 … decode threads (the worker's pool), then augmented on `device` by
    the input_probe op. Decode and augment overlap in a running worker (two requests in flight), so
    it feeds about images / max(decode, augment) per second; decoded_per_core_s sizes the host."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from make_images import encoded

    from prcl_worker import inputs
    ctx = ReplayContext(device, schemas)
    rows = []
    usable = inputs.default_decode_threads()
    before = inputs.decode_threads()
    try:
        for case in cases:
            b = len(case["requests"][0]["labeled_aug"])
            files = encoded(case["width"], case["height"], case["format"], 2 if quick else 2 * b)

            def tensors_for(r, b=b, files=files):
                def u8(data):
                    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
                t = {}
                for i in range(b):
                    img, lbl = files[(2 * (r * b + i)) % len(files)]
                    t[f"img_l.{i}"], t[f"lbl_l.{i}"] = u8(img), u8(lbl)
                    t[f"img_u.{i}"] = u8(files[(2 * (r * b + i) + 1) % len(files)][0])
                return t

            for threads in [n for n in (1, 2, 4, 8) if n <= usable]:
                inputs.set_decode_threads(threads)
                decode, augment = [], []
                for r in range(2 + (2 if quick else 10)):
                    body = case["requests"][r % len(case["requests"])]
                    out = REGISTRY["input_probe"].fn(ctx, body, tensors_for(r))
                    if r >= 2:
                        decode.append(out["decode_ms"])
                        augment.append(out["augment_ms"])
                decode.sort()
                augment.sort()
                d, a = decode[len(decode) // 2], augment[len(augment) // 2]
                row = {"dataset": case["dataset"], "image": f"{case['width']}x{case['height']} {case['format']}",
                       "batch": 2 * b, "decode_threads": threads, "decode_ms": round(d, 2), "augment_ms": round(a, 2),
                       "images_per_s": round(2 * b * 1000 / max(d, a), 1),
                       "decoded_per_core_s": round(2 * b * 1000 / (d * threads), 1)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        inputs.set_decode_threads(before)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--inputs", default=os.path.join(ROOT, "bench", "gpu", "inputs.json"))
    p.add_argument("--quick", action="store_true", help="a few small steps of each case (a CPU smoke test)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    with open(a.inputs) as f:
        cases = json.load(f)["cases"]
    schemas = Schemas()
    out = {
        "device": a.device, "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        "r101": [], "demo": None, "data": None,
    }
    def save():  # after each section, so a timeout keeps what finished
        if a.out:
            with open(a.out, "w") as f:
                f.write(json.dumps(out, indent=2) + "\n")

    r101 = cases["r101"]
    if a.quick:
        r101 = dict(r101, size=65)
    variants = [("none", False), ("bf16", False), ("none", True), ("bf16", True)]
    for n in ([2] if a.quick else [2, 8]):
        for amp, cl in variants:
            try:
                row = run_case(schemas, a.device, r101, n, 1 if a.quick else 10, 1 if a.quick else 2, amp, cl)
            except Exception as e:  # noqa: BLE001 - one failing variant is reported, the others still run
                row = {"images": f"{n}+{n}", "amp": amp, "channels_last": cl, "error": f"{type(e).__name__}: {e}"}
            out["r101"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            save()
    demo = cases["demo"]
    steps = 3 if a.quick else 50
    out["demo"] = run_case(schemas, a.device, demo, 8, steps, 2)
    print(json.dumps(out["demo"]), file=sys.stderr, flush=True)
    save()
    out["data"] = run_data(schemas, a.device, cases["data"], a.quick)
    save()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
