"""Clip data sets, augmentation, blending (Eq. 1), and the frozen and pure-colour variants.

Layout: a clip is ``(C, T, H, W)`` float in [0, 1]; a data set item holds the separate layers
``(k, C, T, H, W)``. Blending happens in the training step (:func:`blend_layers`), so the mixing rule
lives in one place and α can change without touching data code.

Every random choice an item makes comes from a generator seeded by ``(seed, epoch, index)``, so an
item is the same whichever worker builds it and a resumed run sees exactly the data it would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .generator import gaussian_blur_batch
from .synthetic import SyntheticConfig, apply_jitter, draw_focus_and_gain, draw_jitter, draw_light, photo_bank, render_light, synthetic_video
from .video import VideoError, VideoInfo, find_videos, probe, read_clip

log = logging.getLogger(__name__)

# The eight filter colours of the paper's Fig. 4, as RGB in [0, 1].
PAPER_COLORS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "yellow": (1.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
}

RESIZE_FACTOR = 1.15  # section 4: the shortest side is resized to 1.15 × the crop size


# --------------------------------------------------------------------------- augmentation


def to_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 (or float in [0, 1]) → ``(3, T, H, W)`` float32 in [0, 1]."""
    frames = torch.as_tensor(frames)
    if frames.dtype == torch.uint8:
        frames = frames.float() / 255.0
    return frames.float().permute(3, 0, 1, 2).contiguous()


