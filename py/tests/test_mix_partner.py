"""Mixing partners under data parallelism (prcl-method.md §6 "DDP variant", Q-aug-6; the
train_step policy's `mix_partner`): the mixing functions with an explicit partner against a hand
computation, the partner indices of each mode, and the unlabeled branch (re-crop, mix) at world
size 2 on a real gloo group (ranks spawned as in test_distributed.py) against one process:
'global_next' gives each rank its slice of one process's result on the concatenated batch,
'local_next' that of one process on the rank's own batch, 'prcl_rank0' mixes rank 1's images with
rank 0's. At world size 1 every mode is today's (i+1) mod B, with no collective.
"""

import pytest
import torch
from test_distributed import run_groups

from prcl_worker import augment, distributed
from prcl_worker.augment import MIX_PARTNERS, apply_mix, classmix, cutmix, partner_index, partner_triple
from prcl_worker.train.unlabeled import augment_unlabeled

B, H, W, WORLD = 3, 10, 12, 2  # images per rank, crop size, ranks
MODES = ("classmix", "cutmix", "cutout")


def triples(n, seed=0, h=H, w=W):
    """n normalised images, pseudo-labels (5 classes and some -1) and confidences."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(n, 3, h, w, generator=g)
    labels = torch.randint(0, 5, (n, h, w), generator=g)
    labels[torch.rand(n, h, w, generator=g) < 0.1] = -1
    confs = torch.rand(n, h, w, generator=g)
    return imgs, labels, confs


def mix_entries(mode, n):
    if mode == "classmix":
        return [{"seed": 100 + i} for i in range(n)]
    return [{"box": [i % 3, (2 * i) % 4, 4 + i % 3, 5 + i % 4]} for i in range(n)]


def rescales(n):
    """The unlabeled branch's re-crop: ×1.25 (10×12 → 12×15), a 10×12 crop at a per-image place."""
    return [{"rescale": {"scale": 1.25, "top": i % 3, "left": (i + 1) % 4, "crop_h": H, "crop_w": W}}
            for i in range(n)]


def policy(mode, partner):
    return {"weak_threshold": 0.3, "teacher_bn": "eval", "mix": mode, "mix_partner": partner,
            "classmix_ignore_is_class": True, "conf_quantization": "none"}


def unlabeled(mode, partner, first, n):
    """augment_unlabeled on images [first, first + n) of the global batch (this process's group)."""
    x, lab, conf = (t[first:first + n] for t in triples(WORLD * B))
    body = {"mix": mix_entries(mode, WORLD * B)[first:first + n], "unlabeled_aug": rescales(WORLD * B)[first:first + n]}
    return augment_unlabeled(body, policy(mode, partner), x, lab, conf)


# --------------------------------------------------------------------------- (1) by hand

def test_partner_index_of_each_mode():
    # world 3, local batch 2: global images 0..5, rank r holds 2r, 2r+1.
    assert partner_index("local_next", 1, 3, 2).tolist() == [3, 2]
    assert partner_index("global_next", 0, 3, 2).tolist() == [1, 2]
    assert partner_index("global_next", 2, 3, 2).tolist() == [5, 0]
    assert partner_index("prcl_rank0", 0, 3, 2).tolist() == [1, 0]  # rank 0: as local_next
    assert partner_index("prcl_rank0", 2, 3, 2).tolist() == [1, 0]  # rank 2: rank 0's images
    for how in MIX_PARTNERS:  # alone: (i+1) mod B
        assert partner_index(how, 0, 1, 4).tolist() == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="local_next.*global_next.*prcl_rank0"):
        partner_index("next", 0, 1, 2)
    with pytest.raises(ValueError, match="rank"):
        partner_index("global_next", 2, 2, 2)


