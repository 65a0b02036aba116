"""A real video's motion carried onto a photograph (centrifuge.motion)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from centrifuge.motion import backward_flows, carried_photographs, first_frame_positions
from centrifuge.video import read_clip, write_video
from conftest import moving_frames


def test_a_photograph_carried_by_a_videos_flow_moves_as_the_video_did(tmp_path):
    """An encoded video whose picture drifts 2 px a frame to the right: its flow says so, and a
    photograph carried by that flow drifts 2 px a frame too."""
    write_video(tmp_path / "drift.mp4", moving_frames(12, 48, 64, seed=3))
    flows = backward_flows(read_clip(tmp_path / "drift.mp4", 0, 12))
    assert not flows[0].any()
    inside = flows[1:, :, 8:-8, 12:-12]
    assert abs(float(np.median(inside[:, 1])) + 2.0) < 0.3 and abs(float(np.median(inside[:, 0]))) < 0.3
    positions = first_frame_positions(torch.from_numpy(flows)[None])
    assert torch.equal(positions[0, 0, 5, 7], torch.tensor([7.0, 5.0]))  # frame 0 shows itself
    torch.manual_seed(0)
    photo = F.interpolate(torch.rand(1, 3, 24, 32), size=(96, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    carried = carried_photographs(photo, positions, origin=torch.tensor([[20.0, 16.0]]), scale=torch.ones(1))[0]
    assert torch.allclose(carried[:, 0], photo[0, :, 16:64, 20:84], atol=1e-5)  # frame 0: the photograph where the origin says
    for t in (3, 6):
        moved = carried[:, t, 8:-8, 12 + 2 * t : -12]
        assert (moved - carried[:, 0, 8:-8, 12 : -12 - 2 * t]).abs().mean() < 0.3 * (moved - carried[:, 0, 8:-8, 12 + 2 * t : -12]).abs().mean()