def to_frames(clip: torch.Tensor) -> np.ndarray:
    """``(3, T, H, W)`` float in [0, 1] → ``(T, H, W, 3)`` uint8."""
    return (clip.detach().float().clamp(0, 1).permute(1, 2, 3, 0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def resize_shortest_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(C, T, H, W)`` so that min(H, W) == ``size``, keeping the aspect ratio (antialiased)."""
    _, _, h, w = clip.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) == (h, w):
        return clip
    frames = clip.permute(1, 0, 2, 3)  # T as batch
    frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=new_h < h)
    return frames.permute(1, 0, 2, 3).clamp(0, 1)


def crop(clip: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return clip[:, :, top : top + size, left : left + size]


def random_crop(clip: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    _, _, h, w = clip.shape
    return crop(clip, int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), size)


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    _, _, h, w = clip.shape
    return crop(clip, (h - size) // 2, (w - size) // 2, size)


def augment_clip(clip: torch.Tensor, crop_size: int, train: bool, rng: np.random.Generator | None = None) -> torch.Tensor:
    """Section 4's augmentation: shortest side to 1.15 × crop, then a random crop and a random
    left-right flip (training), or a centre crop (evaluation)."""
    clip = resize_shortest_side(clip, round(crop_size * RESIZE_FACTOR))
    if not train:
        return center_crop(clip, crop_size).contiguous()
    assert rng is not None, "training augmentation needs a generator"
    clip = random_crop(clip, crop_size, rng)
    if rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip.contiguous()


def zoomed_crop(clip: torch.Tensor, crop_size: int, zoom: float, rng: np.random.Generator) -> torch.Tensor:
    """A random training crop at a magnification drawn log-uniformly in [1, ``zoom``] of the
    paper's view (shortest side 1.15 × crop), then the random flip. ``clip`` is decoded larger
    (shortest side up to ``zoom`` × 1.15 × crop); a window of ``crop_size`` × its scale ÷ the
    magnification is brought to ``crop_size`` (antialiased). Never magnified past the decoded
    pixels: a small source gets less zoom, not upsampled blur. At 1 it sees what
    :func:`augment_clip` sees."""
    _, _, h, w = clip.shape
    scale = min(h, w) / (crop_size * RESIZE_FACTOR)  # decoded pixels per pixel of the paper's view
    magnification = float(np.exp(rng.uniform(0.0, np.log(max(1.0, min(zoom, scale))))))
    window = min(h, w, max(crop_size, round(crop_size * scale / magnification)))
    clip = random_crop(clip, window, rng)
    if window != crop_size:
        frames = F.interpolate(clip.permute(1, 0, 2, 3), size=(crop_size, crop_size), mode="bilinear", align_corners=False,
                               antialias=True)
        clip = frames.permute(1, 0, 2, 3).clamp(0, 1)
    if rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip.contiguous()


def fit_length(frames: np.ndarray, length: int) -> np.ndarray:
    """Loop a too-short clip (forwards then backwards) until it has ``length`` frames."""
    if len(frames) >= length:
        return frames[:length]
    if len(frames) == 1:
        return np.repeat(frames, length, axis=0)
    bounce = np.concatenate([frames, frames[-2:0:-1]])
    reps = -(-length // len(bounce))
    return np.concatenate([bounce] * reps)[:length]


# --------------------------------------------------------------------------- variants


def freeze_clip(clip: torch.Tensor, frame: int | None = None) -> torch.Tensor:
    """A clip without motion: one frame (the middle one by default) repeated T times (Table 3)."""
    t = clip.shape[1]
    frame = t // 2 if frame is None else frame
    return clip[:, frame : frame + 1].expand_as(clip).contiguous()


def color_clip(color: str | Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """A pure-colour clip shaped like ``like`` ``(C, T, H, W)``: a "filter" layer of Fig. 4."""
    rgb = PAPER_COLORS[color] if isinstance(color, str) else tuple(color)
    value = torch.tensor(rgb, dtype=like.dtype, device=like.device).view(3, 1, 1, 1)
    return value.expand_as(like).contiguous()


# --------------------------------------------------------------------------- blending (Eq. 1)


def sample_alpha(batch: int, alpha: float | tuple[float, float], generator: torch.Generator | None = None) -> torch.Tensor:
    """α per example: fixed, or uniform in ``(low, high)``."""
    if isinstance(alpha, (tuple, list)):
        low, high = alpha
        return low + (high - low) * torch.rand(batch, generator=generator)
    return torch.full((batch,), float(alpha))


def blend_layers(layers: torch.Tensor, alpha: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Eq. 1: V = (1 − α)·V¹ + α·V².

    Args:
        layers: ``(B, 2, C, T, H, W)``.
        alpha: ``(B,)`` or a number.
    Returns:
        ``(B, C, T, H, W)``.
    """
    assert layers.dim() == 6 and layers.shape[1] == 2, f"layers must be (B, 2, C, T, H, W), got {tuple(layers.shape)}"
    alpha = torch.as_tensor(alpha, dtype=layers.dtype, device=layers.device)
    alpha = alpha.view(-1, 1, 1, 1, 1) if alpha.dim() else alpha
    return (1 - alpha) * layers[:, 0] + alpha * layers[:, 1]


@dataclass
class BlendedPair:
    blend: torch.Tensor  # (C, T, H, W)
    layers: torch.Tensor  # (2, C, T, H, W)
    alpha: float


def blend_pair(
    first: torch.Tensor, second: torch.Tensor, alpha: float | tuple[float, float] = 0.5, generator: torch.Generator | None = None
) -> BlendedPair:
    """Blend two ``(C, T, H, W)`` clips by Eq. 1; returns the blend, both layers and α."""
    layers = torch.stack([first, second])
    a = sample_alpha(1, alpha, generator)
    return BlendedPair(blend=blend_layers(layers[None], a)[0], layers=layers, alpha=float(a[0]))


# --------------------------------------------------------------------------- clip sources


class ClipSource(Protocol):
    """Where clips come from: a folder of videos or the synthetic generator."""

    def __len__(self) -> int: ...

    def label(self, index: int) -> int | None: ...

    def clip(self, index: int, num_frames: int, crop_size: int, train: bool, rng: np.random.Generator, stride: int = 1) -> torch.Tensor: ...


def _cache_dir() -> Path:
    return Path(os.environ.get("CENTRIFUGE_CACHE", Path.home() / ".cache" / "centrifuge"))


class VideoFolder:
    """Every video under a folder, searched recursively; the class of a video is its parent folder's
    name (Kinetics layout) when the videos sit in sub-folders.

    The index (frame counts, sizes, timestamps) is built once and cached as JSON under
    ``$CENTRIFUGE_CACHE`` (default ``~/.cache/centrifuge``), keyed by the folder's absolute path and
    refreshed for files whose size or modification time changed. A file that cannot be decoded is
    skipped with one warning line naming it; when more than ``max_bad_fraction`` of the files are
    unreadable the folder is refused with the list (something is wrong beyond a stray file).
    """

    def __init__(self, root: str | os.PathLike, cache: bool = True, min_frames: int = 1, files: Sequence[str | os.PathLike] | None = None,
                 memory_budget: int = 512 * 2**20, max_bad_fraction: float = 0.25, zoom: float = 1.0):
        self.root = Path(root)
        self.zoom = zoom  # training crops: magnification up to this (:func:`zoomed_crop`); 1: the paper's
        # Small folders (a few videos) are decoded once per process at the training resolution and
        # kept in memory: re-decoding long-GOP H.264 for every clip costs more than the model step.
        self.memory_budget = memory_budget
        self._decoded: dict[tuple[int, int], np.ndarray] = {}
        paths = [Path(f) for f in files] if files is not None else find_videos(self.root)
        self.videos: list[VideoInfo] = []
        self.skipped: list[tuple[str, str]] = []
        cached = self._load_cache() if cache else {}
        fresh: dict[str, dict] = {}
        for path in paths:
            stat = path.stat()
            key = str(path.resolve())
            entry = cached.get(key)
            if entry is None or entry.get("size") != stat.st_size or entry.get("mtime") != stat.st_mtime:
                try:
                    entry = {"size": stat.st_size, "mtime": stat.st_mtime, "info": probe(path).to_dict()}
                except VideoError as e:
                    entry = {"size": stat.st_size, "mtime": stat.st_mtime, "error": str(e)}
            fresh[key] = entry
            if "error" in entry:
                log.warning("skipping %s", entry["error"])
                self.skipped.append((str(path), entry["error"]))
                continue
            info = VideoInfo.from_dict({**entry["info"], "path": str(path)})
            if info.num_frames < min_frames:
                self.skipped.append((str(path), f"only {info.num_frames} frames"))
                continue
            self.videos.append(info)
        if cache and fresh != cached:
            self._save_cache(fresh)
        unreadable = [name for name, why in self.skipped if not why.startswith("only ")]
        if paths and len(unreadable) > max_bad_fraction * len(paths):
            listed = ", ".join(Path(n).name for n in unreadable[:10]) + (" …" if len(unreadable) > 10 else "")
            raise VideoError(f"{self.root}: {len(unreadable)} of {len(paths)} videos are unreadable "
                             f"(more than {max_bad_fraction:.0%}): {listed}")
        if not self.videos:
            raise VideoError(f"{self.root}: no readable video found")
        names = [self._class_name(Path(v.path)) for v in self.videos]
        self.classes = sorted({n for n in names if n is not None})
        self._labels = [self.classes.index(n) if n is not None else None for n in names]

    def _class_name(self, path: Path) -> str | None:
        parent = path.parent
        return parent.name if parent.resolve() != self.root.resolve() else None

    def _cache_path(self) -> Path:
        digest = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:16]
        return _cache_dir() / f"index-{digest}.json"

    def _load_cache(self) -> dict:
        try:
            return json.loads(self._cache_path().read_text())
        except (OSError, ValueError):
            return {}

    def _save_cache(self, entries: dict) -> None:
        path = self._cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries))
            os.replace(tmp, path)
        except OSError as e:  # a read-only home is no reason to stop
            log.debug("could not write the index cache %s: %s", path, e)

    def __len__(self) -> int:
        return len(self.videos)

    def label(self, index: int) -> int | None:
        return self._labels[index]

    def clip(self, index: int, num_frames: int, crop_size: int, train: bool, rng: np.random.Generator, stride: int = 1) -> torch.Tensor:
        info = self.videos[index]
        span = (num_frames - 1) * stride + 1
        latest = max(0, info.num_frames - span)
        # Evaluation too draws its start from the item's own generator: a fixed start would make every
        # pair of the same two videos the very same pair of clips. Only the spatial crop is centred.
        start = int(rng.integers(0, latest + 1))
        zoom = self.zoom if train else 1.0
        side = round(crop_size * RESIZE_FACTOR * zoom)
        decoded = self._decoded_video(index, side)
        if decoded is not None:
            frames = decoded[start : start + span : stride]
        else:
            frames = read_clip(info.path, start, num_frames, stride=stride, info=info, shortest_side=side)
        if zoom > 1:
            return zoomed_crop(to_clip(fit_length(frames, num_frames)), crop_size, zoom, rng)
        return augment_clip(to_clip(fit_length(frames, num_frames)), crop_size, train, rng)


    def _decoded_video(self, index: int, side: int) -> np.ndarray | None:
        key = (index, side)
        if key in self._decoded:
            return self._decoded[key]
        total = sum(v.num_frames * 3 * side * side * max(v.width, v.height) / max(1, min(v.width, v.height)) for v in self.videos)
        if total > self.memory_budget:
            return None
        info = self.videos[index]
        frames = read_clip(info.path, 0, info.num_frames, info=info, shortest_side=side)
        self._decoded[key] = frames
        return frames


