#!/usr/bin/env python
"""Does a model learn to un-mix the easiest moving content there is? Two photographs, each filmed
by its own camera that pans, zooms and rolls (no sprites, no noise): the motion alone says which
edge belongs to which layer. Train on an endless stream of such pairs made from the training
photographs, and print every ``--every`` steps the ratio to identity and *other*
(``evaluate.other_scene_share``: 0.5 = not separated, 0 = separated) on pairs of the held-back
photographs, in eval mode.

A model that cannot lower *other* here will not on real video; one that can but does not on real
video is held back by its data, not by its architecture or optimiser.

Usage: scripts/motion_probe.py VARIANT[,VARIANT...] [--steps 1200] [--lr 1e-3] [--size 64] [--layers 2] [--endpoint Mixed_5c] [--frozen | --translate [--noise]] [--tile 16]
VARIANT: an output head (direct, residual, symmetric, affine, motion), optionally with ``+skip``;
or ``plain``: not the paper's network but a stack of full-resolution 3×3×3 convolutions (``PlainNet``).
With ``--noise`` the layers are noise textures, which no network can memorise: the training
photographs are few (33 here), and a network can lower its training loss by recognising them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from centrifuge.batched import BatchedPairs
from centrifuge.data import blend_layers
from centrifuge.devices import autocast_dtype
from centrifuge.evaluate import frozen_pairs, held_back_photo_pairs, other_scene_share
from centrifuge.generator import BatchedGenerator, default_bank_size
from centrifuge.losses import identity_outputs, pit_loss, reconstruction_loss
from centrifuge.models import build_model
from centrifuge.photos import available_photos, bank_tensor
from centrifuge.synthetic import SyntheticConfig


def camera_only_stream(size: int, frames: int, seed: int = 0, frozen: bool = False) -> BatchedPairs:
    """Pairs of training photographs, each panned, zoomed and rolled by its own camera; with
    ``frozen`` the second layer of each pair is one still frame."""
    camera_only = SyntheticConfig(min_sprites=0, max_sprites=0, noise_std=0.0)
    generator = BatchedGenerator(bank_tensor(available_photos("train"), *default_bank_size(size)), seed=seed, config=camera_only)
    return BatchedPairs(generator, None, 0.0, frames, size, seed=seed, frozen=(False, frozen))


def tiles(layers: torch.Tensor, tile: int) -> torch.Tensor:
    """``(B, n, C, T, H, W)`` cut into ``tile``×``tile`` squares over all frames:
    ``(B·H/tile·W/tile, n, C, T, tile, tile)``."""
    b, n, c, t, h, w = layers.shape
    cut = layers.reshape(b, n, c, t, h // tile, tile, w // tile, tile)
    return cut.permute(0, 4, 6, 1, 2, 3, 5, 7).reshape(-1, n, c, t, tile, tile)


def local_pit_loss(outputs: torch.Tensor, targets: torch.Tensor, tile: int) -> torch.Tensor:
    """The permutation-invariant loss with the assignment chosen per tile rather than per clip:
    separating locally is rewarded before the layers are made consistent across the frame."""
    if not tile:
        return pit_loss(outputs, targets).loss
    return pit_loss(tiles(outputs, tile), tiles(targets, tile)).loss


def noise_texture(rng: np.random.Generator, height: int, width: int) -> torch.Tensor:
    """A texture no network can memorise: coloured noise with a random power-law spectrum
    (1/f^β, β in [1, 3]: from grainy to cloudy), its three channels random mixtures of three
    fields, scaled into [0, 1]. ``(3, height, width)`` float."""
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    radius = np.sqrt(fx ** 2 + fy ** 2)
    radius[0, 0] = 1.0
    spectrum = radius ** (-rng.uniform(1.0, 3.0) / 2)
    spectrum[0, 0] = 0.0
    fields = np.fft.ifft2(np.fft.fft2(rng.standard_normal((3, height, width))) * spectrum).real
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-8
    mixed = np.einsum("ij,jhw->ihw", rng.uniform(-1, 1, (3, 3)), fields)
    low, high = mixed.min(), mixed.max()
    return torch.from_numpy(((mixed - low) / (high - low + 1e-8)).astype(np.float32))


def photometric_jitter(rng: np.random.Generator, clip: torch.Tensor) -> torch.Tensor:
    """``(3, T, H, W)`` with a random contrast (×0.5–1.5 about its mean), colour cast (×0.8–1.2 per
    channel) and brightness (±0.2), clamped to [0, 1]: the same photograph never comes back with
    the same brightness, so a network cannot learn a layer's brightness by recognising it."""
    mean = clip.mean()
    contrast = float(rng.uniform(0.5, 1.5))
    cast = torch.from_numpy(rng.uniform(0.8, 1.2, 3).astype(np.float32)).view(3, 1, 1, 1)
    return ((clip - mean) * contrast * cast + mean + float(rng.uniform(-0.2, 0.2))).clamp(0, 1)


