"""A real video's motion carried onto a photograph: training layers whose movement is real and whose
look names no scene.

The networks learn the few training videos' scenes, not a rule that reaches others (docs/results.md,
"The network learns scenes, not a rule"). A carried layer keeps what a real clip does, its
camera, its objects and where they go, measured as optical flow, and shows it as a photograph
carried along by that flow, so that an object is there only in how it moves (a random-dot
kinematogram made of a photograph). Two such layers of one pair share a photograph, so that only
their motion tells them apart.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Lucas–Kanade window radius at the training bank's scale (shortest side ~74 px): large enough to
# follow a 64-px clip's motion, small enough to keep object borders.
FLOW_RADIUS = 4


def backward_flows(frames: np.ndarray, radius: int = FLOW_RADIUS) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames → ``(T, 2, H, W)`` float32: for each frame t ≥ 1, the (row,
    column) displacement to where each of its pixels was in frame t − 1 (frame 0's is zero), by
    scikit-image's iterative Lucas–Kanade."""
    from skimage.registration import optical_flow_ilk

    grey = frames.astype(np.float32).mean(axis=-1) / 255.0
    flows = np.zeros((len(frames), 2, *grey.shape[1:]), np.float32)
    for t in range(1, len(frames)):
        flows[t] = optical_flow_ilk(grey[t], grey[t - 1], radius=radius)
    return flows


def _pixel_grid(height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                                torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
    return cols, rows


def _normalised(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel (x, y) → grid_sample's [−1, 1] coordinates (pixel centres, ``align_corners=False``)."""
    return torch.stack([(points[..., 0] + 0.5) * (2.0 / width) - 1.0, (points[..., 1] + 0.5) * (2.0 / height) - 1.0], dim=-1)


def first_frame_positions(flows: torch.Tensor) -> torch.Tensor:
    """Where each pixel of every frame of a clip was in its first frame.

    Args:
        flows: ``(N, T, 2, H, W)``, each clip's ``backward_flows`` (index 0 unused).
    Returns:
        ``(N, T, H, W, 2)`` pixel (x, y) positions in frame 0: the flows composed frame by frame.
    """
    n, t, _, h, w = flows.shape
    cols, rows = _pixel_grid(h, w, flows.device)
    here = torch.stack([cols, rows], dim=-1).expand(n, h, w, 2)
    positions = [here]
    for k in range(1, t):
        flow = flows[:, k].float()
        previous = torch.stack([cols + flow[:, 1], rows + flow[:, 0]], dim=-1)
        source = positions[-1].permute(0, 3, 1, 2)
        positions.append(F.grid_sample(source, _normalised(previous, h, w), mode="bilinear", padding_mode="border",
                                       align_corners=False).permute(0, 2, 3, 1))
    return torch.stack(positions, dim=1)


def carried_photographs(photos: torch.Tensor, positions: torch.Tensor, origin: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Photographs moved as a video moved.

    Args:
        photos: ``(N, 3, h, w)`` uint8 or float in [0, 1].
        positions: ``(N, T, H, W, 2)`` from :func:`first_frame_positions`.
        origin: ``(N, 2)`` photo pixel (x, y) that frame 0's top-left pixel shows.
        scale: ``(N,)`` photo pixels per frame pixel.
    Returns:
        ``(N, 3, T, H, W)`` float in [0, 1].
    """
    n, t, h, w, _ = positions.shape
    images = photos.float() / 255.0 if photos.dtype == torch.uint8 else photos.float()
    points = origin.view(n, 1, 1, 1, 2) + scale.view(n, 1, 1, 1, 1) * positions
    grid = _normalised(points, *images.shape[-2:]).reshape(n, t * h, w, 2)
    sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return sampled.view(n, 3, t, h, w)
