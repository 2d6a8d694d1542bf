"""The PRCL loss, vectorised (method spec §7.6–7.7, §15).

Sampling uses fixed-shape tensor ops (sorted pixel order, counts and offsets instead of per-class
boolean gathers), and the mutual-likelihood-score contrast is a fused autograd function that runs
over chunks of anchors and computes the anchors' gradients in the same pass: only anchors need
gradients (prototypes and negatives are detached), so nothing of size [Q, 1+K, D] is kept for
backward and memory stays bounded by the chunk. One host synchronisation per call (the number of
active classes), whatever the number of classes.

Draws have the reference's format (py/reference/prcl.py): anchors [C, Q] and negatives [C, Q, K]
as global pixel indices into the flattened (b, y, x) pool, -1 in rows of classes without a term.
"""

import torch
import torch.nn.functional as F


def flatten_maps(mu, var, label, mask, prob):
    """[B, *, h, w] maps -> pixel rows in row-major (b, y, x) order."""
    def rows(x):
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    valid = label * mask
    return rows(mu), rows(var), rows(valid), rows(prob)


def mls(mu_a, var_a, mu_b, var_b):
    """Mutual likelihood score as released: normalised means, mean over dimensions (§7.4)."""
    a = F.normalize(mu_a, dim=-1)
    b = F.normalize(mu_b, dim=-1)
    s = var_a + var_b
    return -0.5 * ((a - b) ** 2 / s + torch.log(s)).mean(-1)


class PixelKeys:
    """Per-pixel class keys, per-class counts and the class-sorted pixel order (§15.2, 1–2)."""

    def __init__(self, valid, prob, strong_threshold):
        n_pix, num_classes = valid.shape
        is_valid = valid.sum(1) > 0
        cls = torch.where(is_valid, valid.argmax(1), torch.full_like(is_valid, num_classes, dtype=torch.long))
        p_own = prob.gather(1, cls.clamp(max=num_classes - 1).unsqueeze(1)).squeeze(1)
        hard = torch.where(is_valid & (p_own < strong_threshold), cls, torch.full_like(cls, num_classes))
        ones = torch.ones_like(cls)
        self.num_classes = num_classes
        self.cls = cls
        counts = torch.zeros(num_classes + 1, dtype=torch.long, device=cls.device)
        self.n = counts.clone().scatter_add_(0, cls, ones)[:num_classes]
        self.m = counts.scatter_add_(0, hard, ones)[:num_classes]
        # A stable sort keeps row-major order within a class: order[off[c] + r] is the r-th pixel
        # of class c's pool, exactly as the reference enumerates it.
        self.order = torch.sort(cls, stable=True).indices
        self.horder = torch.sort(hard, stable=True).indices
        self.off = torch.cumsum(self.n, 0) - self.n
        self.hoff = torch.cumsum(self.m, 0) - self.m


def prototype_sums(mu, var, keys):
    """The sufficient statistics of the prototypes (§15.5): per class, the precision sum Σ 1/σ²
    [C, D], the precision-weighted mean sum Σ μ/σ² [C, D] and the pixel count [C]."""
    c = keys.num_classes
    d = mu.shape[1]
    inv = var.reciprocal()
    prec = torch.zeros(c + 1, d, dtype=mu.dtype, device=mu.device).index_add_(0, keys.cls, inv)[:c]
    wmu = torch.zeros(c + 1, d, dtype=mu.dtype, device=mu.device).index_add_(0, keys.cls, mu * inv)[:c]
    return prec, wmu, keys.n


def prototypes_from_sums(prec, wmu, n):
    """σ̂²_c = 1 / Σ 1/σ², μ̂_c = σ̂²_c · Σ μ/σ² (Eq. 7–8). Classes without pixels get mu 0 and
    var 1 (finite placeholders that never reach the loss)."""
    present = (n > 0).unsqueeze(1)
    pvar = torch.where(present, prec.reciprocal(), torch.ones_like(prec))
    pmu = torch.where(present, pvar * wmu, torch.zeros_like(wmu))
    return pmu, pvar


def prototypes(mu, var, keys, reduce=None):
    """Product-of-Gaussians prototype per class (§7.5), all classes at once, without grad.

    `reduce` (distributed.reduce_sums at world size > 1 with global prototypes) sums the
    statistics over ranks first: the prototypes of every rank's pixels, as released under DDP
    (§7.10), equal to those of the concatenated maps up to summation order, for 2·C·D + C floats
    instead of all-gathered feature maps. It is a collective: every rank must call it."""
    prec, wmu, n = prototype_sums(mu, var, keys)
    if reduce is not None:
        prec, wmu, n = reduce(prec, wmu, n)
    return prototypes_from_sums(prec, wmu, n)


