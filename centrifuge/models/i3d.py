"""The I3D encoder (Carreira & Zisserman, CVPR 2017): Inception-v1 inflated to 3D.

Built up to a chosen final endpoint (``Mixed_3c``, ``Mixed_4f`` or ``Mixed_5c``: the paper's
Table 4), without the classifier, and with a width multiplier for small CPU models. Parameter
names follow the widely used PyTorch port (``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b0.conv3d.weight``, ``….bn.running_mean``), so Kinetics-pretrained weights load with
:func:`load_i3d_weights`.

Layout: ``(B, C, T, H, W)``. Padding is TensorFlow's 'SAME', computed from the input size, so an
input whose sizes are multiples of the stride gives features of exactly size / stride.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

# Endpoint name → (kind, arguments). Inception channels: [b0, b1a, b1b, b2a, b2b, b3b].
I3D_LAYERS: "OrderedDict[str, tuple]" = OrderedDict(
    [
        ("Conv3d_1a_7x7", ("conv", 64, (7, 7, 7), (2, 2, 2))),
        ("MaxPool3d_2a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
        ("Conv3d_2b_1x1", ("conv", 64, (1, 1, 1), (1, 1, 1))),
        ("Conv3d_2c_3x3", ("conv", 192, (3, 3, 3), (1, 1, 1))),
        ("MaxPool3d_3a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
        ("Mixed_3b", ("mixed", (64, 96, 128, 16, 32, 32))),
        ("Mixed_3c", ("mixed", (128, 128, 192, 32, 96, 64))),
        ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))),
        ("Mixed_4b", ("mixed", (192, 96, 208, 16, 48, 64))),
        ("Mixed_4c", ("mixed", (160, 112, 224, 24, 64, 64))),
        ("Mixed_4d", ("mixed", (128, 128, 256, 24, 64, 64))),
        ("Mixed_4e", ("mixed", (112, 144, 288, 32, 64, 64))),
        ("Mixed_4f", ("mixed", (256, 160, 320, 32, 128, 128))),
        ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))),
        ("Mixed_5b", ("mixed", (256, 160, 320, 32, 128, 128))),
        ("Mixed_5c", ("mixed", (384, 192, 384, 48, 128, 128))),
    ]
)

FINAL_ENDPOINTS = ("Mixed_3c", "Mixed_4f", "Mixed_5c")

# Encoder endpoints the U-Net decoder takes skips from, shallow to deep (Fig. 10 as read in
# REFERENCES.md); the final endpoint is the bottleneck.
SKIP_ENDPOINTS = ("Conv3d_1a_7x7", "Conv3d_2c_3x3", "Mixed_3c", "Mixed_4f")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding for one dimension: (before, after)."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _padding_for(x: torch.Tensor, kernel, stride) -> tuple[tuple[int, int], ...]:
    return tuple(same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride))


def _pad(x: torch.Tensor, pads: tuple[tuple[int, int], ...]) -> torch.Tensor:
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last dimension first
    return F.pad(x, flat) if any(flat) else x


def _smaller_than_kernel(x: torch.Tensor, kernel: tuple[int, ...]) -> bool:
    return any(size < k for size, k in zip(x.shape[2:], kernel))


class Unit3D(nn.Module):
    """Conv3d (no bias) → BatchNorm3d → ReLU, with 'SAME' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm: bool = True, activation: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if norm else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and _smaller_than_kernel(x, self.kernel):
            # oneDNN's bf16 weight gradient (PyTorch 2.13, CPU) for a kernel larger than its input
            # (Mixed_5's 3×3×3 convolutions on a 2×2×2 map) is now and then non-finite: about 3 % of
            # training steps were skipped. These maps are tiny, so fp32 costs next to nothing.
            with torch.autocast("cpu", enabled=False):
                return self._convolve(x.float())
        return self._convolve(x)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        pads = _padding_for(x, self.kernel, self.stride)
        if all(before == after for before, after in pads):
            # Symmetric padding goes inside the convolution: no padded copy of the input.
            x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride, tuple(p[0] for p in pads))
        else:
            x = self.conv3d(_pad(x, pads))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pooling with 'SAME' padding. Inputs follow a ReLU (≥ 0), so zero padding never wins."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad(x, _padding_for(x, self.kernel, self.stride)), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches (1×1; 1×1→3×3; 1×1→3×3; 3×3 max-pool→1×1), concatenated on channels."""

    def __init__(self, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


def scale_channels(channels: int, width: float, multiple: int = 1) -> int:
    """``channels × width`` (at least 4), rounded up to a multiple of ``multiple``: GPU tensor cores
    take bf16 convolutions in channel groups of 8, and odd counts fall back to slower kernels."""
    scaled = max(4, int(round(channels * width)))
    return -(-scaled // multiple) * multiple


class I3DEncoder(nn.Module):
    """I3D up to ``final_endpoint``, returning the features of every endpoint in ``return_endpoints``.

    Args:
        in_channels: 3 for RGB; ``3n`` for a corrector that reads n layers.
        final_endpoint: the last endpoint built; nothing deeper is constructed.
        width: channel multiplier (1.0 is the published network).
        channel_multiple: every scaled channel count is rounded up to a multiple of this.
    """

    def __init__(self, in_channels: int = 3, final_endpoint: str = "Mixed_5c", width: float = 1.0, channel_multiple: int = 1):
        super().__init__()
        if final_endpoint not in I3D_LAYERS:
            raise ValueError(f"unknown I3D endpoint {final_endpoint!r}; choose from {list(I3D_LAYERS)}")
        self.final_endpoint = final_endpoint
        self.width = width
        self.endpoint_channels: dict[str, int] = {}
        self.endpoint_stride: dict[str, tuple[int, int, int]] = {}
        channels, stride = in_channels, (1, 1, 1)
        for name, spec in I3D_LAYERS.items():
            kind = spec[0]
            if kind == "conv":
                out = scale_channels(spec[1], width, channel_multiple)
                module = Unit3D(channels, out, spec[2], spec[3])
                channels, stride = out, tuple(a * b for a, b in zip(stride, spec[3]))
            elif kind == "pool":
                module = MaxPool3dSame(spec[1], spec[2])
                stride = tuple(a * b for a, b in zip(stride, spec[2]))
            else:
                module = InceptionModule(channels, tuple(scale_channels(c, width, channel_multiple) for c in spec[1]))
                channels = module.out_channels
            self.add_module(name, module)
            self.endpoint_channels[name] = channels
            self.endpoint_stride[name] = stride
            if name == final_endpoint:
                break
        self.out_channels = channels

    @property
    def stride(self) -> tuple[int, int, int]:
        """Total (T, H, W) stride at the final endpoint: inputs should be multiples of it."""
        return self.endpoint_stride[self.final_endpoint]

    def forward(self, x: torch.Tensor, return_endpoints: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        for name, module in self.named_children():
            x = module(x)
            if name in return_endpoints or name == self.final_endpoint:
                features[name] = x
        return features


def load_i3d_weights(encoder: I3DEncoder, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> list[str]:
    """Load a state dict of the common PyTorch I3D port (e.g. Kinetics ``rgb_imagenet.pt``) into ``encoder``.

    Handles a ``module.`` prefix (files saved from DataParallel), drops the classifier
    (``logits.*``) and endpoints deeper than the encoder's final one, and fills a missing BatchNorm
    scale with ones (DeepMind's checkpoints have none). Load the file itself with
    ``torch.load(path, weights_only=True)``.

    Returns:
        The keys of ``state_dict`` that were not used.
    """
    own = encoder.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name in own:
            if own[name].shape != value.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit the encoder's {tuple(own[name].shape)}")
            mapped[name] = value
        else:
            unused.append(key)
    for name in own:
        if name not in mapped and name.endswith(".bn.weight"):
            mapped[name] = torch.ones_like(own[name])
    missing = [name for name in own if name not in mapped and not name.endswith("num_batches_tracked")]
    if strict and missing:
        raise ValueError(f"the state dict lacks {len(missing)} encoder tensors, e.g. {missing[:3]}")
    encoder.load_state_dict(mapped, strict=False)
    return unused
