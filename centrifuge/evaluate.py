"""The validation benchmark: real held-back videos, clips of different videos blended with α = 0.5,
32×112×112 centre crops as in the paper's experiments (section 4).

It reports the PIT loss (Eq. 2) of each model beside the identity baseline (both outputs equal to
the blend), their ratio, and the PSNR of the matched layers against the PSNR of the blend itself
(the blend compared with each of its two layers), so a model that does nothing scores ratio 1 and
gains 0 dB. The ``untrained`` row is a freshly initialised network (Table 1).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .data import LayerPairs, blend_layers
from .losses import identity_outputs, pit_loss
from .models import CentrifugeNet, build_model


@dataclass
class BenchmarkRow:
    name: str
    loss: float
    identity: float
    psnr_layers: float
    psnr_blend: float
    seconds: float

    @property
    def ratio(self) -> float:
        return self.loss / self.identity

    def to_dict(self) -> dict:
        return {"name": self.name, "loss": self.loss, "identity": self.identity, "ratio": self.ratio,
                "psnr_layers": self.psnr_layers, "psnr_blend": self.psnr_blend, "seconds": self.seconds}


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over the last four dimensions of videos in [0, 1]."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).square().mean(dim=(-4, -3, -2, -1))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def benchmark_pairs(data: str, num_pairs: int = 24, num_frames: int = 32, size: int = 112, seed: int = 0) -> torch.Tensor:
    """``(N, 2, 3, T, H, W)`` layer pairs from different videos of ``data`` (a folder or files)."""
    from .train import video_folder

    dataset = LayerPairs([video_folder(data)], length=num_pairs, num_frames=num_frames, crop_size=size, train=False, seed=seed)
    return torch.stack([dataset[i]["layers"] for i in range(num_pairs)])


@torch.no_grad()
def score_model(model: CentrifugeNet, name: str, pairs: torch.Tensor, batch_size: int = 2) -> BenchmarkRow:
    """PIT loss, identity loss and PSNRs of one model on fixed pairs (α = 0.5)."""
    model.eval()
    device = next(model.parameters()).device
    losses, identities, gains, blends = [], [], [], []
    started = time.perf_counter()
    for start in range(0, len(pairs), batch_size):
        layers = pairs[start : start + batch_size].to(device)
        blend = blend_layers(layers, torch.full((layers.shape[0],), 0.5, device=device))
        outputs = model(blend).float()
        result = pit_loss(outputs, layers)
        losses.append(result.per_example.cpu())
        identities.append(pit_loss(identity_outputs(blend), layers).per_example.cpu())
        matched = torch.stack([outputs[b, result.assignment[b]] for b in range(layers.shape[0])])
        gains.append(psnr(matched, layers).mean(1).cpu())
        blends.append(psnr(blend.unsqueeze(1), layers).mean(1).cpu())
    seconds = time.perf_counter() - started
    mean = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    return BenchmarkRow(name, mean(losses), mean(identities), mean(gains), mean(blends), seconds)


def identity_row(pairs: torch.Tensor) -> BenchmarkRow:
    blend = blend_layers(pairs, torch.full((pairs.shape[0],), 0.5))
    identity = pit_loss(identity_outputs(blend), pairs).per_example.mean()
    blend_psnr = float(psnr(blend.unsqueeze(1), pairs).mean())
    return BenchmarkRow("identity baseline", float(identity), float(identity), blend_psnr, blend_psnr, 0.0)


def run_benchmark(models: Sequence[tuple[str, CentrifugeNet]], data: str, num_pairs: int = 24, num_frames: int = 32,
                  size: int = 112, seed: int = 0, untrained: str | None = None) -> list[BenchmarkRow]:
    """Table 1 on any folder: the identity baseline, optionally an untrained network, then each model."""
    pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    rows = [identity_row(pairs)]
    if untrained is not None:
        torch.manual_seed(seed)
        rows.append(score_model(build_model(untrained), f"untrained {untrained}", pairs))
    rows += [score_model(model, name, pairs) for name, model in models]
    return rows


def format_table(rows: Sequence[BenchmarkRow]) -> str:
    lines = [f"{'model':<40} {'loss':>8} {'ratio':>7} {'PSNR layers':>12} {'PSNR blend':>11} {'seconds':>8}"]
    for row in rows:
        seconds = "" if row.seconds == 0 else f"{row.seconds:8.1f}"
        lines.append(f"{row.name[-40:]:<40} {row.loss:8.4f} {row.ratio:7.3f} {row.psnr_layers:10.2f}dB {row.psnr_blend:9.2f}dB {seconds:>8}")
    return "\n".join(lines)


def write_json(path: str | Path, rows: Sequence[BenchmarkRow], settings: dict) -> None:
    payload = {"settings": settings, "rows": [r.to_dict() for r in rows]}
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


# --------------------------------------------------------------------------- the paper's variants


def color_pairs(pairs: torch.Tensor, color: str) -> torch.Tensor:
    """Each pair's first layer kept, the second replaced by a pure colour (Fig. 4)."""
    from .data import color_clip

    return torch.stack([torch.stack([p[0], color_clip(color, p[0])]) for p in pairs])


def frozen_pairs(pairs: torch.Tensor, which: tuple[bool, bool]) -> torch.Tensor:
    """Pairs with the chosen layers frozen (one frame repeated), as in Table 3."""
    from .data import freeze_clip

    return torch.stack([torch.stack([freeze_clip(p[i]) if which[i] else p[i] for i in range(2)]) for p in pairs])


def run_color_experiment(model: CentrifugeNet, data: str, num_pairs: int = 8, num_frames: int = 32, size: int = 112, seed: int = 0) -> list[BenchmarkRow]:
    """Figure 4: the loss of separating a video from each of the paper's eight colours, beside the
    loss of separating two videos (rows are named after the second layer)."""
    from .data import PAPER_COLORS

    pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    rows = [score_model(model, "video + video", pairs)]
    for color in PAPER_COLORS:
        rows.append(score_model(model, f"video + {color}", color_pairs(pairs, color)))
    return rows


def run_frozen_experiment(model: CentrifugeNet, data: str, num_pairs: int = 8, num_frames: int = 32, size: int = 112, seed: int = 0) -> list[BenchmarkRow]:
    """Table 3, test side: the same model on normal/normal, frozen/normal and frozen/frozen pairs."""
    pairs = benchmark_pairs(data, num_pairs, num_frames, size, seed)
    settings = {"both normal": (False, False), "one frozen": (True, False), "both frozen": (True, True)}
    return [score_model(model, name, frozen_pairs(pairs, which)) for name, which in settings.items()]


def plot_rows(rows: Sequence[BenchmarkRow], path: str | Path, title: str) -> Path:
    """A bar chart of PIT loss with the identity baseline of each row as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows)), 3.6))
    x = range(len(rows))
    ax.bar(x, [r.loss for r in rows], color="#4c72b0", label="model (PIT loss)")
    ax.scatter(x, [r.identity for r in rows], color="#dd8452", zorder=3, label="identity baseline")
    ax.set_xticks(list(x), [r.name for r in rows], rotation=30, ha="right")
    ax.set(ylabel="loss (Eq. 2)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
