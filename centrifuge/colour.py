"""Colour as the file has it: Y'CbCr planes, the matrix and range that turn them into RGB, and the
tags that tell a player which ones were used.

``separate`` works on a video's own Y'CbCr planes: the network sees RGB made with the input's
matrix and range, and the layers are written back in the same space with the same tags, so a layer
keeps the input's colours and no full-resolution frame is ever converted to RGB and back. An
untagged input is read the way players read it: BT.709 from 720 lines up, BT.601 below, limited
range; the outputs then carry those tags explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# FFmpeg's codes (AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic, AVColorRange).
UNSPECIFIED = 2
_COLORSPACE = {"bt709": 1, "bt601": 6, "bt2020": 9}
_PRIMARIES = {"bt709": 1, "bt601": 6, "bt2020": 9}
_TRANSFER = {"bt709": 1, "bt601": 6, "bt2020": 14}
_FROM_CODE = {1: "bt709", 5: "bt601", 6: "bt601", 7: "bt601", 9: "bt2020", 10: "bt2020"}
_LUMA_WEIGHTS = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114), "bt2020": (0.2627, 0.0593)}
LIMITED, FULL = 1, 2


@dataclass(frozen=True)
class ColourSpec:
    """The Y'CbCr matrix (``bt601``/``bt709``/``bt2020``), the range, and the codes to tag outputs with."""

    matrix: str = "bt601"
    full_range: bool = False
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED

    @property
    def colorspace_code(self) -> int:
        return _COLORSPACE[self.matrix]

    @property
    def range_code(self) -> int:
        return FULL if self.full_range else LIMITED

    def tags(self) -> dict[str, int]:
        """What to set on an encoder (and on each frame) so players convert as we did."""
        return {"colorspace": self.colorspace_code, "color_range": self.range_code,
                "color_primaries": self.primaries if self.primaries != UNSPECIFIED else _PRIMARIES[self.matrix],
                "color_trc": self.transfer if self.transfer != UNSPECIFIED else _TRANSFER[self.matrix]}

    def to_dict(self) -> dict:
        return {"matrix": self.matrix, "range": "full" if self.full_range else "limited", **self.tags()}


def spec_of(colorspace: int, color_range: int, primaries: int, transfer: int, height: int, pix_fmt: str = "") -> ColourSpec:
    """The colour a decoded frame carries, with players' defaults for what it leaves untagged."""
    matrix = _FROM_CODE.get(int(colorspace)) or _FROM_CODE.get(int(primaries)) or ("bt709" if height >= 720 else "bt601")
    full = int(color_range) == FULL or pix_fmt.startswith("yuvj")
    return ColourSpec(matrix, full, int(primaries), int(transfer))


def default_colour(height: int) -> ColourSpec:
    """What players assume for an untagged video of this height."""
    return spec_of(UNSPECIFIED, 0, UNSPECIFIED, UNSPECIFIED, height)


def _planes_to_rgb_affine(spec: ColourSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``rgb = M @ planes + c`` with planes and RGB as code values / 255."""
    kr, kb = _LUMA_WEIGHTS[spec.matrix]
    kg = 1.0 - kr - kb
    # RGB from (Y, Pb, Pr) with Y in [0, 1] and Pb, Pr in [-0.5, 0.5].
    from_ypbpr = torch.tensor([[1.0, 0.0, 2 * (1 - kr)],
                               [1.0, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
                               [1.0, 2 * (1 - kb), 0.0]], dtype=torch.float64)
    if spec.full_range:
        scale, offset = torch.ones(3, dtype=torch.float64), torch.tensor([0.0, 128 / 255, 128 / 255], dtype=torch.float64)
    else:
        scale = torch.tensor([255 / 219, 255 / 224, 255 / 224], dtype=torch.float64)
        offset = torch.tensor([16 / 255, 128 / 255, 128 / 255], dtype=torch.float64)
    matrix = from_ypbpr * scale[None]
    return matrix.float(), (-matrix @ offset).float()


def planes_to_rgb(planes: torch.Tensor, spec: ColourSpec | None, dim: int = -4) -> torch.Tensor:
    """Y'CbCr code values / 255 (all planes at one size, channels along ``dim``) → RGB in [0, 1]
    (unclamped). ``spec=None`` means the planes are already RGB."""
    if spec is None:
        return planes
    matrix, offset = _planes_to_rgb_affine(spec)
    return _affine(planes, matrix.to(planes.device), offset.to(planes.device), dim)


def rgb_to_planes(rgb: torch.Tensor, spec: ColourSpec | None, dim: int = -4) -> torch.Tensor:
    """The inverse of :func:`planes_to_rgb` (same layout)."""
    if spec is None:
        return rgb
    matrix, offset = _planes_to_rgb_affine(spec)
    inverse = torch.linalg.inv(matrix.double()).float()
    return _affine(rgb, inverse.to(rgb.device), (-inverse @ offset).to(rgb.device), dim)


def _affine(x: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor, dim: int) -> torch.Tensor:
    """``matrix @ x + offset`` along dimension ``dim`` (of size 3), as nine multiply-adds over the
    planes where they lie (no transposed copy of a large tensor)."""
    planes = x.unbind(dim)
    rows = [planes[0] * float(m[0]) + planes[1] * float(m[1]) + planes[2] * float(m[2]) + float(o) for m, o in zip(matrix, offset)]
    return torch.stack(rows, dim)


def planes_to_rgb_uint8(planes: Sequence[torch.Tensor], spec: ColourSpec, max_size: int | None = None) -> np.ndarray:
    """Full-resolution uint8 planes ``(…, H_p, W_p)`` (chroma at half size) → ``(…, H, W, 3)``
    uint8 RGB: for the few frames a person looks at (the preview), not for the stream. With
    ``max_size``, larger frames come out shrunk (antialiased) to that longest side: a 720p frame
    for a 192-pixel thumbnail costs a tenth of its full conversion."""
    size = tuple(planes[0].shape[-2:])
    if max_size and max(size) > max_size:
        scale = max_size / max(size)
        size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    full = []
    for plane in planes:
        x = plane.float().div(255)
        if tuple(x.shape[-2:]) != size:
            lead = x.shape[:-2]
            shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
            x = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=size, mode="bilinear", antialias=shrink, align_corners=False)
            x = x.reshape(*lead, *size)
        full.append(x)
    rgb = planes_to_rgb(torch.stack(full, -1), spec, dim=-1)
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
