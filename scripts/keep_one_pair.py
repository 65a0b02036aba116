#!/usr/bin/env python3
"""A two-output model cut from a four-output ``symmetric`` / ``affine`` one: keep one pair of outputs.

Those heads make layers in pairs, V + D_k and V − D_k, one difference D_k per pair, and the pair
``separate`` writes (the most distant) was one of them on every blend measured (session 27), though
nothing forces it. Keeping the head's channels of one pair gives
a two-output model whose outputs are exactly that pair, a start for training two outputs (which
commit to one cut where four hedge; docs/results.md, "Two outputs instead of four") from a model
that already fits brightness:

    python scripts/keep_one_pair.py RUN_OR_MODEL OUT.safetensors [--pair auto|K]

``auto`` keeps the pair written most often on generated clips of the training kind (never the
benchmark's videos). The result is fp32 with the ``.json`` that ``init_weights`` and ``evaluate`` read.
A diagnostic for session 27 (docs/results.md), not part of the package.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from centrifuge.checkpoint import save_weights  # noqa: E402
from centrifuge.data import blend_layers  # noqa: E402
from centrifuge.evaluate import benchmark_pairs  # noqa: E402
from centrifuge.losses import most_distant_pairs  # noqa: E402
from centrifuge.models.centrifuge import CentrifugeNet  # noqa: E402
from centrifuge.separate import SeparationError, model_path  # noqa: E402
from centrifuge.train import TrainingError, load_trained_model, model_meta  # noqa: E402

HEAD_CHANNELS_PER_PAIR = {"affine": 4, "symmetric": 3}


@torch.no_grad()
def written_pair_counts(model: CentrifugeNet, clips: int = 32, frames: int = 16, size: int = 64) -> collections.Counter:
    """How often each pair of outputs is the most distant on blends of generated clips."""
    pairs = benchmark_pairs("synthetic", clips, frames, size, seed=12345)
    counts: collections.Counter = collections.Counter()
    for i in range(0, clips, 4):
        layers = pairs[i : i + 4]
        outputs = model(blend_layers(layers, torch.full((len(layers),), 0.5)))
        counts.update(tuple(p) for p in most_distant_pairs(outputs).tolist())
    return counts


def keep_pair(model: CentrifugeNet, pair: int) -> CentrifugeNet:
    """The two-output model whose outputs are ``model``'s outputs ``pair`` and ``pair + n/2``."""
    config = model.config
    if config.output not in HEAD_CHANNELS_PER_PAIR or config.correction_steps:
        raise SystemExit(f"needs a predictor with a symmetric or affine head, got {config}")
    if not 0 <= pair < config.num_layers // 2:
        raise SystemExit(f"pair must be between 0 and {config.num_layers // 2 - 1}")
    width = HEAD_CHANNELS_PER_PAIR[config.output]
    kept = slice(pair * width, (pair + 1) * width)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("predictor.head.weight", "predictor.head.bias"):
        state[name] = state[name][kept].contiguous()
    two = CentrifugeNet(dataclasses.replace(config, num_layers=2))
    two.load_state_dict(state)
    return two.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.add_argument("--pair", default="auto")
    args = parser.parse_args()
    try:  # a bundled name ("default") or a path
        model = load_trained_model(model_path(args.source))
    except (SeparationError, TrainingError) as e:
        raise SystemExit(f"error: {e}") from None
    n = model.config.num_layers
    if args.pair == "auto":
        counts = written_pair_counts(model)
        print("written pairs on generated clips:", dict(counts))
        pair = max(range(n // 2), key=lambda k: counts[(k, k + n // 2)])
    else:
        pair = int(args.pair)
    two = keep_pair(model, pair)
    # The cut is exact: the two outputs are the kept pair's.
    probe = torch.rand(1, 3, 16, 64, 64)
    with torch.no_grad():
        assert torch.allclose(two(probe), model(probe)[:, [pair, pair + n // 2]], atol=1e-5)
    destination = Path(args.destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_weights({k: v.contiguous() for k, v in two.state_dict().items()}, destination)
    meta = model_meta(args.source)
    info = {"model_config": two.config.to_dict(), "train_config": meta.get("train_config"), "step": meta.get("step"),
            "dtype": "float32", "kept_pair": pair, "cut_from": str(args.source)}
    destination.with_suffix(".json").write_text(json.dumps(info, indent=2))
    print(f"kept pair {pair} (outputs {pair}, {pair + n // 2}) -> {destination}")


if __name__ == "__main__":
    main()
