#!/usr/bin/env python3
"""How much of each model's loss on the held-back real pairs is brightness: the ratio with each matched
layer's per-channel mean over the clip set to the truth's (an oracle offset), for the answer's pair and
for the written pair (64 pairs, 32x112x112, the network at 64 px with BatchNorm at 32x64, as the
session-27 ``evaluate`` runs). A diagnostic (docs/results.md, session 27), not part of the package:

    python scripts/brightness_oracle.py default RUN ...   (../shared/videos beside the checkout,
                                                          or VIDEOS=FOLDER)
"""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from centrifuge.calibrate import Calibration  # noqa: E402
from centrifuge.data import blend_layers  # noqa: E402
from centrifuge.evaluate import _predictor, held_back_kinds  # noqa: E402
from centrifuge.losses import identity_outputs, pit_loss, reconstruction_loss, written_pair  # noqa: E402
from centrifuge.separate import model_path  # noqa: E402
from centrifuge.train import load_calibrated_model  # noqa: E402


def offset_fixed(out: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """Each output's per-channel mean over (T, H, W) replaced by its target's."""
    return out - out.mean(dim=(-3, -2, -1), keepdim=True) + layers.mean(dim=(-3, -2, -1), keepdim=True)


def ratios(model: torch.nn.Module, pairs: torch.Tensor) -> dict[str, float]:
    """The answer's pair and the written pair, as scored and with the oracle offset."""
    predict = _predictor(model, 64, 112)
    sums = {k: 0.0 for k in ("ratio", "ratio_fixed", "written", "written_fixed", "identity")}
    with torch.no_grad():
        for start in range(0, len(pairs), 2):
            layers = pairs[start : start + 2]
            blend = blend_layers(layers, torch.full((len(layers),), 0.5))
            outputs = predict(blend, layers)
            for key, chosen in (("ratio", outputs), ("written", written_pair(outputs))):
                result = pit_loss(chosen, layers)
                matched = torch.stack([chosen[b, result.assignment[b]] for b in range(len(layers))])
                sums[key] += float(result.per_example.sum())
                sums[key + "_fixed"] += float(reconstruction_loss(offset_fixed(matched, layers), layers).sum())
            sums["identity"] += float(pit_loss(identity_outputs(blend), layers).per_example.sum())
    return {k: v / sums["identity"] for k, v in sums.items() if k != "identity"}


def main() -> None:
    videos = Path(__file__).resolve().parents[2] / "shared" / "videos"
    pairs = held_back_kinds(os.environ.get("VIDEOS", videos), 64, 8, 32, 112, 0, light_pairs=0)["real"][0]
    for name in sys.argv[1:]:
        model = load_calibrated_model(model_path(name), Calibration(64, 32, 64))
        print(name, "  ".join(f"{k} {v:.3f}" for k, v in ratios(model, pairs).items()), flush=True)


if __name__ == "__main__":
    main()
