"""The validation benchmark and the paper's variants of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from centrifuge.data import PAPER_COLORS
from centrifuge.evaluate import (BenchmarkRow, benchmark_items, benchmark_pairs, color_pairs, diversity_scores, format_depth_table,
                                 format_frozen_grid, format_layers_table, frozen_pairs, identity_row, plot_diversity_grid,
                                 run_class_experiment, run_frozen_experiment, score_model, short_model_name)
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


class FixedOffset(torch.nn.Module):
    """A stand-in separator whose layers are the blend and the blend + 0.1: diversity exactly 0.1."""

    def __init__(self, num_layers: int = 2):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.num_layers = num_layers

    def forward(self, blend):
        return torch.stack([blend + 0.1 * k for k in range(self.num_layers)], dim=1)


def test_diversity_is_the_smallest_distance_between_layers_and_the_grid_has_a_row_per_example(tmp_path):
    pairs = 0.2 + 0.5 * torch.rand(4, 2, 3, 4, 16, 16)  # blends stay inside [0.2, 0.7]: no clamping
    scores, examples = diversity_scores(FixedOffset(3), pairs)
    assert torch.allclose(scores, torch.full((4,), 0.1), atol=1e-5)  # min over 0.1, 0.2, 0.1
    assert examples[0].layers.shape == (3, 3, 16, 16)
    grid = plot_diversity_grid(examples[:3], tmp_path / "grid.png")
    image = np.asarray(Image.open(grid))
    assert image.shape[0] > image.shape[1] * 3 / 5  # three rows of four tiles, taller than a single row


def test_tables_place_each_model_by_its_configuration():
    models = [("p2", build_model("tiny", num_layers=2)), ("c4", build_model("tiny", num_layers=4, correction_steps=1)),
              ("shallow", build_model("tiny", num_layers=2, final_endpoint="Mixed_3c"))]
    rows = [BenchmarkRow(name, loss, 0.5, 0, 0, 0) for (name, _), loss in zip(models, (0.4, 0.3, 0.45))]
    table = format_layers_table(rows[:2], models[:2]).splitlines()
    assert table[1].split() == ["2", "0.4000", "(0.800)", "-"]
    assert table[2].split() == ["4", "-", "0.3000", "(0.600)"]
    depth = format_depth_table([rows[0], rows[2]], [models[0], models[2]]).splitlines()
    assert depth[1].split()[:3] == ["Mixed_3c", "7", "0.4500"]  # sorted shallow to deep
    assert depth[2].split()[:3] == ["Mixed_4f", "17", "0.4000"]


def test_frozen_experiment_scores_every_model_on_every_pairing(shared_videos):
    data = f"{shared_videos / 'carphone_pristine.mp4'},{shared_videos / 'cup.mp4'}"
    models = [("a", FixedOffset()), ("b", build_model("tiny"))]
    rows = run_frozen_experiment(models, data, num_pairs=2, num_frames=4, size=16)
    assert [r.name for r in rows[:3]] == ["a / 2 frozen", "a / 2 normal", "a / 1 frozen 1 normal"]
    assert len(rows) == 6
    # The identity loss of the frozen pairs differs from the normal pairs': the pairs really were frozen.
    assert rows[0].identity != rows[1].identity
    grid = format_frozen_grid(rows).splitlines()
    assert len(grid) == 3 and grid[1].startswith("a ") and grid[2].startswith("b ")


def test_same_class_pairs_share_a_label_and_a_folder_without_classes_is_refused(shared_videos):
    items = benchmark_items("synthetic-classes", num_pairs=4, num_frames=4, size=16, same_class=True)
    assert torch.equal(items["labels"][:, 0], items["labels"][:, 1])
    rows = run_class_experiment([("a", FixedOffset())], "synthetic-classes", num_pairs=2, num_frames=4, size=16)
    assert [r.name for r in rows] == ["a / random pairs", "a / same-class pairs"]
    with pytest.raises(ValueError, match="class folders"):
        benchmark_pairs(str(shared_videos / "cup.mp4") + "," + str(shared_videos / "box.mp4"), 2, 4, 16, same_class=True)


# --------------------------------------------------------------------------- the held-back benchmark


def test_ssim_is_one_for_equal_videos_and_falls_with_noise():
    from centrifuge.evaluate import ssim

    video = torch.rand(2, 3, 4, 24, 24)
    assert torch.allclose(ssim(video, video), torch.ones(2), atol=1e-5)
    noisy = (video + 0.3 * torch.randn_like(video)).clamp(0, 1)
    assert float(ssim(video, noisy).max()) < 0.8
    # the Gaussian window as a 2-D convolution, the textbook way
    g = torch.exp(-0.5 * ((torch.arange(7.0) - 3) / 1.5) ** 2)
    kernel = (g[:, None] * g[None]).div(g.sum() ** 2).view(1, 1, 7, 7)
    x, y = video.reshape(-1, 1, 24, 24), noisy.reshape(-1, 1, 24, 24)
    blur = lambda z: torch.nn.functional.conv2d(z, kernel)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    value = ((2 * mx * my + 1e-4) * (2 * sxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (sxx + syy + 9e-4))
    assert torch.allclose(ssim(video, noisy), value.view(2, -1).mean(1), atol=1e-5)


def test_other_scene_share_is_blind_to_brightness_and_sees_separation():
    from centrifuge.evaluate import other_scene_share

    layers = torch.rand(3, 2, 3, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    blend = layers.mean(1, keepdim=True).expand_as(layers)
    darker_and_lighter = torch.stack([0.6 * blend[:, 0] + 0.1, 1.3 * blend[:, 0] - 0.1], 1)
    leaky = 0.8 * layers + 0.2 * layers.flip(1) + 0.05
    assert torch.allclose(other_scene_share(layers, layers), torch.zeros(3), atol=1e-4)
    assert torch.allclose(other_scene_share(blend, layers), torch.full((3,), 0.5), atol=1e-4)
    assert torch.allclose(other_scene_share(darker_and_lighter, layers), torch.full((3,), 0.5), atol=1e-4)
    assert torch.allclose(other_scene_share(leaky, layers), torch.full((3,), 0.2), atol=1e-4)


def test_the_ratio_standard_error_follows_the_spread_over_pairs():
    from centrifuge.evaluate import ratio_standard_error

    identity = torch.full((100,), 0.4)
    assert ratio_standard_error(0.5 * identity, identity) == 0.0  # every pair the same ratio
    spread = 0.5 * identity * (1 + 0.2 * torch.randn(100, generator=torch.Generator().manual_seed(0)))
    assert 0.005 < ratio_standard_error(spread, identity) < 0.02  # 0.1 / sqrt(100) = 0.01


def test_the_held_back_benchmark_pairs_different_held_back_videos_and_photographs(shared_videos):
    from centrifuge.evaluate import COLOUR_SPLIT, HELD_BACK_VIDEOS, held_back_benchmark, run_held_back_benchmark, ranks_above_noise

    kinds = held_back_benchmark(shared_videos, num_pairs=6, photo_pairs=3, num_frames=4, size=32, light_pairs=0)
    assert set(kinds) == {"real", "photographs"}
    assert kinds["real"].shape == (6, 2, 3, 4, 32, 32) and kinds["photographs"].shape == (3, 2, 3, 4, 32, 32)
    assert all(not torch.equal(p[0], p[1]) for p in kinds["real"])
    torch.manual_seed(0)
    results = run_held_back_benchmark([("tiny", build_model("tiny"))], shared_videos, 6, 3, 4, 32)
    identity, split, local, model = results["real"]
    assert split.name == COLOUR_SPLIT and 0 < split.ratio < 1 and abs(split.other_detail - 0.5) < 0.03
    assert local.ratio < split.ratio and local.other_detail < split.other_detail  # deciding per tile separates some
    assert identity.ratio == 1.0 and model.count == 6 and 0 <= model.worse <= 6 and model.ratio_se > 0
    better = BenchmarkRow("better", 0.5 * model.loss, model.identity, 0, 0, 0, ratio_se=0.01)
    assert ranks_above_noise(better, model) and not ranks_above_noise(model, better)
    assert "bikes.mp4" in HELD_BACK_VIDEOS
    stems = {name.rsplit(".", 1)[0] for name in HELD_BACK_VIDEOS}
    assert len(model.pair_groups) == 6 and model.pair_groups == identity.pair_groups
    assert all(len(set(g.split(" + "))) == 2 and set(g.split(" + ")) <= stems for g in model.pair_groups)
    assert results["photographs"][1].pair_groups == []


def test_the_lights_kind_puts_each_real_clip_under_a_light_with_no_detail_of_its_own(shared_videos):
    from centrifuge.evaluate import held_back_benchmark, held_back_kinds, light_kind

    kinds = held_back_kinds(shared_videos, num_pairs=12, photo_pairs=0, num_frames=4, size=32, light_pairs=10)
    real, (lights, groups) = kinds["real"][0], kinds["lights"]
    assert lights.shape == (10, 2, 3, 4, 32, 32) and len(groups) == 10
    assert torch.equal(lights[:, 0], real[:10, 0])  # the held-back videos themselves, not other crops

    def detail(x: torch.Tensor) -> float:  # mean absolute difference between neighbouring pixels
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())

    assert all(detail(pair[1]) < 0.25 * detail(pair[0]) for pair in lights)  # a light is smooth, the video is not (at 32 px)
    assert len({round(float(pair[1].mean()), 3) for pair in lights}) > 5  # different lights, not one
    assert set(groups) <= {"black or white", "grey", "saturated", "tinted"} and len(set(groups)) > 1
    again = held_back_benchmark(shared_videos, num_pairs=12, photo_pairs=0, num_frames=4, size=32, light_pairs=10)["lights"]
    assert torch.equal(again, lights)  # seeded: every model meets the same lights
    assert light_kind([0.0, 0.0, 0.0]) == light_kind([1.0, 1.0, 1.0]) == "black or white"
    assert light_kind([0.4, 0.4, 0.4]) == "grey" and light_kind([0.9, 0.1, 0.2]) == "saturated" and light_kind([0.5, 0.2, 0.9]) == "tinted"
    with pytest.raises(ValueError, match="at most one per real pair"):
        held_back_kinds(shared_videos, num_pairs=2, photo_pairs=0, num_frames=4, size=32, light_pairs=3)


def test_the_colour_split_oracle_takes_out_a_flat_layer_but_not_a_textured_one(shared_videos):
    """A layer of one colour is a global colour transform away from the blend, so the oracle
    recovers both layers; two scenes are not, so it keeps both scenes' detail in each output."""
    from centrifuge.evaluate import colour_split_outputs, colour_split_rows, held_back_benchmark, other_scene_share

    scenes = held_back_benchmark(shared_videos, num_pairs=4, photo_pairs=0, num_frames=4, size=32)["real"]
    flat = scenes.clone()
    flat[:, 1] = torch.tensor([0.9, 0.8, 0.3]).view(1, 3, 1, 1, 1)
    blend = flat.mean(1)
    recovered = colour_split_outputs(blend, flat)
    assert (recovered - flat).abs().max() < 1e-4
    outputs = colour_split_outputs(scenes.mean(1), scenes)
    assert abs(float(other_scene_share(outputs, scenes).mean()) - 0.5) < 0.03
    assert colour_split_rows(flat)[0].ratio < 0.01 and 0.5 < colour_split_rows(scenes)[0].ratio < 1
    # per tile: a layer flat on its left half only is recovered there and not elsewhere
    half = scenes[:1, :, :, :, :30, :30].clone()
    half[:, 1, :, :, :, :15] = 0.4
    outputs = colour_split_outputs(half.mean(1), half, tiles=2)
    assert (outputs - half)[..., :15].abs().max() < 1e-4 and (outputs - half)[..., 15:].abs().mean() > 0.02