def test_mixing_with_an_explicit_partner_is_the_hand_computation():
    imgs, labels, confs = triples(B, seed=1)
    p_imgs, p_labels, p_confs = triples(B, seed=2)
    seeds = [7, 8, 9]
    o_img, o_lab, o_conf, m = classmix(imgs, labels, confs, seeds, ignore_is_class=True,
                                       partner=(p_imgs, p_labels, p_confs))
    for i in range(B):
        vals = torch.unique(labels[i])  # the mask is image i's own: its labels, its seed
        perm = torch.randperm(vals.numel(), generator=torch.Generator().manual_seed(seeds[i]))
        keep = torch.zeros(H, W, dtype=torch.bool)
        for v in vals[perm[: vals.numel() // 2]]:
            keep |= labels[i] == v
        assert torch.equal(m[i].bool(), keep)
        for y in range(H):
            for x in range(W):
                own = bool(keep[y, x])
                assert torch.equal(o_img[i, :, y, x], (imgs if own else p_imgs)[i, :, y, x])
                assert o_lab[i, y, x] == (labels if own else p_labels)[i, y, x]
                assert o_conf[i, y, x] == (confs if own else p_confs)[i, y, x]
    boxes = [(1, 2, 4, 5), (0, 0, H, W), (3, 3, 0, 0)]
    o_img, o_lab, o_conf, m = cutmix(imgs, labels, confs, boxes, partner=(p_imgs, p_labels, p_confs))
    for i, (t, left, h, w) in enumerate(boxes):
        want_img, want_lab, want_conf = imgs[i].clone(), labels[i].clone(), confs[i].clone()
        want_img[:, t:t + h, left:left + w] = p_imgs[i, :, t:t + h, left:left + w]
        want_lab[t:t + h, left:left + w] = p_labels[i, t:t + h, left:left + w]
        want_conf[t:t + h, left:left + w] = p_confs[i, t:t + h, left:left + w]
        assert torch.equal(o_img[i], want_img) and torch.equal(o_lab[i], want_lab)
        assert torch.equal(o_conf[i], want_conf)
        assert int((m[i] == 0).sum()) == h * w
    # No partner: the batch rolled by one, as before; through apply_mix the same.
    rolled = tuple(torch.roll(t, -1, 0) for t in (imgs, labels, confs))
    for mode in ("classmix", "cutmix"):
        params = mix_entries(mode, B)
        a = apply_mix(mode, imgs, labels, confs, params, ignore_is_class=True)
        b = apply_mix(mode, imgs, labels, confs, params, ignore_is_class=True, partner=rolled)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="partner labels"):
        classmix(imgs, labels, confs, seeds, ignore_is_class=True, partner=(p_imgs, p_labels[:2], p_confs))


def test_partner_triple_gathers_only_when_another_rank_holds_the_partner():
    imgs, labels, confs = triples(2 * B, seed=3)
    calls = []

    def gather(*ts):  # rank 1 of 2 with the second half; rank 0 holds the first
        calls.append(len(ts))
        return tuple(torch.cat([whole[:B], t]) for whole, t in zip((imgs, labels, confs), ts))

    mine = (imgs[B:], labels[B:], confs[B:])
    for how in MIX_PARTNERS:
        assert partner_triple(how, *mine, 0, 1, gather) is None  # alone: no collective
    assert partner_triple("local_next", *mine, 1, 2, gather) is None
    assert calls == []
    g = partner_triple("global_next", *mine, 1, 2, gather)
    assert all(torch.equal(p, t[[4, 5, 0]]) for p, t in zip(g, (imgs, labels, confs)))
    r0 = partner_triple("prcl_rank0", *mine, 1, 2, gather)
    assert all(torch.equal(p, t[[1, 2, 0]]) for p, t in zip(r0, (imgs, labels, confs)))
    assert calls == [3, 3]
    no_conf = partner_triple("global_next", imgs[B:], labels[B:], None, 1, 2,
                             lambda *ts: tuple(torch.cat([w[:B], t]) for w, t in zip((imgs, labels), ts)))
    assert no_conf[2] is None and torch.equal(no_conf[1], labels[[4, 5, 0]])


def test_world_one_every_partner_mode_is_the_same():
    assert distributed.world() == 1
    for mode in MODES:
        a = unlabeled(mode, "local_next", 0, WORLD * B)
        for how in ("global_next", "prcl_rank0"):
            assert all(torch.equal(x, y) for x, y in zip(a, unlabeled(mode, how, 0, WORLD * B)))


# --------------------------------------------------------------------------- (2) world size 2

def _ranks(rank, dist):
    assert distributed.world() == WORLD and distributed.rank() == rank
    torch.set_default_dtype(torch.float32)
    out = {(mode, how): unlabeled(mode, how, rank * B, B) for mode in MODES for how in MIX_PARTNERS}
    ints = torch.arange(4).view(2, 2) + 10 * rank
    out["gathered"] = distributed.all_gather(ints, ints.double() / 2, ints + 1)
    return out


@pytest.fixture(scope="module")
def world2():
    (ranks,) = run_groups((_ranks, WORLD, ()), timeout=120, dist_timeout=30)
    return ranks


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_all_gather_concatenates_in_rank_order(world2):
    ints = torch.cat([torch.arange(4).view(2, 2) + 10 * r for r in range(WORLD)])
    for r in world2:
        a, b, c = r["gathered"]
        assert torch.equal(a, ints) and torch.equal(b, ints.double() / 2) and torch.equal(c, ints + 1)
    assert distributed.all_gather(ints) == (ints,)  # alone: the tensors themselves


def test_global_next_is_one_process_on_the_concatenated_batch(world2):
    for mode in ("classmix", "cutmix"):
        whole = unlabeled(mode, "local_next", 0, WORLD * B)
        for rank, r in enumerate(world2):
            got = r[(mode, "global_next")]
            assert _equal(got, (t[rank * B:(rank + 1) * B] for t in whole)), (mode, rank)
        # The last image of rank 0 took its partner from rank 1 (and vice versa): not local_next.
        assert not _equal(world2[0][(mode, "global_next")], world2[0][(mode, "local_next")])


def test_local_next_is_one_process_on_the_ranks_own_batch(world2):
    for mode in MODES:
        for rank, r in enumerate(world2):
            assert _equal(r[(mode, "local_next")], unlabeled(mode, "local_next", rank * B, B)), (mode, rank)


def test_prcl_rank0_mixes_rank_1s_images_with_rank_0s(world2):
    x, lab, conf = triples(WORLD * B)
    recropped = augment.augment_batch(x, lab, conf, rescales(WORLD * B))
    for mode in ("classmix", "cutmix"):
        r0, r1 = (r[(mode, "prcl_rank0")] for r in world2)
        assert _equal(r0, world2[0][(mode, "local_next")])  # rank 0: its own images, as single-GPU
        own = tuple(t[B:] for t in recropped)
        partner = tuple(t[[1, 2, 0]] for t in recropped)  # rank 0's images (i+1) mod B
        want = apply_mix(mode, *own, mix_entries(mode, WORLD * B)[B:], ignore_is_class=True, partner=partner)
        assert _equal(r1, want[:3])
        outside = want[3] == 0  # every pixel rank 1 did not keep is rank 0's
        assert bool(outside.any())
        for i in range(B):
            keep = ~outside[i]
            assert torch.equal(r1[0][i][:, outside[i]], recropped[0][(i + 1) % B][:, outside[i]])
            assert torch.equal(r1[0][i][:, keep], recropped[0][B + i][:, keep])
        assert not _equal(r1, world2[1][(mode, "local_next")])


def test_cutout_has_no_partner(world2):
    for r in world2:
        for how in ("global_next", "prcl_rank0"):
            assert _equal(r[("cutout", how)], r[("cutout", "local_next")])
