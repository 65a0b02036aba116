"""``centrifuge demo``: the whole idea in a minute or two, with no file needed.

1. Two clips of the embedded data are blended (Eq. 1) and written as a video.
2. A tiny model trains a few steps on embedded data; the loss is printed as it falls.
3. The bundled model separates the blend: layer videos, preview, page, info, and the PIT loss
   against the true layers beside the identity baseline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from .config import make_config
from .data import SyntheticSource, blend_pair, to_clip, to_frames
from .losses import identity_outputs, pit_loss
from .separate import Centrifuge, SeparationError, available_models, separate_file
from .train import load_trained_model, train
from .video import write_video

DEMO_SEED = 7


def demo_pair(num_frames: int = 48, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Two embedded-data videos, ``(T, H, W, 3)`` uint8 each, of photographs no model trains on."""
    source = SyntheticSource(seed=DEMO_SEED, split="held-back")
    return source.video(1, num_frames, size, size), source.video(2, num_frames, size, size)


def _what_the_ratio_says(ratio: float) -> str:
    """One line for a user who does not know the metric (the demo's clips are of photographs no
    model trained on, so the figure is what the model does on content it never saw)."""
    if ratio >= 1:
        return ("a ratio of 1 or more: these layers are no closer to the true clips than the blend itself; the model "
                "does not yet separate content it never saw (docs/MODEL_CARD.md, Limits)")
    return f"a ratio below 1: the layers are closer to the true clips than the blend is ({(1 - ratio):.0%} less loss)"


def run_demo(out: Path, steps: int = 60, force: bool = False) -> dict:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force and not (out / "demo.json").exists():
            raise SeparationError(f"{out} exists and was not written by the demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)

    print("1. Blending two clips of the embedded data (V = (1 - a) V1 + a V2, a = 0.5)")
    first, second = demo_pair()
    pair = blend_pair(to_clip(first), to_clip(second), alpha=0.5)
    write_video(out / "source1.mp4", first, fps=25)
    write_video(out / "source2.mp4", second, fps=25)
    blend_path = write_video(out / "blend.mp4", to_frames(pair.blend), fps=25)
    print(f"   wrote {out / 'source1.mp4'}, {out / 'source2.mp4'} and the blend {blend_path}")

    print(f"2. Training a tiny model for {steps} steps on embedded data (the loss should fall)")
    config = make_config("tiny", overrides=[f"steps={steps}", f"val_every={steps}", f"checkpoint_every={steps}", "workers=1"])
    result = train(config, out / "tiny-run", progress=False)
    chunk = max(1, steps // 6)
    for start in range(0, steps, chunk):
        window = result.losses[start : start + chunk]
        print(f"   steps {start + 1:4d}-{start + len(window):4d}: PIT loss {np.mean(window):.4f}  "
              f"(identity baseline {np.mean(result.identities[start : start + chunk]):.4f})")

    if available_models():
        model, which = Centrifuge.from_pretrained(), "the bundled model"
    else:  # a checkout without trained weights still runs end to end
        model, which = Centrifuge(load_trained_model(out / "tiny-run"), name="tiny-run"), "the tiny model just trained"
    print(f"3. Separating the blend with {which}")
    report = separate_file(model, blend_path, out, progress=False, force=True, all_layers=True)
    truth, blend = pair.layers[None], pair.blend[None]
    every = _clip_batch([report.folder / "layers" / f"layer{i + 1}.mp4" for i in range(model.num_layers)])
    chosen = _clip_batch([report.folder / "layer1.mp4", report.folder / "layer2.mp4"])
    loss_all = float(pit_loss(every, truth).loss)
    loss_pair = float(pit_loss(chosen, truth).loss)
    identity = float(pit_loss(identity_outputs(blend), truth).loss)
    summary = {"model": model.name, "pit_loss": loss_all, "pit_loss_chosen_pair": loss_pair, "identity_loss": identity,
               "ratio": loss_all / identity, "train_loss_first": float(np.mean(result.losses[:chunk])),
               "train_loss_last": float(np.mean(result.losses[-chunk:]))}
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    print(f"   PIT loss against the true clips (Eq. 2, all {model.num_layers} outputs): {loss_all:.4f}; "
          f"identity baseline {identity:.4f} (ratio {loss_all / identity:.2f})")
    print(f"   {_what_the_ratio_says(loss_all / identity)}")
    print(f"   the two layer videos written (the most distant pair): {loss_pair:.4f}")
    print(f"Done. Open {report.folder / 'index.html'} in a browser, or look at {report.folder / 'preview.png'}.")
    return summary


def _clip_batch(paths: list[Path]) -> torch.Tensor:
    """Decoded layer videos as ``(1, n, 3, T, H, W)``."""
    from .video import read_clip

    return torch.stack([to_clip(read_clip(p)) for p in paths])[None]
