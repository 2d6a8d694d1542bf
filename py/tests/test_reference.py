"""reference: the literal PRCL losses and schedules (spec: docs/prcl-method.md).

Covers MLS (formula by hand, symmetry, broadcasting, scale invariance), distribution prototypes,
the row-major flattening, the loss against an independent float64 NumPy re-computation from the
same draws, the edge cases of spec §16.6, gradient support (§16.5), replay of draws, seeding,
the tau = 100 sanity value (§7.9), chi-square tests of the samplers (§16.4), argument checks,
the released and fixed unsupervised losses (§7.2, Q-loss-1) and the schedules of §8.3.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference import (
    ema_decay,
    flatten_inputs,
    mls,
    poly_lr,
    prcl_loss_reference,
    prcl_negative_class_probs,
    prototypes,
    ramp_down,
    unsup_loss,
    unsup_loss_released,
)

# Upper 1e-4 quantiles of the chi-square distribution, from the closed-form survival functions
#   df = 2: sf(x) = exp(-x/2)                                      -> 18.42
#   df = 3: sf(x) = erfc(sqrt(x/2)) + sqrt(2x/pi) * exp(-x/2)       -> 21.11
#   df = 4: sf(x) = exp(-x/2) * (1 + x/2)                          -> 23.51
# (checked in test_chi2_critical_values). Conservative: a correct sampler fails a single test
# with probability 1e-4; every test below uses a fixed seed, so it is deterministic anyway.
CHI2_CRIT_1E4 = {2: 18.42, 3: 21.11, 4: 23.51}


def chi2_stat(observed, expected):
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(((observed - expected) ** 2 / expected).sum())


def make_inputs(present=(0, 1, 2, 3, 4), num_classes=5, batch=4, dim=16, h=9, w=9, seed=0,
                mask_rate=0.2, logit_scale=2.0, dtype=torch.float32):
    """Random PRCL inputs: every pixel gets one class of `present`; ~mask_rate of pixels masked."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, dim, h, w, generator=g, dtype=dtype)
    var = torch.sigmoid(torch.randn(batch, dim, h, w, generator=g, dtype=dtype))
    ids = torch.tensor(present, dtype=torch.long)
    cls = ids[torch.randint(len(present), (batch, h, w), generator=g)]
    label = F.one_hot(cls, num_classes).permute(0, 3, 1, 2).to(dtype)
    mask = (torch.rand(batch, 1, h, w, generator=g) >= mask_rate).to(dtype)
    prob = torch.softmax(logit_scale * torch.randn(batch, num_classes, h, w, generator=g,
                                                   dtype=dtype), dim=1)
    return mu.requires_grad_(), var.requires_grad_(), label, mask, prob


def to_rows(t):
    """[B, F, h, w] -> a [B*h*w, F] copy, row p = b*h*w + y*w + x."""
    return t.detach().permute(0, 2, 3, 1).reshape(-1, t.shape[1]).clone()


def from_rows(rows, like):
    """Inverse of to_rows."""
    b, f, h, w = like.shape
    return rows.reshape(b, h, w, f).permute(0, 3, 1, 2).contiguous()


def gen(seed):
    return torch.Generator().manual_seed(seed)


def pixel_classes(label, mask):
    """[N] class id of every pixel row, -1 where not valid (independent of flatten_inputs)."""
    b, c, h, w = label.shape
    out = np.full(b * h * w, -1, dtype=np.int64)
    lab = label.detach().numpy()
    msk = mask.detach().numpy()
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                if msk[bi, 0, y, x] == 1:
                    hits = np.nonzero(lab[bi, :, y, x] == 1)[0]
                    if len(hits):
                        out[bi * h * w + y * w + x] = hits[0]
    return out


# ------------------------------------------------------------------------------------------------
# independent float64 NumPy re-computation of the loss from given draws
# ------------------------------------------------------------------------------------------------

def np_mls(a, va, b, vb):
    a = a / max(np.linalg.norm(a), 1e-12)
    b = b / max(np.linalg.norm(b), 1e-12)
    s = va + vb
    return -0.5 * np.mean((a - b) ** 2 / s + np.log(s))


def numpy_terms_from_draws(mu, var, label, mask, prob, draws, temp, strong_threshold):
    """Per-class terms {c: term} and |V|, by loops over pixels, classes and anchors in NumPy
    float64. Also checks that the draws come from the right pools."""
    b, d, h, w = mu.shape
    mu_np = mu.detach().double().numpy()
    var_np = var.detach().double().numpy()
    prob_np = prob.detach().double().numpy()
    rows_mu = np.zeros((b * h * w, d))
    rows_var = np.zeros((b * h * w, d))
    rows_prob = np.zeros((b * h * w, label.shape[1]))
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                p = bi * h * w + y * w + x
                rows_mu[p] = mu_np[bi, :, y, x]
                rows_var[p] = var_np[bi, :, y, x]
                rows_prob[p] = prob_np[bi, :, y, x]
    cls = pixel_classes(label, mask)
    classes = sorted(set(cls[cls >= 0].tolist()))
    terms = {}
    if len(classes) <= 1:
        return terms, len(classes)
    anchors = draws["anchors"].numpy()
    negatives = draws["negatives"].numpy()
    for c in classes:
        hard = [p for p in range(len(cls)) if cls[p] == c and rows_prob[p, c] < strong_threshold]
        if not hard:
            assert (anchors[c] == -1).all()
            continue
        assert set(anchors[c].tolist()) <= set(hard)
        members = np.nonzero(cls == c)[0]
        proto_var = 1.0 / np.sum(1.0 / rows_var[members], axis=0)
        proto_mu = np.sum(proto_var / rows_var[members] * rows_mu[members], axis=0)
        term = 0.0
        for q, a in enumerate(anchors[c]):
            negs = negatives[c, q]
            assert all(cls[n] >= 0 and cls[n] != c for n in negs)
            logits = [np_mls(rows_mu[a], rows_var[a], proto_mu, proto_var)]
            logits += [np_mls(rows_mu[a], rows_var[a], rows_mu[n], rows_var[n]) for n in negs]
            z = np.array(logits) / temp
            m = z.max()
            term += -(z[0] - m) + np.log(np.sum(np.exp(z - m)))  # -log softmax(z)[0]
        terms[c] = term / len(anchors[c])
    return terms, len(classes)


