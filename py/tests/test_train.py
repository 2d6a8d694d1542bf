"""prcl_worker.train: configure and train_step in-process, through the op functions the server runs.

Covers: every request and result fits the generated schemas (no ema_decay in the stats); the
teacher's update is exactly the request's (decay, buffers), after a semi-supervised and a
labeled-only step; policy.teacher_bn; each term runs with the request's params, never the spec's
(which may be schedules); the request's weights and params name exactly the enabled terms and fit
their op's schema; the same requests give the same losses; save and load continue a run exactly
(and read a file written with the model's former EMA step counter); the step sets the
networks' modes itself (a failing evaluation or networks left in eval mode change nothing).
"""

import copy

import pytest
import torch
from worker_calls import SCHEMAS, call

from prcl_worker.errors import InvalidArgument
from prcl_worker.graph import SpecError
from prcl_worker.ops import REGISTRY
from prcl_worker.replay import ReplayContext

CLASSES, SIZE = 4, 33

PRCL_PARAMS = {"strong_threshold": 0.8, "temp": 0.5, "neg_temp": None, "num_queries": 16, "num_negatives": 32}
PARAMS = {"sup": {"ignore_index": -1}, "unsup": {"threshold": 0.5, "variant": "fixed"}, "prcl": PRCL_PARAMS}


def settings(terms=("sup", "unsup", "prcl"), prcl_params=None):
    all_terms = {
        "sup": {"name": "sup", "op": "cross_entropy", "inputs": {"logits": "model.logits_l", "target": "batch.y_l"},
                "params": {"ignore_index": -1}, "weight": 1},
        "unsup": {"name": "unsup", "op": "unsup_ce",
                  "inputs": {"logits": "model.logits_u", "pseudo": "batch.pseudo", "conf": "batch.conf"},
                  "weight": 1},
        "prcl": {"name": "prcl", "op": "prcl",
                 "inputs": {"rep": "model.rep", "var": "model.var", "label": "batch.feat_label",
                            "mask": "batch.feat_mask", "prob": "batch.feat_prob"},
                 "params": prcl_params or dict(PRCL_PARAMS), "weight": {"kind": "linear", "from": 0, "to": 1,
                                                                        "start": 0, "end": 10}},
    }
    cfg = {
        "seed": 3, "deterministic": False, "threads": None,
        "model": {"num_classes": CLASSES, "backbone": "resnet18", "output_stride": 16, "rep_dim": 16,
                  "width": 0.25, "pretrained": None},
        "optim": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "decay_norm_and_bias": False,
                  "grad_clip": 10.0},
        "amp": "none", "channels_last": False,
        "loss": {"version": 1, "terms": [all_terms[t] for t in terms]},
        "distributed": {"sync_bn": True, "broadcast_buffers": True, "prototypes": "global"},
    }
    return cfg


