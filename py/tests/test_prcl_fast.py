"""The vectorised PRCL loss (prcl_worker.losses.prcl) against the literal reference (py/reference).

Exact parity with the reference's own draws replayed; equal laws for the samplers; gradients only
at anchors; the edge cases of the method spec §16.6; chunking does not change the result.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from prcl_worker.losses import prcl as fast
from reference import prcl as ref


def make_inputs(seed, b=4, d=32, h=9, w=9, classes=(0, 1, 2, 3, 4), num_classes=6, keep=0.8, var_range=(0.05, 0.95)):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, h, w, generator=g)
    lo, hi = var_range
    var = torch.rand(b, d, h, w, generator=g) * (hi - lo) + lo
    idx = torch.tensor(classes)[torch.randint(len(classes), (b, h, w), generator=g)]
    label = F.one_hot(idx, num_classes).permute(0, 3, 1, 2).float()
    mask = (torch.rand(b, 1, h, w, generator=g) < keep).float()
    prob = torch.softmax(torch.randn(b, num_classes, h, w, generator=g) * 2, 1)
    return mu, var, label, mask, prob


PARAMS = dict(strong_threshold=0.8, temp=0.5, neg_temp=None, num_queries=16, num_negatives=24)


def both(inputs, seed=0, **params):
    """Reference with its own draws, then the fast loss replaying them; values and grads."""
    p = dict(PARAMS, **params)
    mu, var = inputs[0].clone().requires_grad_(), inputs[1].clone().requires_grad_()
    r_loss, draws = ref.prcl_loss_reference(mu, var, *inputs[2:], generator=torch.Generator().manual_seed(seed),
                                            return_draws=True, **p)
    r_loss.backward()
    mu2, var2 = inputs[0].clone().requires_grad_(), inputs[1].clone().requires_grad_()
    f_loss = fast.prcl_loss(mu2, var2, *inputs[2:], draws=draws, **p)
    f_loss.backward()
    return r_loss, f_loss, (mu.grad, var.grad), (mu2.grad, var2.grad), draws


@pytest.mark.parametrize("temp", [0.5, 100.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_draws_same_loss_and_gradients(seed, temp):
    r, f, rg, fg, _ = both(make_inputs(seed), seed=seed, temp=temp)
    assert float(r.detach()) > 0
    assert abs(float(r) - float(f)) <= 1e-5 * abs(float(r))
    for a, b in zip(rg, fg):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-9)


def test_gradients_only_at_anchors():
    _, _, _, (g_mu, g_var), draws = both(make_inputs(3))
    anchors = set(int(i) for i in draws["anchors"].flatten() if i >= 0)
    rows_mu = g_mu.permute(0, 2, 3, 1).reshape(-1, g_mu.shape[1]).abs().sum(1)
    rows_var = g_var.permute(0, 2, 3, 1).reshape(-1, g_var.shape[1]).abs().sum(1)
    assert set(torch.nonzero(rows_mu).flatten().tolist()) == anchors
    assert set(torch.nonzero(rows_var).flatten().tolist()) == anchors


def test_chunk_size_does_not_change_the_result():
    inputs = make_inputs(4)
    g = torch.Generator().manual_seed(9)
    a = fast.prcl_loss(*inputs, generator=g, chunk_elements=1, **PARAMS)
    g = torch.Generator().manual_seed(9)
    b = fast.prcl_loss(*inputs, generator=g, chunk_elements=1 << 30, **PARAMS)
    assert torch.allclose(a, b, rtol=1e-6)


def test_keys_counts_and_order_match_boolean_gathers():
    mu, var, label, mask, prob = make_inputs(5)
    _, _, valid, prob_r = fast.flatten_maps(mu, var, label, mask, prob)
    keys = fast.PixelKeys(valid, prob_r, 0.8)
    for c in range(valid.shape[1]):
        pool = torch.nonzero(valid[:, c] > 0).flatten()
        hard = torch.nonzero((valid[:, c] > 0) & (prob_r[:, c] < 0.8)).flatten()
        assert int(keys.n[c]) == len(pool) and int(keys.m[c]) == len(hard)
        assert torch.equal(keys.order[keys.off[c]:keys.off[c] + keys.n[c]], pool)
        assert torch.equal(keys.horder[keys.hoff[c]:keys.hoff[c] + keys.m[c]], hard)


def test_prototypes_and_negative_probabilities_match_the_reference():
    mu, var, label, mask, prob = make_inputs(6, classes=(0, 2, 5))
    m, v, valid, p = fast.flatten_maps(mu, var, label, mask, prob)
    keys = fast.PixelKeys(valid, p, 0.8)
    pmu, pvar = fast.prototypes(m, v, keys)
    rmu, rvar, present = ref.prototypes(m, v, valid)
    assert torch.equal(present, keys.n > 0)
    assert torch.allclose(pmu[present], rmu[present], atol=1e-6)
    assert torch.allclose(pvar[present], rvar[present], atol=1e-6, rtol=1e-5)
    pi = fast.negative_class_probs(pmu, pvar, present, 0.5)
    rpi = ref.prcl_negative_class_probs(rmu, rvar, present, 0.5)
    assert torch.allclose(pi, rpi, atol=1e-6)


def test_samplers_follow_their_laws():
    """Negative classes ~ pi (chi-square), negative pixels uniform within class, anchors uniform
    over the hard pool. Critical values: chi-square upper 1e-4 quantiles (2 dof: 18.42)."""
    mu, var, label, mask, prob = make_inputs(7, classes=(0, 1, 2), b=4, h=12, w=12, keep=1.0)
    prob = torch.full_like(prob, 0.1)  # every valid pixel is hard
    q, k = 64, 256
    _, draws = fast.prcl_loss(mu, var, label, mask, prob, strong_threshold=0.8, temp=0.5, neg_temp=None,
                              num_queries=q, num_negatives=k,
                              generator=torch.Generator().manual_seed(1), return_draws=True)
    m, v, valid, p = fast.flatten_maps(mu, var, label, mask, prob)
    keys = fast.PixelKeys(valid, p, 0.8)
    pmu, pvar = fast.prototypes(m, v, keys)
    pi = fast.negative_class_probs(pmu, pvar, keys.n > 0, 0.5)
    for c in range(3):
        neg_cls = keys.cls[draws["negatives"][c].flatten()]
        counts = torch.bincount(neg_cls, minlength=6)[:3].double()
        expected = pi[c, :3].double() * q * k
        others = [j for j in range(3) if j != c]
        chi2 = float(((counts[others] - expected[others]) ** 2 / expected[others]).sum())
        assert counts[c] == 0
        assert chi2 < 18.42  # 1 dof really; the 2-dof bound is looser still
        anchors = draws["anchors"][c]
        assert bool((keys.cls[anchors] == c).all())
    # Pixels within one class: uniform over its pool (chi-square with n_c - 1 dof, loose bound).
    c = 0
    negs = draws["negatives"][1].flatten()
    negs = negs[keys.cls[negs] == c]
    n_c = int(keys.n[c])
    counts = torch.bincount(negs, minlength=m.shape[0])[keys.order[keys.off[c]:keys.off[c] + n_c]].double()
    e = len(negs) / n_c
    chi2 = float(((counts - e) ** 2 / e).sum())
    dof = n_c - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof)  # mean + 6 sd of chi-square


@pytest.mark.parametrize("case", ["one_class", "no_class", "all_masked", "no_hard_anchors"])
def test_degenerate_batches_give_an_attached_zero(case):
    kw = {"one_class": dict(classes=(3,)), "no_class": dict(keep=0.0), "all_masked": dict(keep=0.0),
          "no_hard_anchors": {}}[case]
    mu, var, label, mask, prob = make_inputs(8, **kw)
    if case == "no_class":
        label = torch.zeros_like(label)
    if case == "no_hard_anchors":
        prob = label.clone()  # the student is certain of every true class: nothing is hard
    mu.requires_grad_()
    var.requires_grad_()
    loss = fast.prcl_loss(mu, var, label, mask, prob, generator=torch.Generator().manual_seed(0), **PARAMS)
    assert float(loss) == 0.0
    loss.backward()
    assert float(mu.grad.abs().sum()) == 0.0 and float(var.grad.abs().sum()) == 0.0


def test_a_class_without_hard_pixels_counts_in_V():
    mu, var, label, mask, prob = make_inputs(9, classes=(0, 1, 2))
    m, v, valid, p = fast.flatten_maps(mu, var, label, mask, prob)
    # Make class 2 certain everywhere: it has valid pixels but no hard ones.
    prob = prob.clone()
    prob[:, 2] = torch.where(label[:, 2] > 0, torch.ones_like(prob[:, 2]), prob[:, 2])
    r, f, _, _, draws = both((mu, var, label, mask, prob))
    assert int((draws["anchors"][2] >= 0).sum()) == 0
    assert abs(float(r) - float(f)) <= 1e-5 * abs(float(r))
    # Its |V| share: the same two terms divided by 2 instead of 3 would be 1.5x larger.
    assert float(f) > 0


@pytest.mark.parametrize("var_range", [(1e-6, 2e-6), (0.98, 0.999)])
def test_extreme_variances_are_finite(var_range):
    r, f, rg, fg, _ = both(make_inputs(10, var_range=var_range))
    assert math.isfinite(float(f)) and abs(float(r) - float(f)) <= 1e-4 * abs(float(r))
    assert all(bool(torch.isfinite(g).all()) for g in fg)


def test_two_classes_draw_all_negatives_from_the_other():
    mu, var, label, mask, prob = make_inputs(11, classes=(1, 4))
    _, draws = fast.prcl_loss(mu, var, label, mask, prob, generator=torch.Generator().manual_seed(0),
                              return_draws=True, **PARAMS)
    m, v, valid, p = fast.flatten_maps(mu, var, label, mask, prob)
    keys = fast.PixelKeys(valid, p, 0.8)
    assert bool((keys.cls[draws["negatives"][1].flatten()] == 4).all())
    assert bool((keys.cls[draws["negatives"][4].flatten()] == 1).all())


def test_more_queries_than_hard_pixels():
    mu, var, label, mask, prob = make_inputs(12, h=4, w=4, b=2)
    r, f, _, _, _ = both((mu, var, label, mask, prob), num_queries=200)
    assert abs(float(r) - float(f)) <= 1e-5 * abs(float(r))