def negative_class_probs(pmu, pvar, present, neg_temp):
    """pi[c, j] = softmax over j in V \\ {c} of MLS(proto_c, proto_j) / neg_temp; 0 elsewhere."""
    c = pmu.shape[0]
    s = mls(pmu.unsqueeze(1), pvar.unsqueeze(1), pmu.unsqueeze(0), pvar.unsqueeze(0)) / neg_temp
    allowed = present.unsqueeze(0) & present.unsqueeze(1) & ~torch.eye(c, dtype=torch.bool, device=pmu.device)
    s = s.masked_fill(~allowed, float("-inf"))
    has = allowed.any(1, keepdim=True)
    pi = torch.softmax(torch.where(has, s, torch.zeros_like(s)), 1)
    return torch.where(allowed, pi, torch.zeros_like(pi))


def _index_within(count, u):
    """floor(u * count), clamped against rounding to count - 1."""
    r = (u * count.to(u.dtype)).long()
    return torch.minimum(r, (count - 1).clamp(min=0))


def _mls_terms(a, va, t, vt):
    """For anchors a, va [r, D] against targets t, vt [r, D] (one per row): MLS, and its
    derivatives with respect to a and va (§7.4)."""
    dim = a.shape[-1]
    s = va + vt
    inv = s.reciprocal()
    e = (a - t) * inv
    mls_val = -0.5 / dim * ((e * (a - t)).sum(-1) + torch.log(s).sum(-1))
    d_a = -e / dim
    d_v = -0.5 / dim * (inv - e * e)
    return mls_val, d_a, d_v


class _FusedContrast(torch.autograd.Function):
    """sum over rows r of CE(MLS(a_r, [pos_r; neg_r1..K]) / temp, target 0), times `scale`,
    with d/dâ and d/dσ²_a accumulated in the forward pass, chunk by chunk."""

    @staticmethod
    def forward(ctx, a_hat, var_a, pos_hat, pos_var, neg_idx, bank_hat, bank_var, temp, scale, chunk):
        rows, dim = a_hat.shape
        k = neg_idx.shape[1]
        grad_a = torch.empty_like(a_hat)
        grad_v = torch.empty_like(var_a)
        total = a_hat.new_zeros(())
        # Work buffers for one chunk of negatives, reused: [chunk * K, D] each.
        buf_t = a_hat.new_empty(min(rows, chunk) * k, dim)
        buf_s = a_hat.new_empty(min(rows, chunk) * k, dim)
        buf_x = a_hat.new_empty(min(rows, chunk) * k, dim)
        for start in range(0, rows, chunk):
            end = min(rows, start + chunk)
            r = end - start
            a, va = a_hat[start:end], var_a[start:end]
            pos_mls, pos_da, pos_dv = _mls_terms(a, va, pos_hat[start:end], pos_var[start:end])
            idx = neg_idx[start:end].reshape(-1)
            t = torch.index_select(bank_hat, 0, idx, out=buf_t[: r * k]).view(r, k, dim)
            s = torch.index_select(bank_var, 0, idx, out=buf_s[: r * k]).view(r, k, dim)
            x = buf_x[: r * k].view(r, k, dim)
            s.add_(va.unsqueeze(1))                                   # s = σ²_a + σ²_t
            log_sum = torch.log(s, out=x).sum(-1)
            t.sub_(a.unsqueeze(1))                                    # t = -(â - t̂)
            torch.div(t, s, out=x)                                    # x = -(â - t̂)/s = -e
            quad = (x * t).sum(-1)                                    # Σ (â - t̂)²/s
            neg_mls = (quad + log_sum).mul_(-0.5 / dim)
            logits = torch.cat([pos_mls.unsqueeze(1), neg_mls], 1).div_(temp)
            lse = torch.logsumexp(logits, 1)
            total = total + (lse - logits[:, 0]).sum()
            g = torch.softmax(logits, 1)
            g[:, 0] -= 1.0
            g.mul_(scale / temp)                                      # dL/dMLS per target
            g_neg = g[:, 1:].unsqueeze(1)                             # [r, 1, K]
            # dMLS/dâ = -e/D; x holds -e, so dL/dâ = Σ_k g_k x_k / D
            grad_a[start:end] = torch.bmm(g_neg, x).squeeze(1).div_(dim).add_(g[:, :1] * pos_da)
            # dMLS/dσ²_a = -(1/(2D)) (1/s - e²)
            s.reciprocal_().addcmul_(x, x, value=-1.0)
            grad_v[start:end] = torch.bmm(g_neg, s).squeeze(1).mul_(-0.5 / dim).add_(g[:, :1] * pos_dv)
        ctx.save_for_backward(grad_a, grad_v)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_a, grad_v = ctx.saved_tensors
        return grad_a * grad_out, grad_v * grad_out, None, None, None, None, None, None, None, None


def default_chunk_elements(device):
    # CPU: stay near cache-friendly sizes; GPU: large enough to fill the device.
    return 1 << 22 if torch.device(device).type == "cpu" else 1 << 26


