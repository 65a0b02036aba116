"""Bringing layers separated at a small size back to full resolution (guided upsampling).

The network sees frames at most ``max_size`` pixels across. Around every small pixel a local linear
model ``layer ≈ a · input + b`` is fitted (a guided filter, He, Sun and Tang), per colour plane: ``a``
says how much of the input's local variation belongs to that layer. The coefficients are smooth, so
they are upsampled and applied to the full-resolution input, and the input's fine detail goes to
the layer whose small version holds that structure, and not to the others.

Where the small input is flat (its local variance below ``eps``) no fit is possible; there the detail
the small frames cannot attribute goes to every layer whole, as a plain "input + upsampled
difference" would do. With ``eps`` → ∞ this is exactly that older rule.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

RADIUS = 2  # of the box window, in small pixels: 5 × 5
EPS = 1e-5  # (code value / 255)²: a local standard deviation of 0.8 code values (oracle: see tests)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2r+1)²`` window of the last two dimensions; windows shrink at the borders.
    Sums of shifted slices, rows then columns: three times faster here than ``avg_pool2d``."""
    if radius == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x.reshape(-1, h, w), (radius, radius, radius, radius))
    rows = padded[:, 0:h]
    for k in range(1, 2 * radius + 1):
        rows = rows + padded[:, k : k + h]
    total = rows[:, :, 0:w]
    for k in range(1, 2 * radius + 1):
        total = total + rows[:, :, k : k + w]
    return (total / _window_counts(h, w, radius, x.device)).reshape(x.shape)


def _window_counts(h: int, w: int, radius: int, device: torch.device) -> torch.Tensor:
    """How many pixels each window holds (fewer at the borders), ``(h, w)``."""
    rows = torch.clamp(torch.arange(h, device=device), max=radius) + torch.clamp(h - 1 - torch.arange(h, device=device), max=radius) + 1
    cols = torch.clamp(torch.arange(w, device=device), max=radius) + torch.clamp(w - 1 - torch.arange(w, device=device), max=radius) + 1
    return (rows[:, None] * cols[None]).float()


def guided_coefficients(guide: torch.Tensor, layers: torch.Tensor, radius: int = RADIUS, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``layers ≈ a · guide + b`` locally.

    Args:
        guide: the small input, ``(C, T, h, w)``.
        layers: the small layers, ``(n, C, T, h, w)``.
    Returns:
        ``(a, b)``, each ``(n, C, T, h, w)``; the full-resolution layer is
        ``upsample(a) · input + upsample(b)``. He et al. smooth ``a`` and ``b`` once more with the
        same box; here the bilinear upsampling does that, at 40 % of the fit's cost saved (the
        oracle figures of tests/test_separate.py did not move: 1.8 % vs 1.8 % of detail to black).
    """
    radius = max(0, min(radius, (min(guide.shape[-2:]) - 1) // 2))
    mean_guide = box_mean(guide, radius)
    variance = (box_mean(guide * guide, radius) - mean_guide * mean_guide).clamp_min(0)
    mean_layers = box_mean(layers, radius)
    covariance = box_mean(layers * guide, radius) - mean_layers * mean_guide
    a = (covariance + eps) / (variance + eps)  # + eps: what cannot be attributed goes to every layer
    b = mean_layers - a * mean_guide
    return a, b


ROW_RUNS_FROM = 6  # rows enlarged at least this many times: rows by runs (see bilinear_resize)


def bilinear_resize(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(m, h, w)`` float → ``(m, *size)``, ``F.interpolate(mode="bilinear", align_corners=False)``
    (to a few 1e-6 of the values' range), as two linear passes while the planes are narrow.

    Rows enlarged ``ROW_RUNS_FROM`` times or more (the network's size brought to 720p and up) are
    widened first, then made by runs: the output rows between two small rows are one ``addcmul`` of
    the two, written once, half the time of the row kernel at 720p and 1080p; with fewer rows per
    run the per-call cost loses, and rows are interpolated first, then columns."""
    m, h, w = planes.shape
    if size[0] >= ROW_RUNS_FROM * h:
        wide = F.interpolate(planes, size=size[1], mode="linear", align_corners=False) if w != size[1] else planes  # (m, h, W)
        step = torch.diff(wide, dim=1, append=wide[:, -1:])  # the next row minus this one (0 after the last)
        out = torch.empty(m, *size, dtype=wide.dtype)
        for first, end, row, weight in _row_runs(h, size[0]):
            torch.addcmul(wide[:, row : row + 1], step[:, row : row + 1], weight, out=out[:, first:end])
        return out
    tall = F.interpolate(planes.transpose(1, 2), size=size[0], mode="linear", align_corners=False)  # (m, w, H)
    return F.interpolate(tall.transpose(1, 2).contiguous(), size=size[1], mode="linear", align_corners=False)


@functools.lru_cache(maxsize=16)
def _row_runs(small: int, large: int) -> list[tuple[int, int, int, torch.Tensor]]:
    """Bilinear rows (align_corners=False, sources clamped at the first row, as torch does) grouped
    in runs that share their upper source row: ``(first, end, row, weights (end - first, 1))``."""
    source = ((torch.arange(large, dtype=torch.float32) + 0.5) * (small / large) - 0.5).clamp_min(0)
    row = source.floor().long().clamp_max(small - 1)
    weight = (source - row).unsqueeze(1)
    firsts = torch.nonzero(torch.diff(row, prepend=torch.tensor([-1]))).flatten().tolist()
    return [(a, b, int(row[a]), weight[a:b]) for a, b in zip(firsts, firsts[1:] + [large])]


def apply_coefficients(a: torch.Tensor, b: torch.Tensor, plane: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(n, k, h, w)`` coefficients and a full-resolution ``(k, H, W)`` input (float, code value /
    255) → ``(n, k, H, W)`` layer planes (into ``out`` when given)."""
    n, k = a.shape[:2]
    size = plane.shape[-2:]
    both = torch.cat([a, b], 1).reshape(2 * n * k, *a.shape[-2:])
    if tuple(both.shape[-2:]) != tuple(size):
        both = bilinear_resize(both, size)
    both = both.reshape(n, 2, k, *size)  # per layer: its k a-planes, then its k b-planes
    if out is None:
        return torch.addcmul(both[:, 1], both[:, 0], plane.unsqueeze(0))
    return torch.addcmul(both[:, 1], both[:, 0], plane.unsqueeze(0), out=out)


def recomposing_partners(layers: torch.Tensor, guide: torch.Tensor, tolerance: float = 1e-4) -> dict[int, int]:
    """Layers that are twice the guide minus an earlier layer, to within ``tolerance``: ``{j: i}``.

    The two layers of every pair of the ``affine`` and ``symmetric`` heads recompose the network's
    input exactly (``l_i + l_j = 2 · input``). Brought to full resolution, ``j`` is then
    ``2 · input − i``: two passes over the frame instead of two upsampled coefficient planes per
    colour plane and a multiply-add, and the full-resolution pair recomposes the full-resolution
    input exactly (its own fit would differ by the fit's float rounding: hundredths of a code value).
    ``layers``: ``(n, C, T, h, w)``; ``guide``: ``(C, T, h, w)``; both in the same units.
    """
    partners: dict[int, int] = {}
    for j in range(layers.shape[0]):
        for i in range(j):
            if i not in partners and float((layers[i] + layers[j] - 2 * guide).abs().max()) <= tolerance:
                partners[j] = i
                break
    return partners