def numpy_loss_from_draws(mu, var, label, mask, prob, draws, temp, strong_threshold):
    terms, num_present = numpy_terms_from_draws(mu, var, label, mask, prob, draws, temp,
                                                strong_threshold)
    return sum(terms.values()) / num_present if num_present > 1 else 0.0


# ------------------------------------------------------------------------------------------------
# MLS
# ------------------------------------------------------------------------------------------------

def test_mls_hand_example():
    # a = (3, 4) -> a_hat = (0.6, 0.8);  b = (1, 0) -> b_hat = (1, 0)
    # var_a = (0.5, 1.5), var_b = (0.5, 0.5) -> s = (1, 2)
    # d = 0: (0.6 - 1)^2 / 1 + log 1 = 0.16
    # d = 1: (0.8 - 0)^2 / 2 + log 2 = 0.32 + 0.6931471806 = 1.0131471806
    # mean = 1.1731471806 / 2 = 0.5865735903;  MLS = -0.5 * mean = -0.29328679515
    a = torch.tensor([3.0, 4.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    va = torch.tensor([0.5, 1.5], dtype=torch.float64)
    vb = torch.tensor([0.5, 0.5], dtype=torch.float64)
    out = mls(a, va, b, vb)
    assert out.dim() == 0
    assert out.item() == pytest.approx(-0.29328679515, abs=1e-10)


def test_mls_symmetric():
    g = gen(1)
    a, b = torch.randn(7, 32, generator=g), torch.randn(7, 32, generator=g)
    va, vb = torch.rand(7, 32, generator=g) + 0.01, torch.rand(7, 32, generator=g) + 0.01
    assert torch.equal(mls(a, va, b, vb), mls(b, vb, a, va))


def test_mls_broadcasting_matches_pairwise():
    g = gen(2)
    q, k, d = 5, 6, 16
    a, va = torch.randn(q, 1, d, generator=g), torch.rand(q, 1, d, generator=g) + 0.01
    keys, vkeys = torch.randn(q, 1 + k, d, generator=g), torch.rand(q, 1 + k, d, generator=g) + 0.01
    out = mls(a, va, keys, vkeys)
    assert out.shape == (q, 1 + k)
    for i in range(q):
        for j in range(1 + k):
            expect = np_mls(a[i, 0].double().numpy(), va[i, 0].double().numpy(),
                            keys[i, j].double().numpy(), vkeys[i, j].double().numpy())
            assert out[i, j].item() == pytest.approx(expect, rel=1e-5, abs=1e-6)


def test_mls_invariant_to_scaling_mu():
    g = gen(3)
    a, b = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.randn(4, 8, generator=g,
                                                                          dtype=torch.float64)
    va, vb = torch.rand(4, 8, generator=g, dtype=torch.float64) + 0.1, \
        torch.rand(4, 8, generator=g, dtype=torch.float64) + 0.1
    ref = mls(a, va, b, vb)
    assert torch.allclose(mls(7.5 * a, va, 0.01 * b, vb), ref, rtol=0, atol=1e-12)
    # scaling the variances is not an invariance
    assert not torch.allclose(mls(a, 2 * va, b, 2 * vb), ref)


# ------------------------------------------------------------------------------------------------
# prototypes and flattening
# ------------------------------------------------------------------------------------------------

def test_prototype_of_single_pixel_class_is_that_pixel():
    g = gen(4)
    mu, var = torch.randn(6, 5, generator=g, dtype=torch.float64), \
        torch.rand(6, 5, generator=g, dtype=torch.float64) + 0.05
    valid = torch.zeros(6, 3, dtype=torch.float64)
    valid[2, 1] = 1          # class 1: pixel 2 only
    valid[[0, 1, 3], 0] = 1  # class 0: three pixels
    pm, pv, present = prototypes(mu, var, valid)
    assert torch.allclose(pm[1], mu[2], rtol=1e-12, atol=0)
    assert torch.allclose(pv[1], var[2], rtol=1e-12, atol=0)
    assert present.tolist() == [True, True, False]
    assert torch.isnan(pm[2]).all() and torch.isnan(pv[2]).all()
    assert torch.isfinite(pm[:2]).all() and torch.isfinite(pv[:2]).all()


def test_prototype_with_equal_variances_is_mean_and_var_over_n():
    g = gen(5)
    n, d = 7, 4
    mu = torch.randn(n, d, generator=g, dtype=torch.float64)
    var = torch.full((n, d), 0.3, dtype=torch.float64)
    valid = torch.ones(n, 1, dtype=torch.float64)
    pm, pv, present = prototypes(mu, var, valid)
    assert torch.allclose(pm[0], mu.mean(0), atol=1e-12)
    assert torch.allclose(pv[0], torch.full((d,), 0.3 / n, dtype=torch.float64), atol=1e-15)
    assert present.tolist() == [True]


def test_prototype_precision_weighting_by_hand():
    # pixel A: mu 1, var 1; pixel B: mu 4, var 0.5.  precision 1 + 2 = 3 -> var 1/3;
    # mu = (1/3)/1 * 1 + (1/3)/0.5 * 4 = 1/3 + 8/3 = 3   (mu unnormalised: 4 weighs as 4)
    mu = torch.tensor([[1.0], [4.0], [100.0]], dtype=torch.float64)
    var = torch.tensor([[1.0], [0.5], [0.1]], dtype=torch.float64)
    valid = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    pm, pv, _ = prototypes(mu, var, valid)
    assert pm[0, 0].item() == pytest.approx(3.0, abs=1e-12)
    assert pv[0, 0].item() == pytest.approx(1 / 3, abs=1e-12)


def test_flatten_inputs_row_major():
    b, d, c, h, w = 2, 3, 4, 3, 5
    mu = torch.arange(b * d * h * w, dtype=torch.float32).view(b, d, h, w)
    var = mu + 1000
    cls = torch.randint(c, (b, h, w), generator=gen(6))
    label = F.one_hot(cls, c).permute(0, 3, 1, 2).float()
    mask = (torch.rand(b, 1, h, w, generator=gen(7)) > 0.5).float()
    prob = torch.rand(b, c, h, w, generator=gen(8))
    m, v, valid, p = flatten_inputs(mu, var, label, mask, prob)
    assert m.shape == (b * h * w, d) and v.shape == (b * h * w, d)
    assert valid.shape == (b * h * w, c) and p.shape == (b * h * w, c)
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                row = bi * h * w + y * w + x
                assert torch.equal(m[row], mu[bi, :, y, x])
                assert torch.equal(v[row], var[bi, :, y, x])
                assert torch.equal(valid[row], label[bi, :, y, x] * mask[bi, 0, y, x])
                assert torch.equal(p[row], prob[bi, :, y, x])


def test_negative_class_probs_structure():
    g = gen(9)
    pm = torch.randn(6, 8, generator=g, dtype=torch.float64)
    pv = torch.rand(6, 8, generator=g, dtype=torch.float64) * 0.1 + 0.01
    present = torch.tensor([True, False, True, True, False, True])
    pi = prcl_negative_class_probs(pm, pv, present, 0.5)
    assert pi.shape == (6, 6)
    for c in range(6):
        if not present[c]:
            assert (pi[c] == 0).all()
            continue
        assert pi[c, c] == 0 and (pi[c, ~present] == 0).all()
        assert pi[c].sum().item() == pytest.approx(1.0, abs=1e-12)
        cands = [j for j in range(6) if present[j] and j != c]
        sims = np.array([np_mls(pm[c].numpy(), pv[c].numpy(), pm[j].numpy(), pv[j].numpy())
                         for j in cands]) / 0.5
        expect = np.exp(sims - sims.max()) / np.exp(sims - sims.max()).sum()
        assert np.allclose(pi[c, cands].numpy(), expect, atol=1e-12)
    only = torch.tensor([False, False, True, False, False, False])
    assert (prcl_negative_class_probs(pm, pv, only, 0.5) == 0).all()  # no candidate: all 0


# ------------------------------------------------------------------------------------------------
# the loss: value
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("temp", [0.5, 100.0])
def test_loss_matches_numpy_recomputation_from_its_draws(temp):
    mu, var, label, mask, prob = make_inputs(present=(0, 2, 3, 5), num_classes=6, dim=8, h=6, w=6,
                                             dtype=torch.float64, seed=10)
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, temp=temp, num_queries=6,
                                      num_negatives=9, generator=gen(11), return_draws=True)
    expect = numpy_loss_from_draws(mu, var, label, mask, prob, draws, temp, 0.8)
    assert loss.item() == pytest.approx(expect, rel=1e-10, abs=1e-12)
    assert draws["anchors"].shape == (6, 6) and draws["negatives"].shape == (6, 6, 9)
    for c in (1, 4):  # absent classes: no term, rows -1
        assert (draws["anchors"][c] == -1).all() and (draws["negatives"][c] == -1).all()


def test_loss_value_with_injected_draws_matches_numpy():
    """Hand-made draws (not from the sampler) give the value the formula says."""
    mu, var, label, mask, prob = make_inputs(present=(0, 1, 2), num_classes=3, dim=8, h=5, w=5,
                                             dtype=torch.float64, seed=12, mask_rate=0.0)
    cls = pixel_classes(label, mask)
    prob_rows = flatten_inputs(mu, var, label, mask, prob)[3]
    q, k = 4, 5
    rng = np.random.RandomState(0)
    anchors = torch.full((3, q), -1, dtype=torch.long)
    negatives = torch.full((3, q, k), -1, dtype=torch.long)
    for c in range(3):
        hard = [p for p in range(len(cls)) if cls[p] == c and prob_rows[p, c] < 0.8]
        others = [p for p in range(len(cls)) if cls[p] >= 0 and cls[p] != c]
        anchors[c] = torch.tensor(rng.choice(hard, q))
        negatives[c] = torch.tensor(rng.choice(others, (q, k)))
    draws = {"anchors": anchors, "negatives": negatives}
    loss = prcl_loss_reference(mu, var, label, mask, prob, num_queries=q, num_negatives=k,
                               draws=draws)
    expect = numpy_loss_from_draws(mu, var, label, mask, prob, draws, 0.5, 0.8)
    assert loss.item() == pytest.approx(expect, rel=1e-10)


def test_temp_100_is_near_log_1_plus_k():
    # tau = 100 divides MLS differences of order 1 by 100, so every logit is about the same
    # and the CE is close to log(1 + K) (spec §7.9).
    mu, var, label, mask, prob = make_inputs(present=(0, 2, 3, 5, 7), num_classes=8, dim=256,
                                             h=21, w=21, seed=13)
    k = 128
    loss = prcl_loss_reference(mu, var, label, mask, prob, temp=100.0, num_queries=64,
                               num_negatives=k, generator=gen(14))
    assert abs(loss.item() - math.log(1 + k)) < 0.05
    # and it is not exactly log(1 + K): the positive scores higher than the negatives
    assert loss.item() < math.log(1 + k)


# ------------------------------------------------------------------------------------------------
# the loss: edge cases (§16.6)
# ------------------------------------------------------------------------------------------------

def assert_attached_zero(loss, mu, var):
    assert loss.item() == 0.0
    assert loss.requires_grad and loss.grad_fn is not None
    loss.backward()
    assert mu.grad is not None and var.grad is not None
    assert (mu.grad == 0).all() and (var.grad == 0).all()


def test_no_class_present_gives_attached_zero():
    mu, var, label, mask, prob = make_inputs()
    label = torch.zeros_like(label)
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=4, num_negatives=4,
                                      generator=gen(0), return_draws=True)
    assert (draws["anchors"] == -1).all() and (draws["negatives"] == -1).all()
    assert_attached_zero(loss, mu, var)


