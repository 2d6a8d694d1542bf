"""The reference called from TypeScript through pythonia (test oracles only).

Tensors cross as base64 of little-endian bytes (exact, and faster than JSON number lists);
results come back as one JSON string, so no Python proxies leak into the caller.
"""

import base64
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reference import prcl as ref  # noqa: E402
from reference import unsup as ref_unsup  # noqa: E402

_NP = {"float32": "<f4", "int64": "<i8", "bool": "?"}


def _t(b64, dtype, shape):
    return torch.from_numpy(np.frombuffer(base64.b64decode(b64), dtype=_NP[dtype]).copy()).reshape(shape)


def _b(t):
    return base64.b64encode(t.detach().contiguous().cpu().numpy().tobytes()).decode()


def mls(mu_a, var_a, mu_b, var_b, shape_a, shape_b):
    a, va = _t(mu_a, "float32", shape_a), _t(var_a, "float32", shape_a)
    b, vb = _t(mu_b, "float32", shape_b), _t(var_b, "float32", shape_b)
    out = ref.mls(a, va, b, vb)
    return json.dumps({"value": _b(out), "shape": list(out.shape)})


def prototypes(mu, var, valid, n, d, c):
    pmu, pvar, present = ref.prototypes(_t(mu, "float32", [n, d]), _t(var, "float32", [n, d]),
                                        _t(valid, "float32", [n, c]))
    return json.dumps({"mu": _b(pmu), "var": _b(pvar), "present": [bool(x) for x in present]})


def prcl(rep, var, label, mask, prob, shape, params_json, seed, anchors, negatives, grad):
    b, d, c, h, w = shape
    params = json.loads(params_json)
    mu = _t(rep, "float32", [b, d, h, w]).requires_grad_(grad)
    v = _t(var, "float32", [b, d, h, w]).requires_grad_(grad)
    draws = None
    if anchors is not None:
        q, k = params["num_queries"], params["num_negatives"]
        draws = {"anchors": _t(anchors, "int64", [c, q]), "negatives": _t(negatives, "int64", [c, q, k])}
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loss, drawn = ref.prcl_loss_reference(mu, v, _t(label, "float32", [b, c, h, w]), _t(mask, "float32", [b, 1, h, w]),
                                          _t(prob, "float32", [b, c, h, w]), generator=generator, draws=draws,
                                          return_draws=True, **params)
    out = {"value": float(loss), "anchors": _b(drawn["anchors"]), "negatives": _b(drawn["negatives"])}
    if grad:
        loss.backward()
        out["grad_rep"] = _b(mu.grad)
        out["grad_var"] = _b(v.grad)
    return json.dumps(out)


def unsup(logits, pseudo, conf, shape, threshold):
    b, c, h, w = shape
    loss = ref_unsup.unsup_loss(_t(logits, "float32", [b, c, h, w]), _t(pseudo, "int64", [b, h, w]),
                                _t(conf, "float32", [b, h, w]), threshold)
    return json.dumps({"value": float(loss)})
