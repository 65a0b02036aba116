"""The embedded default data: natural-looking videos made from the photographs scikit-image ships.

Each video is a "dead leaves" scene (Baradad et al., NeurIPS 2021: procedural images train useful
vision models): a background photograph seen through a camera that pans, zooms, rotates and wobbles
(a smooth non-rigid warp), with sprites in front of it, each a shape (disc, rounded box, star or
blob with soft edges) textured with a crop of another photograph or a flat colour, moving, turning
and scaling on its own path and occluding the ones behind. Brightness and colour drift over time,
some videos are blurred, a little sensor noise is added.

Nothing is downloaded: the photographs are part of the scikit-image wheel. Every video is a pure
function of its seed, so data sets built on it are deterministic and need no file.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Photographs inside the scikit-image wheel (no network needed). Those missing from an installed
# version are skipped.
_PHOTO_NAMES = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "hubble_deep_field",
    "immunohistochemistry", "retina", "text", "page", "grass", "gravel", "brick", "colorwheel",
    "cell", "clock", "stereo_motorcycle",
)


@functools.lru_cache(maxsize=1)
def named_photos() -> tuple[tuple[str, torch.Tensor], ...]:
    """``(name, (3, H, W) float tensor in [0, 1])`` of each photograph, loaded once per process."""
    import skimage.data

    photos = []
    for name in _PHOTO_NAMES:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            images = loader()
        except Exception:  # an image that needs a download in this version of scikit-image
            continue
        images = images if isinstance(images, tuple) else (images,)
        for k, image in enumerate(images):
            array = np.asarray(image)
            if (array.ndim != 3 and array.ndim != 2) or array.dtype != np.uint8:  # not a photograph (a disparity map)
                continue
            if array.ndim == 2:
                array = np.repeat(array[..., None], 3, axis=2)
            array = array[..., :3].astype(np.float32)
            if array.max() > 1.0:
                array /= 255.0
            tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
            photos.append((name if k == 0 else f"{name}#{k}", tensor))  # #k: one of a set (a stereo pair)
    if len(photos) < 2:
        raise RuntimeError("scikit-image ships fewer than two readable sample photographs")
    return tuple(photos)


@functools.lru_cache(maxsize=3)
def photo_bank(split: str = "all") -> tuple[torch.Tensor, ...]:
    """The photographs of ``split`` as ``(3, H, W)`` float tensors in [0, 1], loaded once per
    process: ``all``, or the ``train`` or ``held-back`` part of the photo bank's split by name
    (:func:`centrifuge.photos.is_held_back`), the split the batched generator films."""
    if split == "all":
        return tuple(photo for _, photo in named_photos())
    from .photos import SPLITS, is_held_back, skimage_photo_name

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return tuple(photo for name, photo in named_photos() if is_held_back(skimage_photo_name(name)) == (split == "held-back"))


@dataclass(frozen=True)
class SyntheticConfig:
    """Ranges the generator draws from; the defaults were chosen to look like hand-held footage."""

    min_sprites: int = 1
    max_sprites: int = 6
    sprite_size: tuple[float, float] = (0.15, 0.6)  # radius, as a fraction of the frame's shorter side
    max_speed: float = 0.6  # frame widths per second-ish (per 32 frames)
    zoom_range: float = 0.5  # log-scale change of the camera over a clip
    warp_strength: float = 0.04
    blur_probability: float = 0.25
    noise_std: float = 0.01
    # Sprites that belong to the filmed scene: textured from the background's own photograph, in its
    # colours, and carried by the camera (their own motion on top). With independent sprites (the
    # default) nothing in a blend says which layer a sprite came from, so the loss rewards putting
    # it half in each; in a real video an object shares its scene's light, colour and camera.
    scene_sprites: bool = False


def _normalize_matrix(height: int, width: int) -> np.ndarray:
    """Pixel coordinates (x, y) → grid_sample's normalized coordinates (align_corners=False)."""
    return np.array([[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0], [0, 0, 1]])


def _rotation_scale(angle: float, scale_x: float, scale_y: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c * scale_x, -s * scale_y], [s * scale_x, c * scale_y]])