def _order_key(velocity: np.ndarray) -> tuple:
    """The faster layer first; equal speeds by horizontal, then vertical velocity."""
    return (int(velocity[0]) ** 2 + int(velocity[1]) ** 2, int(velocity[1]), int(velocity[0]))


def ordered_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 3 of output i against target i, with no search over permutations: the targets come in
    an order the blend shows (``--ordered``: the faster layer first), so the supervision is the same
    for every clip from the first step, where the permutation-invariant loss's matching is arbitrary
    until the network separates."""
    return torch.stack([reconstruction_loss(outputs[:, i], targets[:, i]) for i in range(targets.shape[1])], 1).sum(1).mean()


class TranslatedPhotos:
    """The simplest motion there is: each layer a crop of a photograph sliding at its own constant
    whole-pixel velocity (up to ``speed`` px per frame; the two layers' velocities differ). With
    ``noise``, each layer is a fresh noise texture (``noise_texture``) instead of a photograph."""

    def __init__(self, split: str, size: int, frames: int, seed: int = 0, speed: int = 3, noise: bool = False,
                 jitter: bool = False, ordered: bool = False, still: bool = False):
        self.ordered, self.still = ordered, still
        self.bank = None if noise else bank_tensor(available_photos(split), *default_bank_size(size))
        self.size, self.frames, self.seed, self.speed, self.jitter = size, frames, seed, speed, jitter

    def _layer(self, rng, velocity) -> torch.Tensor:
        reach = self.speed * self.frames
        if self.bank is None:
            photo = noise_texture(rng, self.size + 2 * reach, self.size + 2 * reach)
        else:
            photo = self.bank[int(rng.integers(len(self.bank)))].float() / 255
        top = int(rng.integers(0, photo.shape[1] - self.size - reach)) + (reach if velocity[0] < 0 else 0)
        left = int(rng.integers(0, photo.shape[2] - self.size - reach)) + (reach if velocity[1] < 0 else 0)
        frames = [photo[:, top + t * velocity[0] : top + t * velocity[0] + self.size,
                        left + t * velocity[1] : left + t * velocity[1] + self.size] for t in range(self.frames)]
        clip = torch.stack(frames, dim=1)
        if self.jitter:
            clip = photometric_jitter(rng, clip)
        return clip

    def examples(self, indices) -> dict[str, torch.Tensor]:
        pairs = []
        for i in indices:
            rng = np.random.default_rng([self.seed, int(i)])
            first = rng.integers(-self.speed, self.speed + 1, size=2)
            second = np.zeros(2, dtype=first.dtype) if self.still else first
            while (second == first).all():
                second = rng.integers(-self.speed, self.speed + 1, size=2) if not self.still else second
                first = rng.integers(-self.speed, self.speed + 1, size=2) if self.still else first
            pair = [self._layer(rng, first), self._layer(rng, second)]
            if self.ordered and _order_key(second) > _order_key(first):
                pair.reverse()
            pairs.append(torch.stack(pair))
        return {"layers": torch.stack(pairs)}


class PlainNet(torch.nn.Module):
    """Not the paper's network: a plain stack of 3×3×3 convolutions at full resolution (no striding
    in space or time, dilations 1, 1, 2, 2, 4, 4, 1: a 27³ receptive field), ending in the affine
    head (one pair of layers, V ± (tanh(g)·V + tanh(B))). The question it answers: is the I3D
    U-Net's early downsampling what keeps the motion cue from being learnt at this compute?"""

    def __init__(self, channels: int = 32, dilations=(1, 1, 2, 2, 4, 4, 1)):
        super().__init__()
        blocks, previous = [], 3
        for d in dilations:
            blocks += [torch.nn.Conv3d(previous, channels, 3, padding=d, dilation=d, bias=False),
                       torch.nn.BatchNorm3d(channels), torch.nn.ReLU(inplace=True)]
            previous = channels
        self.body = torch.nn.Sequential(*blocks)
        self.head = torch.nn.Conv3d(channels + 3, 4, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = video * 2 - 1
        head = self.head(torch.cat([self.body(x), x], dim=1)).float()
        gain, offset = head[:, :1], head[:, 1:]
        difference = torch.tanh(gain) * video.float() + torch.tanh(offset)
        return torch.stack([video + difference, video - difference], dim=1)


def score(model: torch.nn.Module, pairs: torch.Tensor, tile: int = 0) -> tuple[float, float]:
    """(ratio to identity, other) of the model on ``pairs``, in eval mode; with ``tile``, each
    tile's outputs matched to the layers on their own."""
    model.eval()
    blend = blend_layers(pairs, torch.full((len(pairs),), 0.5))
    with torch.no_grad():
        outputs = torch.cat([model(chunk).float() for chunk in blend.split(4)])
    if tile:
        outputs, pairs, blend = tiles(outputs, tile), tiles(pairs, tile), tiles(blend.unsqueeze(1), tile)[:, 0]
    result = pit_loss(outputs, pairs)
    identity = pit_loss(identity_outputs(blend), pairs).loss
    matched = torch.stack([outputs[b, result.assignment[b]] for b in range(len(pairs))])
    return float(result.loss / identity), float(other_scene_share(matched, pairs).mean())


def probe(variant: str, args: argparse.Namespace, held_back: torch.Tensor, seen: torch.Tensor | None = None) -> None:
    """Train one variant and print its figures; with ``seen``, also its ratio on those pairs (new
    pairs of the training photographs): the gap between the two is what it memorised."""
    torch.manual_seed(0)
    output, _, skip = variant.partition("+")
    if output == "plain":
        model = PlainNet(int(args.channels))
    else:
        model = build_model("small", output=output, num_layers=args.layers, width=args.width, input_skip=skip == "skip",
                            final_endpoint=args.endpoint)
    amp = autocast_dtype(torch.device("cpu"))
    model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), args.lr)
    stream = (TranslatedPhotos("train", args.size, args.frames, noise=args.noise, jitter=args.jitter, ordered=args.ordered, still=args.still) if args.translate
              else camera_only_stream(args.size, args.frames, frozen=args.frozen))
    started, train_ratios = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        model.train()
        layers = stream.examples(range((step - 1) * args.batch, step * args.batch))["layers"]
        blend = blend_layers(layers, torch.full((len(layers),), 0.5)).contiguous(memory_format=torch.channels_last_3d)
        # bf16 only where the CPU has it in hardware: emulated, 3D convolutions ran 10-35× slower than fp32.
        with torch.autocast("cpu", torch.bfloat16, enabled=amp is not None):
            outputs = model(blend)
        if args.ordered and args.contrast:  # the training option: ordered where the speeds clearly differ, else Eq. 2
            loss = pit_loss(outputs.float(), layers, ordered_weight=1.0, ordered_contrast=args.contrast).loss
        else:
            loss = ordered_loss(outputs.float(), layers) if args.ordered else local_pit_loss(outputs.float(), layers, args.tile)
        identity = local_pit_loss(identity_outputs(blend.float()), layers, args.tile)
        train_ratios.append(float(loss.detach() / identity))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.every == 0:
            ratio, other = score(model, held_back)
            local = "  per tile: ratio {:.3f} other {:.3f}".format(*score(model, held_back, args.tile)) if args.tile else ""
            if seen is not None:
                local += "  new pairs of training photographs: ratio {:.3f} other {:.3f}".format(*score(model, seen))
            print(f"{variant:<14} step {step:5d}  train ratio {sum(train_ratios) / len(train_ratios):.3f}  held-back ratio {ratio:.3f}  other {other:.3f}{local}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            train_ratios.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--channels", type=int, default=32, help="the plain network's channels")
    parser.add_argument("--layers", type=int, default=2, help="output layers")
    parser.add_argument("--endpoint", default="Mixed_5c", help="the encoder's final endpoint (Mixed_3c, Mixed_4f, Mixed_5c)")
    parser.add_argument("--tile", type=int, default=0, help="choose the permutation per TILE×TILE square (0: per clip)")
    parser.add_argument("--translate", action="store_true", help="layers slide at constant whole-pixel velocities instead")
    parser.add_argument("--noise", action="store_true", help="with --translate: train on noise textures (scored on photographs)")
    parser.add_argument("--jitter", action="store_true", help="with --translate: each training layer's contrast, colour and brightness changed at random")
    parser.add_argument("--seen", action="store_true", help="with --translate: also score new pairs of the training photographs")
    parser.add_argument("--contrast", type=float, default=0.0,
                        help="with --ordered: only clips whose speed contrast (losses.speed_contrast) reaches this are ordered, the rest keep Eq. 2")
    parser.add_argument("--ordered", action="store_true", help="with --translate: train with the faster layer as output 1 (no permutation search)")
    parser.add_argument("--still", action="store_true", help="with --translate: the second layer of each training pair does not move")
    parser.add_argument("--frozen", action="store_true", help="the second layer of each pair is a still frame")
    args = parser.parse_args()
    if args.translate:
        held_back = TranslatedPhotos("held-back", args.size, args.frames, seed=30_000, still=args.still).examples(range(16))["layers"]
    else:
        held_back, _ = held_back_photo_pairs(16, args.frames, args.size)
    if args.frozen:
        held_back = frozen_pairs(held_back, (False, True))
    seen = TranslatedPhotos("train", args.size, args.frames, seed=20_000, still=args.still).examples(range(16))["layers"] if args.seen and args.translate else None
    for variant in args.variants.split(","):
        probe(variant, args, held_back, seen)


if __name__ == "__main__":
    main()
