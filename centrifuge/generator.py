"""The batched generator: the dead-leaves videos of :mod:`centrifuge.synthetic`, a whole batch at once,
on the device the model trains on.

Each clip's random choices (camera path, sprites, colours, blur, noise seed) are drawn on the CPU
from its own seed, a few hundred numbers per clip; everything per pixel then runs as batched tensor
operations on the device: one affine grid for all frames of all clips, one ``grid_sample`` for every
background and one for every sprite texture, soft shape masks, lighting and colour drift, blur and
noise. A clip is a pure function of its seed (on a given device), whichever batch it is part of,
so a batch split across ``torchrun`` processes is the single-process batch, and resume is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .synthetic import SyntheticConfig, _camera_matrices, _rotation_scale, _sprite_matrices

MAX_HARMONICS = 5  # star and blob outlines: radius(θ) = 1 + Σ a_k cos(kθ + φ_k), k = 2..6


@dataclass
class ClipPlan:
    """Every random choice of one clip (numpy, drawn on the CPU from the clip's seed)."""

    photo: int
    camera: np.ndarray  # (T, 2, 3): output pixel → bank-photo pixel
    warp: np.ndarray  # (2, 2, 4, 4): start and end of a coarse displacement field, normalised units
    gain: np.ndarray  # (3,)
    order: np.ndarray  # (3,) channel permutation
    blur: float  # background blur σ in pixels (0: none)
    sprites: list["SpritePlan"]
    brightness: np.ndarray  # (T,)
    tint: np.ndarray  # (T, 3)
    frame_blur: float
    noise_std: float
    noise_seed: int


@dataclass
class SpritePlan:
    local: np.ndarray  # (T, 2, 3): output pixel → sprite unit coordinates
    power: float  # 2: ellipse; 4–10: rounded box
    harmonics: np.ndarray  # (MAX_HARMONICS,) amplitudes (zeros: plain ellipse or box)
    phases: np.ndarray  # (MAX_HARMONICS,)
    softness: float
    flat: bool
    colour: np.ndarray  # (3,) flat colour
    gradient: np.ndarray  # (2,) flat colour's gradient over the sprite
    photo: int
    texture: np.ndarray  # (2, 3): sprite unit coordinates → bank-photo pixel
    gain: np.ndarray
    order: np.ndarray


def _colour(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    gain = rng.uniform(0.6, 1.25, size=3)
    order = rng.permutation(3) if rng.random() < 0.2 else np.arange(3)
    return gain, order


def _shape(rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray]:
    kind = rng.integers(0, 4)
    harmonics, phases = np.zeros(MAX_HARMONICS), rng.uniform(0, 2 * math.pi, size=MAX_HARMONICS)
    if kind == 1:
        return float(rng.uniform(4, 10)), harmonics, phases
    if kind == 2:  # star: one strong harmonic
        k = int(rng.integers(3, 8))
        if k - 2 < MAX_HARMONICS:
            harmonics[k - 2] = rng.uniform(0.25, 0.45)
    elif kind == 3:  # blob: several weak ones
        harmonics[:] = rng.uniform(0.05, 0.2, size=MAX_HARMONICS)
    return 2.0, harmonics, phases


def plan_clip(seed: int, num_frames: int, height: int, width: int, num_photos: int, bank_hw: tuple[int, int],
              config: SyntheticConfig = SyntheticConfig(), background: int | None = None) -> ClipPlan:
    """Draw every random choice of one clip from ``seed``."""
    rng = np.random.default_rng(seed)
    photo = int(rng.integers(num_photos)) if background is None else background % num_photos
    gain, order = _colour(rng)
    camera = _camera_matrices(rng, num_frames, height, width, bank_hw, config)
    warp = rng.normal(0.0, config.warp_strength * rng.uniform(0, 1), size=(2, 2, 4, 4))
    blur = float(rng.uniform(0.8, 2.5)) if rng.random() < config.blur_probability else 0.0
    sprites = []
    for _ in range(int(rng.integers(config.min_sprites, config.max_sprites + 1))):
        local = _sprite_matrices(rng, num_frames, height, width, config)
        power, harmonics, phases = _shape(rng)
        softness = float(rng.uniform(0.01, 0.08))
        flat = bool(rng.random() < 0.2)
        colour, gradient = rng.uniform(0, 1, size=3), rng.uniform(-0.2, 0.2, size=2)
        sprite_photo = int(rng.integers(num_photos))
        half = rng.uniform(0.1, 0.35) * min(bank_hw)
        centre = np.array([rng.uniform(half, bank_hw[1] - half), rng.uniform(half, bank_hw[0] - half)])
        texture = np.concatenate([_rotation_scale(rng.uniform(0, 2 * math.pi), half, half), centre[:, None]], axis=1)
        sprite_gain, sprite_order = _colour(rng)
        sprites.append(SpritePlan(local, power, harmonics, phases, softness, flat, colour, gradient, sprite_photo, texture,
                                  sprite_gain, sprite_order))
    t = np.linspace(0, 1, num_frames)
    brightness = 1.0 + rng.uniform(-0.3, 0.3) * t + 0.1 * np.sin(2 * math.pi * rng.uniform(0, 2) * t + rng.uniform(0, 6.3))
    tint = 1.0 + rng.uniform(-0.15, 0.15, size=(1, 3)) * t[:, None]
    frame_blur = float(rng.uniform(0.5, 1.5)) if rng.random() < config.blur_probability / 2 else 0.0
    return ClipPlan(photo, camera, warp, gain, order, blur, sprites, brightness, tint, frame_blur, config.noise_std,
                    int(rng.integers(2**62)))


# --------------------------------------------------------------------------- batched rendering


def _tensor(arrays: Sequence[np.ndarray], device: torch.device, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays).astype(np.float32 if dtype == torch.float32 else np.int64)).to(device)


def _pixel_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, device=device) + 0.5, torch.arange(width, device=device) + 0.5, indexing="ij")
    return torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).float()  # (H, W, 3)


