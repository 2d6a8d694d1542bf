"""Identical replicas at evaluation: at world size 2 without SyncBN and without broadcast_buffers,
each rank's BatchNorm buffers follow its own images, so the ranks' networks differ (state_hash
covers buffers); align_buffers gives every rank rank 0's, after which every network hashes the
same on both ranks, and rank 0's own state is unchanged."""

import torch
from test_distributed import body, global_batch, run_groups, settings, shard
from worker_calls import SCHEMAS, call

from prcl_worker.replay import ReplayContext

NETWORKS = ["teacher", "student", "head"]


def _ranks(rank, dist, world):
    ctx = ReplayContext("cpu", SCHEMAS)
    call(ctx, "configure", settings(sync_bn=False, broadcast_buffers=False))
    for step in range(2):
        call(ctx, "train_step", body(step, teacher_bn="train", buffers="own"),
             shard(global_batch(step, 2 * world), rank, world))
    before = call(ctx, "state_hash", {"networks": NETWORKS})["hashes"]
    mine = {k: v.clone() for k, v in ctx.state["trainer"].net.teacher.state_dict().items()}
    aligned = call(ctx, "align_buffers", {})
    after = call(ctx, "state_hash", {"networks": NETWORKS})["hashes"]
    teacher = ctx.state["trainer"].net.teacher.state_dict()
    return {"before": before, "after": after, "aligned": aligned, "mine": mine, "teacher": teacher}


def test_align_buffers_makes_every_ranks_networks_rank_0s():
    (two,) = run_groups((_ranks, 2, (2,)))
    r0, r1 = two
    assert all(r0["before"][n] != r1["before"][n] for n in NETWORKS)  # buffers only: DDP keeps parameters equal
    assert r0["after"] == r1["after"]
    assert r0["after"] == r0["before"]  # rank 0 keeps its own
    assert r0["aligned"]["buffers"] > 0 and r0["aligned"]["bytes"] > 0
    for k, v in r0["mine"].items():
        assert torch.equal(r1["teacher"][k], v), k