class SyntheticSource:
    """The embedded generator as a clip source: ``size`` virtual videos, each a pure function of
    ``(seed, index)``, filming the photographs of ``split`` (``all``, ``train`` or ``held-back``:
    :func:`~centrifuge.synthetic.photo_bank`). Training draws a fresh index every time, so variety
    is limited only by ``size``."""

    def __init__(self, size: int = 1_000_000, seed: int = 0, config: SyntheticConfig = SyntheticConfig(), split: str = "all"):
        self.size = size
        self.seed = seed
        self.config = config
        self.split = split

    def __len__(self) -> int:
        return self.size

    def label(self, index: int) -> int | None:
        return None

    def video(self, index: int, num_frames: int, height: int, width: int) -> np.ndarray:
        return synthetic_video(self.seed * 1_000_003 + index, num_frames, height, width, self.config, split=self.split)

    def clip(self, index: int, num_frames: int, crop_size: int, train: bool, rng: np.random.Generator, stride: int = 1) -> torch.Tensor:
        # Generated at the crop size directly: the generator already moves the camera, so a
        # resize-and-crop would only cost time. The flip is kept for parity with real data.
        clip = to_clip(self.video(index, num_frames, crop_size, crop_size))
        if train and rng.random() < 0.5:
            clip = clip.flip(-1)
        return clip


