"""Ops that exercise and inspect the bridge itself."""

import time

from .. import distributed
from ..errors import Cancelled
from . import register


@register("hello")
def hello(ctx, body, tensors):
    return ctx.hello


@register("ping")
def ping(ctx, body, tensors):
    out = {"pong": True}
    if "payload" in body:
        out["payload"] = body["payload"]
    return out


@register("echo", tensors="any")
def echo(ctx, body, tensors):
    return {"names": list(tensors)}, tensors


@register("upload", tensors="any")
def upload(ctx, body, tensors):
    nbytes = sum(t.element_size() * t.numel() for t in tensors.values())
    return {"count": len(tensors), "nbytes": nbytes}


@register("sleep")
def sleep(ctx, body, tensors):
    start = time.monotonic()
    end = start + body["ms"] / 1000.0
    while True:
        now = time.monotonic()
        if ctx.cancelled():
            raise Cancelled(f"sleep cancelled after {(now - start) * 1000:.0f} ms")
        if now >= end:
            break
        time.sleep(min(0.01, end - now))
    return {"slept_ms": (time.monotonic() - start) * 1000.0}


_FAIL = {"ValueError": ValueError, "RuntimeError": RuntimeError, "KeyError": KeyError,
         "MemoryError": MemoryError, "ZeroDivisionError": ZeroDivisionError}


@register("fail")
def fail(ctx, body, tensors):
    def raise_it():  # one more frame so the traceback shows a call chain
        raise _FAIL[body["type"]](body["message"])
    raise_it()


@register("stats")
def stats(ctx, body, tensors):
    # The collectives this rank issued, by kind (None when it is not one rank of a group).
    return {**ctx.stats(), "collectives": distributed.collective_counts()}


@register("shutdown")
def shutdown(ctx, body, tensors):
    ctx.request_shutdown()
    return {"bye": True}
