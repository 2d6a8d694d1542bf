"""Pseudo-label quality counts (prcl_worker/train/quality.py) on a hand-made case."""

import torch

from prcl_worker.train.quality import THRESHOLDS, pseudo_quality


def test_counts_over_pixels_with_a_class():
    truth = torch.tensor([[[0, 1, 2, -1]]])          # the last pixel is ignore
    pseudo = torch.tensor([[[0, 2, 2, 1]]])
    conf = torch.tensor([[[0.96, 0.75, 0.6, 0.99]]])
    q = pseudo_quality(pseudo, conf, truth, 3)
    assert q["pixels"] == 3 and q["correct"] == 2
    assert q["thresholds"] == list(THRESHOLDS) == [0.5, 0.7, 0.8, 0.9, 0.95]
    assert q["confident"] == [3, 2, 1, 1, 1]
    assert q["confident_correct"] == [2, 1, 1, 1, 1]
    # ground truth rows by pseudo-label columns: 0→0, 1→2, 2→2
    assert q["confusion"] == [1, 0, 0,
                              0, 0, 1,
                              0, 0, 1]


def test_nothing_to_count_when_every_pixel_is_ignore():
    q = pseudo_quality(torch.zeros(1, 2, 2, dtype=torch.long), torch.ones(1, 2, 2), torch.full((1, 2, 2), -1), 2)
    assert q["pixels"] == 0 and q["confident"] == [0] * len(THRESHOLDS) and q["confusion"] == [0, 0, 0, 0]