def prcl_loss(mu, var, label, mask, prob, *, strong_threshold, temp, neg_temp, num_queries, num_negatives,
              generator=None, draws=None, return_draws=False, return_stats=False, chunk_elements=None,
              prototype_reduce=None):
    """PRCL loss on maps mu, var [B,D,h,w], one-hot label [B,C,h,w], mask [B,1,h,w], prob [B,C,h,w].

    `neg_temp` None uses `temp` for the negative-class distribution, as released.
    `prototype_reduce` (None: this batch's pixels) sums the prototype statistics over ranks: the
    prototypes (the positives, and the negative-class distribution) are then every rank's, while
    class presence |V|, anchors and negatives stay this rank's (§7.10). It is a collective, run on
    every call, degenerate batches included. Prototypes never carry a gradient (computed from
    detached maps, without grad): only the anchors do.
    Returns the loss (a zero attached to the graph when fewer than two classes are present or no
    class has hard anchors), plus the draws when `return_draws`, plus stats when `return_stats`
    (`classes_present` as a 0-d tensor, `anchor_classes` as an int, `hard_pixels` [C]: the anchor
    candidates per class). `draws` replays given indices.
    """
    if temp <= 0:
        raise ValueError(f"temp must be > 0, got {temp}")
    if num_queries < 1 or num_negatives < 1:
        raise ValueError(f"num_queries and num_negatives must be >= 1, got {num_queries} and {num_negatives}")
    neg_temp = temp if neg_temp is None else neg_temp
    mu_r, var_r, valid, prob_r = flatten_maps(mu, var, label, mask, prob)
    q, k = num_queries, num_negatives
    # A zero attached to the graph, so a degenerate batch still backpropagates (Q-loss-2).
    zero = (mu.sum() + var.sum()) * 0.0
    with torch.no_grad():
        keys = PixelKeys(valid.detach(), prob_r.detach(), strong_threshold)
        num_classes = keys.num_classes
        present = keys.n > 0
        n_present = present.sum()
        active_mask = present & (keys.m > 0) & (n_present > 1)
        active = torch.nonzero(active_mask).flatten()      # the one host sync
        num_active = active.numel()
        empty = torch.full((num_classes, q), -1, dtype=torch.long, device=mu.device)
        empty_neg = torch.full((num_classes, q, k), -1, dtype=torch.long, device=mu.device)
        stats = {"classes_present": n_present, "anchor_classes": num_active, "hard_pixels": keys.m}
        mu_d, var_d = mu_r.detach(), var_r.detach()
        # The collective runs before the degenerate-batch return, so every rank joins it every step.
        proto = None if prototype_reduce is None else prototypes(mu_d, var_d, keys, prototype_reduce)
        if num_active == 0:
            return _result(zero, {"anchors": empty, "negatives": empty_neg}, stats, return_draws, return_stats)
        pmu, pvar = proto if proto is not None else prototypes(mu_d, var_d, keys)
        if draws is None:
            pi = negative_class_probs(pmu, pvar, present, neg_temp)
            u = torch.rand(num_active, q, generator=generator, device=mu.device)
            anchors = keys.horder[keys.hoff[active].unsqueeze(1) + _index_within(keys.m[active].unsqueeze(1), u)]
            ncls = torch.multinomial(pi[active], q * k, replacement=True, generator=generator).view(num_active, q, k)
            u2 = torch.rand(num_active, q, k, generator=generator, device=mu.device)
            negatives = keys.order[keys.off[ncls] + _index_within(keys.n[ncls], u2)]
        else:
            anchors = draws["anchors"].to(mu.device)[active]
            negatives = draws["negatives"].to(mu.device)[active]
        bank_hat = F.normalize(mu_d, dim=1)
        pos_hat = F.normalize(pmu, dim=1)[active].repeat_interleave(q, 0)
        pos_var = pvar[active].repeat_interleave(q, 0)
        scale = 1.0 / (q * n_present.to(mu.dtype))
    flat = anchors.reshape(-1)
    a_hat = F.normalize(mu_r[flat], dim=1)
    chunk_elements = chunk_elements or default_chunk_elements(mu.device)
    chunk = max(1, chunk_elements // ((k + 1) * mu.shape[1]))
    loss = _FusedContrast.apply(a_hat, var_r[flat], pos_hat, pos_var, negatives.reshape(-1, k),
                                bank_hat, var_d, float(temp), scale, chunk) + zero
    if return_draws:
        empty[active] = anchors
        empty_neg[active] = negatives
    return _result(loss, {"anchors": empty, "negatives": empty_neg}, stats, return_draws, return_stats)


def _result(loss, draws, stats, return_draws, return_stats):
    out = (loss,) + ((draws,) if return_draws else ()) + ((stats,) if return_stats else ())
    return out[0] if len(out) == 1 else out
