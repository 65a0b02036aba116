"""The batched generator: clips that move, vary, repeat under their seed and do not depend on the batch."""

from __future__ import annotations

import torch

from centrifuge.generator import BatchedGenerator, default_bank_size, gaussian_blur_batch
from centrifuge.photos import available_photos, bank_tensor


def generator(seed: int = 0) -> BatchedGenerator:
    return BatchedGenerator(bank_tensor(available_photos("train"), *default_bank_size(48)), seed=seed)


def test_clips_repeat_under_their_seed_whatever_batch_they_are_in():
    g = generator()
    batch = g.clips([3, 5, 9], 8, 48, 48)
    assert batch.shape == (3, 3, 8, 48, 48) and 0 <= float(batch.min()) and float(batch.max()) <= 1
    assert torch.equal(batch, g.clips([3, 5, 9], 8, 48, 48))
    assert torch.equal(batch[1], g.clips([5], 8, 48, 48)[0])  # the clip does not depend on its batch-mates
    assert torch.equal(batch[2], generator().render_chunked([9], 8, 48, 48, chunk=3)[0])


def test_clips_differ_across_the_batch_and_across_seeds_and_move():
    g = generator()
    clips = g.clips(range(6), 16, 48, 48)
    flat = clips.flatten(1)
    distances = torch.cdist(flat, flat)
    assert float(distances[~torch.eye(6, dtype=torch.bool)].min()) > 1.0  # six different videos
    other = generator(seed=1).clips(range(6), 16, 48, 48)
    assert not torch.equal(clips, other)
    motion = (clips[:, :, 1:] - clips[:, :, :-1]).abs().mean(dim=(1, 3, 4))  # per clip and frame step
    assert float(motion.mean()) * 255 > 2.0 and int((motion.mean(1) * 255 > 0.5).sum()) >= 5
    detail = (clips[..., 1:] - clips[..., :-1]).abs().mean() * 255
    assert float(detail) > 2.0  # textured like photographs, not flat fields


def test_blur_per_item_leaves_sharp_items_alone_and_softens_the_others():
    frames = torch.rand(2, 3, 2, 24, 24)
    out = gaussian_blur_batch(frames, torch.tensor([0.0, 2.0]))
    assert torch.allclose(out[0], frames[0], atol=1e-6)
    sharpness = lambda x: float((x[..., 1:] - x[..., :-1]).abs().mean())  # noqa: E731
    assert sharpness(out[1]) < 0.4 * sharpness(frames[1])
    assert torch.allclose(out[1].mean(), frames[1].mean(), atol=0.02)


def test_clips_do_not_depend_on_how_many_clips_frames_or_threads_render_them():
    from centrifuge.generator import render

    g = generator()
    plans = [g.plan(i, 12, 40, 48) for i in range(5)]
    whole = render(plans, g.bank, 40, 48, chunk=5, segments=1)  # the GPU's way: everything at once
    assert torch.equal(whole, render(plans, g.bank, 40, 48, chunk=1, segments=4))
    assert torch.equal(whole, render(plans, g.bank, 40, 48, chunk=2, segments=3))
    threads = torch.get_num_threads()
    try:  # the CPU default: one segment per thread
        torch.set_num_threads(3)
        assert torch.equal(whole, render(plans, g.bank, 40, 48))
    finally:
        torch.set_num_threads(threads)


def test_blur_is_a_gaussian_with_the_edges_repeated_even_when_wider_than_the_frame():
    import math

    import torch.nn.functional as F

    frames = torch.rand(2, 3, 4, 20, 9)
    out = gaussian_blur_batch(frames, torch.tensor([1.5, 4.0]))  # σ = 4: a radius of 10 px, wider than 9
    assert torch.equal(out, gaussian_blur_batch(frames.clone(), torch.tensor([1.5, 4.0]), inplace=True))
    for item, sigma in ((0, 1.5), (1, 4.0)):
        radius = math.ceil(2.5 * 4.0)  # the batch's radius; taps beyond the item's own σ are ~0
        kernel = torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0) / sigma) ** 2)
        kernel /= kernel.sum()
        planes = frames[item].reshape(-1, 1, 20, 9)
        planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
        assert torch.allclose(out[item], planes.view_as(frames[item]), atol=1e-6)


def test_noise_is_standard_normal_repeats_under_its_seed_and_covers_clips_larger_than_its_bank():
    from centrifuge.generator import NOISE_BANK, _noise

    cpu = torch.device("cpu")
    a = _noise(torch.Size((3, 8, 64, 64)), 12345, cpu)
    assert torch.equal(a, _noise(torch.Size((3, 8, 64, 64)), 12345, cpu))
    assert not torch.equal(a, _noise(torch.Size((3, 8, 64, 64)), 999, cpu))
    assert abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 1) < 0.02
    big = _noise(torch.Size((NOISE_BANK + 5,)), 7, cpu)
    assert big.shape == (NOISE_BANK + 5,) and torch.isfinite(big).all()


def test_scene_sprites_take_their_scenes_colours_in_the_batched_generator_too():
    """As in the clip-by-clip generator: a bank of a red and a blue flat photograph gives one-hue
    clips with scene sprites, and clips holding both hues without."""
    from centrifuge.synthetic import SyntheticConfig

    bank = torch.stack([torch.tensor(c, dtype=torch.uint8).view(3, 1, 1).expand(3, 64, 64) for c in ([204, 25, 25], [25, 25, 204])])

    def largest_minority(config: SyntheticConfig) -> float:
        dominant = BatchedGenerator(bank, config=config).clips(range(12), 4, 48, 48).argmax(1)  # (N, T, H, W)
        counts = torch.stack([(dominant == c).flatten(1).float().mean(1) for c in range(3)], 1)
        return float(counts.sort(1).values[:, -2].max())

    assert largest_minority(SyntheticConfig(scene_sprites=True)) < 0.01
    assert largest_minority(SyntheticConfig()) > 0.05
