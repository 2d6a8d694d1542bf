"""Literal reference implementation of the PRCL contrastive loss.

Written for trust, not speed: per-class loops, per-query sampling, one step of the spec per line
where possible. Section numbers refer to `docs/prcl-method.md` (the implementer's specification).

Differences from the released code (`Haoyu-Xie/PRCL@d8829da:generalframeworks/loss/loss.py`),
all of them deliberate (spec §14.4):

* Q-loss-2: when |V| <= 1, or when no class has a hard anchor, the loss is a zero *attached to the
  graph* of mu and var (the release returns a graph-less CPU scalar).
* Q-loss-3: no `.cuda()`; every tensor lives on the inputs' device.
* Q-loss-4: the temperature of the negative-class softmax (`neg_temp`) can be set apart from the
  CE temperature; it defaults to `temp` (the release uses the same tau twice, §7.9).
* Q-state-2: every draw uses one torch generator (the release draws negative pixels with NumPy's
  global RNG).
* Candidate negative classes are enumerated in increasing class id instead of the release's
  rotated order (c+1, ..., c-1), and the negatives of one anchor keep the order in which their
  classes were drawn instead of being grouped by class. The CE only sees the negatives through a
  log-sum-exp, so neither changes the law of the loss (§15.3).

Random stream (when no `draws` are injected), for each class c in V with a non-empty hard pool,
in increasing class id:
  1. anchors:           torch.randint(|H_c|, (Q,))                      -> ranks into H_c
  2. negative classes:  torch.multinomial(pi[c], Q*K, replacement=True) -> class ids, viewed [Q, K]
  3. negative pixels:   for q in 0..Q-1, for j in V \\ {c} (increasing id):
                          torch.randint(n_j, (#{k : class[q, k] == j},)) -> ranks into P_j
"""

import math

import torch
import torch.nn.functional as F

__all__ = [
    "mls",
    "prototypes",
    "flatten_inputs",
    "prcl_negative_class_probs",
    "prcl_loss_reference",
]


# --------------------------------------------------------------------------------------------
# §7.4 Mutual likelihood score
# --------------------------------------------------------------------------------------------

def mls(mu_a, var_a, mu_b, var_b):
    """Mutual likelihood score between diagonal Gaussians, as released (§7.4).

    MLS(a, b) = -1/2 * mean_d [ (a_hat_d - b_hat_d)^2 / (var_a_d + var_b_d) + log(var_a_d + var_b_d) ]
    with a_hat = a / ||a||_2 and b_hat = b / ||b||_2 (eps 1e-12). The feature dimension is the last
    one; leading dimensions broadcast (e.g. [Q, 1, D] against [Q, 1+K, D] gives [Q, 1+K]).
    """
    a_hat = F.normalize(mu_a, dim=-1)  # p=2, eps=1e-12
    b_hat = F.normalize(mu_b, dim=-1)
    s = var_a + var_b
    return -0.5 * ((a_hat - b_hat) ** 2 / s + torch.log(s)).mean(dim=-1)


# --------------------------------------------------------------------------------------------
# §7.5 Distribution prototypes
# --------------------------------------------------------------------------------------------

def prototypes(mu, var, valid):
    """Per-class distribution prototypes (§7.5, "Eq. 7" and "Eq. 8").

    mu, var: [N, D] pixel rows (mu unnormalised); valid: [N, C] 0/1.
    Returns (proto_mu [C, D], proto_var [C, D], present [C] bool). For a class c with valid pixels
    P_c:   proto_var_c = 1 / sum_{p in P_c} 1 / var_p
           proto_mu_c  = sum_{p in P_c} (proto_var_c / var_p) * mu_p
    Absent classes: rows of NaN and present[c] = False. No detaching here; the loss calls this
    under no_grad.
    """
    if mu.dim() != 2 or var.shape != mu.shape:
        raise ValueError(f"prototypes: mu and var must both be [N, D], got mu {tuple(mu.shape)}, "
                         f"var {tuple(var.shape)}")
    if valid.dim() != 2 or valid.shape[0] != mu.shape[0]:
        raise ValueError(f"prototypes: valid must be [N, C] with N = {mu.shape[0]}, "
                         f"got {tuple(valid.shape)}")
    num_classes = valid.shape[1]
    dim = mu.shape[1]
    proto_mu = torch.full((num_classes, dim), float("nan"), dtype=mu.dtype, device=mu.device)
    proto_var = torch.full((num_classes, dim), float("nan"), dtype=var.dtype, device=var.device)
    present = torch.zeros(num_classes, dtype=torch.bool, device=mu.device)
    for c in range(num_classes):
        sel = valid[:, c].bool()
        if not bool(sel.any()):
            continue
        mu_c = mu[sel]    # [n_c, D], rows in their original (row-major) order
        var_c = var[sel]
        pv = 1.0 / torch.sum(1.0 / var_c, dim=0)          # Eq. 8
        pm = torch.sum((pv / var_c) * mu_c, dim=0)         # Eq. 7
        proto_mu[c] = pm
        proto_var[c] = pv
        present[c] = True
    return proto_mu, proto_var, present


