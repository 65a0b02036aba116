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