def batch(seed=0, unlabeled=True):
    g = torch.Generator().manual_seed(seed)
    cols = torch.arange(SIZE)
    y = ((cols[None, :] >= SIZE // 2).long() + 2 * (cols[:, None] >= SIZE // 2).long()).expand(2, SIZE, SIZE).clone()
    y[1] = (y[1] + 1) % CLASSES
    x = y.unsqueeze(1).float().expand(2, 3, SIZE, SIZE) * 0.6 - 1 + 0.3 * torch.randn(2, 3, SIZE, SIZE, generator=g)
    out = {"x_l": x.contiguous(), "y_l": y}
    if unlabeled:
        out["x_u"] = (x + 0.1 * torch.randn(2, 3, SIZE, SIZE, generator=g)).contiguous()
    return out


def body(step, decay=0.5, buffers="own", terms=("sup", "unsup", "prcl"), mix="classmix", teacher_bn="train",
         params=None):
    b = {
        "step": step, "lr": 0.01, "head_lr": 0.001, "ema": {"decay": decay, "buffers": buffers},
        "weights": {t: 1.0 for t in terms},
        "params": copy.deepcopy(params if params is not None else {t: PARAMS[t] for t in terms}),
        "policy": {"weak_threshold": 0.3, "teacher_bn": teacher_bn, "mix": mix, "mix_partner": "local_next",
                   "classmix_ignore_is_class": True, "conf_quantization": "none"},
    }
    if mix != "none":
        b["mix"] = [{"seed": 10 + step}, {"seed": 20 + step}]
    return b


def configured(cfg=None):
    ctx = ReplayContext("cpu", SCHEMAS)
    result = call(ctx, "configure", cfg or settings())
    assert result["outputs"] == list(SCHEMAS.model_outputs)
    assert result["batch_tensors"] == list(SCHEMAS.batch_tensors)
    return ctx


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_step_fits_the_result_schema_without_an_ema_decay():
    ctx = configured()
    r = call(ctx, "train_step", body(0), batch())
    assert list(r["losses"]) == ["sup", "unsup", "prcl"]
    assert "ema_decay" not in r["stats"]
    assert r["stats"]["classes_present"] >= 2 and len(r["stats"]["hard_pixels_per_class"]) == CLASSES
    assert set(r["time_ms"]) == {"decode", "augment_l", "teacher_augment_u", "forward", "loss", "backward", "total"}
    assert r["total"] == pytest.approx(sum(v["value"] for v in r["losses"].values()), rel=1e-5)


def test_the_names_a_term_reads_come_from_the_schemas():
    assert SCHEMAS.model_outputs == ("logits_l", "logits_u", "rep", "var", "logits_all")
    assert "y_l" in SCHEMAS.batch_tensors and "feat_prob" in SCHEMAS.batch_tensors
    assert SCHEMAS.labeled_only == ("model.logits_l", "batch.y_l")


@pytest.mark.parametrize("buffers", ["own", "copy", "ema"])
def test_the_teacher_update_is_the_requests(buffers):
    ctx = configured()
    net = ctx.state["trainer"].net
    teacher = state(net.teacher)
    # teacher_bn 'eval': the teacher's forward leaves its statistics, so only the update moves them.
    call(ctx, "train_step", body(0, decay=0.75, buffers=buffers, teacher_bn="eval"), batch())
    after, student = state(net.teacher), state(net.student)
    params = dict(net.teacher.named_parameters())
    for k, v in after.items():
        if k in params or (buffers == "ema" and v.is_floating_point()):
            assert torch.allclose(v, 0.75 * teacher[k] + 0.25 * student[k], atol=1e-6), k
        elif buffers == "own":
            assert torch.equal(v, teacher[k]), k
        else:
            assert torch.equal(v, student[k]), k


def test_decay_one_keeps_the_teacher_and_zero_copies_the_student():
    ctx = configured()
    net = ctx.state["trainer"].net
    before = state(net.teacher)
    call(ctx, "train_step", body(0, decay=1.0, buffers="own", teacher_bn="eval"), batch())
    assert all(torch.equal(v, before[k]) for k, v in state(net.teacher).items())
    call(ctx, "train_step", body(1, decay=0.0, buffers="copy"), batch())
    student = state(net.student)
    assert all(torch.equal(v, student[k]) for k, v in state(net.teacher).items())


def test_teacher_bn_arrives_with_the_step():
    ctx = configured()
    net = ctx.state["trainer"].net
    before = state(net.teacher)
    call(ctx, "train_step", body(0, decay=1.0, teacher_bn="train"), batch())
    moved = state(net.teacher)
    assert any(not torch.equal(moved[k], before[k]) for k in before if "running_mean" in k)


def test_a_labeled_only_step_updates_the_teacher_as_asked():
    cfg = settings(terms=("sup",))
    ctx = configured(cfg)
    net = ctx.state["trainer"].net
    before = state(net.teacher)
    r = call(ctx, "train_step", body(0, decay=0.5, buffers="own", terms=("sup",), mix="none"), batch(unlabeled=False))
    assert r["time_ms"]["teacher_augment_u"] == 0 and r["stats"]["mask_ratio"] == 0
    after = state(net.teacher)
    assert all(torch.equal(after[k], before[k]) for k in before if "running" in k or "num_batches" in k)
    call(ctx, "train_step", body(1, decay=0.0, buffers="ema", terms=("sup",), mix="none"), batch(unlabeled=False))
    student = state(net.student)
    assert all(torch.equal(v, student[k]) for k, v in state(net.teacher).items())


def test_a_semi_supervised_loss_without_unlabeled_images_is_refused():
    ctx = configured()
    with pytest.raises(InvalidArgument, match=r"loss terms \['unsup', 'prcl'\] need unlabeled images") as e:
        call(ctx, "train_step", body(0, mix="none"), batch(unlabeled=False))
    assert e.value.path == "tensors.img_u"


def test_terms_run_with_the_requests_params_not_the_specs():
    schedule = {"kind": "linear", "from": 0.2, "to": 0.9, "start": 0, "end": 10}
    a = configured(settings(prcl_params=dict(PRCL_PARAMS, strong_threshold=schedule)))
    b = configured(settings(prcl_params=dict(PRCL_PARAMS, strong_threshold=0.1, temp=9.0)))
    for step in range(2):
        ra = call(a, "train_step", body(step), batch(step))
        rb = call(b, "train_step", body(step), batch(step))
        assert ra["losses"] == rb["losses"] and ra["total"] == rb["total"]
    c = configured()
    other = dict(PARAMS, prcl=dict(PRCL_PARAMS, temp=2.0))
    rc = call(c, "train_step", body(0, params=other), batch(0))
    r0 = call(configured(), "train_step", body(0), batch(0))
    assert rc["losses"]["sup"] == r0["losses"]["sup"] and rc["losses"]["prcl"] != r0["losses"]["prcl"]


def test_the_requests_weights_and_params_name_exactly_the_enabled_terms():
    ctx = configured()
    bad = body(0)
    del bad["params"]["prcl"]
    with pytest.raises(SpecError, match=r"train_step.params has no value for loss terms \['prcl'\]"):
        call(ctx, "train_step", bad, batch())
    bad = body(0)
    bad["params"]["focal"] = {}
    with pytest.raises(SpecError, match=r"train_step.params names \['focal'\]") as e:
        call(ctx, "train_step", bad, batch())
    assert e.value.path == "params.focal"
    bad = body(0)
    bad["weights"]["focal"] = 1.0
    with pytest.raises(SpecError, match=r"train_step.weights names \['focal'\]"):
        call(ctx, "train_step", bad, batch())
    bad = body(0)
    del bad["weights"]["unsup"]
    with pytest.raises(SpecError, match=r"train_step.weights has no value for loss terms \['unsup'\]"):
        call(ctx, "train_step", bad, batch())


@pytest.mark.parametrize("change,message,path", [
    ({"strong_threshold": 1.5}, r"loss term 'prcl': params.prcl.strong_threshold must be smaller than or equal to 1",
     "params.prcl.strong_threshold"),
    ({"neg_temp": "x"}, r"loss term 'prcl': params.prcl.neg_temp", "params.prcl.neg_temp"),
    ({"chunk": 3}, r"loss term 'prcl': params.prcl must not contain", "params.prcl"),
    ({"num_queries": None}, r"loss term 'prcl': params.prcl.num_queries must be integer", "params.prcl.num_queries"),
])
def test_a_terms_params_are_checked_against_its_op(change, message, path):
    ctx = configured()
    bad = body(0)
    bad["params"]["prcl"].update(change)
    with pytest.raises(SpecError, match=message) as e:
        call(ctx, "train_step", bad, batch())
    assert e.value.path == path


def test_every_param_is_required():
    ctx = configured()
    missing = body(0)
    del missing["params"]["unsup"]["variant"]
    with pytest.raises(SpecError, match=r"loss term 'unsup': params.unsup must contain \[.*'variant'"):
        call(ctx, "train_step", missing, batch())


def test_a_refused_request_changes_nothing():
    ctx = configured()
    net = ctx.state["trainer"].net
    before = state(net), ctx.state["trainer"].generator.get_state()
    bad = body(0)
    bad["params"]["prcl"]["temp"] = -1
    with pytest.raises(SpecError):
        call(ctx, "train_step", bad, batch())
    assert all(torch.equal(v, before[0][k]) for k, v in state(net).items())
    assert torch.equal(ctx.state["trainer"].generator.get_state(), before[1])


def test_the_spec_is_still_checked_at_configure():
    cfg = settings()
    cfg["loss"]["terms"][0]["inputs"]["target"] = "batch.nothing"
    with pytest.raises(SpecError, match="batch.nothing names nothing"):
        configured(cfg)
    cfg = settings()
    cfg["loss"]["terms"][1]["op"] = "focal"
    with pytest.raises(SpecError, match="'unsup'.*unknown loss op 'focal'"):
        configured(cfg)
    for old in ({"ema": {"alpha": 0.99, "buffers": "own"}}, {"teacher": {"bn_mode": "train"}}):
        with pytest.raises(InvalidArgument):
            SCHEMAS.args["configure"](dict(settings(), **old))


def test_same_requests_same_losses_and_save_load_continues_exactly(tmp_path):
    def run(ctx, steps):
        return [call(ctx, "train_step", body(s, decay=min(1 - 1 / (s + 1), 0.9)), batch(s)) for s in steps]

    a, b = configured(), configured()
    first = run(a, range(2))
    assert [r["losses"] for r in run(b, range(2))] == [r["losses"] for r in first]
    path = str(tmp_path / "state.pt")
    call(a, "save", {"path": path})
    cont = run(a, range(2, 4))
    c = configured()
    assert call(c, "load", {"path": path})["step"] == 1
    again = run(c, range(2, 4))
    assert [r["losses"] for r in again] == [r["losses"] for r in cont]


def test_a_state_written_with_the_former_ema_counter_loads(tmp_path, monkeypatch):
    from prcl_worker import state as state_mod

    ctx = configured()
    trainer = ctx.state["trainer"]
    original = trainer.net.state_dict

    def with_counter(*args, **kwargs):
        sd = original(*args, **kwargs)
        sd["ema_steps"] = torch.tensor(7)
        return sd

    monkeypatch.setattr(trainer.net, "state_dict", with_counter)
    path = str(tmp_path / "old.pt")
    state_mod.save_state(trainer, path)
    monkeypatch.undo()
    assert call(configured(), "load", {"path": path})["step"] is None


def test_a_full_disk_is_reported_as_such_and_the_saved_state_stays_loadable(tmp_path, monkeypatch):
    from prcl_worker import state as state_mod

    ctx = configured()
    path = str(tmp_path / "state.pt")
    call(ctx, "save", {"path": path})
    saved = open(path, "rb").read()
    call(ctx, "train_step", body(0), batch(0))
    # The write lands on /dev/full (every write fails with ENOSPC), as on a full disk.
    monkeypatch.setattr(state_mod, "_tmp_path", lambda p: "/dev/full")
    full = r"the disk holding .* is full .*state\.pt was not written.*Free some space"
    with pytest.raises(state_mod.DiskFull, match=full):
        call(ctx, "save", {"path": path})
    # Too little room left for the state: refused before anything is written.
    monkeypatch.setattr(state_mod, "_free", lambda d: 1000)
    with pytest.raises(state_mod.DiskFull, match=r"1,000 bytes free"):
        call(ctx, "save", {"path": path})
    monkeypatch.undo()
    assert open(path, "rb").read() == saved
    assert call(configured(), "load", {"path": path})["step"] is None


def test_the_state_file_is_safetensors_and_the_earlier_torch_zip_still_loads(tmp_path):
    import json

    import safetensors

    from prcl_worker import state as state_mod

    ctx = configured()
    call(ctx, "train_step", body(0), batch(0))
    path = str(tmp_path / "state.safetensors")
    call(ctx, "save", {"path": path})
    with safetensors.safe_open(path, framework="pt") as f:
        assert f.metadata()["format"] == state_mod.FORMAT
        tensors = [f.get_tensor(str(i)) for i in range(len(list(f.keys())))]
        meta = f.metadata()["meta"]
    # The same content in the earlier format (a torch zip read by the weights-only unpickler).
    legacy = str(tmp_path / "state.pt")
    torch.save({"format": state_mod.FORMAT, "meta": meta, "tensors": tensors}, legacy)
    a, b = configured(), configured()
    assert call(a, "load", {"path": path})["step"] == call(b, "load", {"path": legacy})["step"] == 0
    assert state_mod.network_hash(a.state["trainer"].net) == state_mod.network_hash(b.state["trainer"].net)
    assert json.loads(meta)["__dict__"][0][0] == "format"


def test_unlabeled_views_show_the_branch_and_change_nothing():
    import io

    from PIL import Image

    ctx = configured()
    tr = ctx.state["trainer"]
    call(ctx, "train_step", body(0), batch(0))
    imgs = {}
    for i in range(2):
        buf = io.BytesIO()
        Image.fromarray((torch.rand(SIZE + 4, SIZE + 6, 3) * 255).byte().numpy()).save(buf, format="PNG")
        imgs[f"img_u.{i}"] = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    crop = [{"rescale": {"scale": 1.0, "top": 2, "left": 3, "crop_h": SIZE, "crop_w": SIZE}}] * 2
    views_body = {"policy": body(1)["policy"], "unlabeled_crop": crop, "mix": [{"seed": 1}, {"seed": 2}]}
    SCHEMAS.args["unlabeled_views"](views_body)
    before = state(tr.net)
    rng = torch.get_rng_state()
    result, out = REGISTRY["unlabeled_views"].fn(ctx, views_body, imgs)
    SCHEMAS.results["unlabeled_views"](result)
    assert result == {"count": 2}
    for i in range(2):
        assert out[f"weak.{i}"].dtype == torch.uint8 and tuple(out[f"weak.{i}"].shape) == (SIZE, SIZE, 3)
        assert tuple(out[f"mixed.{i}"].shape) == (SIZE, SIZE, 3)
        assert out[f"pseudo.{i}"].dtype == torch.uint8 and int(out[f"pseudo.{i}"].max()) < CLASSES
        assert 0 <= float(out[f"conf.{i}"].min()) and float(out[f"conf.{i}"].max()) <= 1
        assert tuple(out[f"var.{i}"].shape) == (SIZE, SIZE)
    # The teacher's crop is the image's pixels (round trip through normalisation).
    import numpy as np
    src = torch.from_numpy(np.array(Image.open(io.BytesIO(bytes(imgs["img_u.0"].numpy()))).convert("RGB")))
    assert (out["weak.0"].int() - src[2:2 + SIZE, 3:3 + SIZE].int()).abs().max() <= 1
    # Nothing of the run changed: parameters, buffers (train-mode BatchNorm), the torch RNG.
    after = state(tr.net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())


def test_the_step_sets_its_own_modes_whatever_an_earlier_op_left(monkeypatch):
    """A failing evaluation between steps, and networks left in eval mode (as an op that forgot to
    restore them would), change nothing: the losses and weights are those of the uninterrupted run."""
    from prcl_worker import evaluate

    def run(interrupt):
        ctx = configured()
        tr = ctx.state["trainer"]
        out = []
        for s in range(3):
            out.append(call(ctx, "train_step", body(s, decay=0.9), batch(s))["losses"])
            if interrupt:
                with monkeypatch.context() as m:
                    m.setattr(evaluate, "_view", lambda *a: 1 / 0)
                    with pytest.raises(ZeroDivisionError):
                        call(ctx, "eval_step", {"model": "student", "mode": "whole"},
                             {"x": batch(s)["x_l"], "y": batch(s)["y_l"]})
                assert tr.net.student.training  # the evaluation put its mode back
                tr.net.student.eval()
                tr.net.head.eval()
                tr.net.teacher.eval()
        return out, state(tr.net.student), state(tr.net.teacher)

    plain, interrupted = run(False), run(True)
    assert interrupted[0] == plain[0]
    for a, b in ((interrupted[1], plain[1]), (interrupted[2], plain[2])):
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_determinism_true_cudnn_as_released_or_off():
    from prcl_worker.train import runtime
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark)
    try:
        runtime.set_up(1, True)
        assert torch.are_deterministic_algorithms_enabled() and cudnn.deterministic and not cudnn.benchmark
        runtime.set_up(1, "cudnn")  # the released script's one setting
        assert not torch.are_deterministic_algorithms_enabled() and cudnn.deterministic and not cudnn.benchmark
        runtime.set_up(1, False)
        assert not torch.are_deterministic_algorithms_enabled() and not cudnn.deterministic and cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=True)
        cudnn.deterministic, cudnn.benchmark = before[1], before[2]
    ctx = ReplayContext("cpu", SCHEMAS)
    call(ctx, "configure", dict(settings(), deterministic="cudnn"))  # the schema takes it
