"""Driving a worker in-process in tests: the loaded schemas, and an op call checked against them
on both sides (the request's arguments and the op's result), as the server would check them."""

from prcl_worker.ops import REGISTRY
from prcl_worker.schemas import Schemas

SCHEMAS = Schemas()


def call(ctx, op, args, tensors=None):
    SCHEMAS.args[op](args)
    out = REGISTRY[op].fn(ctx, args, tensors or {})
    result = out[0] if isinstance(out, tuple) else out
    SCHEMAS.results[op](result)
    return result
