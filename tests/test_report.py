"""The report page in a real browser: headless Chromium (Debian's `chromium`, installed by
`make test`) opens index.html from disk; every video must load with the input's duration and play."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from centrifuge.report import preview_grid
from centrifuge.separate import Centrifuge, separate_file
from centrifuge.video import write_video

from conftest import moving_frames


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("headless Chromium is needed (Debian: apt-get install chromium; `make test` installs it)")
    return path


def test_report_page_plays_every_video_with_the_inputs_duration(tmp_path):
    source = write_video(tmp_path / "clip.mp4", moving_frames(50, 64, 80), fps=25)
    report = separate_file(Centrifuge.from_pretrained(), source, tmp_path / "out", progress=False)
    page = report.folder / "index.html"
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=8000", "--dump-dom", f"{page.as_uri()}#selftest"]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="selftest">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    videos = json.loads(found.group(1).replace("&quot;", '"'))
    assert [v["src"] for v in videos] == ["input.mp4", "layer1.mp4", "layer2.mp4"]
    for video in videos:
        assert video["error"] is None, video
        assert video["duration"] == pytest.approx(50 / 25, abs=0.05), video
        assert video["later"] > video["start"] + 0.2, video  # it played


def test_preview_grid_has_a_row_per_video_and_a_column_per_time():
    frames = [moving_frames(1, 40, 60, seed=s)[0] for s in range(3)]
    layers = [np.stack([f, f, f, f]) for f in frames]
    grid = preview_grid(frames, layers, (0, 2), [0, 5, 9], tile=64)
    assert grid.dtype == np.uint8 and grid.shape[1] == 3 * 64 and grid.shape[0] >= 3 * 40