def _sample(bank: torch.Tensor, photos: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample bank photos at photo-pixel coordinates: ``grid`` ``(N, T, H, W, 2)`` → ``(N, 3, T, H, W)``."""
    n, t, h, w, _ = grid.shape
    hb, wb = bank.shape[-2:]
    scale = torch.tensor([2.0 / wb, 2.0 / hb], device=grid.device)
    norm = (grid * scale - 1.0).reshape(n, t * h, w, 2)
    source = bank[photos]
    source = source.float() / 255.0 if source.dtype == torch.uint8 else source
    out = F.grid_sample(source, norm, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.view(n, 3, t, h, w)


def _recolour(frames: torch.Tensor, gain: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-item channel permutation then gains: ``frames`` ``(N, 3, …)``, ``gain`` ``(N, 3)``, ``order`` ``(N, 3)``."""
    shape = (frames.shape[0], 3) + (1,) * (frames.dim() - 2)
    if bool((order != torch.arange(3, device=order.device)).any()):  # most items keep their channels: skip the gather
        frames = torch.gather(frames, 1, order.view(shape).expand_as(frames))
    return frames.mul_(gain.view(shape)).clamp_(0, 1)


def gaussian_blur_batch(frames: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur ``(N, C, T, H, W)`` with one Gaussian σ (pixels) per item; σ ≤ 0 leaves an item as it is."""
    if not bool((sigma > 0).any()):
        return frames
    n, c, t, h, w = frames.shape
    radius = max(1, int(math.ceil(2.5 * float(sigma.max()))))
    x = torch.arange(-radius, radius + 1, device=frames.device, dtype=torch.float32)
    safe = sigma.clamp_min(1e-3).view(n, 1)
    kernel = torch.exp(-0.5 * (x / safe) ** 2)
    kernel = torch.where((sigma > 0).view(n, 1), kernel, (x == 0).float().expand(n, -1))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (N·C, K)
    planes = frames.permute(2, 0, 1, 3, 4).reshape(t, n * c, h, w)  # channels of every item as groups
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernel.view(n * c, 1, 1, -1), groups=n * c)
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernel.view(n * c, 1, -1, 1), groups=n * c)
    return planes.view(t, n, c, h, w).permute(1, 2, 0, 3, 4)


def _shape_masks(local: torch.Tensor, plans: Sequence[SpritePlan], device: torch.device) -> torch.Tensor:
    """Soft masks ``(S, 1, T, H, W)`` of sprites at local unit coordinates ``(S, T, H, W, 2)``.

    Each kind of outline is computed only for the sprites that have it: ellipses need a norm,
    rounded boxes a p-norm, stars and blobs an angle-dependent radius (from powers of the unit
    complex number u + iv, which avoids atan2 and cos over every pixel)."""
    u, v = local[..., 0], local[..., 1]
    distance = torch.sqrt(u * u + v * v)
    boxes = [i for i, p in enumerate(plans) if p.power != 2.0]
    if boxes:
        index = torch.tensor(boxes, device=device)
        power = _tensor([np.float32(plans[i].power) for i in boxes], device).view(-1, 1, 1, 1)
        distance[index] = (u[index].abs().pow(power) + v[index].abs().pow(power)).pow(1.0 / power)
    shaped = [i for i, p in enumerate(plans) if p.harmonics.any()]
    if shaped:
        index = torch.tensor(shaped, device=device)
        view = (len(shaped), 1, 1, 1)
        r = distance[index].clamp_min(1e-6)
        cos1, sin1 = u[index] / r, v[index] / r
        cos_k, sin_k = cos1, sin1
        radius = torch.ones_like(r)
        amplitudes = _tensor([plans[i].harmonics for i in shaped], device)
        phases = _tensor([plans[i].phases for i in shaped], device)
        highest = int((amplitudes != 0).any(0).nonzero().max()) + 1  # stars need one harmonic, often a low one
        for k in range(highest):  # radius += a·cos((k+2)θ + φ)
            cos_k, sin_k = cos_k * cos1 - sin_k * sin1, sin_k * cos1 + cos_k * sin1
            if bool((amplitudes[:, k] != 0).any()):
                a_cos = (amplitudes[:, k] * torch.cos(phases[:, k])).view(view)
                a_sin = (amplitudes[:, k] * torch.sin(phases[:, k])).view(view)
                radius = radius + a_cos * cos_k - a_sin * sin_k
        distance[index] = r / radius.clamp_min(0.2)
    softness = _tensor([np.float32(p.softness) for p in plans], device).view(-1, 1, 1, 1)
    return torch.sigmoid((1.0 - distance) / softness).unsqueeze(1)


def _affine(pixels: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """``pixels`` ``(H, W, 3)`` through per-item, per-frame affines ``(N, T, 2, 3)`` → ``(N, T, H, W, 2)``."""
    return torch.einsum("hwk,ntjk->nthwj", pixels, matrices)


def render(plans: Sequence[ClipPlan], bank: torch.Tensor, height: int, width: int, chunk: int | None = None) -> torch.Tensor:
    """Render planned clips on ``bank``'s device: ``(N, 3, T, H, W)`` float in [0, 1].

    Args:
        bank: ``(P, 3, Hb, Wb)`` photographs, uint8 or float in [0, 1] (:func:`centrifuge.photos.bank_tensor`).
        chunk: clips rendered together. On a GPU the whole batch (one kernel per operation); on a
            CPU one clip at a time is fastest, since a clip's intermediate tensors stay in cache.
    """
    chunk = chunk or (len(plans) if bank.device.type != "cpu" else 1)
    parts = [_render_chunk(plans[i : i + chunk], bank, height, width) for i in range(0, len(plans), chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _render_chunk(plans: Sequence[ClipPlan], bank: torch.Tensor, height: int, width: int) -> torch.Tensor:
    device = bank.device
    n, t = len(plans), plans[0].camera.shape[0]
    pixels = _pixel_grid(height, width, device)

    grid = _affine(pixels, _tensor([p.camera for p in plans], device))  # (N, T, H, W, 2)
    coarse = _tensor([p.warp for p in plans], device)  # (N, 2, 2, 4, 4): the field at the first and last frame
    # Upsampling is linear, so upsample the two end fields once and interpolate in time after.
    ends = F.interpolate(coarse.reshape(n * 2, 2, 4, 4), size=(height, width), mode="bicubic", align_corners=False)
    ends = ends.view(n, 2, 2, height, width).permute(0, 1, 3, 4, 2)  # (N, 2, H, W, 2)
    ramp = torch.linspace(0, 1, t, device=device).view(1, t, 1, 1, 1)
    half_bank = torch.tensor([bank.shape[-1] / 2, bank.shape[-2] / 2], device=device)
    grid = grid + torch.lerp(ends[:, 0:1], ends[:, 1:2], ramp) * half_bank
    frames = _sample(bank, _tensor([p.photo for p in plans], device, torch.long), grid)
    frames = _recolour(frames, _tensor([p.gain for p in plans], device), _tensor([p.order for p in plans], device, torch.long))
    frames = gaussian_blur_batch(frames, _tensor([np.float32(p.blur) for p in plans], device))

    # Sprites, flattened over the batch: one grid, one mask pass and one texture sample for all.
    owners = [(i, k) for i, p in enumerate(plans) for k in range(len(p.sprites))]
    if owners:
        sprites = [plans[i].sprites[k] for i, k in owners]
        local_m = _tensor([s.local for s in sprites], device)  # (S, T, 2, 3)
        local = _affine(pixels, local_m)
        masks = _shape_masks(local, sprites, device)
        # texture coordinates: the sprite's local → photo affine composed with pixel → local
        texture = _tensor([s.texture for s in sprites], device)  # (S, 2, 3)
        composed = torch.einsum("sij,stjk->stik", texture[:, :, :2], local_m)
        composed[..., 2] += texture[:, None, :, 2]
        textures = _sample(bank, _tensor([s.photo for s in sprites], device, torch.long), _affine(pixels, composed))
        textures = _recolour(textures, _tensor([s.gain for s in sprites], device), _tensor([s.order for s in sprites], device, torch.long))
        flat = _tensor([s.flat for s in sprites], device).view(-1, 1, 1, 1, 1) > 0.5
        if bool(flat.any()):
            gradient = _tensor([s.gradient for s in sprites], device)
            shade = 1 + (local * gradient.view(-1, 1, 1, 1, 2)).sum(-1).unsqueeze(1)  # (S, 1, T, H, W)
            colours = (_tensor([s.colour for s in sprites], device).view(-1, 3, 1, 1, 1) * shade).clamp(0, 1)
            textures = torch.where(flat, colours, textures)
        owner = torch.tensor([i for i, _ in owners], device=device)
        depth = torch.tensor([k for _, k in owners])
        for k in range(int(depth.max()) + 1):  # back to front: later sprites occlude earlier ones
            chosen = (depth == k).nonzero().flatten()
            if len(chosen) == n:  # every clip has a k-th sprite: no gather needed
                frames.lerp_(textures[chosen.to(device)], masks[chosen.to(device)])
                continue
            chosen = chosen.to(device)
            who = owner[chosen]
            frames[who] = torch.lerp(frames[who], textures[chosen], masks[chosen])

    brightness = _tensor([p.brightness for p in plans], device).view(n, 1, t, 1, 1)
    tint = _tensor([p.tint for p in plans], device).permute(0, 2, 1).view(n, 3, t, 1, 1)
    frames = gaussian_blur_batch(frames * brightness * tint, _tensor([np.float32(p.frame_blur) for p in plans], device))
    for i, p in enumerate(plans):  # each clip's own noise stream: independent of the batch it is in
        g = torch.Generator(device=device).manual_seed(p.noise_seed)
        frames[i].add_(torch.randn(frames.shape[1:], generator=g, device=device), alpha=p.noise_std)
    return frames.clamp_(0, 1)


class BatchedGenerator:
    """Dead-leaves clips rendered a batch at a time on ``device`` from a photo bank tensor.

    Args:
        bank: ``(P, 3, Hb, Wb)`` uint8 (moved to ``device``).
        seed: the stream; clip ``index`` of it is a pure function of ``(seed, index)``.
    """

    def __init__(self, bank: torch.Tensor, device: torch.device | str = "cpu", seed: int = 0, config: SyntheticConfig = SyntheticConfig()):
        self.bank = bank.to(device).float() / 255.0  # converted once: every clip samples it
        self.num_photos, self.bank_hw = bank.shape[0], tuple(bank.shape[-2:])
        self.device = torch.device(device)
        self.seed = seed
        self.config = config

    def plan(self, index: int, num_frames: int, height: int, width: int, background: int | None = None) -> ClipPlan:
        return plan_clip(self.seed * 1_000_003 + index, num_frames, height, width, self.num_photos, self.bank_hw,
                         self.config, background)

    def planning_copy(self) -> "BatchedGenerator":
        """A copy that plans clips but holds no tensor (for worker processes)."""
        import copy

        clone = copy.copy(self)
        clone.bank = None
        return clone

    def clips(self, indices: Sequence[int], num_frames: int, height: int, width: int) -> torch.Tensor:
        """Clips ``indices`` of the stream: ``(N, 3, T, H, W)`` float on the device."""
        return self.render_chunked(indices, num_frames, height, width)

    def render_chunked(self, indices: Sequence[int], num_frames: int, height: int, width: int, chunk: int | None = None) -> torch.Tensor:
        """:meth:`clips`, rendering ``chunk`` clips per batched pass (default: the device's best)."""
        return render([self.plan(i, num_frames, height, width) for i in indices], self.bank, height, width, chunk)


def default_bank_size(crop_size: int) -> tuple[int, int]:
    """Bank photographs are 2:3; large enough that a camera filming 35–90 % of one sees about one
    photo pixel per output pixel at the crop size."""
    height = max(128, int(round(crop_size * 2.3 / 16)) * 16)
    return height, height * 3 // 2
