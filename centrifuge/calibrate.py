"""BatchNorm statistics re-estimated at the scale a model will run at ("precise BN").

A model trains on small clips (16×64×64 on a CPU) and separates larger ones (32×112×112 in the
benchmark, up to 256 px in ``separate``). Its BatchNorm running statistics are moving averages over
training batches at the training scale, and the features of a larger clip have other statistics
(Touvron et al., "Fixing the train-test resolution discrepancy", 2019). Re-estimating them with
the final weights, on blends of the model's own training mix at the scale it will run at, changes
no weight and needs no label; on the held-back benchmark it moved the affine + skip model from
0.777 to 0.744 of identity (docs/results.md), where re-estimating at the training scale did not
(0.786).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from .data import blend_layers


@dataclass(frozen=True)
class Calibration:
    """What the statistics were re-estimated on (recorded beside an exported model)."""

    clips: int
    num_frames: int
    crop_size: int

    def to_dict(self) -> dict:
        return {"clips": self.clips, "num_frames": self.num_frames, "crop_size": self.crop_size,
                "data": "the run's own training mix"}


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, blends: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running mean and variance by their average over ``blends``
    (batches ``(B, 3, T, H, W)``), computed with the model's current weights. Weights are unchanged;
    the model is left in eval mode. Returns the number of batches seen."""
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer to recalibrate")
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not a moving one
    model.train()
    seen = 0
    try:
        for blend in blends:
            model(blend)
            seen += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise ValueError("no calibration batch was given")
    return seen


def training_mix_blends(config, calibration: Calibration, batch_size: int = 4, seed: int = 1_000_003) -> Iterable[torch.Tensor]:
    """Blends (α = 0.5) of ``calibration.clips`` fresh pairs of a run's training mix (its videos and
    generated clips in its proportions, drawn clip by clip as the loader pipeline draws them, from a
    seed training does not use) at the calibration size."""
    from .train import build_datasets

    config = type(config).from_dict({**config.to_dict(), "num_frames": calibration.num_frames, "crop_size": calibration.crop_size,
                                     "seed": seed})
    pairs, _ = build_datasets(config)
    for start in range(0, calibration.clips, batch_size):
        items = range(start, min(start + batch_size, calibration.clips))
        layers = torch.stack([pairs[i]["layers"] for i in items])
        yield blend_layers(layers, torch.full((len(items),), 0.5))
