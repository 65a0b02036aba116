"""The U-Net: the I3D encoder and a decoder of 3D transposed convolutions with skip connections.

Our reading of the paper's Fig. 10 (whose picture is not in our copy; see REFERENCES.md). From
the bottleneck (the encoder's final endpoint) the decoder climbs back to the input resolution one
encoder level at a time::

    level            stride (T, H, W)   skip from          decoder channels (× width)
    Mixed_5c         (8, 32, 32)        bottleneck         —
    Mixed_4f         (4, 16, 16)        Mixed_4f           256
    Mixed_3c         (2,  8,  8)        Mixed_3c           128
    Conv3d_2c_3x3    (2,  4,  4)        Conv3d_2c_3x3       64
    Conv3d_1a_7x7    (2,  2,  2)        Conv3d_1a_7x7       32
    input            (1,  1,  1)        —                   32

Each step is an up-block: a transposed convolution (kernel 4, stride 2 along each dimension that
doubles; kernel 3, stride 1 where the size stays) → BatchNorm → ReLU; then the skip, reduced by a
1×1×1 convolution to half the block's channels, is concatenated and mixed by a 3×3×3 convolution →
BatchNorm → ReLU. With ``input_skip`` the last block also takes the input itself as its skip: the
paper's decoder has nothing finer than stride 2, so every full-resolution edge of a layer must be
drawn from half-resolution features. Time is upsampled ×2 three times and space ×2 five times. A last 3×3×3
convolution gives the output channels, linear. With a shallower encoder (Mixed_3c or Mixed_4f,
Table 4) the decoder starts lower on the same ladder.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .i3d import SKIP_ENDPOINTS, I3DEncoder, Unit3D, scale_channels

DECODER_CHANNELS = {"Mixed_4f": 256, "Mixed_3c": 128, "Conv3d_2c_3x3": 64, "Conv3d_1a_7x7": 32, "input": 32}


class UpBlock(nn.Module):
    """Transposed conv (×2 where ``factor`` says) → BN → ReLU, then an optional skip merge."""

    def __init__(self, in_channels: int, out_channels: int, factor: tuple[int, int, int], skip_channels: int = 0, multiple: int = 1):
        super().__init__()
        kernel = tuple(4 if f == 2 else 3 for f in factor)
        self.up = nn.ConvTranspose3d(in_channels, out_channels, kernel, stride=factor, padding=1, bias=False)
        self.up_bn = nn.BatchNorm3d(out_channels)
        if skip_channels:
            reduced = -(-max(4, out_channels // 2) // multiple) * multiple
            self.skip = Unit3D(skip_channels, reduced)
            self.merge = Unit3D(out_channels + reduced, out_channels, kernel=(3, 3, 3))
        else:
            self.skip = None
            self.merge = Unit3D(out_channels, out_channels, kernel=(3, 3, 3))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.relu(self.up_bn(self.up(x)), inplace=True)
        if self.skip is not None:
            x = torch.cat([x, self.skip(skip)], dim=1)
        return self.merge(x)


class UNet(nn.Module):
    """I3D encoder + transposed-conv decoder: ``(B, in, T, H, W)`` → ``(B, out, T, H, W)``.

    Inputs must be multiples of :attr:`stride` (the caller pads; see ``CentrifugeNet``).
    """

    def __init__(self, in_channels: int, out_channels: int, final_endpoint: str = "Mixed_5c", width: float = 1.0,
                 input_skip: bool = False, channel_multiple: int = 1):
        super().__init__()
        self.input_skip = input_skip
        self.encoder = I3DEncoder(in_channels, final_endpoint, width, channel_multiple)
        order = list(self.encoder.endpoint_channels)
        depth = order.index(final_endpoint)
        # Deep to shallow; a shallow encoder (Mixed_3c) does not build the deeper skip endpoints at all.
        self.skips = tuple(e for e in SKIP_ENDPOINTS if e in order and order.index(e) < depth)[::-1]
        levels = list(self.skips) + ["input"]
        blocks = []
        channels, stride = self.encoder.out_channels, self.encoder.stride
        for level in levels:
            target = self.encoder.endpoint_stride[level] if level != "input" else (1, 1, 1)
            factor = tuple(s // t for s, t in zip(stride, target))
            out = scale_channels(DECODER_CHANNELS[level], width, channel_multiple)
            if level == "input":
                skip_channels = in_channels if input_skip else 0
            else:
                skip_channels = self.encoder.endpoint_channels[level]
            blocks.append(UpBlock(channels, out, factor, skip_channels, channel_multiple))
            channels, stride = out, target
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv3d(channels, out_channels, kernel_size=3, padding=1)

    @property
    def stride(self) -> tuple[int, int, int]:
        return self.encoder.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x, return_endpoints=self.skips)
        y = features[self.encoder.final_endpoint]
        for block, level in zip(self.decoder, list(self.skips) + [None]):
            y = block(y, features[level] if level else (x if self.input_skip else None))
        return self.head(y)