def _frame_pixel_grid(num_frames: int, height: int, width: int) -> torch.Tensor:
    """``(T, H, W, 3)`` homogeneous pixel-centre coordinates of every output pixel."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).float()
    return grid.expand(num_frames, height, width, 3)


def _apply_affines(grid: torch.Tensor, matrices: np.ndarray) -> torch.Tensor:
    """Apply one 2×3 affine per frame: grid ``(T, H, W, 3)``, matrices ``(T, 2, 3)`` → ``(T, H, W, 2)``."""
    m = torch.from_numpy(matrices.astype(np.float32))
    return torch.einsum("thwk,tjk->thwj", grid, m)


@functools.lru_cache(maxsize=64)
def _spline_basis(num_frames: int, knots: int) -> np.ndarray:
    """``(num_frames, knots)``: a cubic spline through ``knots`` evenly spaced values, sampled at
    ``num_frames`` times, is this matrix times the values (the spline is linear in them)."""
    from scipy.interpolate import CubicSpline

    return CubicSpline(np.linspace(0, 1, knots), np.eye(knots))(np.linspace(0, 1, num_frames))


def _smooth_path(rng: np.random.Generator, num_frames: int, scale: float, knots: int = 4) -> np.ndarray:
    """A smooth random 1-D trajectory (a few random knots, cubic-interpolated), zero at t=0."""
    ys = rng.normal(0.0, scale, size=knots)
    ys -= ys[0]
    return _spline_basis(num_frames, knots) @ ys


def _warp_field(rng: np.random.Generator, num_frames: int, height: int, width: int, strength: float,
                frames: slice = slice(None)) -> torch.Tensor:
    """A smooth non-rigid displacement ``(T, H, W, 2)`` in normalized units, drifting over time
    (only the ``frames`` of the clip's ``num_frames``)."""
    t = torch.linspace(0, 1, num_frames)[frames].view(-1, 1, 1, 1)
    if strength <= 0:
        return torch.zeros(len(t), height, width, 2)
    coarse = torch.from_numpy(rng.normal(0.0, strength, size=(2, 2, 4, 4)).astype(np.float32))
    field = coarse[0][None] * (1 - t) + coarse[1][None] * t  # (T, 2, 4, 4)
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)
    return field.permute(0, 2, 3, 1)


def _shape_mask(rng: np.random.Generator, local: torch.Tensor, softness: float) -> torch.Tensor:
    """Soft mask of a random shape in sprite-local coordinates ``(T, H, W, 2)`` (unit radius)."""
    u, v = local[..., 0], local[..., 1]
    kind = rng.integers(0, 4)
    if kind == 0:  # disc / ellipse (aspect is in the sprite's affine)
        distance = torch.sqrt(u * u + v * v)
    elif kind == 1:  # rounded box
        p = float(rng.uniform(4, 10))
        distance = (u.abs() ** p + v.abs() ** p) ** (1.0 / p)
    else:  # star (kind 2) or smooth blob (kind 3): radius varies with angle
        angle = torch.atan2(v, u)
        radius = torch.ones_like(angle)
        harmonics = range(2, 7) if kind == 3 else [int(rng.integers(3, 8))]
        for k in harmonics:
            amplitude = rng.uniform(0.05, 0.2) if kind == 3 else rng.uniform(0.25, 0.45)
            radius = radius + amplitude * torch.cos(k * angle + rng.uniform(0, 2 * math.pi))
        distance = torch.sqrt(u * u + v * v) / radius.clamp_min(0.2)
    return torch.sigmoid((1.0 - distance) / softness)