def test_all_mask_zero_gives_attached_zero():
    mu, var, label, mask, prob = make_inputs()
    loss = prcl_loss_reference(mu, var, label, torch.zeros_like(mask), prob, num_queries=4,
                               num_negatives=4, generator=gen(0))
    assert_attached_zero(loss, mu, var)


def test_single_class_gives_attached_zero():
    mu, var, label, mask, prob = make_inputs(present=(3,))
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=4, num_negatives=4,
                                      generator=gen(0), return_draws=True)
    assert (draws["anchors"] == -1).all()
    assert_attached_zero(loss, mu, var)


def test_no_hard_pool_anywhere_gives_attached_zero():
    mu, var, label, mask, prob = make_inputs(present=(0, 1, 2))
    prob = label.clone()   # every valid pixel has probability 1 for its class: nothing is hard
    loss = prcl_loss_reference(mu, var, label, mask, prob, num_queries=4, num_negatives=4,
                               generator=gen(0))
    assert_attached_zero(loss, mu, var)


def test_hard_threshold_is_strict():
    mu, var, label, mask, prob = make_inputs(present=(0, 1))
    prob = torch.where(label == 1, torch.full_like(prob, 0.8), torch.full_like(prob, 0.05))
    loss = prcl_loss_reference(mu, var, label, mask, prob, num_queries=4, num_negatives=4,
                               generator=gen(0))
    assert loss.item() == 0.0   # prob == 0.8 is not < 0.8
    prob_below = torch.where(label == 1, torch.full_like(prob, 0.79), prob)
    loss = prcl_loss_reference(mu, var, label, mask, prob_below, num_queries=4, num_negatives=4,
                               generator=gen(0))
    assert loss.item() != 0.0


