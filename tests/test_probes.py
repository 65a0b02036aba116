"""The research probes in scripts/: what they compute must be right for their figures to mean anything."""

import importlib.util
from pathlib import Path

import torch

from centrifuge.losses import pit_loss


def _motion_probe():
    path = Path(__file__).resolve().parents[1] / "scripts" / "motion_probe.py"
    spec = importlib.util.spec_from_file_location("motion_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiles_cut_every_frame_into_squares_in_order():
    probe = _motion_probe()
    layers = torch.rand(2, 2, 3, 4, 32, 32)
    cut = probe.tiles(layers, 16)
    assert cut.shape == (8, 2, 3, 4, 16, 16)
    assert torch.equal(cut[1], layers[0, ..., 0:16, 16:32])
    assert torch.equal(cut[6], layers[1, ..., 16:32, 0:16])


def test_local_pit_forgives_layers_swapped_in_one_region_and_global_pit_does_not():
    probe = _motion_probe()
    targets = torch.rand(2, 2, 3, 4, 32, 32)
    outputs = targets.clone()
    outputs[..., :16] = targets.flip(1)[..., :16]  # the layers trade places in the left half
    assert float(probe.local_pit_loss(outputs, targets, 16)) == 0.0
    assert float(probe.local_pit_loss(outputs, targets, 0)) == float(pit_loss(outputs, targets).loss) > 0.5