class LabelledSyntheticSource(SyntheticSource):
    """The generator with classes, for the recognition and same-class experiments: a video's class
    is the photograph its camera films (index modulo ``num_classes``), partly hidden by at most
    ``max_sprites`` moving shapes textured with any photograph."""

    def __init__(self, num_classes: int = 8, size: int = 1_000_000, seed: int = 0, max_sprites: int = 2):
        super().__init__(size, seed, SyntheticConfig(max_sprites=max_sprites, sprite_size=(0.1, 0.35)))
        self.num_classes = min(num_classes, len(photo_bank()))

    def label(self, index: int) -> int | None:
        return index % self.num_classes

    def video(self, index: int, num_frames: int, height: int, width: int) -> np.ndarray:
        return synthetic_video(self.seed * 1_000_003 + index, num_frames, height, width, self.config, background=self.label(index))


class LayerPairs(Dataset):
    """Pairs of clips from different videos, returned as separate layers to be blended on the device.

    Item: ``{"layers": (2, 3, T, H, W) float in [0, 1], "labels": (2,) long (−1 where unknown),
    "videos": (2,) long}``.

    Args:
        sources: one source, or several with ``weights`` (each layer picks its source by weight).
        length: items per epoch.
        frozen: which layers are frozen (a frame repeated), e.g. ``(True, True)`` (Table 3).
        same_class: pair videos of the same class (needs a folder with classes).
        light: probability that one layer (either) is a light instead of a clip
            (:func:`~centrifuge.synthetic.draw_light`); the other stays a clip.
        still: probability that one layer (either) is still, one of its frames repeated: the
            layer that does not move, under one that does (a reflection in a shop window).
        blur / dim: probability that one layer is out of focus (σ uniform in ``blur_sigma`` px) /
            dimmer (× uniform in ``dim_range``), fixed over the clip, as the batched pipeline's
            :class:`~centrifuge.batched.LayerKinds`.
        jitter: probability that a layer's contrast, colour balance and brightness are changed at
            random, fixed over the clip (:func:`~centrifuge.synthetic.draw_jitter`).
    """

    def __init__(
        self,
        sources: ClipSource | Sequence[ClipSource],
        length: int,
        num_frames: int = 32,
        crop_size: int = 112,
        train: bool = True,
        seed: int = 0,
        weights: Sequence[float] | None = None,
        frozen: tuple[bool, bool] = (False, False),
        same_class: bool = False,
        stride: int = 1,
        light: float = 0.0,
        still: float = 0.0,
        blur: float = 0.0,
        dim: float = 0.0,
        blur_sigma: tuple[float, float] = (1.0, 5.0),
        dim_range: tuple[float, float] = (0.4, 0.9),
        jitter: float = 0.0,
    ):
        self.light, self.still, self.jitter = light, still, jitter
        self.blur, self.dim, self.blur_sigma, self.dim_range = blur, dim, blur_sigma, dim_range
        self.sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        weights = np.asarray(weights if weights is not None else [1.0] * len(self.sources), dtype=float)
        self.weights = weights / weights.sum()
        self.length = length
        self.num_frames = num_frames
        self.crop_size = crop_size
        self.train = train
        self.seed = seed
        self.frozen = frozen
        self.same_class = same_class
        self.stride = stride
        self.epoch = 0
        if sum(len(source) for source in self.sources) < 2:
            where = getattr(self.sources[0], "root", "the source")
            raise VideoError(f"{where}: un-mixing needs at least two different videos, this source has one")
        if same_class:
            for source in self.sources:
                if all(source.label(i) is None for i in range(min(len(source), 10_000))):
                    raise ValueError("same-class pairs need videos sorted into class folders")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _pick(self, rng: np.random.Generator, exclude: tuple[int, int] | None, label: int | None) -> tuple[int, int]:
        source_id = int(rng.choice(len(self.sources), p=self.weights))
        source = self.sources[source_id]
        for _ in range(1000):
            index = int(rng.integers(len(source)))
            if exclude == (source_id, index) and len(source) > 1:
                continue
            if label is not None and source.label(index) != label:
                continue
            return source_id, index
        raise ValueError("no second video found for a pair: " + ("no other video of the same class" if label is not None else "too few videos"))

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        # Each item has its own generator, so workers, epochs and resumes agree on the data.
        rng = np.random.default_rng([self.seed, self.epoch, item])
        layers, labels, videos = [], [], []
        first = None
        for k in range(2):
            for attempt in range(20):
                label = self.sources[first[0]].label(first[1]) if (k == 1 and self.same_class and first) else None
                source_id, index = self._pick(rng, first, label)
                try:
                    clip = self.sources[source_id].clip(index, self.num_frames, self.crop_size, self.train, rng, self.stride)
                    break
                except VideoError as e:  # broken mid-stream: replaced by the next draw of the same generator
                    log.warning("skipping %s", e)
            else:
                raise VideoError("20 clips in a row failed to decode; check the video folder")
            if self.frozen[k]:
                clip = freeze_clip(clip, int(rng.integers(clip.shape[1])) if self.train else None)
            if k == 0:
                first = (source_id, index)
            layers.append(clip)
            lab = self.sources[source_id].label(index)
            labels.append(-1 if lab is None else lab)
            videos.append(index)
        if self.light and rng.random() < self.light:  # no draw at all without lights: streams stay as they were
            k = int(rng.integers(2))
            layers[k] = render_light(draw_light(rng), *layers[k].shape[1:])
            labels[k], videos[k] = -1, -1
        if self.still and rng.random() < self.still:  # likewise
            k = int(rng.integers(2))
            layers[k] = freeze_clip(layers[k], int(rng.integers(layers[k].shape[1])) if self.train else None)
        if self.blur or self.dim:  # likewise: no draw without them
            sigma, gain = draw_focus_and_gain(rng, self.blur, self.blur_sigma, self.dim, self.dim_range)
            for k in range(2):
                if sigma[k] > 0:
                    layers[k] = gaussian_blur_batch(layers[k][None], torch.tensor([sigma[k]], dtype=torch.float32))[0]
                layers[k] = layers[k] * float(gain[k])
        stacked = torch.stack(layers)
        if self.jitter:  # likewise
            stacked = apply_jitter(stacked, torch.from_numpy(draw_jitter(rng, self.jitter)))
        return {"layers": stacked, "labels": torch.tensor(labels), "videos": torch.tensor(videos)}
