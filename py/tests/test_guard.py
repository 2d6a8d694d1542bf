"""The non-finite guard (prcl_worker/train/guard.py): a step whose loss or gradients are not finite
changes nothing (student, head, teacher, BatchNorm statistics, optimiser state) and says so; at
world size 2 one rank's NaN makes both ranks skip; `save` refuses a model holding NaN.

The NaN is forced through guard.TEST_NAN_STEPS, which the worker reads from PRCL_TEST_NAN_STEPS
(test-only)."""

import copy

import pytest
import torch
from test_distributed import body as dist_body
from test_distributed import global_batch, run_groups, shard
from test_distributed import settings as dist_settings
from test_train import batch, body, configured, settings
from worker_calls import SCHEMAS, call

from prcl_worker.errors import Cancelled
from prcl_worker.replay import ReplayContext
from prcl_worker.train import guard


def everything(tr):
    return {
        "net": {k: v.detach().clone() for k, v in tr.net.state_dict().items()},
        "opt": copy.deepcopy(tr.optim.opt.state_dict()),
        "opt_head": copy.deepcopy(tr.optim.opt_head.state_dict()),
    }


def same(a, b):
    if torch.is_tensor(a):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture
def nan_at(monkeypatch):
    def set_steps(text):
        monkeypatch.setattr(guard, "TEST_NAN_STEPS", guard.parse_test_nan_steps(text))
    return set_steps


def test_the_test_variable_parses():
    assert guard.parse_test_nan_steps("") == {}
    assert guard.parse_test_nan_steps("3, 4") == {3: None, 4: None}
    assert guard.parse_test_nan_steps("3@1,3@0,5") == {3: {0, 1}, 5: None}
    assert guard.parse_test_nan_steps("3@1,3") == {3: None}
    with pytest.raises(ValueError, match="PRCL_TEST_NAN_STEPS"):
        guard.parse_test_nan_steps("x")


@pytest.mark.parametrize("grad_clip", [10.0, None])
def test_a_non_finite_step_changes_nothing_and_says_what(nan_at, grad_clip):
    cfg = settings()
    cfg["optim"]["grad_clip"] = grad_clip
    ctx = configured(cfg)
    tr = ctx.state["trainer"]
    nan_at("1")
    first = call(ctx, "train_step", body(0), batch(0))
    assert first["skipped"] is False and first["non_finite"] == [] and first["grad_scale"] is None
    before = everything(tr)
    # teacher_bn 'train': the teacher's and the student's forwards both move BatchNorm statistics.
    r = call(ctx, "train_step", body(1, teacher_bn="train", buffers="ema"), batch(1))
    assert r["skipped"] is True
    assert r["non_finite"] == ["total", "sup", "gradients"]
    assert r["total"] != r["total"] and r["losses"]["sup"]["value"] != r["losses"]["sup"]["value"]
    assert r["losses"]["unsup"]["value"] == r["losses"]["unsup"]["value"]  # finite terms are reported as they are
    assert same(everything(tr), before), "a skipped step changed the model or the optimisers"
    assert all(p.grad is None for p in tr.optim.params())
    after = call(ctx, "train_step", body(2), batch(2))
    assert after["skipped"] is False
    assert not same(everything(tr)["net"], before["net"])


def test_a_step_cancelled_while_it_ran_is_not_applied():
    """The driver gave up on the request (its deadline passed): the step changes nothing, so the
    driver's retry applies it once."""
    ctx = configured()
    tr = ctx.state["trainer"]
    call(ctx, "train_step", body(0), batch(0))
    before = everything(tr)
    asked = []
    # Cancelled by the time the gradients are ready (the control thread sets it meanwhile).
    ctx.cancelled = lambda: asked.append(True) or True
    with pytest.raises(Cancelled, match="step 1 was cancelled .* not applied"):
        call(ctx, "train_step", body(1, teacher_bn="train", buffers="ema"), batch(1))
    assert asked, "the step never asked whether it was cancelled"
    assert same(everything(tr), before), "a cancelled step changed the model or the optimisers"
    assert all(p.grad is None for p in tr.optim.params())
    ctx.cancelled = lambda: False
    assert call(ctx, "train_step", body(1), batch(1))["skipped"] is False
    assert not same(everything(tr)["net"], before["net"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="amp fp16 needs CUDA")
def test_under_fp16_the_grad_scaler_keeps_its_rule_and_the_guard_skips_the_same_step(nan_at):
    cfg = settings()
    cfg["amp"] = "fp16"
    ctx = ReplayContext("cuda", SCHEMAS)
    call(ctx, "configure", cfg)
    tr = ctx.state["trainer"]
    nan_at("3")
    scales = [call(ctx, "train_step", body(s), batch(s))["grad_scale"] for s in range(3)]
    assert all(isinstance(x, float) and x > 0 for x in scales)
    before = everything(tr)
    r = call(ctx, "train_step", body(3), batch(3))
    assert r["skipped"] is True and r["non_finite"] == ["total", "sup", "gradients"]
    assert r["grad_scale"] == scales[-1] / 2  # the scaler saw the NaN gradients: it backs off
    assert same(everything(tr), before)


def test_save_refuses_non_finite_weights(tmp_path):
    ctx = configured()
    tr = ctx.state["trainer"]
    call(ctx, "save", {"path": str(tmp_path / "ok.pt")})
    with torch.no_grad():
        next(tr.net.head.parameters()).view(-1)[0] = float("inf")
    name = next(n for n, _ in tr.net.named_parameters() if n.startswith("head."))
    with pytest.raises(guard.NonFiniteState, match=f"refused to save: the model's {name} holds NaN or inf"):
        call(ctx, "save", {"path": str(tmp_path / "bad.pt")})
    assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "bad.pt.tmp").exists()


def _ranks_with_one_nan(rank, dist, world):
    guard.TEST_NAN_STEPS = guard.parse_test_nan_steps("1@1")  # rank 1 only
    ctx = ReplayContext("cpu", SCHEMAS)
    call(ctx, "configure", dist_settings())
    tr = ctx.state["trainer"]
    replies, states = [], []
    for step in range(3):
        states.append(everything(tr))
        replies.append(call(ctx, "train_step", dist_body(step), shard(global_batch(step, 2 * world), rank, world)))
    states.append(everything(tr))
    return {"replies": replies, "states": states}


def test_one_ranks_nan_makes_every_rank_skip():
    r0, r1 = run_groups((_ranks_with_one_nan, 2, (2,)))[0]
    for r in (r0, r1):
        assert [x["skipped"] for x in r["replies"]] == [False, True, False]
        assert r["replies"][1]["non_finite"] == ["total", "sup", "gradients"]
        assert same(r["states"][2], r["states"][1]), "a skipped step changed a rank's state"
        assert not same(r["states"][3]["net"], r["states"][2]["net"])
    for a, b in zip(r0["states"], r1["states"]):
        assert same({k: v for k, v in a["net"].items() if "running" not in k and "num_batches" not in k},
                    {k: v for k, v in b["net"].items() if "running" not in k and "num_batches" not in k})
