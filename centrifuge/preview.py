"""``centrifuge preview-data``: what the model trains on, as a picture a person can check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig


def preview_grid(layers: torch.Tensor, blends: torch.Tensor, frames: int = 3, gap: int = 4) -> np.ndarray:
    """An image: a row per example with ``frames`` frames of layer 1, layer 2 and the blend.

    Args:
        layers: ``(N, 2, 3, T, H, W)``; blends: ``(N, 3, T, H, W)``.
    Returns:
        ``(rows, cols, 3)`` uint8.
    """
    n, _, _, t, h, w = layers.shape
    times = np.linspace(0, t - 1, frames).round().astype(int)
    columns = [(layers[:, 0], "layer 1"), (layers[:, 1], "layer 2"), (blends, "blend")]
    width = len(columns) * (frames * w + gap) - gap
    image = np.full((n * (h + gap) - gap, width, 3), 255, dtype=np.uint8)
    for i in range(n):
        for c, (video, _) in enumerate(columns):
            for f, time in enumerate(times):
                tile = (video[i, :, time].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
                y, x = i * (h + gap), c * (frames * w + gap) + f * w
                image[y : y + h, x : x + w] = tile
    return image


def write_data_preview(config: TrainConfig, path: str | Path, examples: int = 6) -> Path:
    """Write the first ``examples`` training pairs of ``config`` (batched pipeline, CPU) as a PNG grid."""
    from PIL import Image

    from .batched import blend_linear_light
    from .data import blend_layers
    from .train import _training_folder, make_batched_pairs

    folder = None if config.data == "synthetic" else _training_folder(config.data)
    pairs, _ = make_batched_pairs(config, folder, torch.device("cpu"))
    batch = pairs.examples(range(examples))
    layers, alpha = batch["layers"], batch["alpha"]
    blends = blend_linear_light(layers, alpha) if config.linear_light else blend_layers(layers, alpha)
    path = Path(path)
    Image.fromarray(preview_grid(layers, blends)).save(path)
    return path