def test_class_without_hard_pool_counts_in_denominator():
    # Three classes; class 2 has valid pixels but none is hard (its probability is 0.95).
    # It contributes no term, its pixels still serve as negatives, and |V| = 3 divides.
    mu, var, label, mask, prob = make_inputs(present=(0, 1, 2), num_classes=3, seed=15,
                                             dtype=torch.float64)
    prob = prob.clone()
    prob[:, 2] = torch.where(label[:, 2] == 1, torch.full_like(prob[:, 2], 0.95), prob[:, 2])
    # neg_temp = 1000 makes pi nearly uniform, so class 2 is drawn as a negative
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=8, num_negatives=6,
                                      neg_temp=1000.0, generator=gen(16), return_draws=True)
    assert (draws["anchors"][2] == -1).all() and (draws["negatives"][2] == -1).all()
    assert (draws["anchors"][:2] >= 0).all()
    cls = pixel_classes(label, mask)
    assert (cls[draws["negatives"][:2].numpy()] == 2).any()   # class 2 still a negative

    terms, num_present = numpy_terms_from_draws(mu, var, label, mask, prob, draws, 0.5, 0.8)
    assert sorted(terms) == [0, 1] and num_present == 3
    assert loss.item() == pytest.approx((terms[0] + terms[1]) / 3, rel=1e-10)
    assert loss.item() != pytest.approx((terms[0] + terms[1]) / 2, rel=1e-3)