# --------------------------------------------------------------------------------------------
# Input flattening
# --------------------------------------------------------------------------------------------

def _to_rows(x):
    """[B, F, h, w] -> [B*h*w, F], row p = b*h*w + y*w + x."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0] * x.shape[2] * x.shape[3], -1)


def flatten_inputs(mu, var, label, mask, prob):
    """The loss's map inputs as pixel rows in row-major (b, y, x) order.

    mu, var [B, D, h, w]; label [B, C, h, w] one-hot float (all zeros = ignore); mask [B, 1, h, w]
    0/1; prob [B, C, h, w]. Returns (mu [N, D], var [N, D], valid = label * mask [N, C],
    prob [N, C]) with N = B*h*w and pixel index p = b*h*w + y*w + x.
    """
    valid = label * mask
    return _to_rows(mu), _to_rows(var), _to_rows(valid), _to_rows(prob)


# --------------------------------------------------------------------------------------------
# §7.6 (c) Negative-class probabilities
# --------------------------------------------------------------------------------------------

def prcl_negative_class_probs(proto_mu, proto_var, present, neg_temp):
    """pi[c, j] = softmax over j in V \\ {c} of MLS(proto_c, proto_j) / neg_temp  (§7.6 c).

    Returns a [C, C] matrix: 0 at j = c and at absent j; rows of absent classes all 0; a row with
    no candidate class (|V| = 1) all 0.
    """
    num_classes = proto_mu.shape[0]
    pi = torch.zeros(num_classes, num_classes, dtype=proto_mu.dtype, device=proto_mu.device)
    present_ids = [j for j in range(num_classes) if bool(present[j])]
    for c in present_ids:
        candidates = [j for j in present_ids if j != c]
        if not candidates:
            continue
        idx = torch.tensor(candidates, dtype=torch.long, device=proto_mu.device)
        # [1, D] against [n, D] -> [n], as the release does
        sim = mls(proto_mu[c].unsqueeze(0), proto_var[c].unsqueeze(0), proto_mu[idx], proto_var[idx])
        pi[c, idx] = torch.softmax(sim / neg_temp, dim=0)
    return pi


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------

def _check_positive_number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_loss_inputs(mu, var, label, mask, prob, strong_threshold, temp, neg_temp,
                       num_queries, num_negatives):
    for name, t in (("mu", mu), ("var", var), ("label", label), ("mask", mask), ("prob", prob)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D [B, *, h, w], got shape {tuple(t.shape)}")
    b, d, h, w = mu.shape
    if d < 1 or b * h * w < 1:
        raise ValueError(f"mu must be non-empty [B, D, h, w], got shape {tuple(mu.shape)}")
    if tuple(var.shape) != tuple(mu.shape):
        raise ValueError(f"var must have the shape of mu {tuple(mu.shape)}, got {tuple(var.shape)}")
    c = label.shape[1]
    if c < 1 or tuple(label.shape) != (b, c, h, w):
        raise ValueError(f"label must be [B, C, h, w] = [{b}, C, {h}, {w}] with C >= 1, "
                         f"got {tuple(label.shape)}")
    if tuple(mask.shape) != (b, 1, h, w):
        raise ValueError(f"mask must be [B, 1, h, w] = [{b}, 1, {h}, {w}], got {tuple(mask.shape)}")
    if tuple(prob.shape) != (b, c, h, w):
        raise ValueError(f"prob must be [B, C, h, w] = [{b}, {c}, {h}, {w}] (C from label), "
                         f"got {tuple(prob.shape)}")
    if not bool(((label == 0) | (label == 1)).all()) or not bool((label.sum(dim=1) <= 1).all()):
        raise ValueError("label must be one-hot over dim 1 (0/1 values, at most one 1 per pixel)")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 and 1")
    if isinstance(strong_threshold, bool) or not isinstance(strong_threshold, (int, float)) \
            or math.isnan(strong_threshold):
        raise ValueError(f"strong_threshold must be a number, got {strong_threshold!r}")
    _check_positive_number("temp", temp)
    _check_positive_number("neg_temp", neg_temp)
    _check_count("num_queries", num_queries)
    _check_count("num_negatives", num_negatives)


def _check_draws(draws, num_classes, num_queries, num_negatives):
    if not isinstance(draws, dict) or "anchors" not in draws or "negatives" not in draws:
        raise ValueError("draws must be a dict with keys 'anchors' [C, Q] and 'negatives' [C, Q, K]")
    anchors, negatives = draws["anchors"], draws["negatives"]
    for name, t, shape in (("anchors", anchors, (num_classes, num_queries)),
                           ("negatives", negatives, (num_classes, num_queries, num_negatives))):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.long:
            raise ValueError(f"draws['{name}'] must be a torch.long tensor")
        if tuple(t.shape) != shape:
            raise ValueError(f"draws['{name}'] must have shape {list(shape)} "
                             f"(C, num_queries, num_negatives), got {list(t.shape)}")
    # index bounds and pool membership are checked in the loss, for the rows that get a term


# --------------------------------------------------------------------------------------------
# §7.6-7.7 The loss
# --------------------------------------------------------------------------------------------

def prcl_loss_reference(mu, var, label, mask, prob, *, strong_threshold=0.8, temp=0.5,
                        num_queries=256, num_negatives=512, neg_temp=None, generator=None,
                        draws=None, return_draws=False):
    """The PRCL loss, literally (§7.6-7.7, with the fixes of §14.4).

    Inputs: mu, var [B, D, h, w] (with grad); label [B, C, h, w] one-hot; mask [B, 1, h, w];
    prob [B, C, h, w] (student softmax, detached by the caller or not - it is only compared).

    draws: optional {"anchors": long [C, Q], "negatives": long [C, Q, K]} of *global* pixel
    indices p = b*h*w + y*w + x, used instead of sampling (rows of classes that get no term are
    ignored). return_draws=True returns (loss, draws) in the same format, rows of classes without
    a term filled with -1.

    generator: a torch.Generator for every draw (None: torch's global CPU generator). Draws are
    made on the generator's device and moved to the inputs' device, so CUDA inputs work with a CPU
    generator. Not used when `draws` is given.
    """
    if neg_temp is None:
        neg_temp = temp
    _check_loss_inputs(mu, var, label, mask, prob, strong_threshold, temp, neg_temp,
                       num_queries, num_negatives)
    num_q, num_k = num_queries, num_negatives
    device = mu.device

    mu_rows, var_rows, valid, prob_rows = flatten_inputs(mu, var, label, mask, prob)
    num_pixels, num_classes = valid.shape
    dim = mu_rows.shape[1]

    if draws is not None:
        _check_draws(draws, num_classes, num_q, num_k)
    gen_device = generator.device if generator is not None else torch.device("cpu")

    # (a) Valid representations: V in increasing class id; pool P_c in row-major order.
    classes = []          # V
    pool = {}             # c -> global pixel indices of P_c (ascending = row-major order)
    hard = {}             # c -> global pixel indices of H_c
    for c in range(num_classes):
        members = torch.nonzero(valid[:, c].bool(), as_tuple=False).flatten()
        if members.numel() == 0:
            continue
        classes.append(c)
        pool[c] = members
        # (b) Hard pool: valid pixels of c whose probability for c is *strictly* below delta_s.
        hard[c] = members[prob_rows[members, c] < strong_threshold]

    out_anchors = torch.full((num_classes, num_q), -1, dtype=torch.long, device=device)
    out_negatives = torch.full((num_classes, num_q, num_k), -1, dtype=torch.long, device=device)

    def finish(loss):
        if return_draws:
            return loss, {"anchors": out_anchors, "negatives": out_negatives}
        return loss

    # Q-loss-2 (fixed): a zero attached to the graph of mu and var.
    zero = (mu.sum() + var.sum()) * 0.0
    if len(classes) <= 1:
        return finish(zero)

    # Prototypes and negative-class probabilities, without gradient.
    with torch.no_grad():
        mu_det = mu_rows.detach()
        var_det = var_rows.detach()
        proto_mu, proto_var, present = prototypes(mu_det, var_det, valid)
        pi = prcl_negative_class_probs(proto_mu, proto_var, present, neg_temp)

    # pixel -> class id (-1 = not valid) and pixel -> hard flag, for checking injected draws
    pixel_class = torch.full((num_pixels,), -1, dtype=torch.long, device=device)
    pixel_hard = torch.zeros(num_pixels, dtype=torch.bool, device=device)
    for c in classes:
        pixel_class[pool[c]] = c
        pixel_hard[hard[c]] = True

    total = None
    for c in classes:
        if hard[c].numel() == 0:
            continue  # no term, but c still counts in |V|

        if draws is None:
            # (b) Q anchors, uniform with replacement over H_c.
            ranks = torch.randint(hard[c].numel(), (num_q,), generator=generator, device=gen_device)
            anchors = hard[c][ranks.to(device)]
            # (c) Q*K negative classes i.i.d. from pi_c ...
            neg_class = torch.multinomial(pi[c].to(gen_device), num_q * num_k, replacement=True,
                                          generator=generator).view(num_q, num_k).to(device)
            # ... then, per anchor and per drawn class, pixels uniform with replacement over P_j.
            negatives = torch.full((num_q, num_k), -1, dtype=torch.long, device=device)
            for q in range(num_q):
                for j in classes:
                    if j == c:
                        continue
                    slots = torch.nonzero(neg_class[q] == j, as_tuple=False).flatten()
                    if slots.numel() == 0:
                        continue
                    r = torch.randint(pool[j].numel(), (slots.numel(),), generator=generator,
                                      device=gen_device)
                    negatives[q, slots] = pool[j][r.to(device)]
            if bool((negatives < 0).any()) or bool((pixel_class[negatives] == c).any()):
                raise RuntimeError("negative sampler produced an invalid index (pi has mass "
                                   "outside V \\ {c}?)")
        else:
            anchors = draws["anchors"][c].to(device)
            negatives = draws["negatives"][c].to(device)
            if bool(((anchors < 0) | (anchors >= num_pixels)).any()) \
                    or not bool((pixel_class[anchors.clamp(0, num_pixels - 1)] == c).all()) \
                    or not bool(pixel_hard[anchors.clamp(0, num_pixels - 1)].all()):
                raise ValueError(f"draws['anchors'][{c}] must hold pixel indices of the hard pool "
                                 f"H_{c} (valid pixels of class {c} with prob < strong_threshold)")
            neg_cls = pixel_class[negatives.clamp(0, num_pixels - 1)]
            if bool(((negatives < 0) | (negatives >= num_pixels)).any()) \
                    or bool((neg_cls < 0).any()) or bool((neg_cls == c).any()):
                raise ValueError(f"draws['negatives'][{c}] must hold pixel indices of valid "
                                 f"pixels of classes in V other than {c}")

        out_anchors[c] = anchors
        out_negatives[c] = negatives

        # Anchors keep their gradient; positive (prototype) and negatives are detached.
        anchor_mu = mu_rows[anchors]                     # [Q, D]
        anchor_var = var_rows[anchors]
        with torch.no_grad():
            positive_mu = proto_mu[c].view(1, 1, dim).expand(num_q, 1, dim)
            positive_var = proto_var[c].view(1, 1, dim).expand(num_q, 1, dim)
            key_mu = torch.cat([positive_mu, mu_det[negatives]], dim=1)      # [Q, 1+K, D]
            key_var = torch.cat([positive_var, var_det[negatives]], dim=1)
        logits = mls(anchor_mu.unsqueeze(1), anchor_var.unsqueeze(1), key_mu, key_var)  # [Q, 1+K]
        target = torch.zeros(num_q, dtype=torch.long, device=logits.device)         # Q-loss-3
        term = F.cross_entropy(logits / temp, target)    # mean over the Q anchors
        total = term if total is None else total + term

    if total is None:
        return finish(zero)   # no class had a hard anchor
    return finish(total / len(classes))
