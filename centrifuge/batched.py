"""Training pairs made a whole batch at a time on the model's device: real clips held in memory and
the batched generator, with the layer kinds that real footage has.

- :class:`ClipBank`: a folder of videos decoded once (shortest side 1.15 × crop) into one uint8
  tensor, on the GPU when training there; the paper's augmentation (random spatio-temporal crop,
  random left-right flip) is one batched gather.
- :class:`LayerKinds`: options fixed over a clip: one layer out of focus (Gaussian σ 1–5 px), one
  layer dimmer, α from a range, blending in linear light (decode gamma 2.2, blend, encode), a real
  clip's motion shown on a photograph (:mod:`centrifuge.motion`).
- :class:`BatchedPairs`: example ``i`` of the stream is a pure function of ``(seed, i)``, so the
  global batch of a step is the same whether one process or W make it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .data import RESIZE_FACTOR, VideoFolder
from .generator import BatchedGenerator, gaussian_blur_batch, render
from .motion import backward_flows, carried_photographs, first_frame_positions
from .synthetic import JITTER_IDENTITY, LightPlan, apply_jitter, draw_focus_and_gain, draw_jitter, draw_light, render_light
from .video import read_clip

log = logging.getLogger(__name__)

GAMMA = 2.2


class ClipBank:
    """Every video of a folder decoded once into ``(V, T, H, W, 3)`` uint8 (padded to the largest)."""

    def __init__(self, folder: VideoFolder, crop_size: int, device: torch.device | str = "cpu"):
        side = round(crop_size * RESIZE_FACTOR)
        decoded = [read_clip(v.path, 0, v.num_frames, info=v, shortest_side=side) for v in folder.videos]
        self.sizes = [tuple(int(s) for s in d.shape[:3]) for d in decoded]
        t, h, w = (max(s[i] for s in self.sizes) for i in range(3))
        frames = np.zeros((len(decoded), t, h, w, 3), dtype=np.uint8)
        for i, d in enumerate(decoded):
            frames[i, : d.shape[0], : d.shape[1], : d.shape[2]] = d
        self.decoded = decoded  # kept on the CPU for textures and previews
        self.frames = torch.from_numpy(frames).to(device)
        self.crop_size = crop_size
        self.paths = [v.path for v in folder.videos]
        self.flows: torch.Tensor | None = None  # (V, T, 2, H, W) with carry_motion
        self.photos: torch.Tensor | None = None  # (P, 3, h, w) uint8 with carry_motion
        self.photo_count, self.photo_size = 0, (0, 0)

    def carry_motion(self, photos: torch.Tensor) -> None:
        """Measure every video's optical flow (:func:`~centrifuge.motion.backward_flows`) so that
        its clips can be shown on ``photos`` ``(P, 3, h, w)`` uint8 (:meth:`carried`)."""
        flows = torch.zeros(*self.frames.shape[:2], 2, *self.frames.shape[2:4])
        for v, decoded in enumerate(self.decoded):
            flows[v, : len(decoded), :, : decoded.shape[1], : decoded.shape[2]] = torch.from_numpy(backward_flows(decoded))
        self.flows, self.photos = flows.to(self.frames.device), photos.to(self.frames.device)
        self.photo_count, self.photo_size = len(photos), tuple(photos.shape[-2:])

    def __len__(self) -> int:
        return len(self.sizes)

    def planning_copy(self) -> "ClipBank":
        """A copy that plans clips but holds no frames (for worker processes)."""
        clone = copy.copy(self)
        clone.frames, clone.decoded, clone.flows, clone.photos = None, None, None, None
        return clone

    @staticmethod
    def estimate_bytes(folder: VideoFolder, crop_size: int) -> int:
        side = round(crop_size * RESIZE_FACTOR)
        total = 0
        for v in folder.videos:
            scale = side / max(1, min(v.width, v.height))
            total += v.num_frames * round(v.height * scale) * round(v.width * scale) * 3
        return total

    def plan(self, video: int, rng: np.random.Generator, num_frames: int, train: bool) -> tuple[int, np.ndarray, int, int, bool]:
        """(video, frame indices, top, left, flip) of one clip: a random start (looped forwards and
        backwards when the video is short), a random or centred crop, a random flip."""
        frames, h, w = self.sizes[video]
        c = self.crop_size
        start = int(rng.integers(0, max(0, frames - num_frames) + 1))
        times = start + np.arange(num_frames)
        if frames < num_frames:  # bounce: 0 1 2 … n−1 n−2 … 1 0 1 …
            period = max(1, 2 * frames - 2)
            times = np.arange(num_frames) % period
            times = np.where(times < frames, times, period - times)
        if train:
            top, left, flip = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1)), bool(rng.random() < 0.5)
        else:
            top, left, flip = (h - c) // 2, (w - c) // 2, False
        return video, times, top, left, flip

    def clips(self, plans: Sequence[tuple[int, np.ndarray, int, int, bool]]) -> torch.Tensor:
        """The planned clips as ``(N, 3, T, crop, crop)`` float in [0, 1], one gather."""
        device = self.frames.device
        c = self.crop_size
        video = torch.tensor([p[0] for p in plans], device=device).view(-1, 1, 1, 1)
        times = torch.from_numpy(np.stack([p[1] for p in plans])).to(device).view(len(plans), -1, 1, 1)
        offsets = torch.arange(c, device=device)
        rows = (torch.tensor([p[2] for p in plans], device=device).view(-1, 1) + offsets).view(len(plans), 1, c, 1)
        cols = torch.tensor([p[3] for p in plans], device=device).view(-1, 1) + offsets
        flips = torch.tensor([p[4] for p in plans], device=device).view(-1, 1)
        cols = torch.where(flips, cols.flip(1), cols).view(len(plans), 1, 1, c)
        gathered = self.frames[video, times, rows, cols]  # (N, T, c, c, 3)
        return gathered.permute(0, 4, 1, 2, 3).float() / 255.0

    def plan_photo(self, rng: np.random.Generator, photo: int | None = None) -> tuple[int, float, float, float]:
        """(photograph, x, y, scale) a carried clip shows: the photograph (random unless given),
        the photo pixel at the frame's top-left corner and photo pixels per frame pixel, so that a
        frame sees 60–140 % of the photograph's height."""
        photo = int(rng.integers(self.photo_count)) if photo is None else photo
        h, w = self.photo_size
        scale = float(rng.uniform(0.6, 1.4)) * h / max(size[1] for size in self.sizes)
        return photo, float(rng.uniform(0, w * 0.5)), float(rng.uniform(0, h * 0.3)), scale

    def carried(self, plans: Sequence[tuple[int, np.ndarray, int, int, bool]], photos: Sequence[tuple[int, float, float, float]]) -> torch.Tensor:
        """The planned clips' motion on the planned photographs, ``(N, 3, T, crop, crop)``."""
        device = self.flows.device
        c = self.crop_size
        video = torch.tensor([p[0] for p in plans], device=device).view(-1, 1)
        times = torch.from_numpy(np.stack([p[1] for p in plans])).to(device)
        positions = first_frame_positions(self.flows[video, times])  # (N, T, H, W, 2), whole frames
        crops = torch.stack([positions[i, :, top : top + c, left : left + c] for i, (_, _, top, left, _) in enumerate(plans)])
        origin = torch.tensor([[p[1], p[2]] for p in photos], dtype=torch.float32, device=device)
        scale = torch.tensor([p[3] for p in photos], dtype=torch.float32, device=device)
        clips = carried_photographs(self.photos[[p[0] for p in photos]], crops, origin, scale)
        flips = torch.tensor([p[4] for p in plans], device=device).view(-1, 1, 1, 1, 1)
        return torch.where(flips, clips.flip(-1), clips)