def test_two_classes_draw_all_negatives_from_the_other():
    mu, var, label, mask, prob = make_inputs(present=(1, 3), num_classes=4, seed=18)
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=16,
                                      num_negatives=12, generator=gen(19), return_draws=True)
    cls = pixel_classes(label, mask)
    assert (cls[draws["negatives"][1].numpy()] == 3).all()
    assert (cls[draws["negatives"][3].numpy()] == 1).all()
    assert (draws["anchors"][[0, 2]] == -1).all()
    m, v, valid, _ = flatten_inputs(mu.detach(), var.detach(), label, mask, prob)
    pi = prcl_negative_class_probs(*prototypes(m, v, valid), 0.5)
    expect = torch.zeros(4, 4)
    expect[1, 3] = expect[3, 1] = 1.0
    assert torch.equal(pi, expect)
    assert torch.isfinite(loss)


def test_more_queries_than_hard_pixels():
    mu, var, label, mask, prob = make_inputs(present=(0, 1, 2), num_classes=3, mask_rate=0.0,
                                             seed=20)
    cls = pixel_classes(label, mask)
    hard0 = np.nonzero(cls == 0)[0][:2]         # exactly two hard pixels of class 0
    prob_rows = to_rows(prob)
    prob_rows[cls == 0, 0] = 0.9
    prob_rows[hard0, 0] = 0.1
    prob = from_rows(prob_rows, prob)
    q = 64
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=q, num_negatives=4,
                                      generator=gen(21), return_draws=True)
    assert draws["anchors"].shape == (3, q)
    assert set(draws["anchors"][0].tolist()) == set(hard0.tolist())  # both used, with replacement
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(var.grad).all()


@pytest.mark.parametrize("case", ["floor", "near_one", "mixed"])
def test_extreme_variances_give_finite_loss_and_grads(case):
    mu, var, label, mask, prob = make_inputs(seed=22, dim=32)
    with torch.no_grad():
        if case == "floor":
            var.fill_(1e-6)
        elif case == "near_one":
            var.fill_(1 - 1e-6)
        else:
            var.copy_(torch.where(torch.rand(var.shape, generator=gen(23)) < 0.5,
                                  torch.full_like(var, 1e-6), torch.full_like(var, 1 - 1e-6)))
    for temp in (0.5, 100.0):
        mu.grad = var.grad = None
        loss = prcl_loss_reference(mu, var, label, mask, prob, temp=temp, num_queries=16,
                                   num_negatives=16, generator=gen(24))
        loss.backward()
        assert torch.isfinite(loss) and loss.item() > 0
        assert torch.isfinite(mu.grad).all() and torch.isfinite(var.grad).all()
        assert (mu.grad != 0).any() and (var.grad != 0).any()


def test_classes_only_in_one_half_are_treated_alike():
    # class 4 only in the first two images ("labeled"), class 0 only in the last two
    mu, var, label, mask, prob = make_inputs(present=(1, 2), num_classes=5, seed=25)
    label = label.clone()
    label[:2, :, :3, :3] = 0
    label[:2, 4, :3, :3] = 1
    label[2:, :, :3, :3] = 0
    label[2:, 0, :3, :3] = 1
    mask = torch.ones_like(mask)
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=8, num_negatives=8,
                                      neg_temp=1000.0, generator=gen(26), return_draws=True)
    terms, num_present = numpy_terms_from_draws(mu, var, label, mask, prob, draws, 0.5, 0.8)
    assert num_present == 4 and 0 in terms and 4 in terms
    assert loss.item() == pytest.approx(sum(terms.values()) / 4, rel=1e-5)


# ------------------------------------------------------------------------------------------------
# the loss: gradients, replay, seeding
# ------------------------------------------------------------------------------------------------

def test_gradient_reaches_exactly_the_anchors():
    mu, var, label, mask, prob = make_inputs(seed=27)
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=8,
                                      num_negatives=16, generator=gen(28), return_draws=True)
    loss.backward()
    anchors = set(draws["anchors"][draws["anchors"] >= 0].tolist())
    negatives = set(draws["negatives"][draws["negatives"] >= 0].tolist())
    grad_mu_rows = mu.grad.permute(0, 2, 3, 1).reshape(-1, mu.shape[1])
    grad_var_rows = var.grad.permute(0, 2, 3, 1).reshape(-1, var.shape[1])
    assert set(torch.nonzero((grad_mu_rows != 0).any(1)).flatten().tolist()) == anchors
    assert set(torch.nonzero((grad_var_rows != 0).any(1)).flatten().tolist()) == anchors
    # the test has teeth: some negatives (and most pixels) are not anchors
    assert len(anchors) < mu.shape[0] * mu.shape[2] * mu.shape[3]
    assert negatives - anchors


def test_replaying_draws_is_bit_identical():
    mu, var, label, mask, prob = make_inputs(seed=29, dim=32)
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=16,
                                      num_negatives=24, generator=gen(30), return_draws=True)
    again, draws_again = prcl_loss_reference(mu, var, label, mask, prob, num_queries=16,
                                             num_negatives=24, draws=draws, return_draws=True)
    assert torch.equal(loss.detach(), again.detach())
    assert torch.equal(draws["anchors"], draws_again["anchors"])
    assert torch.equal(draws["negatives"], draws_again["negatives"])
    # and replay does not touch the global RNG state
    state = torch.get_rng_state()
    prcl_loss_reference(mu, var, label, mask, prob, num_queries=16, num_negatives=24, draws=draws)
    assert torch.equal(state, torch.get_rng_state())


