"""The validation benchmark and the paper's variants of it."""

from __future__ import annotations

import torch

from centrifuge.data import PAPER_COLORS
from centrifuge.evaluate import benchmark_pairs, color_pairs, frozen_pairs, identity_row, score_model
from centrifuge.models import build_model


def test_benchmark_pairs_of_two_videos_are_different_clips_and_repeat_under_the_seed(shared_videos):
    data = f"{shared_videos / 'carphone_pristine.mp4'},{shared_videos / 'cup.mp4'}"
    pairs = benchmark_pairs(data, num_pairs=6, num_frames=8, size=32)
    assert pairs.shape == (6, 2, 3, 8, 32, 32)
    distinct = {tuple(p.flatten()[:: 997].tolist()) for p in pairs}
    assert len(distinct) == 6  # a fixed start would give one pair six times
    assert torch.equal(pairs, benchmark_pairs(data, num_pairs=6, num_frames=8, size=32))


def test_color_and_frozen_variants():
    pairs = torch.rand(3, 2, 3, 4, 8, 8)
    red = color_pairs(pairs, "red")
    assert torch.equal(red[:, 0], pairs[:, 0])
    assert torch.equal(red[:, 1, :, 0, 0, 0], torch.tensor([PAPER_COLORS["red"]] * 3))
    frozen = frozen_pairs(pairs, (True, False))
    assert torch.equal(frozen[:, 1], pairs[:, 1])
    assert torch.equal(frozen[:, 0, :, 0], frozen[:, 0, :, 3])


def test_identity_row_scores_ratio_one_and_a_model_row_is_consistent():
    pairs = torch.rand(2, 2, 3, 8, 32, 32)
    identity = identity_row(pairs)
    assert identity.ratio == 1.0 and identity.psnr_layers == identity.psnr_blend
    torch.manual_seed(0)
    row = score_model(build_model("tiny"), "tiny", pairs)
    assert row.identity == identity.loss and row.loss > 0
