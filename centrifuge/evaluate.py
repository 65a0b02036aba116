"""The validation benchmark: real held-back videos, clips of different videos blended with α = 0.5,
32×112×112 centre crops as in the paper's experiments (section 4).

It reports the PIT loss (Eq. 2) of each model beside the identity baseline (both outputs equal to
the blend), their ratio, and the PSNR of the matched layers against the PSNR of the blend itself
(the blend compared with each of its two layers), so a model that does nothing scores ratio 1 and
gains 0 dB. The ``untrained`` row is a freshly initialised network (Table 1).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .data import LayerPairs, blend_layers
from .losses import diversity, identity_outputs, pit_loss, reconstruction_loss, written_pair
from .models import CentrifugeNet, build_model


@dataclass
class BenchmarkRow:
    name: str
    loss: float
    identity: float
    psnr_layers: float
    psnr_blend: float
    seconds: float
    ratio_se: float = float("nan")  # standard error of the ratio over pairs (delta method)
    ssim_layers: float = float("nan")
    ssim_blend: float = float("nan")
    worse: int = 0  # pairs whose loss exceeds the identity baseline's
    count: int = 0
    other_detail: float = float("nan")  # share of a layer's detail that is the other scene's (see other_scene_share)
    pair_losses: list[float] = field(default_factory=list)  # per pair, in the benchmark's order
    pair_identities: list[float] = field(default_factory=list)
    pair_groups: list[str] = field(default_factory=list)  # per pair, what it blends (held-back real pairs: the two videos)
    # The loss of the two outputs ``separate`` writes (the most distant pair, chosen without the
    # answer), where ``loss`` lets the answer pick the best two of n outputs (the paper's
    # permutation-invariant loss): with n > 2 the headline is an oracle's choice, this is the product's.
    written_loss: float = float("nan")
    written_ratio_se: float = float("nan")
    pair_written_losses: list[float] = field(default_factory=list)  # per pair, for paired comparisons

    @property
    def ratio(self) -> float:
        return self.loss / self.identity

    @property
    def written_ratio(self) -> float:
        return self.written_loss / self.identity

    def to_dict(self) -> dict:
        return {"name": self.name, "loss": self.loss, "identity": self.identity, "ratio": self.ratio, "ratio_se": self.ratio_se,
                "psnr_layers": self.psnr_layers, "psnr_blend": self.psnr_blend, "ssim_layers": self.ssim_layers,
                "ssim_blend": self.ssim_blend, "worse_than_identity": self.worse, "pairs": self.count,
                "other_scene_detail": self.other_detail, "seconds": self.seconds,
                "pair_losses": self.pair_losses, "pair_identities": self.pair_identities, "pair_groups": self.pair_groups,
                "written_ratio": self.written_ratio, "written_ratio_se": self.written_ratio_se,
                "pair_written_losses": self.pair_written_losses}


def ratio_standard_error(losses: torch.Tensor, identities: torch.Tensor) -> float:
    """Standard error of mean(loss) / mean(identity) over pairs, by the delta method."""
    n = len(losses)
    if n < 2:
        return float("nan")
    ratio = losses.mean() / identities.mean()
    residual = losses - ratio * identities
    return float(residual.std(unbiased=True) / identities.mean() / n**0.5)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004, Gaussian window) over the frames of videos in [0, 1]:
    ``(..., C, T, H, W)`` → ``(...)``, computed on each channel of each frame and averaged."""
    lead = a.shape[:-4]
    c, t, h, w = a.shape[-4:]
    x = a.clamp(0, 1).reshape(-1, h, w).float()
    y = b.clamp(0, 1).expand_as(a).reshape(-1, h, w).float()
    size = min(window, h, w) | 1
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-0.5 * (coords / sigma) ** 2)
    blur = lambda z: _separable_blur(z, (g / g.sum()).tolist())  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return value.mean(dim=(1, 2)).view(*lead, c * t).mean(-1)


