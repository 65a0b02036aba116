import numpy as np
import torch

from centrifuge.synthetic import photo_bank, synthetic_video


def test_generator_is_a_pure_function_of_the_seed():
    a, b = synthetic_video(5, 8, 40, 56), synthetic_video(5, 8, 40, 56)
    assert a.shape == (8, 40, 56, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, synthetic_video(6, 8, 40, 56))


def test_a_large_clip_rendered_a_few_frames_at_a_time_is_the_clip_rendered_at_once(monkeypatch):
    """Full-HD clips are rendered in ranges of frames (memory); the frames must be the same ones."""
    import centrifuge.synthetic as synthetic

    whole = [synthetic_video(seed, 13, 40, 56, synthetic.SyntheticConfig(scene_sprites=scene)) for seed, scene in ((3, False), (4, True))]
    monkeypatch.setattr(synthetic, "RENDER_PIXELS", 2 * 40 * 56)
    ranges = [synthetic_video(seed, 13, 40, 56, synthetic.SyntheticConfig(scene_sprites=scene)) for seed, scene in ((3, False), (4, True))]
    assert all(np.array_equal(a, b) for a, b in zip(whole, ranges))


def test_videos_move_and_look_like_photographs():
    assert len(photo_bank()) >= 10
    motion, texture = [], []
    for seed in range(6):
        video = synthetic_video(seed, 16, 64, 64).astype(float)
        motion.append(np.abs(np.diff(video, axis=0)).mean())
        texture.append(np.abs(np.diff(video, axis=2)).mean())  # horizontal detail, not flat fields
        assert 10 < video.mean() < 245
    assert np.mean(motion) > 2.0
    assert np.mean(texture) > 2.0


def test_lights_have_no_detail_of_their_own_and_include_flat_saturated_and_varying_ones():
    import torch

    from centrifuge.synthetic import draw_light, render_light

    rng = np.random.default_rng(0)
    lights = [render_light(draw_light(rng), 8, 32, 32) for _ in range(200)]
    assert all(light.shape == (3, 8, 32, 32) and 0 <= light.min() and light.max() <= 1 for light in lights)
    # no fine detail: at 32 px across, neighbouring pixels differ by a few levels at most
    assert max(float(light.diff(dim=-1).abs().max()) for light in lights) < 0.06
    flat = [light for light in lights if float(light.std((1, 2, 3)).max()) < 1e-6]
    assert 0.2 < len(flat) / len(lights) < 0.6
    saturated = [light for light in flat if float(light.mean((1, 2, 3)).max() - light.mean((1, 2, 3)).min()) > 0.5]
    assert len(saturated) >= 20  # the paper's Figure 4 colours are among them
    assert any(float((light[:, -1] - light[:, 0]).abs().mean()) > 0.02 for light in lights)  # some change over the clip
    assert torch.equal(render_light(draw_light(np.random.default_rng(5)), 4, 8, 8), render_light(draw_light(np.random.default_rng(5)), 4, 8, 8))


def test_scene_sprites_are_carried_by_the_camera():
    """A scene point seen by every frame keeps its place on a sprite that does not move by itself."""
    from centrifuge.synthetic import _in_scene

    rng = np.random.default_rng(0)
    frames = 5
    camera = np.zeros((frames, 2, 3))
    for t in range(frames):  # pan, zoom and roll over the clip
        angle, scale = 0.05 * t, 1.5 * 1.1 ** t
        camera[t, :, :2] = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        camera[t, :, 2] = [100 + 7 * t, 80 - 3 * t]
    sprite = np.repeat(rng.normal(size=(1, 2, 3)), frames, axis=0)  # no motion of its own
    carried = _in_scene(sprite, camera)
    point = np.array([130.0, 95.0])  # a point of the filmed photograph
    seen = []
    for t in range(frames):
        pixel = np.linalg.solve(camera[t, :, :2], point - camera[t, :, 2])  # where frame t shows it
        seen.append(carried[t, :, :2] @ pixel + carried[t, :, 2])
    assert np.allclose(seen, seen[0], atol=1e-6)
    moving_camera_alone = [sprite[t, :, :2] @ np.linalg.solve(camera[t, :, :2], point - camera[t, :, 2]) for t in range(frames)]
    assert not np.allclose(moving_camera_alone, moving_camera_alone[0], atol=1e-2)


def test_scene_sprites_take_their_scenes_colours(monkeypatch):
    """Two flat photographs, one red, one blue: with scene sprites every frame is one hue; with the
    default independent sprites some frames hold both."""
    import torch

    from centrifuge import synthetic
    from centrifuge.synthetic import SyntheticConfig

    flat = tuple(torch.tensor(c).view(3, 1, 1).expand(3, 120, 120).clone() for c in ([0.8, 0.1, 0.1], [0.1, 0.1, 0.8]))
    monkeypatch.setattr(synthetic, "photo_bank", lambda split="all": flat)

    def largest_minority(config: SyntheticConfig) -> float:
        shares = []
        for seed in range(12):
            dominant = synthetic_video(seed, 4, 48, 48, config).argmax(-1)
            counts = np.bincount(dominant.ravel(), minlength=3) / dominant.size
            shares.append(np.sort(counts)[-2])
        return max(shares)

    assert largest_minority(SyntheticConfig(scene_sprites=True)) < 0.01
    assert largest_minority(SyntheticConfig()) > 0.05


def test_the_per_clip_generator_films_only_the_photographs_of_its_split(monkeypatch):
    """Clips that score a model (``evaluate --data synthetic``, the demo's blend, the clip-by-clip
    validation set) must not film what training filmed: the split is the batched bank's, by name."""
    from centrifuge import synthetic
    from centrifuge.data import SyntheticSource
    from centrifuge.photos import is_held_back, skimage_photo_name

    real = {split: len(photo_bank(split)) for split in ("train", "held-back", "all")}
    assert real["train"] > 0 and real["held-back"] > 0 and real["train"] + real["held-back"] == real["all"]
    assert is_held_back(skimage_photo_name("rocket")) and not is_held_back(skimage_photo_name("coffee"))
    red, blue = (torch.tensor(c).view(3, 1, 1).expand(3, 120, 120).clone() for c in ([0.8, 0.1, 0.1], [0.1, 0.1, 0.8]))
    monkeypatch.setattr(synthetic, "named_photos", lambda: (("rocket", red), ("coffee", blue)))
    synthetic.photo_bank.cache_clear()
    try:
        def share(split: str, channel: int) -> float:  # of pixels where that colour dominates (colour transforms move a few)
            source = SyntheticSource(seed=3, split=split)
            return float(np.mean([(source.video(index, 4, 32, 32).argmax(-1) == channel).mean() for index in range(8)]))

        assert share("held-back", 0) > 0.8 and share("train", 2) > 0.8
        assert share("all", 0) < 0.7 and share("all", 2) < 0.7
    finally:
        monkeypatch.undo()  # the real photographs again, and none of the two flat ones left in the cache
        synthetic.photo_bank.cache_clear()
    assert len(photo_bank()) == real["all"]
