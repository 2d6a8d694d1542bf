"""Replay a recorded run in-process, without a driver: python -m prcl_worker.replay FILE.

The recording (written by the driver's --record) holds each request's op, body and tensors. This
runs them through the same op functions the server uses and prints one JSON line per train_step
with its losses, so a failing step can be reproduced and debugged in pure Python.
"""

import argparse
import json
import struct
import sys
import time

import msgpack

from .codec import decode_tensors
from .ops import REGISTRY
from .schemas import Schemas


class ReplayContext:
    """What an op sees, without sockets: state, schemas, device; preparation runs inline."""

    def __init__(self, device, schemas):
        self.state = {}
        self.schemas = schemas
        self.device = device

    def prepared(self, compute):
        return compute()

    def prefetch(self):
        pass

    def cancelled(self):
        return False


def read_requests(path):
    with open(path, "rb") as f:
        while True:
            head = f.read(4)
            if not head:
                return
            if len(head) < 4:
                raise ValueError(f"{path}: truncated record")
            (count,) = struct.unpack("<I", head)
            frames = []
            for _ in range(count):
                (n,) = struct.unpack("<Q", f.read(8))
                data = bytearray(f.read(n))
                if len(data) != n:
                    raise ValueError(f"{path}: truncated frame")
                frames.append(data)
            header = msgpack.unpackb(frames[0], raw=False)
            yield header["op"], header["body"], decode_tensors(header["tensors"], frames)


def replay(path, device="cpu", on_step=None):
    """Run every recorded request; returns [(step, total, losses, seconds)] of the train_steps."""
    import torch

    from .train.runtime import pick_threads
    torch.set_num_threads(pick_threads(None))
    schemas = Schemas()
    ctx = ReplayContext(device, schemas)
    out = []
    for op, body, tensors in read_requests(path):
        schemas.args[op](body)
        start = time.perf_counter()
        result = REGISTRY[op].fn(ctx, body, tensors)
        seconds = time.perf_counter() - start
        if op == "train_step":
            row = (result["step"], result["total"], result["losses"], seconds)
            out.append(row)
            if on_step:
                on_step(row)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m prcl_worker.replay", description=__doc__)
    p.add_argument("file")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    def show(row):
        step, total, losses, seconds = row
        sys.stdout.write(json.dumps({"step": step, "total": total, "losses": losses, "ms": seconds * 1000}) + "\n")
        sys.stdout.flush()

    replay(args.file, args.device, show)


if __name__ == "__main__":
    main()
