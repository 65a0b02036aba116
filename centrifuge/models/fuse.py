"""Inference-time rewrites that leave a model's outputs unchanged (to within rounding)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .i3d import Unit3D
from .unet import UpBlock


def _bn_scale_shift(bn: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _fold_into(conv: nn.Conv3d | nn.ConvTranspose3d, bn: nn.BatchNorm3d) -> None:
    scale, shift = _bn_scale_shift(bn)
    # Output channels are dimension 0 of a convolution's weight, dimension 1 of a transposed one's.
    axis = 1 if isinstance(conv, nn.ConvTranspose3d) else 0
    shape = [1] * conv.weight.dim()
    shape[axis] = -1
    conv.weight.copy_(conv.weight * scale.view(shape))
    bias = conv.bias * scale + shift if conv.bias is not None else shift
    conv.bias = nn.Parameter(bias.detach().clone())


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with every BatchNorm folded into the convolution before it:
    ``BN(W * x) = (s·W) * x + (β − μ·s)`` with ``s = γ / √(σ² + ε)``. One pass over each activation
    fewer at inference; the copy cannot be trained (the running statistics are gone)."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, Unit3D) and module.bn is not None:
            _fold_into(module.conv3d, module.bn)
            module.bn = None
        elif isinstance(module, UpBlock) and isinstance(module.up_bn, nn.BatchNorm3d):
            _fold_into(module.up, module.up_bn)
            module.up_bn = nn.Identity()
    return folded