@dataclass(frozen=True)
class LayerKinds:
    """Layer kinds of real footage, each drawn once per example and fixed over its clip.

    Attributes:
        alpha: the blend's α, a number or ``(low, high)``.
        blur: probability that one layer (either) is out of focus, σ uniform in ``blur_sigma`` px.
        dim: probability that one layer is dimmer, scaled by a factor uniform in ``dim_range``.
        linear_light: blend in linear light (decode gamma 2.2, blend, encode) instead of averaging
            the encoded values.
        light: probability that one layer (either) is a light instead of a clip
            (:func:`~centrifuge.synthetic.draw_light`).
        still: probability that one layer (either) is still, one of its frames repeated.
        jitter: probability that a layer's contrast, colour balance and brightness are changed
            (:func:`~centrifuge.synthetic.draw_jitter`).
        carried: probability that a real layer keeps its clip's motion and shows a photograph
            (:meth:`ClipBank.carried`); the two such layers of a pair show one photograph.
    """

    alpha: float | tuple[float, float] = 0.5
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (1.0, 5.0)
    dim: float = 0.0
    dim_range: tuple[float, float] = (0.4, 0.9)
    linear_light: bool = False
    light: float = 0.0
    still: float = 0.0
    jitter: float = 0.0
    carried: float = 0.0

    def draw(self, rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray]:
        """α, per-layer blur σ ``(2,)`` (0: sharp) and per-layer gain ``(2,)`` of one example."""
        alpha = float(rng.uniform(*self.alpha)) if isinstance(self.alpha, (tuple, list)) else float(self.alpha)
        sigma, gain = draw_focus_and_gain(rng, self.blur, self.blur_sigma, self.dim, self.dim_range)
        return alpha, sigma, gain

    def draw_light(self, rng: np.random.Generator) -> tuple[int, LightPlan] | None:
        """Which layer of one example is a light, and the light; None (and no draw) without lights."""
        if not self.light or rng.random() >= self.light:
            return None
        return int(rng.integers(2)), draw_light(rng)

    def draw_still(self, rng: np.random.Generator) -> int | None:
        """Which layer of one example is still; None (and no draw) without still layers."""
        if not self.still or rng.random() >= self.still:
            return None
        return int(rng.integers(2))

    def draw_jitter(self, rng: np.random.Generator) -> np.ndarray | None:
        """The two layers' photometric changes ``(2, 5)``; None (and no draw) without jitter."""
        return draw_jitter(rng, self.jitter) if self.jitter else None


