"""Separating real videos of any length and size: the ``Centrifuge`` API used by the CLI.

Long videos go through the network in overlapping temporal windows, streamed (decode, separate,
encode as we go), so memory does not grow with the video's length. Each window's layers are
matched to the previous window's on the shared frames (the permutation with the lowest Eq. 3 loss,
as in the training loss) and blended by how central each frame sits in its window, so a layer
never jumps to another slot mid-video. Files are read and written as their own Y'CbCr planes.

Frames larger than ``max_size`` are separated at that size and brought back by a guided filter
(:mod:`centrifuge.guided`): each layer gets the input's fine detail that its small version accounts
for, not a copy of all of it. By default (``max_size="auto"``) that size is the scale the model
trained at: frames whose shortest side is the one its training clips had (1.15 × the crop size),
where its objects have the size it learned them at (docs/results.md, "The network at its training
scale").
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import weights_exist
from .colour import ColourSpec, planes_to_rgb, planes_to_rgb_uint8, rgb_to_planes
from .data import RESIZE_FACTOR
from .devices import autocast_dtype, resolve_device, torch_threads, usable_cores, use_channels_last
from .guided import apply_coefficients, guided_coefficients, recomposing_partners
from .losses import best_assignment, pairwise_loss_matrix
from .models import CentrifugeNet, fold_batchnorm
from .video import (DEFAULT_PRESET, ENCODER_PRESETS, BackgroundWriter, VideoError, VideoWriter, copy_browser_playable, first_colour, iter_planes,
                    mux_audio, probe)

log = logging.getLogger(__name__)

# Frames per window and frames shared by consecutive windows (see ``Centrifuge.separate_planes``):
# a 64-frame clip is one window (work 1.0 per output frame), a long video costs 64/56 = 1.14; no seam
# was measurable at 32 or 64 (docs/results.md, "Windows").
DEFAULT_WINDOW, DEFAULT_OVERLAP = 64, 8
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
AUTO = "auto"  # max_size: the model's training scale (Centrifuge.network_max_size)
FALLBACK_MAX_SIZE = 256  # max_size "auto" for a model whose training crop size is not recorded
DEFAULT_MODEL = "default"
PREVIEW_SOURCE_SIZE = 384  # preview frames are made at most this large, twice the grid's tiles (report.preview_grid)


class SeparationError(Exception):
    """A separation job that cannot run (bad model path, output exists, unwritable folder…)."""


def available_models() -> list[str]:
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def model_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """The file or folder a model name stands for: a bundled model's ``.safetensors`` (``None``: the
    default), else the path as given, which must exist."""
    name_or_path = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    bundled = PRETRAINED_DIR / f"{name_or_path}.safetensors"
    path = bundled if bundled.exists() else Path(name_or_path)
    if not weights_exist(path):  # a file or folder, or a sharded model's index
        known = ", ".join(available_models()) or "none"
        raise SeparationError(f"{name_or_path}: no such model file or folder (bundled models: {known})")
    return path


class Centrifuge:
    """A trained centrifuge network, ready to separate videos.

    Example:
        >>> model = Centrifuge.from_pretrained()            # the bundled default model
        >>> layers = model.separate(torch.rand(8, 40, 50, 3))
        >>> layers.shape[1:]
        torch.Size([8, 40, 50, 3])
    """

    def __init__(self, net: CentrifugeNet, name: str = "custom", precision: str = "auto", training_crop: int | None = None):
        # BatchNorm folded into the convolutions: the same layers, 8-13 % faster (centrifuge bench --levers).
        self.net = fold_batchnorm(net.eval())
        self.name = name
        self.training_crop = training_crop  # the crop size it trained at, if known: sets max_size "auto"
        self.amp_dtype = autocast_dtype(self.device, precision)
        if use_channels_last(self.device, self.amp_dtype):
            self.net = self.net.to(memory_format=torch.channels_last_3d)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, device: str = "auto") -> "Centrifuge":
        """Load the bundled model (``None`` or a bundled name) or a checkpoint folder, run folder or
        ``.safetensors`` file written by ``centrifuge train``. Weights load without pickle."""
        from .checkpoint import CheckpointError
        from .train import TrainingError, load_trained_model, model_meta

        name_or_path = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
        path = model_path(name_or_path)
        try:
            net = load_trained_model(path, device=resolve_device(device))
            crop = (model_meta(path).get("train_config") or {}).get("crop_size")
        except (CheckpointError, TrainingError, KeyError, RuntimeError, OSError, ValueError) as e:
            raise SeparationError(f"{name_or_path}: cannot load the model ({str(e).splitlines()[0][:200]})") from None
        return cls(net, name=name_or_path, training_crop=crop if isinstance(crop, int) and crop > 0 else None)

    def network_max_size(self, height: int, width: int, max_size: int | str | None = AUTO) -> int | None:
        """The longest side the network sees for ``height`` × ``width`` frames: ``max_size`` as
        given (None or 0: full resolution), or for ``"auto"`` the training scale: the longest side
        at which the shortest is ``round(1.15 × crop)``, as the model's training clips were cut
        (256 when the crop size is unknown). Frames already smaller are not enlarged."""
        if max_size != AUTO:
            return max_size or None
        if self.training_crop is None:
            return FALLBACK_MAX_SIZE
        short = round(self.training_crop * RESIZE_FACTOR)
        return max(short, round(max(height, width) * short / min(height, width)))

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def num_layers(self) -> int:
        return self.net.num_layers

    @torch.inference_mode()
    def separate_window(self, frames: torch.Tensor, max_size: int | str | None = None) -> torch.Tensor:
        """Separate one window: ``(T, H, W, 3)`` float in [0, 1] → ``(n, T, H, W, 3)`` (unclamped)."""
        planes = frames.to(torch.float32).permute(3, 0, 1, 2)  # (3, T, H, W), RGB
        window = self._run_window([planes[:, t] for t in range(planes.shape[1])], None, max_size)
        window.prepare(torch.arange(self.num_layers))
        out = torch.stack([window.synthesise(t, [planes[c, t] for c in range(3)]) for t in range(planes.shape[1])], 1)
        return out.permute(0, 1, 3, 4, 2)  # (n, T, 3, H, W) → (n, T, H, W, 3)

    def _run_window(self, frames: Sequence[Sequence[torch.Tensor]], colour: ColourSpec | None, max_size: int | None,
                    stats: "SeparationStats | None" = None, network_threads: int | None = None) -> "_Window":
        """The network on one window of frames, each three planes ``(H_p, W_p)``, uint8 or float
        in code value / 255 (RGB when ``colour`` is None, else Y'CbCr with smaller chroma). Returns
        the window's small RGB layers and, per frame, what brings them to full resolution.
        ``network_threads``: torch's threads for the network alone (default: as set)."""
        stats = stats or SeparationStats()
        started = time.perf_counter()
        h, w = frames[0][0].shape[-2:]
        small_size = _network_size(h, w, self.network_max_size(h, w, max_size))
        # A few frames at a time: a full-HD window never exists as one full-size tensor.
        chunks = [frames[i : i + 8] for i in range(0, len(frames), 8)]
        small = torch.stack([torch.cat([_resize(torch.stack([f[c] for f in chunk]), small_size) for chunk in chunks]) for c in range(3)])
        rgb = planes_to_rgb(small, colour).clamp(0, 1)
        # The guide of the fit is what the network saw (a resized Y'CbCr pixel can fall outside the
        # RGB cube): then the two layers of a pair recompose the guide exactly and so, at full
        # resolution, the input (see guided.recomposing_partners).
        guide = rgb_to_planes(rgb, colour)
        rgb = rgb.to(self.device).unsqueeze(0)
        if use_channels_last(self.device, self.amp_dtype):
            rgb = rgb.contiguous(memory_format=torch.channels_last_3d)
        stats.add("resize", started)
        started = time.perf_counter()
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None), \
                torch_threads(network_threads):
            layers_rgb = self.net(rgb).float()[0]  # (n, 3, T, h', w')
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        stats.add("network", started)
        return _Window(layers_rgb.cpu(), guide, colour, full_size=small_size == (h, w))

    def separate_stream(self, frames: Iterable[np.ndarray], window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP,
                        max_size: int | str | None = AUTO) -> Iterator[np.ndarray]:
        """Separate a stream of ``(H, W, 3)`` uint8 RGB frames; yields ``(n, H, W, 3)`` float32 layer
        frames in [0, 1], one per input frame, in order. Memory holds about two windows."""
        planes = (torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in frames)
        for layer_planes in self.separate_planes(planes, None, window, overlap, max_size):
            yield torch.stack(layer_planes, -1).div_(255).clamp_(0, 1).numpy()

    @torch.inference_mode()
    def separate_planes(self, frames: Iterable[Sequence[torch.Tensor]], colour: ColourSpec | None, window: int = DEFAULT_WINDOW,
                        overlap: int = DEFAULT_OVERLAP, max_size: int | str | None = AUTO, stats: "SeparationStats | None" = None,
                        select: Callable[[np.ndarray], Sequence[int]] | None = None, network_threads: int | None = None,
                        deferred: bool = False) -> Iterator[list[torch.Tensor]] | Iterator["PendingFrame"]:
        """The streaming core: frames as three uint8 planes (RGB when ``colour`` is None, else the
        file's Y'CbCr, chroma at half size) → per frame, three float planes ``(n, H_p, W_p)`` in code
        values (0-255), unclamped.

        Windows start every ``window - overlap`` frames and the last one is the video's last
        ``window`` frames, so every window has its full temporal context. A frame covered by several
        windows is their weighted mean, each window weighing its frames by how central they sit in
        it (a triangle), after each window's layers were put in the order that best continues the
        previous window's on the frames they share (matched at the network's size).

        ``select``, given the first window's ``(n, n)`` layer distances, names the layers to bring
        to full resolution (default: all); the others cost nothing more. ``network_threads``:
        torch's threads for the network, when the per-pixel work runs on fewer (see ``separate_file``).
        ``deferred``: yield each frame as a :class:`PendingFrame`, whose layers the caller makes
        where it likes (``separate_file``: each on its encoder's thread).
        """
        if window < 1 or overlap < 0 or overlap >= window:
            raise ValueError("need window ≥ 1 and 0 ≤ overlap < window")
        stats = stats if stats is not None else SeparationStats()
        iterator = iter(frames)
        held: dict[int, Sequence[torch.Tensor]] = {}  # input frames not yet emitted or still needed
        sums: dict[int, list] = {}  # frame → [weight, weighted recipe]
        loaded, exhausted, start, covered = 0, False, 0, 0
        previous: torch.Tensor | None = None  # the last window's small RGB layers, every other pixel
        next_out = 0
        keep: torch.Tensor | None = None
        while True:
            while not exhausted and loaded < start + window:
                began = time.perf_counter()
                frame = next(iterator, None)
                stats.add("decode", began)
                if frame is None:
                    exhausted = True
                else:
                    held[loaded] = frame
                    loaded += 1
                    # A finished frame out for every frame read, so that the caller (the encoders)
                    # works while the next window is read. No later window reaches below
                    # ``start``, nor, should the video end now, below ``loaded - window``.
                    if next_out < min(start, loaded - window):
                        yield self._emit(held.pop(next_out), sums.pop(next_out), stats, deferred)
                        next_out += 1
            if exhausted:
                if loaded == 0 or covered >= loaded:
                    break
                start = max(0, loaded - window)
            end = min(start + window, loaded)
            while next_out < start:  # no later window reaches these frames
                yield self._emit(held.pop(next_out), sums.pop(next_out), stats, deferred)
                next_out += 1
            result = self._run_window([held[t] for t in range(start, end)], colour, max_size, stats, network_threads)
            began = time.perf_counter()
            if previous is not None:
                shared = max(1, covered - start)
                # Every other pixel is plenty to tell layers apart, at a quarter of the cost.
                result.reorder(_match_layers(previous[:, :, -shared:], result.layers_rgb[:, :, :shared, ::2, ::2]))
            previous = result.layers_rgb[:, :, :, ::2, ::2].clone()
            stats.distance += _distance_matrix(result.layers_rgb[:, :, :, ::2, ::2])
            if keep is None:
                keep = torch.as_tensor(list(select(np.asarray(stats.distance)) if select else range(result.layers_rgb.shape[0])))
            stats.add("match", began)
            began = time.perf_counter()
            result.prepare(keep)
            stats.add("upsample", began)
            for k, weight in enumerate(_triangle(end - start)):
                entry = sums.setdefault(start + k, [0.0, None])
                entry[0] += weight
                entry[1] = result.recipe(k, weight, entry[1])
            covered = end
            del result  # its tensors live on in the recipes' copies only: one window in memory at a time
            if exhausted and covered >= loaded:
                break
            start += window - overlap
        while next_out < loaded:
            yield self._emit(held.pop(next_out), sums.pop(next_out), stats, deferred)
            next_out += 1

    def _emit(self, frame: Sequence[torch.Tensor], entry: list, stats: "SeparationStats", deferred: bool = False) -> "list[torch.Tensor] | PendingFrame":
        weight, recipe = entry
        pending = PendingFrame(recipe, weight, frame)
        if deferred:
            return pending
        began = time.perf_counter()
        out = pending.layers()
        stats.add("upsample", began)
        return out

    def separate(self, video: torch.Tensor | np.ndarray, window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP, max_size: int | None = None) -> torch.Tensor:
        """Separate a whole video held in memory.

        Args:
            video: ``(T, H, W, 3)``, float in [0, 1] or uint8; any T ≥ 1 and H, W ≥ 1.
        Returns:
            ``(n, T, H, W, 3)`` float in [0, 1].
        """
        video = torch.as_tensor(video)
        if video.dim() != 4 or video.shape[-1] != 3:
            raise ValueError(f"video must be (T, H, W, 3), got {tuple(video.shape)}")
        if video.dtype != torch.uint8:
            video = (video.float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
        frames = (f.numpy() for f in video)
        return torch.from_numpy(np.stack(list(self.separate_stream(frames, window, overlap, max_size)), axis=1))


@dataclass
class SeparationStats:
    """Where a separation's time went (seconds per stage) and how far apart its layers are."""

    seconds: dict = field(default_factory=dict)
    distance: np.ndarray | float = 0.0

    def add(self, stage: str, since: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - since


def window_starts(num_frames: int, window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP) -> list[int]:
    """Where :meth:`Centrifuge.separate_planes` starts its windows on a video of ``num_frames``:
    every ``window - overlap`` frames, the last one on the last ``window`` frames."""
    starts, start = [], 0
    while True:
        starts.append(max(0, min(start, num_frames - window)))
        if starts[-1] + window >= num_frames:
            return starts
        start += window - overlap


def work_per_frame(num_frames: int, window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP) -> float:
    """Frames the network computes per output frame."""
    return sum(min(window, num_frames - s) for s in window_starts(num_frames, window, overlap)) / num_frames


def _network_size(h: int, w: int, max_size: int | None) -> tuple[int, int]:
    if max_size and max(h, w) > max_size:
        scale = max_size / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    return h, w


def _resize(plane: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(T, H, W)`` uint8 or float → float ``(T, *size)`` in code value / 255: antialiased when
    shrinking (uint8 planes shrink before they become floats: far less memory at full HD),
    bilinear when growing (chroma brought to the luma size)."""
    shrink = size[0] < plane.shape[-2] or size[1] < plane.shape[-1]
    if plane.dtype == torch.uint8 and not shrink:
        plane = plane.float().div_(255)
    if tuple(plane.shape[-2:]) != tuple(size):
        plane = F.interpolate(plane.unsqueeze(1), size=size, mode="bilinear", antialias=shrink, align_corners=False).squeeze(1)
    return plane.float().div_(255) if plane.dtype == torch.uint8 else plane


def _triangle(length: int) -> torch.Tensor:
    """Each frame's weight in its window: highest in the middle, lowest (never zero) at the edges."""
    k = torch.arange(length, dtype=torch.float32)
    return torch.minimum(k + 1, length - k)


def _distance_matrix(layers: torch.Tensor) -> np.ndarray:
    """Mean absolute difference between every two layers ``(n, …)``."""
    flat = layers.reshape(layers.shape[0], -1)
    return torch.cdist(flat, flat, p=1).numpy() / flat.shape[1]


class _Window:
    """One window's answer: its small RGB layers (for matching) and, once :meth:`prepare` chose the
    layers to keep, a recipe per frame for their full-resolution planes: guided coefficients
    ``(a, b)`` at the small size, or, when the network saw every pixel, the layers themselves."""

    def __init__(self, layers_rgb: torch.Tensor, small_input: torch.Tensor, colour: ColourSpec | None, full_size: bool):
        self.layers_rgb, self.small_input, self.colour, self.full_size = layers_rgb, small_input, colour, full_size
        self.a = self.b = self.direct = None
        self.partners: dict[int, int] = {}  # kept layer j → i where j = 2 · input − i

    def reorder(self, order: torch.Tensor) -> None:
        self.layers_rgb = self.layers_rgb[order]

    def prepare(self, keep: torch.Tensor) -> None:
        """Compute the recipes of the ``keep`` layers, in code values (0-255) so that full-size
        frames go in and out as bytes without a division or multiplication per pixel."""
        layers = rgb_to_planes(self.layers_rgb[keep], self.colour)
        if self.full_size:
            self.direct = layers * 255
        else:
            self.a, self.b = guided_coefficients(self.small_input.cpu(), layers)
            self.b = self.b * 255
            self.partners = recomposing_partners(layers, self.small_input.cpu())

    def recipe(self, t: int, weight: float, total: tuple | None) -> tuple:
        """Frame ``t``'s recipe times ``weight``, added to ``total``."""
        if self.direct is not None:
            mine = ("direct", self.direct[:, :, t] * weight)
        else:
            mine = ("guided", self.a[:, :, t] * weight, self.b[:, :, t] * weight, self.partners)
        if total is None:
            return mine
        if mine[0] == "direct":
            return (mine[0], total[1] + mine[1])
        shared = {j: i for j, i in mine[3].items() if total[3].get(j) == i}  # a pair in every window
        return (mine[0], total[1] + mine[1], total[2] + mine[2], shared)

    def synthesise(self, t: int, planes: Sequence[torch.Tensor]) -> torch.Tensor:
        """Frame ``t``'s layers ``(n, 3, H, W)`` in [0, 1] (unclamped) from its planes in [0, 1]."""
        return torch.stack(self.synthesise_recipe(self.recipe(t, 1.0, None), 1.0, [p * 255 for p in planes]), 1) / 255

    @staticmethod
    def synthesise_recipe(recipe: tuple, weight: float, planes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Full-resolution layer planes ``(n, H_p, W_p)`` in code values (0-255, unclamped) from a
        weighted recipe and the frame's planes (code values, uint8 or float)."""
        planes = [p.float() for p in planes]
        if recipe[0] == "direct":
            small = recipe[1] / weight  # (n, 3, H, W) at the luma size
            return [_resize(small[:, c], tuple(p.shape[-2:])) for c, p in enumerate(planes)]
        a, b, partners = recipe[1] / weight, recipe[2] / weight, recipe[3]  # (n, 3, h, w)
        n = a.shape[0]
        own = [k for k in range(n) if k not in partners]
        a, b = a[own], b[own]
        out = [torch.empty((n, *p.shape[-2:])) for p in planes]  # per plane, every layer
        if all(p.shape == planes[0].shape for p in planes):
            made = apply_coefficients(a, b, torch.stack(list(planes)))
            for c in range(3):
                out[c][own] = made[:, c]
        else:  # 4:2:0: luma, then the two chroma planes at their own size
            if own == list(range(len(own))):  # the usual case: write straight into the outputs
                apply_coefficients(a[:, :1], b[:, :1], planes[0].unsqueeze(0), out=out[0][: len(own)].unsqueeze(1))
            else:
                out[0][own] = apply_coefficients(a[:, :1], b[:, :1], planes[0].unsqueeze(0))[:, 0]
            chroma = apply_coefficients(a[:, 1:], b[:, 1:], torch.stack(list(planes[1:])))
            out[1][own], out[2][own] = chroma[:, 0], chroma[:, 1]
        for j, i in partners.items():
            for c in range(3):
                torch.sub(planes[c], out[c][i], out=out[c][j]).add_(planes[c])
        return out


@dataclass
class PendingFrame:
    """One frame's layers before they are brought to full resolution: its weighted recipe and its
    planes (uint8 or float code values). :meth:`layer` makes one layer and may run on any thread,
    beside the others: ``separate_file`` makes each layer on the thread that encodes it, so that
    this per-pixel work does not queue behind the network on one core."""

    recipe: tuple
    weight: float
    planes: Sequence[torch.Tensor]

    def layers(self) -> list[torch.Tensor]:
        """Every layer: per plane ``(n, H_p, W_p)``, code values, unclamped."""
        return _Window.synthesise_recipe(self.recipe, self.weight, self.planes)

    def layer(self, k: int, offset: float = 0.0) -> list[torch.Tensor]:
        """Layer ``k`` alone: three planes ``(H_p, W_p)``, plus ``offset`` (added at the small
        size: 0.5 makes a cast to bytes round, without a pass over the full frame). A layer that
        the pair's other one recomposes (``j = 2 · input − i``) is fitted on its own here, with
        ``(2 − a_i, −b_i)``: the same planes to float rounding, without waiting for ``i``."""
        shift = offset * self.weight  # the recipe is a weighted sum
        if self.recipe[0] == "direct":
            single = ("direct", self.recipe[1][k : k + 1] + shift)
        else:
            _, a, b, partners = self.recipe
            if k in partners:
                i = partners[k]
                single = ("guided", 2 * self.weight - a[i : i + 1], shift - b[i : i + 1], {})
            else:
                single = ("guided", a[k : k + 1], b[k : k + 1] + shift, {})
        return [p[0] for p in _Window.synthesise_recipe(single, self.weight, self.planes)]


def _farthest_pair(distance: np.ndarray) -> tuple[int, int]:
    """The two layers with the largest entry of a symmetric ``(n, n)`` distance matrix, ``i < j``."""
    n = distance.shape[0]
    i, j = np.unravel_index(np.argmax(distance + np.tril(np.full((n, n), -np.inf))), distance.shape)
    return int(min(i, j)), int(max(i, j))


def _match_layers(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """The order of ``current``'s layers that best continues ``previous`` (Eq. 3 distance).

    previous, current: ``(n, 3, K, h, w)`` on the shared frames. Returns ``(n,)`` indices.
    """
    k = min(previous.shape[2], current.shape[2])
    costs = pairwise_loss_matrix(current[:, :, :k].unsqueeze(0), previous[:, :, -k:].unsqueeze(0))  # (1, n current, n previous)
    return best_assignment(costs)[0]


def most_distant_pair(layers: torch.Tensor) -> tuple[int, int]:
    """The two layers farthest apart in pixel space (the paper's test-time choice): ``layers`` is
    ``(n, …)``; returns ``(i, j)`` with i < j."""
    from .losses import most_distant_pair as _pair

    return _pair(layers)


# --------------------------------------------------------------------------- files and reports

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(path: str | os.PathLike) -> str:
    """A folder name from a file's stem: unsafe characters replaced, no leading dot or dash."""
    stem = _UNSAFE.sub("_", Path(path).stem).strip("._-")
    return stem or "video"


@dataclass
class SeparationReport:
    input: str
    folder: Path
    frames: int
    seconds: float
    pair: tuple[int, int]


def _preview_times(num_frames: int, count: int = 4) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, max(0, num_frames - 1), count)})


def separate_file(
    model: Centrifuge,
    path: str | os.PathLike,
    out_root: str | os.PathLike,
    all_layers: bool = False,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    max_size: int | str | None = AUTO,
    force: bool = False,
    progress: bool = True,
    encoder_preset: str = DEFAULT_PRESET,
) -> SeparationReport:
    """Separate one video file into ``out_root/<stem>/``: layer1.mp4, layer2.mp4 (the most distant
    pair), optional layers/, preview.png, index.html, info.json. The input is only read.
    ``encoder_preset`` is the x264 preset for every video written (``balanced``: about veryfast's
    files at half its encoding time; ``ultrafast``: faster, larger files)."""
    from .report import write_html, write_preview

    if encoder_preset not in ENCODER_PRESETS:
        raise SeparationError(f"encoder preset must be one of {', '.join(ENCODER_PRESETS)}, not {encoder_preset!r}")
    path = Path(path)
    info = probe(path)
    max_size = model.network_max_size(info.height, info.width, max_size)  # recorded in info.json as a number
    out_root = Path(out_root)
    folder = (out_root / safe_stem(path)).resolve()
    if out_root.resolve() not in folder.parents:
        raise SeparationError(f"{path}: output would leave {out_root}")
    if folder.exists() and not force:
        raise SeparationError(f"{folder} exists; use --force to overwrite it")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        work = Path(out_root.resolve() / f".{folder.name}.partial")
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    except OSError as e:
        raise SeparationError(f"{out_root}: cannot write there ({e.strerror})") from None

    n = model.num_layers
    colour = first_colour(path, info)
    # Each output is encoded on a thread of its own (x264 releases the GIL), overlapping the network.
    # Without --all-layers only the pair is brought to full resolution and encoded: the two layers
    # farthest apart on the first window (later windows are matched to it, so the slots hold).
    names = [f"layers/layer{i + 1}.mp4" for i in range(n)] if all_layers else [".pair1.mp4", ".pair2.mp4"]
    if all_layers:
        (work / "layers").mkdir()
    # The input beside the layers, for the page: copied when a browser plays it as it is (H.264
    # 4:2:0, the usual case: one encoder fewer), else re-encoded as the frames go by.
    input_copied = copy_browser_playable(path, work / "input.mp4", info)
    threads = encoder_threads(len(names) + (not input_copied))

    def writer(name: str) -> BackgroundWriter:
        return BackgroundWriter(VideoWriter(work / name, fps=info.fps, colour=colour, preset=encoder_preset, threads=threads))

    writers = [writer(name) for name in names]
    input_writer = None if input_copied else writer("input.mp4")
    times = _preview_times(info.num_frames)
    preview_inputs, preview_layers = {}, {}
    stats = SeparationStats()
    chosen: list[tuple[int, int]] = []

    def choose(distance: np.ndarray) -> Sequence[int]:
        chosen.append(_farthest_pair(distance))
        return range(n) if all_layers else chosen[0]

    started = time.time()
    count = 0
    bar = None
    network_threads = torch.get_num_threads()
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=info.num_frames, unit="frame", desc=path.name[:30], dynamic_ncols=True)
    try:
        # The per-pixel work takes an encoder's share of the cores, the network all of them:
        # torch's second thread on a core that x264 holds costs more CPU than it saves. Each layer
        # is brought to full resolution on the thread that encodes it: the main thread reads,
        # resizes and runs the network, and the per-pixel work runs beside it (720p on 2 cores:
        # the main thread had 20 of a frame's 40-50 ms of CPU, and set the pace).
        source = _recording(iter_planes(path, info), preview_inputs, set(times), input_writer)
        with torch_threads(threads):
            for pending in model.separate_planes(source, colour, window, overlap, max_size, stats, select=choose,
                                                 network_threads=network_threads, deferred=True):
                began = time.perf_counter()
                kept = preview_layers.setdefault(count, {}) if count in times else None
                for k, writer in enumerate(writers):
                    writer.write_made(functools.partial(_layer_bytes, pending, k, threads, kept))
                stats.add("encode_wait", began)
                count += 1
                if bar is not None:
                    bar.update(1)
        if count == 0:
            raise VideoError(f"{path}: no frame could be decoded")
        began = time.perf_counter()
        for w in writers + [input_writer] * (input_writer is not None):
            w.close()
        stats.add("encode_wait", began)
    except BaseException:
        for w in writers + [input_writer] * (input_writer is not None):
            w.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    stats.seconds["encode_threads"] = sum(w.busy - w.making for w in writers + [input_writer] * (input_writer is not None))
    stats.seconds["upsample_threads"] = sum(w.making for w in writers)
    if count < info.num_frames:
        log.warning("%s: the stream broke after %d of %d frames; separated what decoded", path, count, info.num_frames)
    elapsed = time.time() - started
    pair = chosen[0]
    for rank, index in enumerate(pair):
        target = work / f"layer{rank + 1}.mp4"
        source_file = work / (f"layers/layer{index + 1}.mp4" if all_layers else f".pair{rank + 1}.mp4")
        if info.has_audio:
            mux_audio(source_file, path, target)
        else:
            shutil.copyfile(source_file, target)
        if not all_layers:
            source_file.unlink()
    kept = sorted(preview_layers)
    inputs = [planes_to_rgb_uint8([torch.from_numpy(p) for p in preview_inputs[t]], colour, PREVIEW_SOURCE_SIZE) for t in kept]
    layers = [planes_to_rgb_uint8([torch.from_numpy(np.stack([preview_layers[t][k][c] for k in range(len(writers))])) for c in range(3)],
                                  colour, PREVIEW_SOURCE_SIZE) for t in kept]
    write_preview(work / "preview.png", inputs, layers, pair if all_layers else (0, 1), kept)
    payload = {
        "input": str(path), "model": model.name, "num_layers": n, "pair": list(pair), "frames": count,
        "fps": info.fps, "width": info.width, "height": info.height, "window": window, "overlap": overlap,
        "max_size": max_size, "device": str(model.device), "seconds": round(elapsed, 3),
        "frames_per_second": round(count / max(elapsed, 1e-9), 3), "colour": colour.to_dict(),
        "pair_over_whole_video": list(_farthest_pair(np.asarray(stats.distance))), "input_copied": input_copied,
        "encoder_preset": encoder_preset,
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stats.seconds.items())},
    }
    (work / "info.json").write_text(json.dumps(payload, indent=2))
    write_html(work / "index.html", input_name=path.name, layer_files=["layer1.mp4", "layer2.mp4"], info=payload, input_file="input.mp4")
    if folder.exists():
        shutil.rmtree(folder)
    work.rename(folder)
    return SeparationReport(input=str(path), folder=folder, frames=count, seconds=elapsed, pair=pair)


