"""Evaluation protocols: test-time augmentation (scales, flip) and the released random crop."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_train import settings
from worker_calls import SCHEMAS, call

from prcl_worker.augment import normalize
from prcl_worker.errors import InvalidArgument
from prcl_worker.evaluate import probabilities
from prcl_worker.ops.training import random_crops
from prcl_worker.replay import ReplayContext


@pytest.fixture(scope="module")
def trainer():
    ctx = ReplayContext("cpu", SCHEMAS)
    call(ctx, "configure", settings())
    return ctx.state["trainer"]


def _up(p, size):
    return F.interpolate(p, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("mode,window", [("whole", None), ("sliding", [24, 24])])
def test_tta_averages_the_views_brought_back(trainer, mode, window):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 33, 45)
    plain = probabilities(trainer, "teacher", x, mode, window)
    assert torch.equal(probabilities(trainer, "teacher", x, mode, window, scales=[1.0], flip=False), plain)
    mirrored = probabilities(trainer, "teacher", x.flip(3), mode, window).flip(3)
    got = probabilities(trainer, "teacher", x, mode, window, flip=True)
    assert torch.allclose(got, (plain + mirrored) / 2, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-4)  # the mirror view changed something
    half = _up(probabilities(trainer, "teacher", _up(x, (17, 23)), mode, window), (33, 45))
    got = probabilities(trainer, "teacher", x, mode, window, scales=[0.5, 1.0])
    assert got.shape == plain.shape
    assert torch.allclose(got, (half + plain) / 2, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(2, 33, 45), atol=1e-5)


def _pair(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    lbl = torch.randint(0, 4, (h, w), generator=g)
    return img, lbl


def test_random_crop_pads_and_cuts_where_the_driver_drew():
    img, lbl = _pair(30, 40)
    body = {"crop": [32, 32], "crop_at": [[0.999, 0.5]]}
    x, y = random_crops([(img, lbl)], body, "cpu")
    assert x.shape == (1, 3, 32, 32) and y.shape == (1, 32, 32)
    # 30 rows padded to 32 (one top position: 0); 40 columns allow 9 lefts, u = 0.5 picks 4
    ref = normalize(img.unsqueeze(0))[0]
    assert torch.equal(x[0, :, :30], ref[:, :, 4:36])
    assert torch.equal(y[0, :30], lbl[:, 4:36])
    assert (y[0, 30:] == -1).all()  # padded label rows are ignored
    assert torch.equal(x[0, :, 30], ref[:, 28, 4:36])  # reflect: row 30 mirrors row 28
    x0, _ = random_crops([(img, lbl)], {"crop": [16, 16], "crop_at": [[0.0, 0.0]]}, "cpu")
    x1, _ = random_crops([(img, lbl)], {"crop": [16, 16], "crop_at": [[0.9999, 0.9999]]}, "cpu")
    assert torch.equal(x0[0], ref[:, :16, :16]) and torch.equal(x1[0], ref[:, 14:, 24:])
    with pytest.raises(InvalidArgument, match="one \\[u, v\\] per image"):
        random_crops([(img, lbl), (img, lbl)], body, "cpu")


def _png(array, mode):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def test_eval_step_in_crop_mode_scores_the_crops_only():
    ctx = ReplayContext("cpu", SCHEMAS)
    call(ctx, "configure", settings())
    img, lbl = _pair(30, 40, seed=1)
    tensors = {"img.0": _png(img.permute(1, 2, 0).numpy(), "RGB"), "lbl.0": _png(lbl.numpy().astype(np.uint8), "L")}
    body = {"model": "teacher", "mode": "crop", "crop": [32, 32], "crop_at": [[0.5, 0.5]],
            "scales": [1.0], "flip": False}
    assert call(ctx, "eval_step", body, tensors)["pixels"] == 30 * 32
    assert call(ctx, "eval_step", {**body, "flip": True, "scales": [0.75, 1.0]}, tensors)["pixels"] == 30 * 32
    with pytest.raises(InvalidArgument, match="crop_at"):
        call(ctx, "eval_step", {k: v for k, v in body.items() if k != "crop_at"}, tensors)
    with pytest.raises(InvalidArgument, match="encoded images"):
        call(ctx, "eval_step", body, {"x": torch.zeros(1, 3, 8, 8), "y": torch.zeros(1, 8, 8, dtype=torch.int64)})