def test_seeding():
    mu, var, label, mask, prob = make_inputs(seed=31)
    kw = dict(num_queries=8, num_negatives=8, return_draws=True)
    l1, d1 = prcl_loss_reference(mu, var, label, mask, prob, generator=gen(5), **kw)
    l2, d2 = prcl_loss_reference(mu, var, label, mask, prob, generator=gen(5), **kw)
    l3, d3 = prcl_loss_reference(mu, var, label, mask, prob, generator=gen(6), **kw)
    assert torch.equal(l1.detach(), l2.detach())
    assert torch.equal(d1["anchors"], d2["anchors"]) and torch.equal(d1["negatives"], d2["negatives"])
    assert not torch.equal(d1["anchors"], d3["anchors"])
    assert not torch.equal(d1["negatives"], d3["negatives"])
    assert l1.item() != l3.item()


# ------------------------------------------------------------------------------------------------
# the samplers (§16.4)
# ------------------------------------------------------------------------------------------------

def test_chi2_critical_values():
    sf = {2: lambda x: math.exp(-x / 2),
          3: lambda x: math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2),
          4: lambda x: math.exp(-x / 2) * (1 + x / 2)}
    for df, crit in CHI2_CRIT_1E4.items():
        assert 0.9e-4 < sf[df](crit) < 1.1e-4


def test_negative_classes_follow_pi():
    mu, var, label, mask, prob = make_inputs(present=(0, 2, 3, 5, 7), num_classes=8, seed=13)
    temp, q, k = 0.5, 64, 256
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, temp=temp, num_queries=q,
                                      num_negatives=k, generator=gen(32), return_draws=True)
    m, v, valid, _ = flatten_inputs(mu.detach(), var.detach(), label, mask, prob)
    pi = prcl_negative_class_probs(*prototypes(m, v, valid), temp).double().numpy()
    cls = pixel_classes(label, mask)
    present = [0, 2, 3, 5, 7]
    tested = 0
    for c in present:
        if (draws["anchors"][c] < 0).all():
            continue
        others = [j for j in present if j != c]
        drawn = cls[draws["negatives"][c].numpy().ravel()]
        counts = [(drawn == j).sum() for j in others]
        assert sum(counts) == q * k
        expected = q * k * pi[c, others]
        assert expected.min() > 5      # the chi-square approximation holds
        stat = chi2_stat(counts, expected)
        assert stat < CHI2_CRIT_1E4[len(others) - 1], (c, counts, expected)
        # power: pi is far from uniform here, so a uniform sampler would fail
        if pi[c, others].max() / pi[c, others].min() > 1.5:
            assert chi2_stat(counts, np.full(len(others), q * k / len(others))) \
                > CHI2_CRIT_1E4[len(others) - 1]
            tested += 1
    assert tested >= 1


def test_anchor_and_negative_pixels_are_uniform_within_pools():
    # class 0: exactly 4 hard pixels (anchor uniformity over H_0, df = 3);
    # class 2: exactly 3 valid pixels (negative-pixel uniformity over P_2, df = 2).
    mu, var, label, mask, prob = make_inputs(present=(0, 1), num_classes=3, mask_rate=0.0,
                                             seed=33)
    cls = pixel_classes(label, mask)
    small = np.nonzero(cls == 1)[0][:3]
    lab_rows = to_rows(label)
    lab_rows[small] = torch.tensor([0.0, 0.0, 1.0])
    label = from_rows(lab_rows, label)
    cls = pixel_classes(label, mask)
    assert (cls == 2).sum() == 3
    hard0 = np.nonzero(cls == 0)[0][:4]
    prob_rows = to_rows(prob)
    prob_rows[cls == 0, 0] = 0.9
    prob_rows[hard0, 0] = 0.2
    prob = from_rows(prob_rows, prob)
    q, k = 2000, 16
    _, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=q, num_negatives=k,
                                   neg_temp=1000.0, generator=gen(34), return_draws=True)
    anchors = draws["anchors"][0].numpy()
    assert set(anchors.tolist()) <= set(hard0.tolist())
    stat = chi2_stat([(anchors == p).sum() for p in hard0], np.full(4, q / 4))
    assert stat < CHI2_CRIT_1E4[3]
    negs = draws["negatives"][0].numpy().ravel()
    negs2 = negs[cls[negs] == 2]
    assert len(negs2) > 1000
    stat = chi2_stat([(negs2 == p).sum() for p in small], np.full(3, len(negs2) / 3))
    assert stat < CHI2_CRIT_1E4[2]


# ------------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------------

