#!/usr/bin/env python
"""Can a model at all learn to take one scene's detail out of the other? Train it on N fixed
blends of real training-video clips (16×64×64; four by default) and print, every ``--every`` steps,
the ratio of its loss to the identity baseline's and the share of each output's detail that belongs
to the other scene (``evaluate.other_scene_share``: 0.5 = not separated, 0 = separated) on those
same blends (at most 64 of them), in eval mode; with ``--unseen`` also on 64 new blends of the same
videos (other crops and starts, another seed), and with ``--held-back`` on 64 blends of the
held-back benchmark's videos at the same size (scenes it never saw), and with ``--photos`` on 64
pairs of held-back photographs panned, zoomed and rolled. ``--data synthetic`` trains on generated
clips instead of the training videos (``--unseen`` then scores other generated clips);
``--data camera-only`` generates them with no moving objects (the camera alone moves), and
``--data scene-sprites`` with objects textured from their own scene's photograph.

A head or decoder that cannot draw or route fine detail stays at 0.5 even when memorising. How
the ratio on the fixed blends grows with N says whether the network can fit many blends at all
(capacity and optimisation) or fits a few by heart and learns no rule (data).

``--videos`` and ``--held-back-videos`` choose which of the shared videos the probe trains on and
which it scores as unseen scenes (how the held-back score moves with the number of training scenes).

Usage: scripts/overfit_probe.py VARIANT[,VARIANT...] [--steps 300] [--width 0.25] [--lr 1e-3] [--blends 4] [--batch 8] [--unseen] [--held-back] [--photos] [--data videos|synthetic|camera-only|scene-sprites] [--videos A,B,C] [--held-back-videos D,E] [--seed 0] [--ema 0.99]
VARIANT: an output head (direct, residual, symmetric, affine), optionally with ``+skip`` for the
decoder's full-resolution input skip, e.g. ``symmetric,affine+skip``. VIDEOS: ../shared/videos.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from centrifuge.data import LayerPairs, SyntheticSource, blend_layers
from centrifuge.devices import autocast_dtype
from centrifuge.evaluate import HELD_BACK_VIDEOS, benchmark_pairs, held_back_photo_pairs, other_scene_share
from centrifuge.losses import identity_outputs, pit_loss
from centrifuge.models import build_model
from centrifuge.synthetic import SyntheticConfig

SCORED = 64  # blends scored at each check


@torch.no_grad()
def scores(model: torch.nn.Module, pairs: torch.Tensor, chunk: int = 8) -> tuple[float, float]:
    """Ratio to identity and *other* of ``model`` on ``pairs`` in eval mode."""
    model.eval()
    losses, identities, others = [], [], []
    for start in range(0, len(pairs), chunk):
        layers = pairs[start : start + chunk]
        blend = blend_layers(layers, torch.full((len(layers),), 0.5))
        outputs = model(blend).float()
        result = pit_loss(outputs, layers)
        matched = torch.stack([outputs[b, result.assignment[b]] for b in range(len(layers))])
        losses.append(result.per_example)
        identities.append(pit_loss(identity_outputs(blend), layers).per_example)
        others.append(other_scene_share(matched, layers))
    return float(torch.cat(losses).mean() / torch.cat(identities).mean()), float(torch.cat(others).mean())


GENERATED = {"synthetic": SyntheticConfig(), "camera-only": SyntheticConfig(min_sprites=0, max_sprites=0),
             "scene-sprites": SyntheticConfig(scene_sprites=True)}


def training_pairs(kind: str, videos: str, count: int, seed: int) -> torch.Tensor:
    """``count`` layer pairs (16×64×64) of the training videos or of generated clips of ``kind``."""
    if kind == "videos":
        return benchmark_pairs(videos, count, 16, 64, seed=seed)
    source = SyntheticSource(seed=20_000, config=GENERATED[kind], split="train")
    dataset = LayerPairs([source], length=count, num_frames=16, crop_size=64, train=False, seed=seed)
    return torch.stack([dataset[i]["layers"] for i in range(count)])


def probe(variant: str, pairs: torch.Tensor, args: argparse.Namespace, scored: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(args.seed)
    output, _, skip = variant.partition("+")
    model = build_model("small", output=output, num_layers=2, width=args.width, input_skip=skip == "skip")
    optimizer = torch.optim.Adam(model.parameters(), args.lr)
    ema = None
    if args.ema:  # an exponential moving average of the weights and BatchNorm statistics, scored beside the model
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema), use_buffers=True)
    batch = min(args.batch, len(pairs))
    order = torch.randperm(len(pairs))
    started, cursor = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(pairs)), 0
        layers = pairs[order[cursor : cursor + batch]]
        cursor += batch
        model.train()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast_dtype(torch.device("cpu")) is not None):
            outputs = model(blend_layers(layers, torch.full((batch,), 0.5)))
        loss = pit_loss(outputs.float(), layers).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        if step % args.every == 0:
            for label, scored_model in [("", model)] + ([("ema ", ema.module)] if ema is not None else []):
                ratio, other = scores(scored_model, pairs[:SCORED])
                line = f"{label}{variant:<16} N {len(pairs):5d}  step {step:5d}  fixed: ratio {ratio:.3f} other {other:.3f}"
                for name, more in scored.items():
                    ratio, other = scores(scored_model, more)
                    line += f"  {name}: ratio {ratio:.3f} other {other:.3f}"
                print(f"{line}  {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--blends", type=int, default=4, help="fixed blends to train on")
    parser.add_argument("--batch", type=int, default=8, help="blends per step (at most --blends)")
    parser.add_argument("--unseen", action="store_true", help="also score 64 new blends of the same videos")
    parser.add_argument("--held-back", action="store_true", help="also score 64 blends of the held-back benchmark's videos")
    parser.add_argument("--photos", action="store_true", help="also score 64 pairs of held-back photographs, panned")
    parser.add_argument("--data", default="videos", choices=("videos", *GENERATED),
                        help="the three training videos, or generated clips (with objects from any photograph, none, or their scene's)")
    parser.add_argument("--ema", type=float, default=0.0, help="also score an exponential moving average of the weights with this decay (e.g. 0.99)")
    parser.add_argument("--seed", type=int, default=0, help="another seed draws other training blends and initial weights")
    parser.add_argument("--videos", default="bigbuckbunny.mp4,box.mp4,tree.avi", help="training videos (names in VIDEOS)")
    parser.add_argument("--held-back-videos", default=",".join(HELD_BACK_VIDEOS), help="videos --held-back scores")
    args = parser.parse_args()
    v = os.environ.get("VIDEOS", "../shared/videos")
    overlap = set(args.videos.split(",")) & set(args.held_back_videos.split(","))
    if overlap:
        parser.error(f"{', '.join(sorted(overlap))} both trained on and held back")
    data = ",".join(f"{v}/{name}" for name in args.videos.split(","))
    pairs = training_pairs(args.data, data, args.blends, seed=1 + 1000 * args.seed)
    scored = {}
    if args.unseen:
        scored["unseen"] = training_pairs(args.data, data, SCORED, seed=2)
    if args.held_back:
        scored["held-back"] = benchmark_pairs(",".join(f"{v}/{name}" for name in args.held_back_videos.split(",")), SCORED, 16, 64, seed=0)
    if args.photos:
        scored["photos"] = held_back_photo_pairs(SCORED, 16, 64)[0]
    for variant in args.variants.split(","):
        probe(variant, pairs, args, scored)


if __name__ == "__main__":
    main()
