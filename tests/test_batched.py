"""Real clips held in memory, the layer kinds of real footage, and batches that do not depend on how
many processes make them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from centrifuge.batched import BatchedPairs, ClipBank, LayerKinds, StepBatches, blend_linear_light
from centrifuge.data import RESIZE_FACTOR, VideoFolder
from centrifuge.generator import BatchedGenerator, default_bank_size
from centrifuge.photos import available_photos, bank_tensor
from centrifuge.video import read_clip, write_video
from conftest import moving_frames


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "a.mp4", moving_frames(30, 48, 64, seed=1))
    write_video(folder / "b.mp4", moving_frames(6, 40, 56, seed=2))  # shorter than a clip: looped
    return folder


def test_bank_crops_are_the_decoded_frames_cropped_flipped_and_looped(two_videos):
    folder = VideoFolder(two_videos, cache=False)
    bank = ClipBank(folder, crop_size=32)
    side = round(32 * RESIZE_FACTOR)
    index = [v.path for v in folder.videos].index(str(two_videos / "a.mp4"))
    decoded = read_clip(folder.videos[index].path, 0, 30, info=folder.videos[index], shortest_side=side)
    clip = bank.clips([(index, np.arange(5, 13), 2, 3, False)])[0]
    expected = torch.from_numpy(decoded[5:13, 2:34, 3:35]).permute(3, 0, 1, 2).float() / 255
    assert torch.equal(clip, expected)
    flipped = bank.clips([(index, np.arange(5, 13), 2, 3, True)])[0]
    assert torch.equal(flipped, expected.flip(-1))
    short = 1 - index
    video, times, *_ = bank.plan(short, np.random.default_rng(0), 12, train=True)
    assert times.tolist() == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1]  # forwards then backwards


def test_real_pairs_are_two_different_videos_and_a_single_video_is_refused(two_videos, tmp_path):
    bank = ClipBank(VideoFolder(two_videos, cache=False), crop_size=32)
    pairs = BatchedPairs(None, bank, 1.0, 8, 32, seed=3)
    plan = pairs.plan(range(20))
    videos = [p[0] for p in plan.real]
    assert all(videos[2 * i] != videos[2 * i + 1] for i in range(20))
    write_video(tmp_path / "only.mp4", moving_frames(12, 40, 40))
    with pytest.raises(ValueError, match="at least two different videos"):
        BatchedPairs(None, ClipBank(VideoFolder(tmp_path, cache=False), crop_size=32), 1.0, 8, 32)


def test_a_global_batch_is_the_same_made_by_one_process_or_by_two(two_videos):
    bank = ClipBank(VideoFolder(two_videos, cache=False), crop_size=32)
    generator = BatchedGenerator(bank_tensor(available_photos("train"), *default_bank_size(32)), seed=1)
    pairs = BatchedPairs(generator, bank, 0.5, 8, 32, seed=5, kinds=LayerKinds(alpha=(0.3, 0.7), blur=0.5, dim=0.5))
    whole = StepBatches(pairs, 4)[7]
    halves = [StepBatches(pairs, 4, rank, 2)[7] for rank in (0, 1)]
    assert torch.equal(whole["layers"], torch.cat([h["layers"] for h in halves]))
    assert torch.equal(whole["alpha"], torch.cat([h["alpha"] for h in halves]))  # α too: one global draw per example
    assert len(set(whole["alpha"].tolist())) == 4 and 0.3 <= float(whole["alpha"].min()) <= float(whole["alpha"].max()) <= 0.7
    planned = StepBatches(pairs.planner(), 4, plans_only=True)[7]  # what CPU workers send a GPU process
    assert torch.equal(pairs.render(planned)["layers"], whole["layers"])


def test_layer_kinds_blur_or_dim_one_layer_and_linear_light_blends_in_linear_light():
    rng = np.random.default_rng(0)
    draws = [LayerKinds(blur=1.0, dim=1.0).draw(rng) for _ in range(50)]
    assert all((s > 0).sum() == 1 and 1 <= s.max() <= 5 for _, s, _ in draws)  # one layer, σ in 1–5 px
    assert all((g < 1).sum() == 1 and 0.4 <= g.min() <= 0.9 for _, _, g in draws)
    assert all(a == 0.5 and (s == 0).all() and (g == 1).all() for a, s, g in (LayerKinds().draw(rng) for _ in range(20)))
    layers = torch.stack([torch.full((1, 3, 1, 2, 2), 1.0), torch.full((1, 3, 1, 2, 2), 0.0)], dim=1)
    blend = blend_linear_light(layers, torch.tensor([0.5]))
    assert torch.allclose(blend, torch.full_like(blend, 0.5 ** (1 / 2.2)))  # brighter than the plain average 0.5


def test_layer_light_replaces_one_layer_of_some_pairs_in_both_pipelines_and_leaves_other_streams_as_they_were():
    from centrifuge.data import LayerPairs, SyntheticSource

    def is_light(clip: torch.Tensor) -> bool:  # smooth: no neighbouring pixels far apart
        return float(clip.diff(dim=-1).abs().max()) < 0.06

    plain = LayerPairs([SyntheticSource(seed=1)], length=40, num_frames=4, crop_size=32)
    lit = LayerPairs([SyntheticSource(seed=1)], length=40, num_frames=4, crop_size=32, light=0.5)
    counts = [sum(is_light(layer) for layer in lit[i]["layers"]) for i in range(40)]
    assert set(counts) == {0, 1} and 8 <= sum(counts) <= 32  # one layer of about half the pairs
    for i in range(40):  # the clips are drawn as before: a light only replaces one of them
        same = [torch.equal(a, b) for a, b in zip(plain[i]["layers"], lit[i]["layers"])]
        assert sum(same) == 2 - counts[i]
    assert not any(is_light(layer) for i in range(10) for layer in plain[i]["layers"])

    generator = BatchedGenerator(bank_tensor(available_photos("train"), *default_bank_size(32)))
    pairs = BatchedPairs(generator, None, 0.0, 4, 32, kinds=LayerKinds(light=0.5))
    layers = pairs.examples(range(40))["layers"]
    counts = [sum(is_light(layer) for layer in example) for example in layers]
    assert set(counts) == {0, 1} and 8 <= sum(counts) <= 32
    unlit = BatchedPairs(generator, None, 0.0, 4, 32).examples(range(4))["layers"]
    assert torch.equal(unlit, BatchedPairs(generator, None, 0.0, 4, 32, kinds=LayerKinds(light=0.0)).examples(range(4))["layers"])


def test_loader_pipeline_blurs_or_dims_one_layer_too_and_leaves_other_streams_as_they_were():
    """``layer_blur`` / ``layer_dim`` reach the clip-by-clip pipeline as well (they used to be ignored there)."""
    from centrifuge.data import LayerPairs, SyntheticSource

    def detail(clip: torch.Tensor) -> float:
        return float(clip.diff(dim=-1).abs().mean())

    plain = LayerPairs([SyntheticSource(seed=2)], length=12, num_frames=4, crop_size=32)
    kinds = LayerPairs([SyntheticSource(seed=2)], length=12, num_frames=4, crop_size=32, blur=1.0, dim=1.0)
    for i in range(12):
        before, after = plain[i]["layers"], kinds[i]["layers"]
        softer = [detail(a) < 0.8 * detail(b) for a, b in zip(after, before)]
        darker = [float(a.mean()) < 0.95 * float(b.mean()) for a, b in zip(after, before)]
        assert sum(softer) >= 1 and sum(darker) >= 1  # one layer out of focus, one dimmer (maybe the same)
        assert any(torch.equal(a, b) for a, b in zip(after, before)) == (softer == darker and sum(softer) == 1)
    unchanged = LayerPairs([SyntheticSource(seed=2)], length=3, num_frames=4, crop_size=32, blur=0.0, dim=0.0)
    assert all(torch.equal(unchanged[i]["layers"], plain[i]["layers"]) for i in range(3))


def test_layer_still_freezes_one_layer_of_some_pairs_in_both_pipelines_and_keeps_its_frame_from_the_clip():
    from centrifuge.data import LayerPairs, SyntheticSource

    def is_still(clip: torch.Tensor) -> bool:
        return float(clip.diff(dim=1).abs().max()) == 0.0

    plain = LayerPairs([SyntheticSource(seed=1)], length=30, num_frames=4, crop_size=32)
    stilled = LayerPairs([SyntheticSource(seed=1)], length=30, num_frames=4, crop_size=32, still=0.5)
    counts = [sum(is_still(layer) for layer in stilled[i]["layers"]) for i in range(30)]
    assert set(counts) == {0, 1} and 5 <= sum(counts) <= 25  # one layer of about half the pairs
    for i in range(30):
        for before, after in zip(plain[i]["layers"], stilled[i]["layers"]):
            if is_still(after):  # one of the clip's own frames, repeated
                assert any(torch.equal(after[:, 0], before[:, t]) for t in range(4))
            else:
                assert torch.equal(before, after)
    assert not any(is_still(layer) for i in range(10) for layer in plain[i]["layers"])

    generator = BatchedGenerator(bank_tensor(available_photos("train"), *default_bank_size(32)))
    layers = BatchedPairs(generator, None, 0.0, 4, 32, kinds=LayerKinds(still=0.5)).examples(range(30))["layers"]
    counts = [sum(is_still(layer) for layer in example) for example in layers]
    assert set(counts) == {0, 1} and 5 <= sum(counts) <= 25


def test_layer_jitter_changes_each_layers_look_as_drawn_in_both_pipelines_and_nothing_else():
    from centrifuge.data import LayerPairs, SyntheticSource
    from centrifuge.synthetic import apply_jitter, draw_jitter

    clip = torch.rand(1, 3, 4, 8, 8) * 0.5 + 0.25  # far from 0 and 1: nothing clamped
    identity = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    assert torch.allclose(apply_jitter(clip, identity), clip, atol=1e-6)
    changed = apply_jitter(clip, torch.tensor([[1.0, 1.1, 0.9, 1.0, 0.05]]))
    means = clip.mean(dim=(2, 3, 4))[0]
    assert torch.allclose(changed.mean(dim=(2, 3, 4))[0], means * torch.tensor([1.1, 0.9, 1.0]) + 0.05, atol=1e-6)
    flat = apply_jitter(clip, torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]]))  # no contrast: the clip's mean
    assert torch.allclose(flat, clip.mean().expand_as(clip), atol=1e-6)
    rows = np.stack([draw_jitter(np.random.default_rng(s), 0.5) for s in range(200)]).reshape(-1, 5)
    moved = ~np.all(rows == [1, 1, 1, 1, 0], axis=1)
    assert 0.35 < moved.mean() < 0.65  # each layer on its own, with the given probability
    assert rows[:, 0].min() >= 0.5 and rows[:, 0].max() <= 1.5 and np.abs(rows[:, 4]).max() <= 0.2

    def differs(a: torch.Tensor, b: torch.Tensor) -> list[bool]:
        return [not torch.equal(x, y) for x, y in zip(a, b)]

    plain = LayerPairs([SyntheticSource(seed=1)], length=6, num_frames=4, crop_size=32)
    jittered = LayerPairs([SyntheticSource(seed=1)], length=6, num_frames=4, crop_size=32, jitter=1.0)
    for i in range(6):
        before, after = plain[i]["layers"], jittered[i]["layers"]
        assert all(differs(before, after))
        assert after.min() >= 0 and after.max() <= 1
        # the same clips underneath: each layer's change is an affine map of its pixel values
        for b, a in zip(before, after):
            inside = (a > 0.01) & (a < 0.99)
            for c in range(3):
                x, y = b[c][inside[c]], a[c][inside[c]]
                slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
                assert torch.allclose(y, y.mean() + slope * (x - x.mean()), atol=1e-4)

    generator = BatchedGenerator(bank_tensor(available_photos("train"), *default_bank_size(32)))
    plain = BatchedPairs(generator, None, 0.0, 4, 32).examples(range(6))["layers"]
    jittered = BatchedPairs(generator, None, 0.0, 4, 32, kinds=LayerKinds(jitter=1.0)).examples(range(6))["layers"]
    assert all(all(differs(plain[i], jittered[i])) for i in range(6))
    none = BatchedPairs(generator, None, 0.0, 4, 32, kinds=LayerKinds(jitter=0.0)).plan(range(6))
    assert none.jitter is None  # without jitter, no draw: the stream is the one it was


def test_carried_layers_move_as_their_clip_does_and_the_two_of_a_pair_show_one_photograph(two_videos, tmp_path):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).symlink_to(two_videos / name)
    write_video(tmp_path / "c.mp4", moving_frames(30, 48, 64, seed=4))
    bank = ClipBank(VideoFolder(tmp_path, cache=False), crop_size=32)
    bank.carry_motion(bank_tensor(available_photos("train"), *default_bank_size(32)))
    pairs = BatchedPairs(None, bank, 1.0, 8, 32, seed=3, kinds=LayerKinds(carried=1.0))
    plan = pairs.plan(range(12))
    assert plan.carried == pairs.planner().plan(range(12)).carried  # planned alike without any frame
    carried = dict(plan.carried)
    for slot, (kind, j) in enumerate(plan.slots):
        consecutive = bool((np.diff(plan.real[j][1]) == 1).all())
        assert (slot in carried) == consecutive  # the 6-frame video's bounced clips are not carried
    shared = [(s, s + 1) for s in range(0, 24, 2) if s in carried and s + 1 in carried]
    assert shared and all(carried[a][0] == carried[b][0] for a, b in shared)
    # each example says whether a layer of it is carried (the written-pair term may skip those)
    some = BatchedPairs(None, bank, 1.0, 8, 32, seed=3, kinds=LayerKinds(carried=0.3))
    some_plan = some.plan(range(12))
    flags = some.render(some_plan)["carried"].tolist()
    assert flags == [any(s // 2 == b for s, _ in some_plan.carried) for b in range(12)] and any(flags) and not all(flags)
    layers = pairs.render(plan)["layers"].flatten(0, 1)
    own = bank.clips(plan.real)
    for slot in carried:
        assert (layers[slot] - own[plan.slots[slot][1]]).abs().mean() > 0.05  # not the video's own look
        assert (layers[slot][:, -1] - layers[slot][:, 0]).abs().mean() > 0.02  # but it moves
    for slot in set(range(24)) - set(carried):
        assert torch.equal(layers[slot], own[plan.slots[slot][1]])