def _bad(kind):
    mu, var, label, mask, prob = make_inputs()
    kw = dict(num_queries=4, num_negatives=4)
    if kind == "var":
        var = var[:, :8]
    elif kind == "label":
        label = label[:, :, :, :8]
    elif kind == "mask":
        mask = mask.expand(-1, 2, -1, -1)
    elif kind == "prob":
        prob = prob[:, :4]
    elif kind == "num_queries":
        kw["num_queries"] = 0
    elif kind == "num_negatives":
        kw["num_negatives"] = -3
    elif kind == "temp":
        kw["temp"] = 0.0
    elif kind == "neg_temp":
        kw["neg_temp"] = -1.0
    elif kind == "one-hot":
        label = label.clone()
        label[0, :, 0, 0] = 1
    elif kind == "anchors":
        kw["draws"] = {"anchors": torch.zeros(5, 3, dtype=torch.long),
                       "negatives": torch.zeros(5, 4, 4, dtype=torch.long)}
    elif kind == "draws['anchors'][":
        _, draws = prcl_loss_reference(mu, var, label, mask, prob, generator=gen(0),
                                       return_draws=True, **kw)
        c = int(torch.nonzero((draws["anchors"] >= 0).all(1))[0])
        draws["anchors"][c, 0] = int(draws["negatives"][c, 0, 0])   # a pixel of another class
        kw["draws"] = draws
    elif kind == "draws['negatives'][":
        _, draws = prcl_loss_reference(mu, var, label, mask, prob, generator=gen(0),
                                       return_draws=True, **kw)
        c = int(torch.nonzero((draws["anchors"] >= 0).all(1))[0])
        draws["negatives"][c, 0, 0] = int(draws["anchors"][c, 0])   # a pixel of class c itself
        kw["draws"] = draws
    return (mu, var, label, mask, prob), kw


@pytest.mark.parametrize("kind", ["var", "label", "mask", "prob", "num_queries", "num_negatives",
                                  "temp", "neg_temp", "one-hot", "anchors", "draws['anchors'][",
                                  "draws['negatives'][",])
def test_bad_arguments_raise_value_error_naming_them(kind):
    args, kw = _bad(kind)
    with pytest.raises(ValueError) as err:
        prcl_loss_reference(*args, **kw)
    assert kind in str(err.value)


# ------------------------------------------------------------------------------------------------
# unsupervised loss (§7.2, Q-loss-1)
# ------------------------------------------------------------------------------------------------

def make_unsup(seed=40, batch=3, classes=4, h=6, w=7, ignore_rate=0.3, dtype=torch.float64):
    g = gen(seed)
    logits = torch.randn(batch, classes, h, w, generator=g, dtype=dtype).requires_grad_()
    pseudo = torch.randint(classes, (batch, h, w), generator=g)
    pseudo[torch.rand(batch, h, w, generator=g) < ignore_rate] = -1
    conf = torch.rand(batch, h, w, generator=g, dtype=dtype) * 0.06 + 0.94
    return logits, pseudo, conf


def manual_unsup(logits, pseudo, conf, threshold, keep):
    """float64 loops: w_b = #(conf >= t over all pixels) / #(pseudo >= 0); mean over keep(l, y)."""
    lg = logits.detach().double().numpy()
    ps = pseudo.numpy()
    cf = conf.detach().double().numpy()
    vals = []
    for b in range(lg.shape[0]):
        n_valid = (ps[b] >= 0).sum()
        wb = (cf[b] >= threshold).sum() / n_valid if n_valid else 0.0
        for y in range(lg.shape[2]):
            for x in range(lg.shape[3]):
                if ps[b, y, x] < 0:
                    continue
                z = lg[b, :, y, x]
                ce = -(z[ps[b, y, x]] - z.max() - np.log(np.exp(z - z.max()).sum()))
                if keep(ce):
                    vals.append(wb * ce)
    return float(np.mean(vals))


@pytest.mark.parametrize("seed", [40, 41, 42])
def test_unsup_fixed_equals_released_when_finite(seed):
    # float32: the release computes the weight in float32 whatever the logits' dtype
    logits, pseudo, conf = make_unsup(seed=seed, dtype=torch.float32)
    ce = F.cross_entropy(logits, pseudo, reduction="none", ignore_index=-1)
    assert (ce[pseudo >= 0] > 0).all() and ((pseudo >= 0).flatten(1).sum(1) > 0).all()
    released = unsup_loss_released(logits, pseudo, conf)
    fixed = unsup_loss(logits, pseudo, conf)
    assert torch.isfinite(released)
    assert fixed.item() == pytest.approx(released.item(), rel=1e-6)
    assert fixed.item() == pytest.approx(manual_unsup(logits, pseudo, conf, 0.97, lambda l: True),
                                         rel=1e-6)
    fixed.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad != 0).any()


def test_unsup_fixed_value_float64():
    logits, pseudo, conf = make_unsup()
    assert unsup_loss(logits, pseudo, conf).item() == pytest.approx(
        manual_unsup(logits, pseudo, conf, 0.97, lambda l: True), rel=1e-12)


def test_unsup_nothing_valid():
    logits, pseudo, conf = make_unsup()
    pseudo = torch.full_like(pseudo, -1)
    assert torch.isnan(unsup_loss_released(logits, pseudo, conf))
    loss = unsup_loss(logits, pseudo, conf)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (logits.grad == 0).all()


def test_unsup_image_without_valid_pixel_gets_weight_zero():
    logits, pseudo, conf = make_unsup()
    pseudo[1] = -1     # image 1: no valid pixel, but confident pixels -> released w_1 = inf
    fixed = unsup_loss(logits, pseudo, conf)
    assert torch.isfinite(fixed)
    # image 1 contributes no pixel: the loss equals the one over images 0 and 2 alone
    alone = unsup_loss(logits[[0, 2]], pseudo[[0, 2]], conf[[0, 2]])
    assert fixed.item() == pytest.approx(alone.item(), rel=1e-12)
    fixed.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[1] == 0).all()


