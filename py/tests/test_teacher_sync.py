"""The teacher's BatchNorm under data parallelism (`distributed.teacher_sync_bn`, as released): 2
ranks × b unlabeled images give the teacher's pseudo-labels, confidences and running statistics of
1 process × 2b — after training steps that pseudo-label in train mode (`teacher_bn: train`, the
teacher's own buffers, `ema.buffers: own`) and on a fresh batch. Without the option each rank's
teacher normalises over its own images, and the same comparison fails. The pictures' views op,
which one rank runs while the others wait, pseudo-labels without a collective."""

import pytest
import torch
from test_distributed import body, global_batch, run_groups, settings, shard
from worker_calls import SCHEMAS, call

from prcl_worker.replay import ReplayContext
from prcl_worker.train import parallel
from prcl_worker.train.unlabeled import pseudo_label

STEPS, PER_RANK = 4, 2


def _teacher(rank, dist, world, steps, per_rank, teacher_sync):
    torch.set_default_dtype(torch.float64)  # reduction order is the only difference (see test_distributed)
    ctx = ReplayContext("cpu", SCHEMAS)
    cfg = settings()
    cfg["distributed"]["teacher_sync_bn"] = teacher_sync
    call(ctx, "configure", cfg)
    tr = ctx.state["trainer"]
    synced = any(isinstance(m, parallel.SyncBatchNorm) for m in tr.net.teacher.modules())
    for step in range(steps):
        call(ctx, "train_step", body(step, teacher_bn="train", buffers="own"),
             shard(global_batch(step, per_rank * world), rank, world))
    x_u = shard(global_batch(steps, per_rank * world), rank, world)["x_u"].to(tr.dtype)
    pseudo, conf = pseudo_label(tr.net, x_u, body(steps, teacher_bn="train")["policy"], tr.optim.autocast)
    buffers = {k: v.clone() for k, v in tr.net.teacher.state_dict().items() if "running" in k}
    alone = None
    if rank == 0:  # one rank alone in train mode, as the pictures' views op: a collective would hang
        with parallel.local_batch_norm(tr.net.teacher):
            alone = pseudo_label(tr.net, x_u, body(steps, teacher_bn="train")["policy"], tr.optim.autocast)[1]
    return {"pseudo": pseudo, "conf": conf, "buffers": buffers, "synced": synced, "alone": alone}


def _compare(two, one):
    conf = torch.cat([r["conf"] for r in two])
    pseudo = torch.cat([r["pseudo"] for r in two])
    worst_buffer = max((two[0]["buffers"][k] - v).abs().max().item() for k, v in one["buffers"].items())
    return (conf - one["conf"]).abs().max().item(), (pseudo != one["pseudo"]).float().mean().item(), worst_buffer


def test_the_synchronised_teacher_pseudo_labels_two_ranks_like_one_process_with_the_whole_batch():
    (two, one) = run_groups((_teacher, 2, (2, STEPS, PER_RANK, True)),
                            (_teacher, None, (1, STEPS, 2 * PER_RANK, True)))
    assert two[0]["synced"] and two[1]["synced"] and not one[0]["synced"]
    for k, v in two[0]["buffers"].items():  # the teacher's running statistics are global: equal on both ranks
        assert torch.equal(v, two[1]["buffers"][k]), k
    conf, flipped, buffers = _compare(two, one[0])
    assert conf < 1e-10 and flipped == 0 and buffers < 1e-10, (conf, flipped, buffers)
    assert two[0]["alone"] is not None and torch.isfinite(two[0]["alone"]).all()


def test_without_it_each_ranks_teacher_normalises_over_its_own_images():
    (two, one) = run_groups((_teacher, 2, (2, STEPS, PER_RANK, False)),
                            (_teacher, None, (1, STEPS, 2 * PER_RANK, False)))
    assert not two[0]["synced"]
    conf, _, buffers = _compare(two, one[0])
    assert conf > 1e-4 and buffers > 1e-4, (conf, buffers)
    differ = [k for k, v in two[0]["buffers"].items() if not torch.equal(v, two[1]["buffers"][k])]
    assert differ, "the ranks' own running statistics should differ"


@pytest.mark.parametrize("module", [torch.nn.SyncBatchNorm(3), parallel.SyncBatchNorm(3)])
def test_local_batch_norm_is_plain_batch_norm_and_is_undone(module):
    x = torch.randn(4, 3, 5, 5, dtype=torch.float32)
    plain = torch.nn.BatchNorm2d(3)
    with parallel.local_batch_norm(module):
        assert torch.allclose(module(x), plain(x), atol=1e-6)
    assert "forward" not in vars(module)
    assert torch.equal(module.running_mean, plain.running_mean.to(module.running_mean.dtype))
