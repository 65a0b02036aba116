import logging

import numpy as np
import pytest
import torch

from centrifuge.data import (
    PAPER_COLORS,
    LayerPairs,
    SyntheticSource,
    VideoFolder,
    augment_clip,
    blend_layers,
    blend_pair,
    color_clip,
    fit_length,
    freeze_clip,
    sample_alpha,
)
from centrifuge.losses import identity_outputs, pit_loss
from centrifuge.synthetic import synthetic_video
from centrifuge.video import VideoError, write_video


def test_augmentation_resizes_the_shortest_side_then_crops():
    clip = torch.rand(3, 10, 90, 160)
    rng = np.random.default_rng(0)
    out = augment_clip(clip, 64, train=True, rng=rng)
    assert out.shape == (3, 10, 64, 64)
    centre = augment_clip(clip, 64, train=False)
    assert centre.shape == (3, 10, 64, 64)
    assert torch.equal(centre, augment_clip(clip, 64, train=False))
    a = augment_clip(clip, 64, True, np.random.default_rng(7))
    b = augment_clip(clip, 64, True, np.random.default_rng(7))
    assert torch.equal(a, b)


def test_blend_is_eq1_and_returns_layers_and_alpha():
    v1, v2 = torch.rand(3, 4, 8, 8), torch.rand(3, 4, 8, 8)
    pair = blend_pair(v1, v2, alpha=0.25)
    assert pair.alpha == 0.25
    assert torch.allclose(pair.blend, 0.75 * v1 + 0.25 * v2)
    assert torch.equal(pair.layers[0], v1) and torch.equal(pair.layers[1], v2)
    ranged = sample_alpha(1000, (0.25, 0.75), torch.Generator().manual_seed(0))
    assert 0.25 <= float(ranged.min()) and float(ranged.max()) <= 0.75 and ranged.std() > 0.1
    layers = torch.rand(2, 2, 3, 4, 8, 8)
    alpha = torch.tensor([0.5, 0.3])
    assert torch.allclose(blend_layers(layers, alpha)[1], 0.7 * layers[1, 0] + 0.3 * layers[1, 1])


def test_frozen_and_color_variants():
    clip = torch.rand(3, 6, 8, 8)
    frozen = freeze_clip(clip, 2)
    assert all(torch.equal(frozen[:, t], clip[:, 2]) for t in range(6))
    assert set(PAPER_COLORS) == {"black", "white", "red", "green", "yellow", "blue", "cyan", "magenta"}
    magenta = color_clip("magenta", clip)
    assert magenta.shape == clip.shape and torch.equal(magenta[:, 3, 4, 4], torch.tensor([1.0, 0.0, 1.0]))


def test_fit_length_loops_short_clips():
    frames = np.arange(3)[:, None, None, None] * np.ones((3, 2, 2, 3), dtype=np.uint8)
    assert fit_length(frames, 7)[:, 0, 0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2]


@pytest.fixture()
def video_folder(tmp_path):
    """Two classes of real encoded videos and one file that is not a video."""
    for label, seeds in (("walking", (1, 2)), ("dancing", (3, 4))):
        (tmp_path / label).mkdir()
        for seed in seeds:
            write_video(tmp_path / label / f"clip{seed}.mp4", synthetic_video(seed, 24, 48, 64), fps=24)
    (tmp_path / "dancing" / "broken.mp4").write_bytes(b"not a video at all")
    return tmp_path