def test_unsup_keeps_a_valid_pixel_with_zero_ce():
    logits, pseudo, conf = make_unsup()
    with torch.no_grad():
        pseudo[0, 0, 0] = 2
        logits[0, :, 0, 0] = torch.tensor([-200.0, -200.0, 200.0, -200.0], dtype=torch.float64)
    ce = F.cross_entropy(logits, pseudo, reduction="none", ignore_index=-1)
    assert ce[0, 0, 0].item() == 0.0
    released = unsup_loss_released(logits, pseudo, conf)
    fixed = unsup_loss(logits, pseudo, conf)
    assert released.item() == pytest.approx(   # the release's weight is float32
        manual_unsup(logits, pseudo, conf, 0.97, lambda l: l > 0), rel=1e-6)
    assert fixed.item() == pytest.approx(
        manual_unsup(logits, pseudo, conf, 0.97, lambda l: True), rel=1e-12)
    assert fixed.item() < released.item()   # one more pixel, with value 0, in the mean


def test_unsup_confident_count_runs_over_all_pixels():
    # Our reading of §7.2 (as released): the numerator counts confident pixels of the whole image,
    # ignored ones included.
    logits, pseudo, conf = make_unsup(ignore_rate=0.0)
    pseudo[:, 0, :] = -1
    conf[:, 0, :] = 0.0
    base = unsup_loss(logits, pseudo, conf)
    conf2 = conf.clone()
    conf2[:, 0, :] = 0.99    # confident but ignored pixels
    raised = unsup_loss(logits, pseudo, conf2)
    assert raised.item() > base.item()
    assert raised.item() == pytest.approx(unsup_loss_released(logits, pseudo, conf2).item(),
                                          rel=1e-6)


# ------------------------------------------------------------------------------------------------
# schedules (§3, §8.3)
# ------------------------------------------------------------------------------------------------

# epoch, lambda_c, main lr (base 3.2e-3), head lr (base 5e-5) - the table of §8.3
SCHEDULE_TABLE = [
    (0, 1.0000, 3.200e-3, 5.000e-5),
    (10, 0.9876, 3.056e-3, 4.774e-5),
    (50, 0.7316, 2.470e-3, 3.859e-5),
    (100, 0.2865, 1.715e-3, 2.679e-5),
    (150, 0.0601, 9.190e-4, 1.436e-5),
    (190, 0.0110, 2.159e-4, 3.373e-6),
    (197, 0.0078, 7.305e-5, 1.141e-6),
    (198, 0.0074, 5.072e-5, 1.000e-6),
    (199, 0.0071, 2.718e-5, 1.000e-6),
]


@pytest.mark.parametrize("epoch,lam,lr_main,lr_head", SCHEDULE_TABLE)
def test_schedules_match_table(epoch, lam, lr_main, lr_head):
    # the table prints lambda_c to 4 decimals and the learning rates to 4 significant digits
    assert round(ramp_down(epoch), 4) == pytest.approx(lam, abs=1e-12)
    assert float(f"{poly_lr(3.2e-3, epoch):.3e}") == pytest.approx(lr_main, rel=1e-12)
    assert float(f"{poly_lr(5e-5, epoch):.3e}") == pytest.approx(lr_head, rel=1e-12)


def test_schedule_edges():
    assert ramp_down(200) == 0.0 and ramp_down(250) == 0.0
    assert ramp_down(5, begin=10) == 0.0
    assert ramp_down(300, min_value=0.1) == 0.1 and ramp_down(199, min_value=0.1) == 0.1
    assert ramp_down(0, max_value=2.0) == 2.0
    assert poly_lr(3.2e-3, 200) == 1e-6
    with pytest.raises(ValueError):
        poly_lr(3.2e-3, 201)


def test_ema_decay_sequence():
    assert ema_decay(0) == 0.0
    assert ema_decay(1) == 0.5
    assert ema_decay(2) == pytest.approx(2 / 3)
    assert ema_decay(98) == pytest.approx(1 - 1 / 99)
    assert ema_decay(99) == pytest.approx(0.99)
    assert ema_decay(10_000) == 0.99
    assert all(ema_decay(t) <= ema_decay(t + 1) for t in range(200))


# ------------------------------------------------------------------------------------------------
# device (only where CUDA exists)
# ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_replayed_draws():
    mu, var, label, mask, prob = make_inputs(seed=50, dim=32)
    loss, draws = prcl_loss_reference(mu, var, label, mask, prob, num_queries=16,
                                      num_negatives=16, generator=gen(51), return_draws=True)
    loss.backward()
    dev = [t.detach().cuda() for t in (mu, var, label, mask, prob)]
    dev[0].requires_grad_()
    dev[1].requires_grad_()
    loss_cuda = prcl_loss_reference(*dev, num_queries=16, num_negatives=16,
                                    draws={k: v.cuda() for k, v in draws.items()})
    assert loss_cuda.device.type == "cuda"
    loss_cuda.backward()
    assert loss_cuda.item() == pytest.approx(loss.item(), rel=1e-5)
    assert torch.allclose(dev[0].grad.cpu(), mu.grad, rtol=1e-4, atol=1e-7)
    # sampling on CUDA inputs with a CPU generator works too
    out = prcl_loss_reference(*dev, num_queries=16, num_negatives=16, generator=gen(51))
    assert out.item() == pytest.approx(loss.item(), rel=1e-5)
