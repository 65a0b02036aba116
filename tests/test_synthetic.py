import numpy as np

from centrifuge.synthetic import photo_bank, synthetic_video


def test_generator_is_a_pure_function_of_the_seed():
    a, b = synthetic_video(5, 8, 40, 56), synthetic_video(5, 8, 40, 56)
    assert a.shape == (8, 40, 56, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, synthetic_video(6, 8, 40, 56))


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
