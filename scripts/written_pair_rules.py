#!/usr/bin/env python3
"""Which two of a model's n outputs should ``separate`` write, chosen without the answer?

Scores rules on the held-back benchmark's 64 real pairs (32x112x112, the network at 112 px, the
plain path) against the pair the answer would pick (the headline's permutation-invariant loss):

    python scripts/written_pair_rules.py default RUN_OR_MODEL ...   (../shared/videos beside the checkout)

Session 21's figures are in docs/results.md, "The pair separate writes is not the pair the
headline scores". A diagnostic, not part of the package: ``separate`` keeps the paper's most
distant pair, which none of these rules beat.
"""

from __future__ import annotations

import collections
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from centrifuge.data import blend_layers  # noqa: E402
from centrifuge.evaluate import held_back_kinds, ratio_standard_error  # noqa: E402
from centrifuge.losses import most_distant_pair, pit_loss  # noqa: E402
from centrifuge.separate import Centrifuge  # noqa: E402


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def _standardised(x: torch.Tensor) -> torch.Tensor:
    """Each output's channels to zero mean and unit spread over the clip: brightness and contrast gone."""
    return (x - x.mean(dim=(-3, -2, -1), keepdim=True)) / (x.std(dim=(-3, -2, -1), keepdim=True) + 1e-4)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-8))


def candidate_pairs(outputs: torch.Tensor, blend: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(n, C, T, H, W)`` outputs of one clip → each rule's two layers ``(2, C, T, H, W)``."""
    n = outputs.shape[0]
    pairs = list(itertools.combinations(range(n), 2))
    gradients = [_gradients(o) for o in outputs]
    magnitudes = [torch.sqrt(gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2 + 1e-8) for gx, gy in gradients]
    standard = _standardised(outputs)

    def distance(p):
        return float((outputs[p[0]] - outputs[p[1]]).abs().mean())

    rules = {
        "most distant (separate's)": max(pairs, key=distance),
        "most distant in gradients": max(pairs, key=lambda p: float(sum((a - b).abs().mean() for a, b in zip(gradients[p[0]], gradients[p[1]])))),
        "most distant, standardised": max(pairs, key=lambda p: float((standard[p[0]] - standard[p[1]]).abs().mean())),
        "least correlated edges": min(pairs, key=lambda p: _correlation(magnitudes[p[0]], magnitudes[p[1]])),
        "best recomposes the blend": min(pairs, key=lambda p: float(((outputs[p[0]] + outputs[p[1]]) / 2 - blend).abs().mean())),
    }
    chosen = {name: outputs[list(p)] for name, p in rules.items()}
    distant = chosen["most distant (separate's)"]
    if n == 4:  # the two halves of the split of four outputs whose means are farthest apart
        splits = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
        means = [torch.stack([outputs[list(a)].mean(0), outputs[list(b)].mean(0)]) for a, b in splits]
        chosen["means of the 2 + 2 split"] = max(means, key=lambda m: float((m[0] - m[1]).abs().mean()))
    for factor in (0.75, 0.5):
        chosen[f"most distant, shrunk x{factor} to the blend"] = blend + factor * (distant - blend)
    return chosen


def main() -> int:
    videos = Path(__file__).resolve().parents[2] / "shared" / "videos"
    pairs = held_back_kinds(videos, 64, 0, light_pairs=0)["real"][0]
    for spec in sys.argv[1:] or ["default"]:
        model = Centrifuge.from_pretrained(None if spec == "default" else spec, device="cpu").net.float().eval()
        losses: dict[str, list[torch.Tensor]] = {}
        identities, picked, distant = [], collections.Counter(), collections.Counter()
        with torch.no_grad():
            for start in range(0, len(pairs), 2):
                layers = pairs[start : start + 2]
                blend = blend_layers(layers, 0.5)
                outputs = model(blend).float()
                identities.append(pit_loss(torch.stack([blend, blend], 1), layers).per_example)
                best = pit_loss(outputs, layers)
                losses.setdefault("the answer picks (headline)", []).append(best.per_example)
                for b in range(outputs.shape[0]):
                    picked[tuple(sorted(int(k) + 1 for k in best.assignment[b]))] += 1
                    distant[tuple(k + 1 for k in most_distant_pair(outputs[b]))] += 1
                    for name, pair in candidate_pairs(outputs[b], blend[b]).items():
                        losses.setdefault(name, []).append(pit_loss(pair[None], layers[b : b + 1]).per_example)
        print(f"{spec[-30:]:30s} outputs the answer picks: {dict(picked.most_common())}; the most distant: {dict(distant.most_common())}")
        identity = torch.cat(identities)
        reference = torch.cat(losses["most distant (separate's)"])
        for name, values in losses.items():
            loss = torch.cat(values)
            difference = (loss - reference) / identity.mean()
            print(f"{spec[-30:]:30s} {name:42s} ratio {float(loss.mean() / identity.mean()):.3f} ± {ratio_standard_error(loss, identity):.3f}  "
                  f"vs most distant {float(difference.mean()):+.3f} ± {float(difference.std() / len(difference) ** 0.5):.3f}  "
                  f"worse than identity {int((loss > identity).sum())}/{len(loss)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