def _separable_blur(z: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """``(N, h, w)`` filtered by ``taps`` along rows then columns, valid region only: weighted sums
    of shifted views, 2.5× faster here than a 7 × 7 ``conv2d`` on one channel."""
    size = len(taps)
    h, w = z.shape[-2] - size + 1, z.shape[-1] - size + 1
    rows = z[:, 0:h] * taps[0]
    for k in range(1, size):
        rows.add_(z[:, k : k + h], alpha=taps[k])
    out = rows[:, :, 0:w] * taps[0]
    for k in range(1, size):
        out.add_(rows[:, :, k : k + w], alpha=taps[k])
    return out


def _spatial_gradients(video: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical differences of ``(..., C, T, H, W)``, flattened to ``(..., D)``."""
    dx = (video[..., :, 1:] - video[..., :, :-1]).flatten(-4)
    dy = (video[..., 1:, :] - video[..., :-1, :]).flatten(-4)
    return torch.cat([dx, dy], -1)


def other_scene_share(matched: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """How much of each output's detail is the *other* scene's: ``(N, 2, C, T, H, W)`` outputs matched
    to their true layers → ``(N,)``, the mean over both layers of |b| / (|a| + |b|), where the
    output's spatial gradients are fitted by least squares as a·(its own layer's) + b·(the other's).

    Doing nothing (both outputs the blend) scores 0.5, and so does any brightness or contrast change
    of the blend (a darker and a lighter copy); only taking one scene's edges out of the other lowers
    it; a perfect separation scores 0. The loss ratio cannot tell these apart."""
    g_out = _spatial_gradients(matched.float())
    g_true = _spatial_gradients(layers.float())
    own, other = g_true, g_true.flip(1)
    design = torch.stack([own, other], -1)  # (N, 2, D, 2)
    gram = design.transpose(-1, -2) @ design  # (N, 2, 2, 2)
    rhs = design.transpose(-1, -2) @ g_out.unsqueeze(-1)
    ridge = 1e-6 * gram.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] * torch.eye(2)
    coef = torch.linalg.solve(gram + ridge, rhs).squeeze(-1).abs()  # (N, 2, 2): |a|, |b|
    return (coef[..., 1] / coef.sum(-1).clamp_min(1e-12)).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over the last four dimensions of videos in [0, 1]."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).square().mean(dim=(-4, -3, -2, -1))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def clip_source(data: str):
    """A folder of videos, comma-separated files, ``synthetic`` (the embedded generator filming the
    held-back photographs) or ``synthetic-classes`` (the generator with labels, a class per
    photograph, all of them: :class:`centrifuge.data.LabelledSyntheticSource`), both from a
    generator seed no training run uses."""
    from .data import LabelledSyntheticSource, SyntheticSource
    from .train import video_folder

    if data == "synthetic":
        return SyntheticSource(seed=20_000, split="held-back")
    if data == "synthetic-classes":
        return LabelledSyntheticSource(seed=20_000)
    return video_folder(data)


def benchmark_items(data: str, num_pairs: int = 24, num_frames: int = 32, size: int = 112, seed: int = 0,
                    same_class: bool = False) -> dict[str, torch.Tensor]:
    """``layers`` ``(N, 2, 3, T, H, W)`` from different videos of ``data``, their ``labels`` ``(N, 2)``
    and ``videos`` ``(N, 2)`` (indices into the source's videos)."""
    dataset = LayerPairs([clip_source(data)], length=num_pairs, num_frames=num_frames, crop_size=size, train=False,
                         seed=seed, same_class=same_class)
    items = [dataset[i] for i in range(num_pairs)]
    return {key: torch.stack([item[key] for item in items]) for key in ("layers", "labels", "videos")}


def benchmark_pairs(data: str, num_pairs: int = 24, num_frames: int = 32, size: int = 112, seed: int = 0,
                    same_class: bool = False) -> torch.Tensor:
    """``(N, 2, 3, T, H, W)`` layer pairs from different videos of ``data`` (a folder or files)."""
    return benchmark_items(data, num_pairs, num_frames, size, seed, same_class)["layers"]


@torch.no_grad()
def score_model(model: CentrifugeNet, name: str, pairs: torch.Tensor, batch_size: int = 2) -> BenchmarkRow:
    """PIT loss, identity loss, PSNR and SSIM of the matched layers of one model on fixed pairs (α = 0.5)."""
    return score_outputs(name, pairs, _direct(model), batch_size, next(model.parameters()).device)


@torch.no_grad()
def score_outputs(name: str, pairs: torch.Tensor, predict, batch_size: int = 2, device: torch.device | str = "cpu") -> BenchmarkRow:
    """The row of :func:`score_model` for any ``predict(blend, layers) → (B, n, C, T, H, W)`` outputs."""
    losses, identities, gains, blends, ssims, blend_ssims, others, written = [], [], [], [], [], [], [], []
    started = time.perf_counter()
    for start in range(0, len(pairs), batch_size):
        layers = pairs[start : start + batch_size].to(device)
        blend = blend_layers(layers, torch.full((layers.shape[0],), 0.5, device=device))
        outputs = predict(blend, layers)
        result = pit_loss(outputs, layers)
        losses.append(result.per_example.cpu())
        if outputs.shape[1] > layers.shape[1]:
            written.append(pit_loss(written_pair(outputs), layers).per_example.cpu())
        identities.append(pit_loss(identity_outputs(blend), layers).per_example.cpu())
        matched = torch.stack([outputs[b, result.assignment[b]] for b in range(layers.shape[0])])
        gains.append(psnr(matched, layers).mean(1).cpu())
        blends.append(psnr(blend.unsqueeze(1), layers).mean(1).cpu())
        ssims.append(ssim(matched, layers).mean(1).cpu())
        blend_ssims.append(ssim(blend.unsqueeze(1).expand_as(layers), layers).mean(1).cpu())
        others.append(other_scene_share(matched.cpu(), layers.cpu()))
    seconds = time.perf_counter() - started
    loss, identity = torch.cat(losses), torch.cat(identities)
    mean = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    row = BenchmarkRow(name, float(loss.mean()), float(identity.mean()), mean(gains), mean(blends), seconds,
                       ratio_standard_error(loss, identity), mean(ssims), mean(blend_ssims), int((loss > identity).sum()), len(loss),
                       mean(others), loss.tolist(), identity.tolist())
    if written:
        row.written_loss, row.written_ratio_se = mean(written), ratio_standard_error(torch.cat(written), identity)
        row.pair_written_losses = torch.cat(written).tolist()
    return row


def separated_at(model: CentrifugeNet, network_size: int):
    """``predict`` of :func:`score_outputs` that runs ``model`` as ``separate`` does on frames
    larger than ``--max-size``: the network on the blend shrunk to ``network_size`` on its longest
    side, each layer brought back to full size by the guided filter. A model trained on small crops
    meets objects at its training scale this way, however large the frames (in fp32, as
    :func:`score_model`, so the two paths differ only in the size the network sees)."""
    from .separate import Centrifuge

    centrifuge = Centrifuge(copy.deepcopy(model), precision="fp32")  # folding BatchNorm must not change the caller's model

    def predict(blend: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
        clips = [centrifuge.separate_window(clip.permute(1, 2, 3, 0).cpu(), network_size) for clip in blend]  # (n, T, H, W, 3) each
        return torch.stack(clips).permute(0, 1, 5, 2, 3, 4).to(blend.device)

    return predict


COLOUR_SPLIT = "colour split per clip (oracle)"
LOCAL_SPLIT_TILES = 4  # per side: 28-px tiles at the benchmark's 112 px
LOCAL_SPLIT = f"colour split per {LOCAL_SPLIT_TILES}x{LOCAL_SPLIT_TILES} tiles (oracle)"


def colour_split_outputs(blend: torch.Tensor, layers: torch.Tensor, tiles: int = 1) -> torch.Tensor:
    """The best colour transform of the blend for each true layer, an oracle: per clip, layer,
    colour channel and tile (``tiles`` × ``tiles`` over the frame, all frames together) the
    least-squares fit ``layer ≈ a · blend + b``, clipped to [0, 1].

    With one tile, a model that only moves brightness, contrast or colour between its outputs, the
    same everywhere in the clip, cannot beat it (taking a plain white scene out of a blend is such a
    transform); beating it takes deciding, place by place, which scene the picture belongs to. With
    more tiles it is what such decisions reach when each tile's are right.

    Args:
        blend: ``(B, C, T, H, W)``; layers: ``(B, 2, C, T, H, W)``.
    Returns:
        ``(B, 2, C, T, H, W)``, output i fitted to layer i.
    """
    h, w = layers.shape[-2:]
    rows = torch.arange(h, device=blend.device) * tiles // h
    cols = torch.arange(w, device=blend.device) * tiles // w
    tile = (rows[:, None] * tiles + cols[None]).flatten()  # each pixel's tile
    x = blend.unsqueeze(1).flatten(-2)
    y = layers.flatten(-2)

    def tile_mean(z: torch.Tensor) -> torch.Tensor:  # (..., T, H·W) → each pixel's tile mean over all frames
        sums = torch.zeros(*z.shape[:-2], tiles * tiles, device=z.device).index_add_(-1, tile, z.sum(-2))
        counts = torch.bincount(tile, minlength=tiles * tiles) * z.shape[-2]
        return (sums / counts)[..., tile].unsqueeze(-2)

    x_centred = x - tile_mean(x)
    y_mean = tile_mean(y)
    gain = tile_mean(x_centred * (y - y_mean)) / (tile_mean(x_centred.pow(2)) + 1e-8)
    return (gain * x_centred + y_mean).clamp(0, 1).reshape(layers.shape)


def colour_split_rows(pairs: torch.Tensor) -> list[BenchmarkRow]:
    """The :func:`colour_split_outputs` oracle's rows, per clip and per tile: the ratio that moving
    brightness and colour alone reaches on these pairs, and what deciding tile by tile reaches."""
    local = lambda blend, layers: colour_split_outputs(blend, layers, LOCAL_SPLIT_TILES)  # noqa: E731
    return [score_outputs(COLOUR_SPLIT, pairs, colour_split_outputs, batch_size=8),
            score_outputs(LOCAL_SPLIT, pairs, local, batch_size=8)]


def identity_row(pairs: torch.Tensor, chunk: int = 8) -> BenchmarkRow:
    """The identity baseline's row, ``chunk`` pairs at a time: SSIM's intermediates over all 64
    benchmark pairs at once held about 12 GB."""
    identities, psnrs, ssims, others = [], [], [], []
    for layers in pairs.split(chunk):
        blend = blend_layers(layers, torch.full((layers.shape[0],), 0.5)).unsqueeze(1).expand_as(layers)
        identities.append(pit_loss(identity_outputs(blend[:, 0]), layers).per_example)
        psnrs.append(psnr(blend, layers).mean(1))
        ssims.append(ssim(blend, layers).mean(1))
        others.append(other_scene_share(blend, layers))
    identity = torch.cat(identities)
    blend_psnr, blend_ssim, other = (float(torch.cat(xs).mean()) for xs in (psnrs, ssims, others))
    return BenchmarkRow("identity baseline", float(identity.mean()), float(identity.mean()), blend_psnr, blend_psnr, 0.0,
                        0.0, blend_ssim, blend_ssim, 0, len(pairs), other, identity.tolist(), identity.tolist())


def run_benchmark(models: Sequence[tuple[str, CentrifugeNet]], data: str, num_pairs: int = 24, num_frames: int = 32,
                  size: int = 112, seed: int = 0, untrained: str | None = None) -> list[BenchmarkRow]:
    """Table 1 on any folder: the identity baseline, optionally an untrained network, then each model."""
    pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    rows = [identity_row(pairs)]
    if untrained is not None:
        torch.manual_seed(seed)
        rows.append(score_model(build_model(untrained), f"untrained {untrained}", pairs))
    rows += [score_model(model, name, pairs) for name, model in models]
    return rows


def format_table(rows: Sequence[BenchmarkRow]) -> str:
    lines = [f"{'model':<40} {'loss':>8} {'ratio':>7} {'± s.e.':>7} {'written':>8} {'PSNR layers':>12} {'PSNR blend':>11} {'SSIM':>6} {'other':>6} {'worse':>7} {'seconds':>8}"]
    for row in rows:
        seconds = "" if row.seconds == 0 else f"{row.seconds:8.1f}"
        se = "" if row.ratio_se != row.ratio_se else f"{row.ratio_se:7.3f}"
        written = "" if row.written_loss != row.written_loss else f"{row.written_ratio:8.3f}"
        worse = f"{row.worse}/{row.count}" if row.count else ""
        lines.append(f"{row.name[-40:]:<40} {row.loss:8.4f} {row.ratio:7.3f} {se:>7} {written:>8} {row.psnr_layers:10.2f}dB {row.psnr_blend:9.2f}dB "
                     f"{row.ssim_layers:6.3f} {row.other_detail:6.3f} {worse:>7} {seconds:>8}")
    notes = "\nother: share of each layer's detail that belongs to the other scene (0.5 = not separated, 0 = separated)"
    if any(row.written_loss == row.written_loss for row in rows):
        notes += ("\nwritten: the ratio of the two layers separate writes (the most distant pair of the n outputs, chosen without "
                  "the answer); ratio lets the answer pick the best two")
    return "\n".join(lines) + notes + format_paired(rows)


def paired_difference(candidate: BenchmarkRow, reference: BenchmarkRow, written: bool = False) -> tuple[float, float, int]:
    """``candidate.ratio − reference.ratio`` on the same pairs, its standard error over pairs (the
    pairs' own difficulty cancels, so it is far smaller than either row's), and on how many pairs
    the candidate's loss is lower; with ``written``, of the written pair's ratio."""
    if candidate.pair_identities != reference.pair_identities or not candidate.pair_losses:
        raise ValueError("paired comparison needs two rows scored on the same pairs")
    if written:
        a, b = torch.tensor(candidate.pair_written_losses), torch.tensor(reference.pair_written_losses)
    else:
        a, b = torch.tensor(candidate.pair_losses), torch.tensor(reference.pair_losses)
    identity = torch.tensor(candidate.pair_identities)
    return float((a.mean() - b.mean()) / identity.mean()), ratio_standard_error(a - b, identity), int((a < b).sum())


def _model_rows(rows: Sequence[BenchmarkRow]) -> list[BenchmarkRow]:
    """The rows of trained models with per-pair losses (not the identity or untrained rows)."""
    return [r for r in rows if r.pair_losses and r.name not in ("identity baseline", COLOUR_SPLIT, LOCAL_SPLIT) and not r.name.startswith("untrained")]


def format_paired(rows: Sequence[BenchmarkRow]) -> str:
    """With two models or more: each against the first model scored on the same pairs, pair by
    pair (rows on other pairs, such as Figure 4's colours, are not compared)."""
    models = _model_rows(rows)
    lines = []
    for k, row in enumerate(models):
        reference = next((r for r in models[:k] if r.pair_identities == row.pair_identities), None)
        if reference is not None:
            difference, se, better = paired_difference(row, reference)
            lines.append(f"paired, {row.name[-40:]} vs {reference.name[-40:]}: ratio {difference:+.3f} ± {se:.3f}, "
                         f"lower loss on {better}/{row.count} pairs")
            if row.pair_written_losses and reference.pair_written_losses:
                difference, se, better = paired_difference(row, reference, written=True)
                lines.append(f"paired, {row.name[-40:]} vs {reference.name[-40:]}: written {difference:+.3f} ± {se:.3f}, "
                             f"lower loss on {better}/{row.count} pairs")
    return "".join("\n" + line for line in lines)


# --------------------------------------------------------------------------- the held-back benchmark

# Held back from the bundled model's training: real motion (a street with cyclists, a hand-held
# camera around a cup) and a talking head in a car. Pairs are always of two different videos.
HELD_BACK_VIDEOS = ("bikes.mp4", "carphone_pristine.mp4", "cup.mp4")


def default_videos_dir() -> Path | None:
    """``$CENTRIFUGE_VIDEOS``, else ``../shared/videos`` beside a source checkout, else None."""
    import os

    env = os.environ.get("CENTRIFUGE_VIDEOS")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "videos"
    return beside if beside.is_dir() else None


def held_back_photo_pairs(num_pairs: int, num_frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Pairs of held-back photographs (never trained on) filmed by a camera that pans, zooms and
    rolls, with no sprites; returns the pairs and the photographs' names."""
    from .batched import BatchedPairs
    from .generator import BatchedGenerator, default_bank_size
    from .photos import available_photos, bank_tensor
    from .synthetic import SyntheticConfig

    photos = available_photos("held-back")
    camera_only = SyntheticConfig(min_sprites=0, max_sprites=0, noise_std=0.0)
    generator = BatchedGenerator(bank_tensor(photos, *default_bank_size(size)), seed=30_000 + seed, config=camera_only)
    pairs = BatchedPairs(generator, None, 0.0, num_frames, size, seed=30_000 + seed, train=False)
    return pairs.examples(range(num_pairs))["layers"], [p.name for p in photos]


def light_kind(colour: Sequence[float]) -> str:
    """What a light's base colour is, for grouping: ``black or white``, ``grey``, ``saturated``
    (every channel high, ≥ 0.7, or low, ≤ 0.3, not all alike) or ``tinted``."""
    c = [float(x) for x in colour]
    if max(c) - min(c) < 1e-6:
        return "black or white" if c[0] in (0.0, 1.0) else "grey"
    return "saturated" if all(x >= 0.7 or x <= 0.3 for x in c) else "tinted"


def held_back_light_pairs(clips: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Each real clip of ``clips`` ``(N, 3, T, H, W)`` with a light as its second layer (a flat
    colour, black and white among them, a coloured light, a gradient, a soft spot or a shadow:
    :func:`~centrifuge.synthetic.draw_light`): the layering of the project's first sentence, a
    shadow or a coloured light on a surface. A light has no detail of its own, so a separator that
    has learnt the rule, not the scenes, hands all of the blend's detail to the video. Returns the
    pairs and each light's :func:`light_kind`."""
    import numpy as np

    from .synthetic import draw_light, render_light

    rng = np.random.default_rng(40_000 + seed)
    plans = [draw_light(rng) for _ in range(len(clips))]
    lights = torch.stack([render_light(plan, *clips.shape[2:]) for plan in plans])
    return torch.stack([clips, lights.to(clips.dtype)], 1), [light_kind(plan.colour) for plan in plans]


def held_back_kinds(videos_dir: str | Path, num_pairs: int = 64, photo_pairs: int = 32, num_frames: int = 32, size: int = 112,
                    seed: int = 0, light_pairs: int | None = None) -> dict[str, tuple[torch.Tensor, list[str]]]:
    """The benchmark's pairs by content kind, each with what every pair blends: ``real`` (pairs of
    the held-back videos, e.g. ``bikes + cup``), ``photographs`` (pairs of held-back photographs
    panned and zoomed; no groups) and ``lights`` (the first video of each of the first
    ``light_pairs`` real pairs under a light, :func:`held_back_light_pairs`; None: as many as
    ``num_pairs``)."""
    videos_dir = Path(videos_dir)
    missing = [n for n in HELD_BACK_VIDEOS if not (videos_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{videos_dir}: the held-back videos {', '.join(missing)} are not there")
    light_pairs = num_pairs if light_pairs is None else light_pairs
    if light_pairs > num_pairs:
        raise ValueError(f"{light_pairs} light pairs: at most one per real pair ({num_pairs})")
    data = ",".join(str(videos_dir / n) for n in HELD_BACK_VIDEOS)
    items = benchmark_items(data, num_pairs, num_frames, size, seed)
    names = [Path(v.path).stem for v in clip_source(data).videos]
    groups = [" + ".join(sorted(names[int(i)] for i in pair)) for pair in items["videos"]]
    kinds = {"real": (items["layers"], groups)}
    if photo_pairs:
        kinds["photographs"] = (held_back_photo_pairs(photo_pairs, num_frames, size, seed)[0], [])
    if light_pairs:
        kinds["lights"] = held_back_light_pairs(items["layers"][:light_pairs, 0], seed)
    return kinds


def held_back_benchmark(videos_dir: str | Path, num_pairs: int = 64, photo_pairs: int = 32, num_frames: int = 32, size: int = 112,
                        seed: int = 0, light_pairs: int | None = None) -> dict[str, torch.Tensor]:
    """The pairs of :func:`held_back_kinds` alone."""
    kinds = held_back_kinds(videos_dir, num_pairs, photo_pairs, num_frames, size, seed, light_pairs)
    return {kind: pairs for kind, (pairs, _) in kinds.items()}


def run_held_back_benchmark(models: Sequence[tuple[str, CentrifugeNet]], videos_dir: str | Path, num_pairs: int = 64, photo_pairs: int = 32,
                            num_frames: int = 32, size: int = 112, seed: int = 0,
                            network_size: int | None = None, light_pairs: int | None = None) -> dict[str, list[BenchmarkRow]]:
    """Table 1 per content kind of :func:`held_back_kinds`: identity, the colour-split oracles
    (:func:`colour_split_outputs`), then each model; with ``network_size`` below ``size``, each
    model through :func:`separated_at` (as ``separate --max-size network_size`` runs it)."""
    results = {}
    for kind, (pairs, groups) in held_back_kinds(videos_dir, num_pairs, photo_pairs, num_frames, size, seed, light_pairs).items():
        results[kind] = [identity_row(pairs), *colour_split_rows(pairs)] + [
            score_outputs(name, pairs, _predictor(model, network_size, size), device=next(model.parameters()).device)
            for name, model in models]
        for row in results[kind]:
            row.pair_groups = groups
    return results


def format_groups(rows: Sequence[BenchmarkRow], title: str = "ratio by pair of videos:") -> str:
    """The ratio of each row on each group of pairs (e.g. each pair of videos): a headline ratio can
    come from one kind of pair alone."""
    groups = sorted(set(rows[0].pair_groups))
    if len(groups) < 2:
        return ""
    members = {g: [i for i, x in enumerate(rows[0].pair_groups) if x == g] for g in groups}
    width = max(16, *(len(g) + 1 for g in groups))
    lines = [title, f"{'model':<40}" + "".join(f"{g + f' ({len(members[g])})':>{width + 5}}" for g in groups)]
    for row in rows:
        cells = []
        for g in groups:
            index = members[g]
            cells.append(f"{sum(row.pair_losses[i] for i in index) / sum(row.pair_identities[i] for i in index):>{width + 5}.3f}")
        lines.append(f"{row.name[-40:]:<40}" + "".join(cells))
    return "\n".join(lines + _paired_by_group(rows, members))


def _paired_by_group(rows: Sequence[BenchmarkRow], members: dict[str, list[int]]) -> list[str]:
    """Each model against the first, pair by pair within each group: a change confined to one kind
    of pair (two textured scenes) is lost in the headline's standard error."""
    models = _model_rows(rows)
    lines = []
    reference = models[0] if models else None
    for row in models[1:]:
        if row.pair_identities != reference.pair_identities:
            continue
        cells = []
        for group, index in members.items():
            a, b = torch.tensor([row.pair_losses[i] for i in index]), torch.tensor([reference.pair_losses[i] for i in index])
            identity = torch.tensor([row.pair_identities[i] for i in index])
            cells.append(f"{group} {float((a - b).sum() / identity.sum()):+.3f} ± {ratio_standard_error(a - b, identity):.3f} "
                         f"(lower on {int((a < b).sum())}/{len(index)})")
        lines.append(f"paired, {row.name[-40:]} vs {reference.name[-40:]}: " + "; ".join(cells))
    return lines


def format_held_back(results: dict[str, list[BenchmarkRow]]) -> str:
    parts = []
    described = {"real": f" of {', '.join(HELD_BACK_VIDEOS)}", "photographs": " of held-back photographs, panned and zoomed",
                 "lights": " of a held-back video under a light (flat colour, coloured light, gradient, shadow)"}
    for kind, rows in results.items():
        what = f"{kind}: {rows[0].count} pairs" + described[kind]
        by_group = format_groups(rows, "ratio by light:" if kind == "lights" else "ratio by pair of videos:")
        parts.append(what + "\n" + format_table(rows) + ("\n" + by_group if by_group else ""))
    return "\n\n".join(parts)


def training_overlap(model: str | None, data: Sequence[str] | str) -> list[str]:
    """The files of ``data`` (a folder, comma-separated files, or a list of files) that the run behind
    ``model`` recorded in its ``training_files.json`` (same resolved path, or same name and size)."""
    from .video import find_videos

    if model is None:
        record = Path(__file__).parent / "pretrained" / "default.training_files.json"
    else:
        path = Path(model)
        folder = path if path.is_dir() else path.parent
        candidates = [folder / "training_files.json", folder.parent / "training_files.json", folder.parent.parent / "training_files.json",
                      path.with_suffix(".training_files.json")]
        record = next((c for c in candidates if c.is_file()), None)
    if record is None or not record.is_file():
        return []
    trained = json.loads(record.read_text())
    by_path = {t["path"] for t in trained}
    by_name = {(Path(t["path"]).name, t["size"]) for t in trained}
    specs = data.split(",") if isinstance(data, str) else list(data)
    files: list[Path] = []
    for spec in specs:
        part = Path(spec)
        files += find_videos(part) if part.is_dir() else ([part] if part.exists() else [])
    return [str(f) for f in files if str(f.resolve()) in by_path or (f.name, f.stat().st_size) in by_name]


def short_model_name(name: str, width: int = 18) -> str:
    """A column title for a model: ``/work/runs/s29/excl (BN at 32x64)`` → ``excl``;
    ``OUT/x64/model.safetensors`` → ``x64``; long names keep their start."""
    path = Path(name.split(" (")[0])
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    if stem in ("model", "") and path.parent.name:
        stem = path.parent.name
    return stem if len(stem) <= width else stem[: width - 1] + "…"


@torch.no_grad()
def plot_separations(models: Sequence[tuple[str, CentrifugeNet]], pairs: torch.Tensor, path: str | Path, frame: int | None = None,
                     network_size: int | None = None) -> Path:
    """A grid to look at: per pair, the blend, its two true layers, and each model's two outputs
    matched to them (middle frame; with ``network_size``, through :func:`separated_at`). A ratio
    can improve while layers still split by brightness; this shows which."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3 + 2 * len(models)
    fig, axes = plt.subplots(len(pairs), columns, figsize=(1.5 * columns, 1.55 * len(pairs) + 0.3), squeeze=False)
    t = pairs.shape[3] // 2 if frame is None else frame
    predictors = [_predictor(model, network_size, pairs.shape[-1]) for _, model in models]
    titles = ["blend", "layer 1", "layer 2"] + [f"{short_model_name(name)}\n{k}" for name, _ in models for k in ("→ 1", "→ 2")]
    for row, layers in zip(axes, pairs):
        blend = blend_layers(layers[None], 0.5)
        images = [blend[0, :, t], layers[0, :, t], layers[1, :, t]]
        for predict in predictors:
            outputs = predict(blend, layers[None]).float().cpu()
            assignment = pit_loss(outputs, layers[None]).assignment[0]
            images += [outputs[0, assignment[0], :, t], outputs[0, assignment[1], :, t]]
        for ax, image in zip(row, images):
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([]), ax.set_yticks([])
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def _direct(model: CentrifugeNet):
    model.eval()
    device = next(model.parameters()).device
    return lambda blend, layers: model(blend.to(device)).float()


def _predictor(model: CentrifugeNet, network_size: int | None, size: int):
    """The model on the blend as it is, or through :func:`separated_at` when ``network_size`` is
    below the clips' ``size``."""
    return separated_at(model, network_size) if network_size and network_size < size else _direct(model)


def ranks_above_noise(candidate: BenchmarkRow, current: BenchmarkRow) -> bool:
    """The shipping rule: a new model must beat the current one by more than twice the standard error."""
    return current.ratio - candidate.ratio > 2 * max(candidate.ratio_se, current.ratio_se)


def write_json(path: str | Path, rows: Sequence[BenchmarkRow], settings: dict) -> None:
    payload = {"settings": settings, "rows": [r.to_dict() for r in rows]}
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


# --------------------------------------------------------------------------- the paper's variants


def color_pairs(pairs: torch.Tensor, color: str) -> torch.Tensor:
    """Each pair's first layer kept, the second replaced by a pure colour (Fig. 4)."""
    from .data import color_clip

    return torch.stack([torch.stack([p[0], color_clip(color, p[0])]) for p in pairs])


def frozen_pairs(pairs: torch.Tensor, which: tuple[bool, bool]) -> torch.Tensor:
    """Pairs with the chosen layers frozen (one frame repeated), as in Table 3."""
    from .data import freeze_clip

    return torch.stack([torch.stack([freeze_clip(p[i]) if which[i] else p[i] for i in range(2)]) for p in pairs])


def run_color_experiment(model: CentrifugeNet, data: str, num_pairs: int = 8, num_frames: int = 32, size: int = 112, seed: int = 0) -> list[BenchmarkRow]:
    """Figure 4: the loss of separating a video from each of the paper's eight colours, beside the
    loss of separating two videos (rows are named after the second layer)."""
    from .data import PAPER_COLORS

    pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    rows = [score_model(model, "video + video", pairs)]
    for color in PAPER_COLORS:
        rows.append(score_model(model, f"video + {color}", color_pairs(pairs, color)))
    return rows


FROZEN_SETTINGS = {"2 frozen": (True, True), "2 normal": (False, False), "1 frozen 1 normal": (True, False)}


def run_frozen_experiment(models: Sequence[tuple[str, CentrifugeNet]], data: str, num_pairs: int = 8, num_frames: int = 32,
                          size: int = 112, seed: int = 0) -> list[BenchmarkRow]:
    """Table 3: each model (trained on frozen or on normal clips) on pairs of two frozen clips, two
    normal clips, and one of each. Rows are named ``model / setting``."""
    pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    return [score_model(model, f"{name} / {setting}", frozen_pairs(pairs, which))
            for name, model in models for setting, which in FROZEN_SETTINGS.items()]


def format_frozen_grid(rows: Sequence[BenchmarkRow]) -> str:
    """Table 3's layout: a row per model, a column per test setting, loss (ratio to identity)."""
    grid: dict[str, dict[str, BenchmarkRow]] = {}
    for row in rows:
        model, setting = row.name.rsplit(" / ", 1)
        grid.setdefault(model, {})[setting] = row
    header = "train \\ test"
    lines = [f"{header:<40}" + "".join(f"{s:>22}" for s in FROZEN_SETTINGS)]
    for model, cells in grid.items():
        lines.append(f"{model[-40:]:<40}" + "".join(f"{cells[s].loss:>13.4f} ({cells[s].ratio:.3f})" for s in FROZEN_SETTINGS))
    return "\n".join(lines)


# Convolutional layers of the encoder up to each endpoint (the paper's Table 4).
ENCODER_DEPTH = {"Mixed_3c": 7, "Mixed_4f": 17, "Mixed_5c": 21}


def format_layers_table(rows: Sequence[BenchmarkRow], models: Sequence[tuple[str, CentrifugeNet]]) -> str:
    """Table 2's layout: a row per number of output layers, predictor and predictor–corrector
    columns, loss (ratio to identity); '-' where no model was given."""
    cells: dict[tuple[int, bool], BenchmarkRow] = {}
    for row, (_, model) in zip(rows, models):
        cells[(model.config.num_layers, model.config.correction_steps > 0)] = row
    lines = [f"{'# output layers':<16}{'predictor':>22}{'predictor-corrector':>22}"]
    for n in sorted({n for n, _ in cells}):
        text = [f"{cells[(n, c)].loss:>13.4f} ({cells[(n, c)].ratio:.3f})" if (n, c) in cells else f"{'-':>22}" for c in (False, True)]
        lines.append(f"{n:<16}" + "".join(text))
    return "\n".join(lines)


def format_depth_table(rows: Sequence[BenchmarkRow], models: Sequence[tuple[str, CentrifugeNet]]) -> str:
    """Table 4's layout: encoder endpoint, its depth in convolutional layers, loss, ratio."""
    lines = [f"{'encoder endpoint':<18}{'depth':>6}{'loss':>10}{'ratio':>8}  model"]
    for row, (name, model) in sorted(zip(rows, models), key=lambda rm: ENCODER_DEPTH[rm[1][1].config.final_endpoint]):
        endpoint = model.config.final_endpoint
        lines.append(f"{endpoint:<18}{ENCODER_DEPTH[endpoint]:>6}{row.loss:>10.4f}{row.ratio:>8.3f}  {name}")
    return "\n".join(lines)


def run_class_experiment(models: Sequence[tuple[str, CentrifugeNet]], data: str, num_pairs: int = 24, num_frames: int = 32,
                         size: int = 112, seed: int = 0) -> list[BenchmarkRow]:
    """Section 4.2: each model on random pairs and on pairs of the same class (a folder with class
    sub-folders, or ``synthetic-classes``)."""
    random_pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    same_pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed, same_class=True)
    rows = []
    for name, model in models:
        rows.append(score_model(model, f"{name} / random pairs", random_pairs))
        rows.append(score_model(model, f"{name} / same-class pairs", same_pairs))
    return rows


@dataclass
class DiversityExample:
    score: float
    blend: torch.Tensor  # (3, H, W), the middle frame
    layers: torch.Tensor  # (n, 3, H, W)
    label: str


@torch.no_grad()
def diversity_scores(model: CentrifugeNet, pairs: torch.Tensor, batch_size: int = 2) -> tuple[torch.Tensor, list[DiversityExample]]:
    """min_{i≠j} ℓ(Oⁱ, Oʲ) of every blend (α = 0.5), and each blend's middle frame with its layers."""
    model.eval()
    device = next(model.parameters()).device
    scores, examples = [], []
    for start in range(0, len(pairs), batch_size):
        layers = pairs[start : start + batch_size].to(device)
        blend = blend_layers(layers, torch.full((layers.shape[0],), 0.5, device=device))
        outputs = model(blend).float().clamp(0, 1)
        batch_scores = diversity(outputs).cpu()
        middle = blend.shape[2] // 2
        for b in range(layers.shape[0]):
            examples.append(DiversityExample(float(batch_scores[b]), blend[b, :, middle].cpu(), outputs[b, :, :, middle].cpu(), ""))
        scores.append(batch_scores)
    return torch.cat(scores), examples


def run_diversity_experiment(models: Sequence[tuple[str, CentrifugeNet]], data: str, num_pairs: int = 100, num_frames: int = 32,
                             size: int = 112, seed: int = 0, grid: str | Path | None = None, per_model: int = 2) -> list[dict]:
    """The paper's diversity metric (section 4.2) for each model on normal and on frozen pairs, and
    optionally an image grid of each model's most diverse examples (Fig. 6)."""
    pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    results, shown = [], []
    for name, model in models:
        for setting in ("2 normal", "2 frozen"):
            scores, examples = diversity_scores(model, frozen_pairs(pairs, FROZEN_SETTINGS[setting]))
            results.append({"model": name, "pairs": setting, "diversity": float(scores.mean()),
                            "max": float(scores.max()), "count": len(scores)})
            for example in sorted(examples, key=lambda e: -e.score)[:per_model]:
                example.label = f"{Path(name).name or name}\n{setting}\nd = {example.score:.3f}"
                shown.append(example)
    if grid is not None:
        plot_diversity_grid(shown, grid)
    return results


def format_diversity(results: Sequence[dict]) -> str:
    lines = [f"{'model':<40}{'pairs':>10}{'diversity':>11}{'max':>8}{'blends':>8}"]
    for r in results:
        lines.append(f"{r['model'][-40:]:<40}{r['pairs']:>10}{r['diversity']:>11.4f}{r['max']:>8.4f}{r['count']:>8}")
    return "\n".join(lines)


def plot_diversity_grid(examples: Sequence[DiversityExample], path: str | Path) -> Path:
    """Fig. 6: a row per example: its score, the blend and every output layer (middle frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 1 + max(e.layers.shape[0] for e in examples)
    fig, axes = plt.subplots(len(examples), columns, figsize=(1.6 * columns + 1.4, 1.6 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples):
        images = [example.blend] + list(example.layers)
        for k, ax in enumerate(row):
            ax.set_xticks([]), ax.set_yticks([])
            if k < len(images):
                ax.imshow(images[k].permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                ax.axis("off")
        row[0].set_ylabel(example.label, rotation=0, ha="right", va="center", fontsize=7)
    for k, ax in enumerate(axes[0]):
        ax.set_title("blend" if k == 0 else f"layer {k}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return Path(path)


def plot_rows(rows: Sequence[BenchmarkRow], path: str | Path, title: str) -> Path:
    """A bar chart of PIT loss with the identity baseline of each row as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows)), 3.6))
    x = range(len(rows))
    ax.bar(x, [r.loss for r in rows], color="#4c72b0", label="model (PIT loss)")
    ax.scatter(x, [r.identity for r in rows], color="#dd8452", zorder=3, label="identity baseline")
    ax.set_xticks(list(x), [r.name for r in rows], rotation=30, ha="right")
    ax.set(ylabel="loss (Eq. 2)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


class OracleNet(torch.nn.Module):
    """A stand-in for a trained network that returns ``answer(clip)``, ``(B, n, 3, T, h, w)``: it
    measures what ``separate`` does around the network (windows, upsampling) apart from the model."""

    def __init__(self, answer, num_layers: int = 2):
        super().__init__()
        self.answer, self.num_layers = answer, num_layers
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the module a device

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.answer(clip.float())


def black_filter_oracle() -> OracleNet:
    """The exact answer for ``video / 2`` (a video averaged with flat black): the video and black."""
    return OracleNet(lambda clip: torch.stack([2 * clip, torch.zeros_like(clip)], 1))


def fine_detail_shares(model, frames: torch.Tensor, max_size: int = 256, window: int = 16) -> dict[str, float]:
    """How a separation at ``max_size`` hands out the fine detail of a real video blended with flat
    black (the paper's easiest colour filter): ``frames`` ``(T, H, W, 3)`` uint8 at full resolution.

    Fine detail is what the network cannot see: ``x - upsample(downsample(x))`` at the size
    ``separate`` shrinks frames to. ``black`` is the detail energy of the layer nearest to black
    over the blend's (0 is right: black has none); ``video`` is the share of the video's own detail
    that its layer carries (projection; 1 is right).
    """
    from .separate import _network_size

    video = frames.float() / 255
    blend = (video / 2 * 255 + 0.5).to(torch.uint8)
    layers = model.separate(blend, window=window, overlap=window // 4, max_size=max_size)  # (n, T, H, W, 3)
    h, w = video.shape[1:3]
    small = _network_size(h, w, max_size)

    def fine(x: torch.Tensor) -> torch.Tensor:  # (..., T, H, W, 3) → same, high-pass
        flat = x.reshape(-1, h, w, 3).permute(0, 3, 1, 2)
        low = F.interpolate(F.interpolate(flat, size=small, mode="bilinear", antialias=True), size=(h, w), mode="bilinear")
        return (flat - low).permute(0, 2, 3, 1).reshape(x.shape)

    black_layer = int(layers.mean(dim=(1, 2, 3, 4)).argmin())
    others = [i for i in range(layers.shape[0]) if i != black_layer]
    errors = torch.stack([(layers[i] - video).abs().mean() for i in others])
    video_layer = others[int(errors.argmin())]
    fine_blend, fine_video = fine(blend.float() / 255), fine(video)
    return {"black": float(fine(layers[black_layer]).norm() / fine_blend.norm()),
            "video": float((fine(layers[video_layer]) * fine_video).sum() / fine_video.pow(2).sum()),
            "black_layer": black_layer, "video_layer": video_layer}


def seam_profile(model, pairs: torch.Tensor, window: int, overlap: int) -> dict[str, float]:
    """Is a window join visible? Blends ``pairs`` ``(N, 2, 3, T, H, W)`` (α = 0.5), separates each
    through ``Centrifuge.separate`` (the streaming path) and compares Eq. 3 per frame, with the
    layers matched once over the whole clip, on frames within 2 of a join (where two windows meet)
    and on the others. ``ratio`` near 1: no seam."""
    from .separate import window_starts, work_per_frame

    num_frames = pairs.shape[3]
    starts = window_starts(num_frames, window, overlap)
    near = torch.zeros(num_frames, dtype=torch.bool)
    for previous, current in zip(starts, starts[1:]):
        near[max(0, current - 2) : min(num_frames, previous + window + 2)] = True
    if not near.any() or near.all():
        raise ValueError(f"{num_frames} frames with window {window}: no join, or nothing but joins")
    per_frame = []
    for layers in pairs:
        blend = ((layers.mean(0) * 255 + 0.5).clamp(0, 255).to(torch.uint8)).permute(1, 2, 3, 0)  # (T, H, W, 3)
        outputs = model.separate(blend, window=window, overlap=overlap, max_size=None).permute(0, 4, 1, 2, 3)  # (n, 3, T, H, W)
        assignment = pit_loss(outputs[None], layers[None]).assignment[0]
        matched = outputs[assignment]  # (2, 3, T, H, W)
        per_frame.append(torch.stack([reconstruction_loss(matched[:, :, t : t + 1], layers[:, :, t : t + 1]).mean() for t in range(num_frames)]))
    losses = torch.stack(per_frame).mean(0)
    return {"window": window, "overlap": overlap, "frames": num_frames, "joins": len(starts) - 1,
            "near_join": float(losses[near].mean()), "elsewhere": float(losses[~near].mean()),
            "ratio": float(losses[near].mean() / losses[~near].mean()), "work_per_frame": work_per_frame(num_frames, window, overlap)}
