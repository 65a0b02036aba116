#!/usr/bin/env python
"""Can a model at all learn to take one scene's detail out of the other? Train it on four fixed
blends of real training-video clips (16×64×64) and print, every 50 steps, its loss and the share
of each output's detail that belongs to the other scene (``evaluate.other_scene_share``: 0.5 = not
separated, 0 = separated) on those same four blends, in eval mode.

A head or decoder that cannot draw or route fine detail stays at 0.5 even when memorising.

Usage: scripts/overfit_probe.py VARIANT[,VARIANT...] [--steps 300] [--width 0.25] [--lr 1e-3]
VARIANT: an output head (direct, residual, symmetric, affine), optionally with ``+skip`` for the
decoder's full-resolution input skip, e.g. ``symmetric,affine+skip``. VIDEOS: ../shared/videos.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from centrifuge.data import blend_layers
from centrifuge.devices import autocast_dtype
from centrifuge.evaluate import benchmark_pairs, other_scene_share
from centrifuge.losses import pit_loss
from centrifuge.models import build_model


def probe(variant: str, pairs: torch.Tensor, steps: int, width: float, lr: float) -> None:
    torch.manual_seed(0)
    output, _, skip = variant.partition("+")
    model = build_model("small", output=output, num_layers=2, width=width, input_skip=skip == "skip")
    optimizer = torch.optim.Adam(model.parameters(), lr)
    blend = blend_layers(pairs, torch.full((len(pairs),), 0.5))
    started = time.perf_counter()
    for step in range(1, steps + 1):
        model.train()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast_dtype(torch.device("cpu")) is not None):
            outputs = model(blend)
        loss = pit_loss(outputs.float(), pairs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            model.eval()
            with torch.no_grad():
                outputs = model(blend).float()
            result = pit_loss(outputs, pairs)
            matched = torch.stack([outputs[b, result.assignment[b]] for b in range(len(pairs))])
            other = float(other_scene_share(matched, pairs).mean())
            print(f"{variant:<16} step {step:4d}  loss {float(result.loss):.4f}  other {other:.3f}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    v = os.environ.get("VIDEOS", "../shared/videos")
    pairs = benchmark_pairs(f"{v}/bigbuckbunny.mp4,{v}/box.mp4,{v}/tree.avi", 4, 16, 64, seed=1)
    for variant in args.variants.split(","):
        probe(variant, pairs, args.steps, args.width, args.lr)


if __name__ == "__main__":
    main()
