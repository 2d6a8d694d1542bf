"""The fixed op registry: op name -> function. Requests name ops; nothing else is callable."""

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Op:
    name: str
    fn: Callable
    tensors: str  # 'none' or 'any'


REGISTRY = {}


def register(name, tensors="none"):
    def deco(fn):
        if name in REGISTRY:
            raise RuntimeError(f"op {name} registered twice")
        REGISTRY[name] = Op(name, fn, tensors)
        return fn
    return deco


from . import bridge, probe, training  # noqa: E402,F401  (register the ops)
