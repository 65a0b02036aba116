"""The photo bank: the photographs the generator films, split by file into training and held-back parts.

Two sources, each used when present:

- scikit-image's sample photographs (inside its wheel: always there);
- natural photographs among the Linux distribution's wallpaper packages (on Debian:
  ``mate-backgrounds``, ``plasma-workspace-wallpapers``; ``make photos`` installs them), resized once
  into ``$CENTRIFUGE_CACHE/photos`` by :func:`build_photo_cache`. The photographs themselves are
  never copied into the repository.

Each photograph belongs to the training or the held-back (validation) part by a hash of its name,
so the split is the same on every machine and does not move when photographs are added. Frames of
the training videos can be added as textures too (:func:`video_textures`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

# Natural photographs among the wallpaper packages (the others are drawings, gradients or logos).
# Globs under /usr/share; a KDE wallpaper folder contributes its largest image.
WALLPAPER_PHOTOS = (
    "wallpapers/BytheWater", "wallpapers/ColdRipple", "wallpapers/ColorfulCups", "wallpapers/DarkestHour",
    "wallpapers/EveningGlow", "wallpapers/FallenLeaf", "wallpapers/Grey", "wallpapers/Kite",
    "wallpapers/OneStandsOut", "wallpapers/Path", "wallpapers/Volna", "wallpapers/summer_1am",
    "backgrounds/mate/nature/*.jpg",
)
WALLPAPER_PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers")
HELD_BACK_SHARE = 0.25  # of the photographs, by name: never trained on, used for validation
CACHE_SHORT_SIDE = 512


SPLITS = ("train", "held-back")


def skimage_photo_name(name: str) -> str:
    """The bank's name of scikit-image's sample photograph ``name`` (its split follows from it)."""
    return f"skimage-{name}"


def is_held_back(name: str) -> bool:
    """Whether the photograph called ``name`` belongs to the held-back (validation) part. Images of
    one set (``name#k``, e.g. a stereo pair) share their split."""
    digest = hashlib.sha1(name.split("#")[0].encode()).digest()
    return digest[0] < 256 * HELD_BACK_SHARE


def photo_cache_dir() -> Path:
    return Path(os.environ.get("CENTRIFUGE_CACHE", Path.home() / ".cache" / "centrifuge")) / "photos"


def _wallpaper_files(root: Path = Path("/usr/share")) -> dict[str, Path]:
    """Name → file of each curated wallpaper photograph installed under ``root``."""
    found: dict[str, Path] = {}
    for pattern in WALLPAPER_PHOTOS:
        if "*" in pattern:
            for path in sorted(glob.glob(str(root / pattern))):
                found[Path(path).stem] = Path(path)
            continue
        images = [Path(p) for p in glob.glob(str(root / pattern / "contents" / "images" / "*")) if p.lower().endswith((".jpg", ".jpeg", ".png"))]
        if images:
            found[Path(pattern).name] = max(images, key=lambda p: p.stat().st_size)
    return found


def build_photo_cache(root: Path = Path("/usr/share"), cache: Path | None = None, short_side: int = CACHE_SHORT_SIDE) -> Path:
    """Resize the installed wallpaper photographs into the cache (JPEG, shorter side ``short_side``)
    and write ``manifest.json`` naming each with its split. Returns the cache folder."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # the wallpapers are up to 5640×3172, trusted system files
    cache = cache or photo_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    files = _wallpaper_files(root)
    if not files:
        raise FileNotFoundError(f"no wallpaper photographs under {root}; install {' '.join(WALLPAPER_PACKAGES)} (make photos)")
    manifest = []
    for name, path in sorted(files.items()):
        with Image.open(path) as image:
            image.draft("RGB", (short_side * 2, short_side * 2))
            image = image.convert("RGB")
            scale = short_side / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
            image.save(cache / f"{name}.jpg", quality=92)
        manifest.append({"name": name, "file": f"{name}.jpg", "source": str(path), "held_back": is_held_back(name)})
    tmp = cache / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, cache / "manifest.json")
    return cache


@dataclass(frozen=True)
class Photo:
    name: str
    source: str  # "scikit-image", "wallpaper" or "video"
    image: torch.Tensor  # (3, H, W) uint8

    @property
    def held_back(self) -> bool:
        return is_held_back(self.name)


def _skimage_photos() -> list[Photo]:
    from .synthetic import named_photos

    return [Photo(skimage_photo_name(name), "scikit-image", (p * 255 + 0.5).to(torch.uint8)) for name, p in named_photos()]


def cached_wallpapers(cache: Path | None = None) -> list[Photo]:
    """The wallpaper photographs of the cache (empty when it was never built)."""
    from PIL import Image

    cache = cache or photo_cache_dir()
    try:
        manifest = json.loads((cache / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    photos = []
    for entry in manifest:
        try:
            with Image.open(cache / entry["file"]) as image:
                array = np.asarray(image.convert("RGB"))
        except OSError:
            continue
        photos.append(Photo(entry["name"], "wallpaper", torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()))
    return photos


def available_photos(split: str = "train", wallpapers: bool = True) -> list[Photo]:
    """Every photograph of ``split`` (``train``, ``held-back`` or ``all``) this machine has."""
    photos = _skimage_photos() + (cached_wallpapers() if wallpapers else [])
    if split == "all":
        return photos
    if split not in SPLITS:
        raise ValueError(f"split must be train, held-back or all, not {split!r}")
    return [p for p in photos if p.held_back == (split == "held-back")]


def video_textures(frames_by_video: Sequence[np.ndarray], every: int = 24) -> list[Photo]:
    """Frames of training videos as textures: every ``every``-th frame of each ``(T, H, W, 3)`` uint8
    array (their split follows the videos': call this with training videos only)."""
    photos = []
    for v, frames in enumerate(frames_by_video):
        for t in range(0, len(frames), every):
            photos.append(Photo(f"video{v}-frame{t}", "video", torch.from_numpy(np.ascontiguousarray(frames[t])).permute(2, 0, 1)))
    return photos


def bank_tensor(photos: Sequence[Photo], height: int, width: int) -> torch.Tensor:
    """Photographs as one ``(N, 3, height, width)`` uint8 tensor: each centre-cropped to the bank's
    aspect ratio and resized (antialiased), so one gather serves a whole batch."""
    if not photos:
        raise ValueError("the photo bank is empty")
    out = torch.empty(len(photos), 3, height, width, dtype=torch.uint8)
    for i, photo in enumerate(photos):
        image = photo.image.float()
        _, h, w = image.shape
        if w * height > h * width:  # too wide: crop the width
            crop_w = max(1, round(h * width / height))
            image = image[:, :, (w - crop_w) // 2 : (w - crop_w) // 2 + crop_w]
        else:
            crop_h = max(1, round(w * height / width))
            image = image[:, (h - crop_h) // 2 : (h - crop_h) // 2 + crop_h]
        resized = F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False,
                                antialias=image.shape[1] > height)
        out[i] = resized[0].clamp(0, 255).round().to(torch.uint8)
    return out


def describe(photos: Sequence[Photo]) -> str:
    counts: dict[str, int] = {}
    for p in photos:
        counts[p.source] = counts.get(p.source, 0) + 1
    return ", ".join(f"{n} from {s}" for s, n in counts.items())
