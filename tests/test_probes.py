"""The research probes in scripts/: what they compute must be right for their figures to mean anything."""

import importlib.util
from pathlib import Path

import torch

from centrifuge.losses import pit_loss


def _script(name: str):
    """A module of scripts/ (not a package), loaded from its file."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _motion_probe():
    return _script("motion_probe")


def test_tiles_cut_every_frame_into_squares_in_order():
    probe = _motion_probe()
    layers = torch.rand(2, 2, 3, 4, 32, 32)
    cut = probe.tiles(layers, 16)
    assert cut.shape == (8, 2, 3, 4, 16, 16)
    assert torch.equal(cut[1], layers[0, ..., 0:16, 16:32])
    assert torch.equal(cut[6], layers[1, ..., 16:32, 0:16])


def test_local_pit_forgives_layers_swapped_in_one_region_and_global_pit_does_not():
    probe = _motion_probe()
    targets = torch.rand(2, 2, 3, 4, 32, 32)
    outputs = targets.clone()
    outputs[..., :16] = targets.flip(1)[..., :16]  # the layers trade places in the left half
    assert float(probe.local_pit_loss(outputs, targets, 16)) == 0.0
    assert float(probe.local_pit_loss(outputs, targets, 0)) == float(pit_loss(outputs, targets).loss) > 0.5


def test_translated_photos_slide_at_two_different_constant_velocities():
    probe = _motion_probe()
    stream = probe.TranslatedPhotos("train", size=32, frames=4, speed=2)
    layers = stream.examples(range(3))["layers"]
    assert layers.shape == (3, 2, 3, 4, 32, 32)

    def velocity(clip):  # the whole-pixel shift that maps frame 0 onto frame 1
        errors = {(dy, dx): float((torch.roll(clip[:, 1], (dy, dx), dims=(1, 2)) - clip[:, 0])[:, 2:-2, 2:-2].abs().mean())
                  for dy in range(-2, 3) for dx in range(-2, 3)}
        return min(errors, key=errors.get), min(errors.values())

    for pair in layers:
        (first, error_a), (second, error_b) = velocity(pair[0]), velocity(pair[1])
        assert error_a < 1e-6 and error_b < 1e-6
        assert first != second
        for t in range(1, 3):  # constant: the same shift from every frame to the next
            assert torch.equal(torch.roll(pair[0][:, t + 1], first, dims=(1, 2))[:, 2:-2, 2:-2], pair[0][:, t][:, 2:-2, 2:-2])


def test_noise_textures_are_fresh_coloured_images_in_range_and_slide_like_the_photographs():
    import numpy as np

    probe = _motion_probe()
    first = probe.noise_texture(np.random.default_rng(0), 40, 48)
    second = probe.noise_texture(np.random.default_rng(1), 40, 48)
    assert first.shape == (3, 40, 48) and float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert float(first.max() - first.min()) > 0.99  # scaled to use the whole range
    assert float((first[0] - first[1]).abs().mean()) > 0.01  # colour, not grey
    assert float((first - second).abs().mean()) > 0.05  # a new texture for every layer
    layers = probe.TranslatedPhotos("train", size=32, frames=4, speed=2, noise=True).examples(range(2))["layers"]
    assert layers.shape == (2, 2, 3, 4, 32, 32)


def test_photometric_jitter_changes_a_layers_look_within_range_and_keeps_its_motion():
    import numpy as np

    probe = _motion_probe()
    clip = torch.rand(3, 4, 16, 16) * 0.5 + 0.25
    changed = probe.photometric_jitter(np.random.default_rng(3), clip)
    assert changed.shape == clip.shape and float(changed.min()) >= 0.0 and float(changed.max()) <= 1.0
    assert float((changed - clip).abs().mean()) > 0.01
    # A per-channel affine map of the values: every frame gets the same one, so the motion is untouched.
    slope = ((changed[0] - changed[0].mean()) * (clip[0] - clip[0].mean())).sum() / (clip[0] - clip[0].mean()).square().sum()
    assert torch.allclose(changed[0], (clip[0] - clip[0].mean()) * slope + changed[0].mean(), atol=1e-4)


def test_ordered_pairs_put_the_faster_layer_first_and_still_pairs_hold_one_layer_still():
    probe = _motion_probe()

    def shift(clip):  # squared length of the whole-pixel shift from frame 0 to frame 1
        errors = {(dy, dx): float((torch.roll(clip[:, 1], (dy, dx), dims=(1, 2)) - clip[:, 0])[:, 3:-3, 3:-3].abs().mean())
                  for dy in range(-3, 4) for dx in range(-3, 4)}
        dy, dx = min(errors, key=errors.get)
        return dy * dy + dx * dx

    ordered = probe.TranslatedPhotos("train", size=32, frames=3, ordered=True).examples(range(6))["layers"]
    assert all(shift(pair[0]) >= shift(pair[1]) for pair in ordered)
    assert any(shift(pair[0]) > shift(pair[1]) for pair in ordered)
    still = probe.TranslatedPhotos("train", size=32, frames=3, ordered=True, still=True).examples(range(4))["layers"]
    assert all(torch.equal(pair[1][:, 0], pair[1][:, 2]) and shift(pair[0]) > 0 for pair in still)
    # the probe's ordered loss is Eq. 2's sum over targets with the assignment fixed to the order given
    outputs = torch.rand(2, 2, 3, 3, 16, 16)
    targets = torch.rand(2, 2, 3, 3, 16, 16)
    fixed = probe.ordered_loss(outputs, targets)
    assert float(fixed) >= float(pit_loss(outputs, targets).loss)
    assert float(probe.ordered_loss(targets, targets)) == 0.0
    assert float(probe.ordered_loss(targets.flip(1), targets)) > 0.1


def test_the_plain_network_keeps_full_resolution_and_its_layers_recompose_the_blend():
    probe = _motion_probe()
    net = probe.PlainNet(channels=8).eval()
    video = torch.rand(2, 3, 6, 20, 20)
    with torch.no_grad():
        layers = net(video)
    assert layers.shape == (2, 2, 3, 6, 20, 20)
    assert torch.allclose(layers.mean(dim=1), video, atol=1e-6)


def test_keeping_one_pair_gives_a_two_output_model_with_exactly_that_pairs_outputs():
    from centrifuge.models import build_model

    keep_pair = _script("keep_one_pair").keep_pair
    video = torch.rand(1, 3, 8, 32, 32)
    for output in ("affine", "symmetric"):
        torch.manual_seed(0)
        four = build_model("tiny", output=output).eval()
        with torch.no_grad():
            four.predictor.head.bias.normal_()  # pairs that differ
            two = keep_pair(four, 1)
            assert two.num_layers == 2
            kept, other = four(video)[:, [1, 3]], four(video)[:, [0, 2]]
            assert torch.allclose(two(video), kept, atol=1e-6)
            assert not torch.allclose(two(video), other, atol=1e-3)


def test_the_brightness_oracle_removes_an_offset_per_channel_and_nothing_else():
    offset_fixed = _script("brightness_oracle").offset_fixed
    targets = torch.rand(2, 2, 3, 4, 16, 16)
    shift = torch.tensor([0.2, -0.1, 0.05]).view(1, 1, 3, 1, 1, 1)
    assert torch.allclose(offset_fixed(targets + shift, targets), targets, atol=1e-6)
    flipped = targets.flip(-1)  # same means, different picture: left as it is
    assert torch.allclose(offset_fixed(flipped, targets), flipped, atol=1e-6)


def test_the_overfit_probe_scores_an_exact_separation_at_zero_and_the_blend_at_one():
    probe = _script("overfit_probe")
    torch.manual_seed(0)
    pairs = torch.rand(3, 2, 3, 4, 16, 16)

    class Answer(torch.nn.Module):  # returns the true layers of whichever blend it is given
        def forward(self, blend):
            index = [int(torch.argmin((pairs.mean(1) - b).abs().flatten(1).sum(1))) for b in blend]
            return pairs[index]

    class Blend(torch.nn.Module):
        def forward(self, blend):
            return torch.stack([blend, blend], 1)

    ratio, other = probe.scores(Answer(), pairs, chunk=2)
    assert ratio < 1e-6 and other < 0.05
    ratio, other = probe.scores(Blend(), pairs, chunk=2)
    assert abs(ratio - 1) < 1e-6 and abs(other - 0.5) < 0.05


def test_the_overfit_probe_trains_on_each_kind_of_generated_clip_it_names():
    probe = _script("overfit_probe")
    kinds = {kind: probe.training_pairs(kind, "", 2, seed=1) for kind in probe.GENERATED}
    for kind, pairs in kinds.items():
        assert pairs.shape == (2, 2, 3, 16, 64, 64) and 0 <= pairs.min() and pairs.max() <= 1, kind
        assert (pairs[:, 0] - pairs[:, 1]).abs().mean() > 0.02, kind  # two different clips per pair
    # the option changes the generator: same seed, other clips
    assert not torch.equal(kinds["synthetic"], kinds["camera-only"]) and not torch.equal(kinds["synthetic"], kinds["scene-sprites"])


def test_the_overfit_probe_refuses_to_hold_back_a_video_it_trains_on():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "overfit_probe.py"
    result = subprocess.run([sys.executable, str(script), "affine", "--videos", "box.mp4,cup.mp4", "--held-back-videos", "cup.mp4,bikes.mp4"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cup.mp4 both trained on and held back" in result.stderr
    assert "Traceback" not in result.stderr