def test_the_ratio_by_group_shows_where_a_headline_ratio_comes_from():
    from centrifuge.evaluate import format_groups

    groups = ["bikes + cup"] * 2 + ["bikes + carphone"] * 2
    identity = [0.4, 0.4, 0.5, 0.5]
    rows = [BenchmarkRow("identity baseline", 0.45, 0.45, 0, 0, 0, pair_losses=identity, pair_identities=identity, pair_groups=groups),
            BenchmarkRow("model", 0.3, 0.45, 0, 0, 0, pair_losses=[0.2, 0.2, 0.5, 0.5], pair_identities=identity, pair_groups=groups)]
    text = format_groups(rows)
    header, model_line = text.splitlines()[1], text.splitlines()[3]
    assert header.index("bikes + carphone (2)") < header.index("bikes + cup (2)")  # sorted
    assert model_line.split()[-2:] == ["1.000", "0.500"]  # all of its gain on the pairs with the cup
    assert format_groups([BenchmarkRow("x", 1, 1, 0, 0, 0, pair_groups=["a"] * 3)]) == ""  # one group: nothing to add
    assert "paired" not in text  # one model: nothing to compare


def test_models_are_compared_pair_by_pair_within_each_group():
    from centrifuge.evaluate import format_groups

    groups = ["bikes + carphone"] * 3 + ["bikes + cup"] * 3
    identity = [0.5] * 6
    first = [0.45, 0.5, 0.48, 0.3, 0.32, 0.31]
    second = [0.40, 0.46, 0.45, 0.35, 0.36, 0.37]  # better on the textured pairs, worse with the cup
    rows = [BenchmarkRow("identity baseline", 0.5, 0.5, 0, 0, 0, pair_losses=identity, pair_identities=identity, pair_groups=groups),
            BenchmarkRow("first", 0.39, 0.5, 0, 0, 0, pair_losses=first, pair_identities=identity, pair_groups=groups),
            BenchmarkRow("second", 0.40, 0.5, 0, 0, 0, pair_losses=second, pair_identities=identity, pair_groups=groups)]
    line = format_groups(rows).splitlines()[-1]
    assert line.startswith("paired, second vs first:")
    textured, cup = line.split(": ", 1)[1].split("; ")
    assert textured.startswith("bikes + carphone -0.080 ± ") and textured.endswith("(lower on 3/3)")
    assert cup.startswith("bikes + cup +0.100 ± ") and cup.endswith("(lower on 0/3)")