def _gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``(T, 3, H, W)`` frames with a separable Gaussian."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(frames.dtype)
    channels = frames.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    frames = F.conv2d(F.pad(frames, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(frames, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


def _colour_transform(rng: np.random.Generator):
    """A random colour change: per-channel gains (a grey photograph gets a tint) and sometimes a
    channel swap for hues the photographs lack. Returned as a function of ``(T, 3, H, W)`` frames,
    applied after sampling (it commutes with resampling and costs far less on the small frames)."""
    gains = torch.from_numpy(rng.uniform(0.6, 1.25, size=(1, 3, 1, 1)).astype(np.float32))
    order = torch.from_numpy(rng.permutation(3)) if rng.random() < 0.2 else None

    def apply(frames: torch.Tensor) -> torch.Tensor:
        if order is not None:
            frames = frames[:, order]
        return (frames * gains).clamp(0, 1)

    return apply


def _sample_photo(photo: torch.Tensor, grid_pixels: torch.Tensor) -> torch.Tensor:
    """Sample ``photo`` ``(3, h, w)`` at photo-pixel coordinates ``(T, H, W, 2)`` → ``(T, 3, H, W)``."""
    _, h, w = photo.shape
    norm = torch.stack([grid_pixels[..., 0] * (2.0 / w) - 1.0, grid_pixels[..., 1] * (2.0 / h) - 1.0], dim=-1)
    source = photo.unsqueeze(0).expand(grid_pixels.shape[0], -1, -1, -1)
    return F.grid_sample(source, norm, mode="bilinear", padding_mode="reflection", align_corners=False)


def _camera_matrices(rng, num_frames, height, width, photo_hw, config) -> np.ndarray:
    """Per-frame affines from output pixels to background-photo pixels: pan, zoom, roll, shake."""
    ph, pw = photo_hw
    fraction = rng.uniform(0.35, 0.9)
    crop_w = fraction * min(pw, ph * width / height)
    base_scale = crop_w / width  # photo pixels per output pixel
    zoom = _smooth_path(rng, num_frames, config.zoom_range / 2) + rng.uniform(-1, 1) * config.zoom_range * np.linspace(0, 1, num_frames)
    roll = _smooth_path(rng, num_frames, 0.08) + rng.uniform(-0.15, 0.15)
    pan_speed = rng.uniform(0, config.max_speed) * crop_w
    direction = rng.uniform(0, 2 * math.pi)
    t = np.linspace(0, 1, num_frames)
    centre_x = pw / 2 + rng.uniform(-0.2, 0.2) * pw + pan_speed * math.cos(direction) * (t - 0.5) + _smooth_path(rng, num_frames, 0.03 * crop_w, knots=8)
    centre_y = ph / 2 + rng.uniform(-0.2, 0.2) * ph + pan_speed * math.sin(direction) * (t - 0.5) + _smooth_path(rng, num_frames, 0.03 * crop_w, knots=8)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    scale = base_scale * np.exp(zoom)
    linear = _rotation_scales(roll, scale * flip, scale)  # (T, 2, 2)
    centre = np.stack([centre_x, centre_y], axis=-1)
    matrices = np.zeros((num_frames, 2, 3))
    matrices[:, :, :2] = linear
    matrices[:, :, 2] = centre - linear @ np.array([width / 2, height / 2])
    return matrices


def _rotation_scales(angle: np.ndarray, scale_x: np.ndarray, scale_y: np.ndarray) -> np.ndarray:
    """``(T, 2, 2)``: :func:`_rotation_scale` for every frame at once."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c * scale_x, -s * scale_y], -1), np.stack([s * scale_x, c * scale_y], -1)], -2)


def _sprite_matrices(rng, num_frames, height, width, config) -> np.ndarray:
    """Per-frame affines from output pixels to a sprite's local unit coordinates."""
    short = min(height, width)
    radius = rng.uniform(*config.sprite_size) * short
    aspect = math.exp(rng.uniform(-0.5, 0.5))
    t = np.linspace(0, 1, num_frames)
    start = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    speed = rng.uniform(0, config.max_speed * 1.5) * width
    direction = rng.uniform(0, 2 * math.pi)
    position_x = start[0] + speed * math.cos(direction) * t + _smooth_path(rng, num_frames, 0.1 * width)
    position_y = start[1] + speed * math.sin(direction) * t + _smooth_path(rng, num_frames, 0.1 * height)
    angle = rng.uniform(0, 2 * math.pi) + rng.uniform(-1.5, 1.5) * t
    scale = np.exp(rng.uniform(-0.4, 0.4) * t)
    # inverse of: local → pixels = R(angle) · S(radius·aspect, radius/aspect) · local + position,
    # which is S⁻¹ · R(−angle) · (pixels − position)
    c, s = np.cos(angle), np.sin(angle)
    sx, sy = radius * aspect * scale, radius / aspect * scale
    inverse = np.stack([np.stack([c / sx, s / sx], -1), np.stack([-s / sy, c / sy], -1)], -2)  # (T, 2, 2)
    matrices = np.zeros((num_frames, 2, 3))
    matrices[:, :, :2] = inverse
    matrices[:, :, 2] = -np.einsum("tij,tj->ti", inverse, np.stack([position_x, position_y], -1))
    return matrices


def _in_scene(sprite: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Sprite affines ``(T, 2, 3)`` drawn in output pixels, re-anchored to the filmed scene: applied
    to the middle frame's view of the scene, so the camera's pan, zoom and roll carry the sprite."""
    def square(m: np.ndarray) -> np.ndarray:
        out = np.zeros(m.shape[:-2] + (3, 3))
        out[..., :2, :] = m
        out[..., 2, 2] = 1
        return out

    to_reference = np.linalg.inv(square(camera[len(camera) // 2])) @ square(camera)  # output pixel → middle frame's pixel
    return (square(sprite) @ to_reference)[:, :2]


def _sprite_texture(rng, local: torch.Tensor, photos, own: tuple | None = None) -> torch.Tensor:
    """The sprite's appearance ``(T, 3, H, W)``: a photo crop attached to the sprite, or a flat
    colour; with ``own`` (a photograph and its colour change) always a crop of that photograph."""
    num_frames, height, width, _ = local.shape
    if own is None and rng.random() < 0.2:
        colour = torch.from_numpy(rng.uniform(0, 1, size=(3,)).astype(np.float32)).view(1, 3, 1, 1)
        gradient = (local[..., 0] * rng.uniform(-0.2, 0.2) + local[..., 1] * rng.uniform(-0.2, 0.2)).unsqueeze(1)
        return (colour * (1 + gradient)).clamp(0, 1)
    photo, colour = own if own is not None else (photos[rng.integers(len(photos))], _colour_transform(rng))
    _, ph, pw = photo.shape
    half = rng.uniform(0.1, 0.35) * min(ph, pw)
    centre = np.array([rng.uniform(half, pw - half), rng.uniform(half, ph - half)])
    placement = _rotation_scale(rng.uniform(0, 2 * math.pi), half, half)
    homogeneous = torch.cat([local, torch.ones_like(local[..., :1])], dim=-1)
    affine = np.concatenate([placement, centre[:, None]], axis=1)[None].repeat(num_frames, axis=0)
    return colour(_sample_photo(photo, _apply_affines(homogeneous, affine)))


# Frames rendered at once (in pixels): all of a training clip; a full-HD clip a few frames at a
# time, since every frame costs about 200 bytes a pixel in temporaries (100 frames: 20 GB).
RENDER_PIXELS = 1 << 23


def synthetic_video(
    seed: int,
    num_frames: int = 32,
    height: int = 112,
    width: int = 112,
    config: SyntheticConfig = SyntheticConfig(),
    background: int | None = None,
    split: str = "all",
) -> np.ndarray:
    """Generate one video, a pure function of ``seed`` (and ``background``, ``split``).

    Args:
        background: index into :func:`photo_bank` of the photograph the camera films (random when
            None); the labelled generator uses it as the video's class.
        split: which photographs it films and textures its objects with (:func:`photo_bank`):
            ``train`` for training clips, ``held-back`` for clips that score a model.
    Returns:
        ``(T, H, W, 3)`` uint8 frames.
    """
    step = max(1, RENDER_PIXELS // (height * width))
    out = np.empty((num_frames, height, width, 3), np.uint8)
    noise = None  # the generator positioned at the next frame's noise, shared by every range
    photos = photo_bank(split)
    for first in range(0, num_frames, step):
        out[first : first + step], noise = _render(seed, num_frames, height, width, config, photos, background, first,
                                                   min(first + step, num_frames), noise)
    return out


def _render(seed: int, num_frames: int, height: int, width: int, config: SyntheticConfig, photos: tuple[torch.Tensor, ...],
            background: int | None, first: int, last: int, noise: np.random.Generator | None) -> tuple[np.ndarray, np.random.Generator]:
    """Frames ``first:last`` of :func:`synthetic_video`. Every range draws the clip's whole plan
    from ``seed`` again (a few hundred numbers; nothing drawn depends on the range) and renders its
    own frames; the per-pixel noise comes last in the stream, so it is drawn in order from the
    generator the first range leaves at that point (``noise``), as one draw for the clip would."""
    rng = np.random.default_rng(seed)
    pixels = _frame_pixel_grid(last - first, height, width)

    drawn = int(rng.integers(len(photos)))
    background = photos[drawn if background is None else background % len(photos)]
    background_colour = _colour_transform(rng)
    camera = _camera_matrices(rng, num_frames, height, width, background.shape[1:], config)
    grid = _apply_affines(pixels, camera[first:last])
    warp = _warp_field(rng, num_frames, height, width, config.warp_strength * rng.uniform(0, 1), slice(first, last))
    grid = grid + warp * torch.tensor([background.shape[2] / 2, background.shape[1] / 2])
    frames = background_colour(_sample_photo(background, grid))
    if rng.random() < config.blur_probability:  # background out of focus
        frames = _gaussian_blur(frames, rng.uniform(0.8, 2.5))

    for _ in range(int(rng.integers(config.min_sprites, config.max_sprites + 1))):
        sprite = _sprite_matrices(rng, num_frames, height, width, config)
        local = _apply_affines(pixels, (_in_scene(sprite, camera) if config.scene_sprites else sprite)[first:last])
        mask = _shape_mask(rng, local, softness=rng.uniform(0.01, 0.08)).unsqueeze(1)
        texture = _sprite_texture(rng, local, photos, (background, background_colour) if config.scene_sprites else None)
        frames = frames * (1 - mask) + texture * mask

    t = torch.linspace(0, 1, num_frames).view(num_frames, 1, 1, 1)
    brightness = 1.0 + rng.uniform(-0.3, 0.3) * t + 0.1 * torch.sin(2 * math.pi * rng.uniform(0, 2) * t + rng.uniform(0, 6.3))
    tint = 1.0 + torch.from_numpy(rng.uniform(-0.15, 0.15, size=(1, 3, 1, 1)).astype(np.float32)) * t
    frames = frames * brightness[first:last] * tint[first:last]
    if rng.random() < config.blur_probability / 2:  # whole frame soft (motion blur, bad focus)
        frames = _gaussian_blur(frames, rng.uniform(0.5, 1.5))
    noise = rng if noise is None else noise
    frames = (frames + torch.from_numpy(noise.normal(0, config.noise_std, size=frames.shape).astype(np.float32))).clamp(0, 1)
    return (frames.permute(0, 2, 3, 1) * 255.0 + 0.5).to(torch.uint8).numpy(), noise


@dataclass(frozen=True)
class LightPlan:
    """A light layer: a colour that varies smoothly over the frame and slowly over the clip.

    Value at normalised position (x, y) ∈ [−1, 1]² and time s ∈ [0, 1]:
    ``colour + ramp·(x cos θ + y sin θ) + spot·exp(−|p − centre(s)|² / 2r²)``, clamped to [0, 1],
    times a brightness that drifts linearly over the clip.
    """

    colour: np.ndarray  # (3,)
    ramp: np.ndarray  # (3,) amplitude of a linear gradient across the frame
    angle: float
    spot: np.ndarray  # (3,) amplitude of a soft spot (negative: a shadow)
    centre: np.ndarray  # (2, 2): the spot's centre at the first and at the last frame
    radius: float
    drift: float  # brightness at the last frame relative to the first


def draw_focus_and_gain(rng: np.random.Generator, blur: float, blur_sigma: tuple[float, float], dim: float,
                        dim_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer blur σ ``(2,)`` (0: sharp) and gain ``(2,)`` of one pair: with probability ``blur``
    one layer is out of focus, with probability ``dim`` one is dimmer (two draws, always made)."""
    sigma, gain = np.zeros(2), np.ones(2)
    if rng.random() < blur:
        sigma[rng.integers(2)] = rng.uniform(*blur_sigma)
    if rng.random() < dim:
        gain[rng.integers(2)] = rng.uniform(*dim_range)
    return sigma, gain


JITTER_CONTRAST = (0.5, 1.5)
JITTER_COLOUR = (0.8, 1.2)
JITTER_SHIFT = 0.2
JITTER_IDENTITY = (1.0, 1.0, 1.0, 1.0, 0.0)  # a row of draw_jitter that changes nothing


def draw_jitter(rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Photometric changes of the two layers of one pair, ``(2, 5)``: contrast, the three colour
    gains and a brightness shift per layer; each layer changed with probability ``jitter``, else
    the identity row ``(1, 1, 1, 1, 0)``. Draws nothing when ``jitter`` is 0.

    Why: a model that has seen a scene learns the brightness and colour it has and hands them to
    a layer from what the scene is, which does not carry over to scenes it never saw (session 10's
    probe). Changed at random per layer and clip, the look of a scene says nothing about its layer.
    """
    params = np.tile(np.array(JITTER_IDENTITY, dtype=np.float32), (2, 1))
    if not jitter:
        return params
    for k in range(2):
        if rng.random() < jitter:
            params[k, 0] = rng.uniform(*JITTER_CONTRAST)
            params[k, 1:4] = rng.uniform(*JITTER_COLOUR, 3)
            params[k, 4] = rng.uniform(-JITTER_SHIFT, JITTER_SHIFT)
    return params


def apply_jitter(clips: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Clips ``(N, 3, T, H, W)`` with :func:`draw_jitter`'s rows ``(N, 5)``: contrast about each
    clip's mean, then per-channel gains, then the shift, clamped to [0, 1]."""
    params = params.to(device=clips.device, dtype=clips.dtype)
    mean = clips.mean(dim=(1, 2, 3, 4), keepdim=True)
    contrast = params[:, 0].view(-1, 1, 1, 1, 1)
    gains = params[:, 1:4].view(-1, 3, 1, 1, 1)
    shift = params[:, 4].view(-1, 1, 1, 1, 1)
    return (((clips - mean) * contrast + mean) * gains + shift).clamp(0, 1)


def draw_light(rng: np.random.Generator) -> LightPlan:
    """A light like the paper's Figure 4 colours (flat, saturated, black or white), or a coloured
    light, a gradient or a shadow: the second layer a separator meets that has no detail of its own."""
    kind = rng.random()
    if kind < 0.4:  # a saturated colour: one or two channels high, the rest low
        colour = np.where(rng.random(3) < 0.5, rng.uniform(0.7, 1.0, 3), rng.uniform(0.0, 0.3, 3))
    elif kind < 0.7:  # a grey level, black and white included
        colour = np.full(3, rng.choice([0.0, 1.0]) if rng.random() < 0.4 else rng.uniform(0, 1))
    else:
        colour = rng.uniform(0, 1, 3)
    flat = rng.random() < 0.4
    scale = 0.0 if flat else 1.0
    return LightPlan(
        colour=colour.astype(np.float32),
        ramp=(scale * rng.uniform(-0.3, 0.3) * rng.uniform(0.5, 1.0, 3)).astype(np.float32),
        angle=float(rng.uniform(0, 2 * math.pi)),
        spot=(scale * rng.uniform(-0.4, 0.4) * rng.uniform(0.5, 1.0, 3)).astype(np.float32),
        centre=rng.uniform(-1, 1, (2, 2)).astype(np.float32),
        radius=float(rng.uniform(0.3, 1.0)),
        drift=1.0 if flat else float(rng.uniform(0.8, 1.2)),
    )


def render_light(plan: LightPlan, num_frames: int, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The light of ``plan`` as a ``(3, T, H, W)`` clip in [0, 1]."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, device=device), torch.linspace(-1, 1, width, device=device), indexing="ij")
    s = torch.linspace(0, 1, num_frames, device=device).view(num_frames, 1, 1)
    centre = torch.from_numpy(plan.centre).to(device)
    cx = centre[0, 0] + (centre[1, 0] - centre[0, 0]) * s
    cy = centre[0, 1] + (centre[1, 1] - centre[0, 1]) * s
    spot = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * plan.radius**2))  # (T, H, W)
    ramp = (xs * math.cos(plan.angle) + ys * math.sin(plan.angle)).expand(num_frames, height, width)

    def channel(c: int) -> torch.Tensor:
        return float(plan.colour[c]) + float(plan.ramp[c]) * ramp + float(plan.spot[c]) * spot

    brightness = 1.0 + (plan.drift - 1.0) * s
    return (torch.stack([channel(c) for c in range(3)]) * brightness).clamp(0, 1)