def test_video_folder_indexes_recursively_skips_bad_files_and_caches(video_folder, caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        folder = VideoFolder(video_folder)
    assert len(folder) == 4
    assert folder.classes == ["dancing", "walking"]
    assert [s[0].endswith("broken.mp4") for s in folder.skipped] == [True]
    assert sum("broken.mp4" in r.message for r in caplog.records) == 1
    assert all(v.num_frames == 24 for v in folder.videos)
    # The second index comes from the cache: the (unchanged) files are not probed again.
    import centrifuge.data as data_module

    calls = []
    original = data_module.probe
    data_module.probe = lambda p: calls.append(p) or original(p)
    try:
        again = VideoFolder(video_folder)
    finally:
        data_module.probe = original
    assert calls == [] and len(again) == 4


def test_layer_pairs_are_different_videos_deterministic_and_same_class_on_request(video_folder):
    folder = VideoFolder(video_folder)
    pairs = LayerPairs(folder, length=12, num_frames=8, crop_size=32, seed=3)
    item = pairs[5]
    assert item["layers"].shape == (2, 3, 8, 32, 32)
    assert torch.equal(item["layers"], pairs[5]["layers"])
    assert all(int(pairs[i]["videos"][0]) != int(pairs[i]["videos"][1]) for i in range(12))
    same = LayerPairs(folder, length=12, num_frames=8, crop_size=32, seed=3, same_class=True)
    for i in range(12):
        labels = same[i]["labels"]
        assert labels[0] == labels[1] and labels[0] >= 0
    frozen = LayerPairs(folder, length=2, num_frames=8, crop_size=32, frozen=(True, False))[0]["layers"]
    assert torch.equal(frozen[0, :, 0], frozen[0, :, 7]) and not torch.equal(frozen[1, :, 0], frozen[1, :, 7])


def test_identity_baseline_on_real_video_pairs_is_in_the_expected_range(shared_videos):
    """Eq. 3 with per-element means gives an identity loss near the paper's 0.361 on real pairs."""
    folder = VideoFolder(shared_videos)
    pairs = LayerPairs(folder, length=6, num_frames=32, crop_size=112, train=False, seed=0)
    layers = torch.stack([pairs[i]["layers"] for i in range(6)])
    loss = float(pit_loss(identity_outputs(blend_layers(layers, 0.5)), layers).loss)
    assert 0.25 < loss < 0.5, loss


def test_synthetic_source_gives_varied_pairs():
    pairs = LayerPairs(SyntheticSource(seed=1), length=4, num_frames=8, crop_size=32)
    a, b = pairs[0]["layers"], pairs[1]["layers"]
    assert a.shape == (2, 3, 8, 32, 32) and not torch.equal(a, b)
    assert float((a[0] - a[1]).abs().mean()) > 0.05


def test_one_bad_file_in_ten_is_skipped_and_the_draws_repeat_exactly(tmp_path):
    for seed in range(9):
        write_video(tmp_path / f"clip{seed}.mp4", synthetic_video(seed, 12, 32, 40), fps=24)
    good = (tmp_path / "clip0.mp4").read_bytes()
    (tmp_path / "clip9.mp4").write_bytes(good[: len(good) // 3])  # truncated mid-stream
    folder = VideoFolder(tmp_path)
    assert len(folder) + len(folder.skipped) == 10
    epoch = [LayerPairs(folder, length=10, num_frames=8, crop_size=24, seed=5)[i]["videos"].tolist() for i in range(10)]
    again = [LayerPairs(VideoFolder(tmp_path), length=10, num_frames=8, crop_size=24, seed=5)[i]["videos"].tolist() for i in range(10)]
    assert epoch == again


def test_a_folder_of_mostly_broken_files_is_refused_with_the_list(tmp_path):
    write_video(tmp_path / "fine.mp4", synthetic_video(0, 8, 32, 32), fps=24)
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / name).write_bytes(b"junk")
    with pytest.raises(VideoError, match=r"3 of 4 videos are unreadable.*a\.mp4, b\.mp4, c\.mp4"):
        VideoFolder(tmp_path)


def test_video_zoom_magnifies_training_crops_between_the_papers_view_and_the_limit(tmp_path):
    from centrifuge.data import VideoFolder

    # A ramp from black at the left edge to white at the right: the span of values a crop holds
    # is the share of the frame's width it sees.
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.float32)[None, None, :, None], (12, 192, 1, 3)).astype(np.uint8)
    write_video(tmp_path / "ramp.mp4", ramp)
    write_video(tmp_path / "small.mp4", ramp[:, ::4, ::4])  # 48 × 80: too small to be magnified 3×

    def spans(zoom: float, train: bool = True, name: str = "ramp.mp4") -> np.ndarray:
        folder = VideoFolder(tmp_path, cache=False, zoom=zoom, files=[tmp_path / name])
        clips = [folder.clip(0, 4, 32, train, np.random.default_rng(s)) for s in range(60)]
        assert all(c.shape == (3, 4, 32, 32) for c in clips)
        return np.array([float(c[:, :, 16, -2].mean() - c[:, :, 16, 1].mean()) for c in clips]).__abs__()

    paper = spans(1.0)
    zoomed = spans(3.0)
    seen = 29 / (round(32 * 1.15) * 320 / 192)  # the paper's view: columns 1 and 30 this share of the width apart
    assert np.allclose(paper, seen, atol=0.04)
    assert zoomed.max() == pytest.approx(seen, abs=0.04)  # magnification 1 is the paper's view
    assert zoomed.min() < seen / 2.5 and np.median(zoomed) < 0.75 * seen  # up to 3× closer
    assert np.allclose(spans(3.0, train=False), spans(1.0, train=False), atol=1e-6)  # evaluation: as before
    small = spans(3.0, name="small.mp4")  # at most 48 / 37 × closer, where its own pixels end
    assert small.max() == pytest.approx(seen, abs=0.04) and small.min() > seen * 37 / 48 - 0.04