def test_evaluate_warns_when_the_benchmark_overlaps_what_a_model_trained_on(tmp_path, shared_videos):
    import json as _json

    from centrifuge.evaluate import training_overlap

    (tmp_path / "training_files.json").write_text(_json.dumps([{"path": str((shared_videos / "cup.mp4").resolve()), "size": 1}]))
    data = f"{shared_videos / 'cup.mp4'},{shared_videos / 'bikes.mp4'},{shared_videos / 'box.mp4'}"
    assert training_overlap(str(tmp_path), data) == [str(shared_videos / "cup.mp4")]
    assert training_overlap(None, data) == [str(shared_videos / "box.mp4")]  # the bundled model trained on box, not cup or bikes


def test_a_paired_comparison_cancels_how_hard_each_pair_is():
    from centrifuge.evaluate import format_table, paired_difference, ratio_standard_error

    g = torch.Generator().manual_seed(0)
    identity = 0.3 + 0.2 * torch.rand(64, generator=g)
    reference = identity * (0.5 + 0.4 * torch.rand(64, generator=g))  # pairs of very different difficulty
    candidate = reference - 0.01 * identity + 0.002 * torch.randn(64, generator=g)  # a little better on (nearly) every pair

    def row(name, losses):
        return BenchmarkRow(name, float(losses.mean()), float(identity.mean()), 0, 0, 0, ratio_standard_error(losses, identity),
                            count=64, pair_losses=losses.tolist(), pair_identities=identity.tolist())

    difference, se, better = paired_difference(row("new", candidate), row("old", reference))
    assert abs(difference + 0.01) < 0.002 and se < 0.002 < 0.01 < ratio_standard_error(reference, identity)
    assert better >= 60
    text = format_table([row("identity baseline", identity), row("old", reference), row("new", candidate)])
    assert "paired, new vs old: ratio -0.010" in text and f"lower loss on {better}/64 pairs" in text
    assert "paired" not in format_table([row("identity baseline", identity), row("old", reference)])
    on_other_pairs = BenchmarkRow("video + red", 0.3, 0.4, 0, 0, 0, count=64, pair_losses=candidate.tolist(),
                                  pair_identities=(identity + 0.1).tolist())  # Figure 4's rows: each colour its own pairs
    assert "paired" not in format_table([row("video + video", reference), on_other_pairs])
    with pytest.raises(ValueError):
        paired_difference(row("new", candidate), BenchmarkRow("other pairs", 0.1, 0.2, 0, 0, 0))


