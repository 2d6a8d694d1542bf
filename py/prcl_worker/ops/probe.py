"""loss_probe: the loss pieces on tensors the caller gives (parity tests, reproducing a step).

The 'prcl' and 'unsup_ce' probes take their op's complete params (schemas/losses.json), checked."""

import time

import torch

from ..errors import InvalidArgument
from ..losses import prcl as fast
from ..losses.basic import unsup_ce
from . import register

NEEDS = {
    "mls": ("mu_a", "var_a", "mu_b", "var_b"),
    "prototypes": ("mu", "var", "valid"),
    "prcl": ("rep", "var", "label", "mask", "prob"),
    "unsup_ce": ("logits", "pseudo", "conf"),
}


@register("loss_probe", tensors="any")
def loss_probe(ctx, body, tensors):
    what = body["what"]
    missing = [n for n in NEEDS[what] if n not in tensors]
    if missing:
        raise InvalidArgument(f"loss_probe '{what}' needs tensors {list(NEEDS[what])}; missing {missing}", "tensors")
    t = {k: v.to(ctx.device) for k, v in tensors.items()}
    params = body["params"]
    if what == "mls":
        return {"value": None}, {"value": fast.mls(t["mu_a"], t["var_a"], t["mu_b"], t["var_b"])}
    if what == "prototypes":
        keys = fast.PixelKeys(t["valid"], torch.zeros_like(t["valid"]), 0.0)
        pmu, pvar = fast.prototypes(t["mu"], t["var"], keys)
        return {"value": None}, {"proto_mu": pmu, "proto_var": pvar, "present": keys.n > 0}
    if what == "unsup_ce":
        ctx.schemas.check_loss_params("unsup_ce", params, "loss_probe unsup_ce", "params")
        return {"value": float(unsup_ce(t["logits"], t["pseudo"], t["conf"], params["threshold"], params["variant"]))}
    ctx.schemas.check_loss_params("prcl", params, "loss_probe prcl", "params")
    rep = t["rep"].requires_grad_(body["grad"])
    var = t["var"].requires_grad_(body["grad"])
    generator = None
    if body["seed"] is not None:
        generator = torch.Generator(device=ctx.device)
        generator.manual_seed(body["seed"])
    draws = {"anchors": t["anchors"], "negatives": t["negatives"]} if "anchors" in t else None
    loss, drawn = fast.prcl_loss(rep, var, t["label"], t["mask"], t["prob"],
                                 strong_threshold=params["strong_threshold"], temp=params["temp"],
                                 neg_temp=params["neg_temp"], num_queries=params["num_queries"],
                                 num_negatives=params["num_negatives"], generator=generator, draws=draws,
                                 return_draws=True)
    out = {"anchors": drawn["anchors"], "negatives": drawn["negatives"]} if body["return_draws"] else {}
    if body["grad"]:
        loss.backward()
        out["grad_rep"] = rep.grad
        out["grad_var"] = var.grad
    return {"value": float(loss.detach())}, out


def _prepare_inputs(body, tensors):
    from ..inputs import decode_inputs
    start = time.perf_counter()
    decoded = decode_inputs(body, tensors)
    return decoded, (time.perf_counter() - start) * 1000


@register("input_probe", tensors="any", prepare=_prepare_inputs)
def input_probe(ctx, body, tensors):
    """A train_step's input path without the model (prcl bench data): the encoded images decoded
    (in the prepare pool, ahead, on the decode threads) and augmented on the device, as the step
    would; returns how many images and how long each part took."""
    from ..inputs import decode_threads
    from ..train.inputs import labeled, unlabeled
    start = time.perf_counter()
    decoded, decode_ms = ctx.prepared(lambda: _prepare_inputs(body, tensors))
    waited_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    labeled(body, tensors, decoded, ctx.device, body["num_classes"])
    unlabeled(body, tensors, decoded, ctx.device)
    if str(ctx.device).startswith("cuda"):
        torch.cuda.synchronize(ctx.device)
    augment_ms = (time.perf_counter() - start) * 1000
    images = len(decoded["img_l"]) + len(decoded["img_u"])
    return {"images": images, "decode_ms": decode_ms, "waited_ms": waited_ms, "augment_ms": augment_ms,
            "decode_threads": decode_threads()}