def blend_linear_light(layers: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 1 in linear light: ``((1 − α)·V¹^γ + α·V²^γ)^(1/γ)``, γ = 2.2 (``layers`` ``(B, 2, C, T, H, W)``)."""
    a = alpha.view(-1, 1, 1, 1, 1).to(layers.dtype)
    linear = layers.clamp(0, 1).pow(GAMMA)
    return ((1 - a) * linear[:, 0] + a * linear[:, 1]).clamp_min(0).pow(1 / GAMMA)


class BatchedPairs:
    """Pairs of clips from different videos, made on a device a batch at a time.

    Each layer of example ``i`` is a real clip of ``bank`` with probability ``real_share`` (always
    when there is no generator), else a generated one; two real layers always come from different
    videos.
    """

    def __init__(self, generator: BatchedGenerator | None, bank: ClipBank | None, real_share: float, num_frames: int,
                 crop_size: int, seed: int = 0, kinds: LayerKinds = LayerKinds(), frozen: tuple[bool, bool] = (False, False),
                 train: bool = True):
        if generator is None and bank is None:
            raise ValueError("batched pairs need a generator, a bank of real clips, or both")
        if generator is None:
            real_share = 1.0
        if bank is None:
            real_share = 0.0
        if bank is not None and real_share >= 1.0 and len(bank) < 2:
            raise ValueError(f"{bank.paths[0]}: un-mixing needs at least two different videos, this source has one")
        self.generator, self.bank, self.real_share = generator, bank, real_share
        self.num_frames, self.crop_size, self.seed = num_frames, crop_size, seed
        self.kinds, self.frozen, self.train = kinds, frozen, train

    def planner(self) -> "BatchedPairs":
        """A copy that plans batches but holds no tensor: what worker processes get when the
        batches are rendered on a GPU by the training process."""
        clone = copy.copy(self)
        clone.bank = self.bank.planning_copy() if self.bank is not None else None
        clone.generator = self.generator.planning_copy() if self.generator is not None else None
        return clone

    def examples(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Examples ``indices`` of the stream: ``layers`` ``(N, 2, 3, T, H, W)``, ``alpha`` ``(N,)`` and
        ``carried`` ``(N,)`` bool, whether a layer of the example is carried (``LayerKinds.carried``)."""
        return self.render(self.plan(indices))

    def plan(self, indices: Sequence[int]) -> "BatchPlan":
        """Every random choice of examples ``indices`` (numpy only: cheap to make in CPU worker
        processes and to send to the process that renders on the GPU)."""
        real_plans, synthetic_plans, slots, still, carried = [], [], [], [], []
        alphas, sigmas, gains, lights, stilled, jitters = [], [], [], [], [], []
        for i in indices:
            rng = np.random.default_rng([self.seed, int(i)])
            first_video, photo = None, None
            for k in range(2):
                if rng.random() < self.real_share:
                    choices = [v for v in range(len(self.bank)) if v != first_video] or [first_video]
                    video = choices[int(rng.integers(len(choices)))]
                    first_video = video if k == 0 else first_video
                    real_plans.append(self.bank.plan(video, rng, self.num_frames, self.train))
                    slots.append(("real", len(real_plans) - 1))
                    if self.kinds.carried and rng.random() < self.kinds.carried and _consecutive(real_plans[-1][1]):
                        carried.append((len(slots) - 1, self.bank.plan_photo(rng, photo)))
                        photo = carried[-1][1][0]
                else:
                    index = int(rng.integers(2**40))
                    synthetic_plans.append(self.generator.plan(index, self.num_frames, self.crop_size, self.crop_size))
                    slots.append(("synthetic", len(synthetic_plans) - 1))
                still.append(int(rng.integers(self.num_frames)) if self.train else self.num_frames // 2)
                if self.train and rng.random() < 0.5 and slots[-1][0] == "synthetic":
                    synthetic_plans[-1] = _mirrored(synthetic_plans[-1], self.crop_size)
            alpha, sigma, gain = self.kinds.draw(rng)
            light = self.kinds.draw_light(rng)
            if light is not None:
                lights.append((2 * (len(alphas)) + light[0], light[1]))
            layer = self.kinds.draw_still(rng)
            if layer is not None:
                stilled.append(2 * len(alphas) + layer)
            jitter = self.kinds.draw_jitter(rng)
            if jitter is not None:
                jitters.append((2 * len(alphas), jitter))
            alphas.append(alpha)
            sigmas.append(sigma)
            gains.append(gain)
        return BatchPlan(real_plans, synthetic_plans, slots, still, np.array(alphas, dtype=np.float32),
                         np.concatenate(sigmas).astype(np.float32), np.concatenate(gains).astype(np.float32), lights, stilled,
                         _jitter_rows(jitters, 2 * len(alphas)), carried)

    def render(self, plan: "BatchPlan") -> dict[str, torch.Tensor]:
        """Make the planned examples on the device of the bank and the generator."""
        device = (self.bank.frames if self.bank is not None else self.generator.bank).device
        rendered = {}
        if plan.real:
            rendered["real"] = self.bank.clips(plan.real)
        if plan.synthetic:
            rendered["synthetic"] = render(plan.synthetic, self.generator.bank, self.crop_size, self.crop_size)
        clips = torch.stack([rendered[kind][j] for kind, j in plan.slots])  # (2N, 3, T, H, W)
        if plan.carried:
            carried = self.bank.carried([plan.real[plan.slots[s][1]] for s, _ in plan.carried], [p for _, p in plan.carried])
            clips[[s for s, _ in plan.carried]] = carried
        for s in range(len(plan.slots)):
            if self.frozen[s % 2] or s in plan.stilled:
                clips[s] = clips[s][:, plan.still[s] : plan.still[s] + 1].clone().expand_as(clips[s])
        for s, light in plan.lights:
            clips[s] = render_light(light, *clips.shape[2:], device=device)
        clips = gaussian_blur_batch(clips, torch.from_numpy(plan.sigma).to(device)) * torch.from_numpy(plan.gain).to(device).view(-1, 1, 1, 1, 1)
        if plan.jitter is not None:
            clips = apply_jitter(clips, torch.from_numpy(plan.jitter))
        n = len(plan.alpha)
        carried = torch.zeros(n, dtype=torch.bool, device=device)
        carried[[s // 2 for s, _ in plan.carried]] = True
        return {"layers": clips.view(n, 2, *clips.shape[1:]), "alpha": torch.from_numpy(plan.alpha).to(device), "carried": carried}


@dataclass
class BatchPlan:
    """The random choices of a batch of examples, before any pixel is made."""

    real: list
    synthetic: list
    slots: list  # per layer: ("real" | "synthetic", index into that list)
    still: list  # per layer: the frame a frozen layer keeps
    alpha: np.ndarray  # (N,)
    sigma: np.ndarray  # (2N,) blur of each layer
    gain: np.ndarray  # (2N,)
    lights: list = field(default_factory=list)  # (layer slot, LightPlan) of the layers that are lights
    stilled: list = field(default_factory=list)  # slots of the layers made still (LayerKinds.still)
    jitter: np.ndarray | None = None  # (2N, 5) photometric change of each layer (LayerKinds.jitter), None without
    carried: list = field(default_factory=list)  # (layer slot, ClipBank.plan_photo) of the real layers shown on a photograph


def _consecutive(times: np.ndarray) -> bool:
    """Whether a clip's frames follow one another (a short video's bounced clip does not, and its
    motion is not carried: the flows only go backwards one frame at a time)."""
    return bool((np.diff(times) == 1).all())


def _jitter_rows(jitters: list, layers: int) -> np.ndarray | None:
    """Per-layer rows of :func:`~centrifuge.synthetic.draw_jitter` for a plan of ``layers`` layers
    (identity where none was drawn), or None when no example drew any."""
    if not jitters:
        return None
    rows = np.tile(np.array(JITTER_IDENTITY, dtype=np.float32), (layers, 1))
    for first, pair in jitters:
        rows[first : first + 2] = pair
    return rows


def _mirrored(plan, width: int):
    """A planned generated clip seen in a mirror (the paper's left-right flip): x → width − x."""
    flipped = copy.copy(plan)
    mirror = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    flipped.camera = plan.camera @ mirror
    flipped.sprites = []
    for sprite in plan.sprites:
        s = copy.copy(sprite)
        s.local = sprite.local @ mirror
        flipped.sprites.append(s)
    return flipped


class StepBatches(torch.utils.data.Dataset):
    """Item ``s`` is this process's share of step ``s``'s global batch (for a ``DataLoader`` with
    ``batch_size=None``, so CPU workers make the next batches while the model trains). With
    ``plans_only`` an item is the batch's :class:`BatchPlan`: workers plan, and the process that
    owns the GPU renders (``pairs.render``)."""

    def __init__(self, pairs: BatchedPairs, global_batch: int, rank: int = 0, world_size: int = 1, plans_only: bool = False):
        self.pairs, self.global_batch = pairs, global_batch
        self.local = global_batch // world_size
        self.rank = rank
        self.plans_only = plans_only

    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, step: int):
        first = step * self.global_batch + self.rank * self.local
        indices = range(first, first + self.local)
        return self.pairs.plan(indices) if self.plans_only else self.pairs.examples(indices)
