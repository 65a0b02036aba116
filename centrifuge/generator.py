"""The batched generator: the dead-leaves videos of :mod:`centrifuge.synthetic`, a whole batch at once,
on the device the model trains on.

Each clip's random choices (camera path, sprites, colours, blur, noise seed) are drawn on the CPU
from its own seed, a few hundred numbers per clip; everything per pixel then runs as batched tensor
operations on the device: one affine grid for all frames of all clips, one ``grid_sample`` for every
background and one per sprite depth for the sprites' textures, soft shape masks, lighting and
colour drift, blur and noise. A clip is a pure function of its seed (on a given device), whichever
batch it is part of and however many threads make it, so a batch split across ``torchrun``
processes is the single-process batch, and resume is exact.

On a CPU the generator is bound by memory traffic more than by arithmetic: it renders one clip at a
time (as one batch item per thread, so that ``grid_sample`` uses every thread), works in place
where it can, and avoids padding copies, fresh random draws and gathers that a GPU would not notice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .synthetic import SyntheticConfig, _camera_matrices, _in_scene, _rotation_scale, _sprite_matrices

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
        if config.scene_sprites:  # the scene's own photograph and colours, carried by its camera
            local, flat, sprite_photo, sprite_gain, sprite_order = _in_scene(local, camera), False, photo, gain, order
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


def _centres(size: int, device: torch.device) -> torch.Tensor:
    """Pixel centres 0.5, 1.5, … of one axis."""
    return torch.arange(size, device=device, dtype=torch.float32) + 0.5


def _sample(bank: torch.Tensor, photos: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample bank photos at ``grid`` ``(N, T, H, W, 2)`` in grid_sample's normalised coordinates
    (:func:`_normalised`) → ``(N, 3, T, H, W)``."""
    n, t, h, w, _ = grid.shape
    same = bool((photos == photos[0]).all())  # one clip in segments: no copy of its photograph per segment
    source = bank[photos[0]].expand(n, -1, -1, -1) if same else bank[photos]
    source = source.float() / 255.0 if source.dtype == torch.uint8 else source
    out = F.grid_sample(source, grid.view(n, t * h, w, 2), mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.view(n, 3, t, h, w)


def _normalised(matrices: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Affines ``(…, 2, 3)`` to bank-photo pixels turned into affines to grid_sample's [−1, 1]
    coordinates (x·2/W − 1, y·2/H − 1), so the per-pixel grid needs no rescaling."""
    scale = torch.tensor([2.0 / bank.shape[-1], 2.0 / bank.shape[-2]], device=matrices.device).view(2, 1)
    normalised = (matrices * scale).contiguous()  # contiguous: the per-pixel grid follows its layout
    normalised[..., 2] -= 1.0
    return normalised


def _recolour(frames: torch.Tensor, gain: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per-item channel permutation then gains: ``frames`` ``(N, 3, …)``, ``gain`` ``(N, 3)``, ``order`` ``(N, 3)``."""
    shape = (frames.shape[0], 3) + (1,) * (frames.dim() - 2)
    if bool((order != torch.arange(3, device=order.device)).any()):  # most items keep their channels: skip the gather
        if bool((order == order[0]).all()):  # one clip (in segments): one permutation of the channels
            frames = frames[:, order[0]]
        else:
            frames = torch.gather(frames, 1, order.view(shape).expand_as(frames))
    return frames.mul_(gain.view(shape)).clamp_(0, 1)


def gaussian_blur_batch(frames: torch.Tensor, sigma: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Blur ``(N, C, T, H, W)`` with one Gaussian σ (pixels) per item; σ ≤ 0 leaves an item as it is.

    Separable, as a weighted sum of shifted copies (a few times faster on a CPU than a grouped
    convolution, and batched alike on a GPU); only the items with σ > 0 are computed. With
    ``inplace`` (a contiguous ``frames`` whose items are all blurred) the second pass writes over
    ``frames``: one large allocation fewer."""
    blurred = (sigma > 0).nonzero().flatten()
    if len(blurred) == 0:
        return frames
    n, c, t, h, w = frames.shape
    chosen = sigma[blurred].view(-1, 1)
    radius = max(1, int(math.ceil(2.5 * float(chosen.max()))))
    x = torch.arange(-radius, radius + 1, device=frames.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / chosen) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).view(len(blurred), -1, 1, 1, 1)  # (B, K, 1, 1, 1)
    every = len(blurred) == n
    planes = (frames if every else frames[blurred]).reshape(len(blurred), c * t, h, w)
    source = planes
    for along in (3, 2):  # rows, then columns
        reuse = inplace and every and along == 2 and source.is_contiguous()
        out = torch.mul(planes, kernel[:, radius], out=source) if reuse else planes * kernel[:, radius]
        for shift in range(1, radius + 1):
            for k, d in ((radius + shift, shift), (radius - shift, -shift)):  # reads x[i + d], clamped at the edges
                _add_shifted(out, planes, along, d, kernel[:, k])
        planes = out
    if every:
        return planes.view(n, c, t, h, w)
    frames = frames.clone()
    frames[blurred] = planes.view(-1, c, t, h, w)
    return frames


def _add_shifted(out: torch.Tensor, x: torch.Tensor, dim: int, shift: int, weight: torch.Tensor) -> None:
    """``out[i] += weight · x[clamp(i + shift)]`` along ``dim``: a shifted copy with the edge
    repeated (replicate padding without making the padded tensor)."""
    size = x.shape[dim]
    inside = size - abs(shift)
    if inside <= 0:  # the shift is wider than the axis: every pixel reads the edge
        edge = x.narrow(dim, size - 1 if shift > 0 else 0, 1)
        out.addcmul_(edge.expand_as(out), weight)
        return
    if shift > 0:
        out.narrow(dim, 0, inside).addcmul_(x.narrow(dim, shift, inside), weight)
        out.narrow(dim, inside, shift).addcmul_(x.narrow(dim, size - 1, 1).expand_as(out.narrow(dim, inside, shift)), weight)
    else:
        out.narrow(dim, -shift, inside).addcmul_(x.narrow(dim, 0, inside), weight)
        out.narrow(dim, 0, -shift).addcmul_(x.narrow(dim, 0, 1).expand_as(out.narrow(dim, 0, -shift)), weight)


def _shape_masks(u: torch.Tensor, v: torch.Tensor, plans: Sequence[SpritePlan], device: torch.device) -> torch.Tensor:
    """Soft masks ``(S, 1, T, H, W)`` of sprites at local unit coordinates ``u``, ``v`` ``(S, T, H, W)``.

    Each kind of outline is computed only for the sprites that have it: ellipses need a norm,
    rounded boxes a p-norm, stars and blobs an angle-dependent radius (from powers of the unit
    complex number u + iv, which avoids atan2 and cos over every pixel)."""
    everyone = len(plans)
    boxes = [i for i, p in enumerate(plans) if p.power != 2.0]
    if len(boxes) == everyone:  # on a CPU a group is one sprite: no norm computed twice, no gather
        distance = _p_norm(u, v, plans, boxes, device)
    else:
        distance = torch.hypot(u, v)
        if boxes:
            index = torch.tensor(boxes, device=device)
            distance[index] = _p_norm(u[index], v[index], plans, boxes, device)
    shaped = [i for i, p in enumerate(plans) if p.harmonics.any()]
    if len(shaped) == everyone:
        distance = distance / _outline_radius(u, v, distance, [plans[i] for i in shaped], device)
    elif shaped:
        index = torch.tensor(shaped, device=device)
        distance[index] = distance[index] / _outline_radius(u[index], v[index], distance[index], [plans[i] for i in shaped], device)
    sharpness = _tensor([np.float32(-1.0 / p.softness) for p in plans], device).view(-1, 1, 1, 1)
    return distance.sub_(1.0).mul_(sharpness).sigmoid_().unsqueeze(1)  # sigmoid((1 − d) / softness)


def _p_norm(u: torch.Tensor, v: torch.Tensor, plans: Sequence[SpritePlan], rows: list[int], device: torch.device) -> torch.Tensor:
    """The rounded boxes' distance (|u|ᵖ + |v|ᵖ)^(1/p) of sprites ``rows``."""
    power = _tensor([np.float32(plans[i].power) for i in rows], device).view(-1, 1, 1, 1)
    # xᵖ as exp(p·log x): a few times faster than pow on a CPU (log 0 = −inf gives 0, as it should)
    total = u.abs().log_().mul_(power).exp_().add_(v.abs().log_().mul_(power).exp_())
    return total.log_().div_(power).exp_()


def _outline_radius(u: torch.Tensor, v: torch.Tensor, distance: torch.Tensor, plans: Sequence[SpritePlan],
                    device: torch.device) -> torch.Tensor:
    """A star's or blob's radius in the direction of each pixel, 1 + Σ aₖ·cos(kθ + φₖ), from powers
    of the unit complex number (u + iv)/r."""
    r = distance.clamp_min(1e-6)
    cos1, sin1 = u / r, v / r
    cos_k, sin_k = cos1, sin1
    radius = torch.ones_like(r)
    view = (len(plans), 1, 1, 1)
    amplitudes = _tensor([p.harmonics for p in plans], device)
    phases = _tensor([p.phases for p in plans], device)
    highest = int((amplitudes != 0).any(0).nonzero().max()) + 1  # stars need one harmonic, often a low one
    for k in range(highest):  # radius += a·cos((k+2)θ + φ); in place: the generator is bound by memory traffic
        cos_k, sin_k = (cos_k * cos1).addcmul_(sin_k, sin1, value=-1), (sin_k * cos1).addcmul_(cos_k, sin1)
        if bool((amplitudes[:, k] != 0).any()):
            radius.addcmul_(cos_k, (amplitudes[:, k] * torch.cos(phases[:, k])).view(view))
            radius.addcmul_(sin_k, (-amplitudes[:, k] * torch.sin(phases[:, k])).view(view))
    return radius.clamp_min_(0.2)


def _affine_planes(matrices: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_affine`'s two coordinates as separate contiguous ``(N, T, H, W)`` tensors (the
    per-pixel arithmetic of the shapes runs faster on them than on an interleaved pair)."""
    m = matrices[:, :, None, None]  # (N, T, 1, 1, 2, 3)
    return tuple(m[..., j, 0] * xs + (m[..., j, 1] * ys[:, None] + m[..., j, 2]) for j in range(2))


def _affine(matrices: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Pixel centres ``xs`` ``(W,)`` × ``ys`` ``(H,)`` through per-item, per-frame affines
    ``(N, T, 2, 3)`` → ``(N, T, H, W, 2)``, as a sum of a row and a column term (an einsum over the
    homogeneous grid costs a few times more)."""
    m = matrices[:, :, None, None]  # (N, T, 1, 1, 2, 3)
    return m[..., 0] * xs[:, None] + (m[..., 1] * ys[:, None, None] + m[..., 2])


def render(plans: Sequence[ClipPlan], bank: torch.Tensor, height: int, width: int, chunk: int | None = None,
           segments: int | None = None) -> torch.Tensor:
    """Render planned clips on ``bank``'s device: ``(N, 3, T, H, W)`` float in [0, 1].

    Args:
        bank: ``(P, 3, Hb, Wb)`` photographs, uint8 or float in [0, 1] (:func:`centrifuge.photos.bank_tensor`).
        chunk: clips rendered together. On a GPU the whole batch (one kernel per operation); on a
            CPU one clip at a time, whose intermediate tensors stay in cache.
        segments: on a CPU each clip is rendered as this many batch items of consecutive frames
            (default: one per thread), since ``grid_sample`` spreads its work over threads by batch
            item only. Every frame is made on its own (blur is spatial, motion a per-frame affine),
            so a clip does not depend on either setting.
    """
    on_cpu = bank.device.type == "cpu"
    chunk = chunk or (1 if on_cpu else len(plans))
    total = plans[0].camera.shape[0]
    parts = segments or (torch.get_num_threads() if on_cpu else 1)
    parts = parts if total % parts == 0 else 1
    if chunk >= len(plans) and parts == 1:
        return _render_chunk(plans, bank, height, width, [slice(0, total)] * len(plans))
    out = torch.empty((len(plans), 3, total, height, width), device=bank.device)
    length = total // parts
    for i in range(0, len(plans), chunk):
        group = plans[i : i + chunk]
        spans = [slice(k * length, (k + 1) * length) for _ in group for k in range(parts)]
        rendered = _render_chunk([p for p in group for _ in range(parts)], bank, height, width, spans)
        out[i : i + len(group)].view(len(group), 3, parts, length, height, width).copy_(
            rendered.view(len(group), parts, 3, length, height, width).transpose(1, 2))
    return out


def _render_chunk(plans: Sequence[ClipPlan], bank: torch.Tensor, height: int, width: int, spans: Sequence[slice]) -> torch.Tensor:
    """Frames ``spans[i]`` of clip ``plans[i]``, spans of one length ``t``: ``(N, 3, t, H, W)``."""
    device = bank.device
    n, total = len(plans), plans[0].camera.shape[0]
    t = spans[0].stop - spans[0].start
    xs, ys = _centres(width, device), _centres(height, device)

    grid = _affine(_normalised(_tensor([p.camera[span] for p, span in zip(plans, spans)], device), bank), xs, ys)  # (N, t, H, W, 2)
    coarse = _tensor([p.warp for p in plans], device)  # (N, 2, 2, 4, 4): the field at the first and last frame
    # Upsampling is linear, so upsample the two end fields once and interpolate in time after. The
    # field is in half-photo units, which are grid_sample's normalised ones.
    ends = F.interpolate(coarse.reshape(n * 2, 2, 4, 4), size=(height, width), mode="bicubic", align_corners=False)
    ends = ends.view(n, 2, 2, height, width).permute(0, 1, 3, 4, 2)  # (N, 2, H, W, 2)
    ramp = torch.stack([torch.linspace(0, 1, total, device=device)[span] for span in spans]).view(n, t, 1, 1, 1)
    grid = grid.add_(ends[:, 0:1]).add_(ramp * (ends[:, 1:2] - ends[:, 0:1]))
    frames = _sample(bank, _tensor([p.photo for p in plans], device, torch.long), grid)
    del grid
    frames = _recolour(frames, _tensor([p.gain for p in plans], device), _tensor([p.order for p in plans], device, torch.long))
    frames = gaussian_blur_batch(frames.contiguous(), _tensor([np.float32(p.blur) for p in plans], device), inplace=True)
    for depth in range(max(len(p.sprites) for p in plans)):  # back to front: later sprites occlude earlier ones
        owners = [i for i, p in enumerate(plans) if len(p.sprites) > depth]
        _draw_sprites(frames, owners, [plans[i].sprites[depth] for i in owners], bank, [spans[i] for i in owners])

    light = _tensor([p.brightness[span, None] * p.tint[span] for p, span in zip(plans, spans)], device).permute(0, 2, 1).view(n, 3, t, 1, 1)
    frames = gaussian_blur_batch(frames.mul_(light), _tensor([np.float32(p.frame_blur) for p in plans], device), inplace=True)
    for i, (p, span) in enumerate(zip(plans, spans)):  # each clip's own noise: independent of the batch it is in
        frames[i].add_(_noise((3, total, height, width), p.noise_seed, device)[:, span], alpha=p.noise_std)
    return frames.clamp_(0, 1)


def _draw_sprites(frames: torch.Tensor, owners: list[int], sprites: list[SpritePlan], bank: torch.Tensor,
                  spans: Sequence[slice]) -> None:
    """Composite one sprite onto each of items ``owners`` of ``frames`` ``(N, 3, t, H, W)``, frames
    ``spans`` of their clips (in place)."""
    device = frames.device
    n, _, t, height, width = frames.shape
    xs, ys = _centres(width, device), _centres(height, device)
    local_m = _tensor([s.local[span] for s, span in zip(sprites, spans)], device)  # (G, t, 2, 3)
    u, v = _affine_planes(local_m, xs, ys)  # (G, t, H, W) each
    masks = _shape_masks(u, v, sprites, device)  # (G, 1, t, H, W)
    # texture coordinates: the sprite's local → photo affine composed with pixel → local
    texture = _tensor([s.texture for s in sprites], device)  # (G, 2, 3)
    composed = torch.einsum("sij,stjk->stik", texture[:, :, :2], local_m)
    composed[..., 2] += texture[:, None, :, 2]
    flat = [s.flat for s in sprites]
    if any(flat):
        gradient = _tensor([s.gradient for s in sprites], device)
        shade = (1 + u * gradient[:, 0].view(-1, 1, 1, 1) + v * gradient[:, 1].view(-1, 1, 1, 1)).unsqueeze(1)  # (G, 1, t, H, W)
        colours = (_tensor([s.colour for s in sprites], device).view(-1, 3, 1, 1, 1) * shade).clamp_(0, 1)
    if all(flat):  # flat colours only (on a CPU, a group is one sprite): no photograph to sample
        textures = colours
    else:
        textures = _sample(bank, _tensor([s.photo for s in sprites], device, torch.long), _affine(_normalised(composed, bank), xs, ys))
        textures = _recolour(textures, _tensor([s.gain for s in sprites], device), _tensor([s.order for s in sprites], device, torch.long))
        if any(flat):
            textures = torch.where(_tensor(flat, device).view(-1, 1, 1, 1, 1) > 0.5, colours, textures)
    if len(owners) == n:  # every item has a sprite at this depth: no gather needed
        frames.lerp_(textures, masks)
    else:
        who = torch.tensor(owners, device=device)
        frames[who] = torch.lerp(frames[who], textures, masks)


_NOISE: dict[torch.device, torch.Tensor] = {}
NOISE_BANK = 1 << 22


def _noise(shape: torch.Size, seed: int, device: torch.device) -> torch.Tensor:
    """Standard normal noise of ``shape``: a window, starting where ``seed`` says, of a bank of
    2²² values drawn once per device (from a fixed seed), repeated for clips larger than the bank.
    A few times cheaper than drawing fresh values for every clip, and as good for sensor noise."""
    if device not in _NOISE:
        _NOISE[device] = torch.randn(NOISE_BANK, generator=torch.Generator(device=device).manual_seed(0), device=device)
    bank, size = _NOISE[device], math.prod(shape)
    if size > NOISE_BANK:
        bank = bank.repeat(-(-size // NOISE_BANK))
    start = seed % (len(bank) - size + 1)
    return bank[start : start + size].view(shape)


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