def test_scoring_through_separate_at_a_smaller_network_size_hands_back_full_size_layers(shared_videos):
    """``--network-size``: the network sees the blend shrunk, as ``separate --max-size`` feeds it,
    and the guided filter brings its layers back. With the exact small answer (a video over flat
    black: the video doubled and black) the full-size layers come back nearly exact, matched to the
    right truth; the caller's model is left as it was (BatchNorm folding works on a copy)."""
    from centrifuge.evaluate import black_filter_oracle, held_back_benchmark, score_model, score_outputs, separated_at

    real = held_back_benchmark(shared_videos, num_pairs=3, photo_pairs=0, num_frames=4, size=48)["real"]
    over_black = torch.stack([real[:, 0], torch.zeros_like(real[:, 0])], 1)  # (N, 2, 3, T, H, W)
    oracle = black_filter_oracle()
    exact = score_model(oracle, "direct", over_black)
    shrunk = score_outputs("at 24 px", over_black, separated_at(oracle, 24))
    assert exact.ratio < 1e-4 and shrunk.ratio < 0.01
    swapped = lambda blend, layers: separated_at(oracle, 24)(blend, layers).flip(1)  # noqa: E731
    assert score_outputs("swapped", over_black, swapped).ratio == pytest.approx(shrunk.ratio)  # matched by PIT either way

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = held_back_benchmark(shared_videos, num_pairs=2, photo_pairs=0, num_frames=4, size=48)["real"]
    row = score_outputs("tiny at 24", pairs, separated_at(model, 24))
    assert row.count == 2 and row.ratio > 0 and row.ratio != pytest.approx(score_model(model, "tiny", pairs).ratio)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_written_pair_is_scored_without_the_answer_while_the_headline_lets_it_choose():
    """With n > 2 outputs the permutation-invariant loss picks the best two with the answer's help;
    ``separate`` writes the two most distant ones. Four outputs, two of them the true layers and two
    far-apart wrong ones (black and white): the headline is perfect, the written pair is the wrong
    two, and the table says both."""
    from centrifuge.evaluate import format_table, identity_row, score_outputs

    pairs = torch.rand(3, 2, 3, 4, 16, 16) * 0.5 + 0.25

    def predict(blend, layers):
        return torch.cat([layers, torch.zeros_like(layers[:, :1]), torch.ones_like(layers[:, :1])], 1)

    row = score_outputs("four outputs", pairs, predict)
    assert row.ratio == pytest.approx(0.0, abs=1e-6)
    assert row.written_ratio > 1.0 and row.written_ratio_se > 0  # black and white: worse than the blend itself
    assert row.to_dict()["written_ratio"] == pytest.approx(row.written_ratio)
    assert len(row.pair_written_losses) == 3 and sum(row.pair_written_losses) / 3 == pytest.approx(row.written_loss)
    # two models on the same pairs are compared pair by pair on the written pair too
    swapped = score_outputs("true layers written", pairs, lambda blend, layers: torch.cat([layers, blend.unsqueeze(1).expand_as(layers)], 1))
    assert swapped.written_ratio == pytest.approx(0.0, abs=1e-6)
    assert f"written {swapped.written_ratio - row.written_ratio:+.3f}" in format_table([identity_row(pairs), row, swapped])
    two = score_outputs("two outputs", pairs, lambda blend, layers: layers)
    assert two.written_loss != two.written_loss  # nothing to choose between: no separate figure
    text = format_table([identity_row(pairs), row, two])
    assert "written" in text and f"{row.written_ratio:8.3f}" in text


def test_a_plot_column_names_its_model_by_run_or_file_not_by_a_cut_off_path():
    assert short_model_name("/work/runs/s29/excl (BN at 32x64)") == "excl"  # was "29/excl (BN at 32x"-style cuts
    assert short_model_name("OUT/x64/model.safetensors") == "x64"
    assert short_model_name("default (BN at 32x64)") == "default"
    assert short_model_name("a_very_long_model_name_indeed.safetensors") == "a_very_long_model…"
