"""The fixed op registry: op name -> function. Requests name ops; nothing else is callable."""

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Op:
    name: str
    fn: Callable
    tensors: str  # 'none' or 'any'
    # Host-side preparation (decoding) that may run in a thread pool while the previous request
    # computes: prepare(body, tensors) -> value the op reads with ctx.prepared().
    prepare: Optional[Callable] = None


REGISTRY = {}


def register(name, tensors="none", prepare=None):
    def deco(fn):
        if name in REGISTRY:
            raise RuntimeError(f"op {name} registered twice")
        REGISTRY[name] = Op(name, fn, tensors, prepare)
        return fn
    return deco


from . import bridge, probe, training  # noqa: E402,F401  (register the ops)
