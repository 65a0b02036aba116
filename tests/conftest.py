"""Shared fixtures: real videos encoded for the test, and the shared real videos when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Index caches go to a temporary folder, never the user's home."""
    monkeypatch.setenv("CENTRIFUGE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    if not SHARED_VIDEOS.is_dir():
        pytest.fail(f"the shared videos are expected at {SHARED_VIDEOS} (CI has ../shared beside the clone)")
    return SHARED_VIDEOS


def moving_frames(num_frames: int = 20, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Frames with structure and motion: a textured gradient that drifts, plus a moving square."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(height, width * 2, 3), dtype=np.uint8)
    frames = []
    for t in range(num_frames):
        frame = np.roll(texture, 2 * t, axis=1)[:, :width].copy()
        y, x = (3 * t) % (height - 8), (5 * t) % (width - 8)
        frame[y : y + 8, x : x + 8] = (255, 0, 0)
        frames.append(frame)
    return np.stack(frames)