def _layer_bytes(pending: PendingFrame, k: int, threads: int, keep: dict | None) -> list[np.ndarray]:
    """Layer ``k`` of a frame as uint8 planes for its encoder (run on the encoder's thread), kept
    in ``keep`` too when the preview wants this frame."""
    with torch.inference_mode(), torch_threads(threads):
        # +0.5 then truncation: rounding. In place: the planes are this layer's own. numpy's float →
        # uint8 cast is a seventh of torch's time at 720p.
        planes = [p.clamp_(0, 255).numpy().astype(np.uint8) for p in pending.layer(k, offset=0.5)]
    if keep is not None:
        keep[k] = planes
    return planes


def encoder_threads(encoders: int, cores: int | None = None) -> int:
    """Threads for each of ``encoders`` x264 encoders running beside the network, and for the
    per-pixel work around it: the cores shared out in ``encoders + 1`` parts, at least one each.
    x264's own choice (1.5 threads per core, frame-parallel) costs 15 % more CPU a frame, which on
    a few cores the network then waits for (720p on 2 cores: 9.7 → 8.2 ms of CPU per layer frame)."""
    return max(1, (usable_cores() if cores is None else cores) // (encoders + 1))


def _recording(frames: Iterable[tuple], store: dict, wanted: set[int], writer: "BackgroundWriter | None") -> Iterator[list[torch.Tensor]]:
    """Pass ``iter_planes`` frames through as tensors, keeping those at the preview times and
    re-encoding each for the page when a writer is given."""
    for index, (planes, _) in enumerate(frames):
        if index in wanted:
            store[index] = planes
        if writer is not None:
            writer.write_planes(*planes)
        yield [torch.from_numpy(p) for p in planes]


def separate_files(model: Centrifuge, inputs: Sequence[str], out_root: str, progress: bool = True, **options) -> list[str]:
    """Separate several files; a bad input is reported in one line and the others go on.
    Returns the inputs that failed."""
    failures = []
    for index, path in enumerate(inputs):
        try:
            report = separate_file(model, path, out_root, progress=progress, **options)
            print(f"{path}: {report.frames} frames in {report.seconds:.1f} s "
                  f"({report.frames / max(report.seconds, 1e-9):.1f} frames/s) -> {report.folder}/index.html")
        except (VideoError, SeparationError) as e:
            print(f"centrifuge: error: {e}", file=sys.stderr)
            failures.append(path)
    done = len(inputs) - len(failures)
    print(f"separated {done} of {len(inputs)} video(s) into {out_root}")
    return failures
