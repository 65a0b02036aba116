"""The report a separation leaves behind: a preview grid (PNG) and a page that plays the input and
the layers in sync (HTML that works opened from disk)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    image = Image.fromarray(tile)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(image)


def preview_grid(inputs: Sequence[np.ndarray], layers: Sequence[np.ndarray], pair: tuple[int, int], times: Sequence[int], tile: int = 192) -> np.ndarray:
    """Rows: the input, layer 1, layer 2 (the chosen pair), then the other layers; columns: time points.

    Args:
        inputs: one ``(H, W, 3)`` uint8 frame per time point.
        layers: one ``(n, H, W, 3)`` uint8 array per time point.
    """
    n = layers[0].shape[0]
    order = list(pair) + [i for i in range(n) if i not in pair]
    h, w = inputs[0].shape[:2]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def fit(frame: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))

    rows = [np.concatenate([_label(fit(f), f"input t={t}") for f, t in zip(inputs, times)], axis=1)]
    for rank, index in enumerate(order):
        name = f"layer {rank + 1}" if rank < 2 else f"output {index + 1}"
        rows.append(np.concatenate([_label(fit(l[index]), name) for l in layers], axis=1))
    return np.concatenate(rows, axis=0)


def write_preview(path: Path, inputs, layers, pair, times) -> None:
    Image.fromarray(preview_grid(inputs, layers, pair, times)).save(path)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Visual Centrifuge: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; background: #111; color: #eee; }}
.row {{ display: flex; gap: 1em; flex-wrap: wrap; }}
figure {{ margin: 0; }} figcaption {{ text-align: center; margin-top: .3em; }}
video {{ max-width: 32vw; background: #000; }} pre {{ color: #aaa; }}
</style></head><body>
<h1>{title}</h1>
<p><button id="play">Play all</button> <button id="pause">Pause</button></p>
<div class="row">
{figures}
</div>
<p><img src="preview.png" alt="preview: input and layers at a few time points" style="max-width: 100%"></p>
<pre>{info}</pre>
<script>
const videos = Array.from(document.querySelectorAll("video"));
const lead = videos[0];
document.getElementById("play").onclick = () => videos.forEach(v => v.play());
document.getElementById("pause").onclick = () => videos.forEach(v => v.pause());
lead.addEventListener("play", () => videos.slice(1).forEach(v => {{ v.currentTime = lead.currentTime; v.play(); }}));
lead.addEventListener("pause", () => videos.slice(1).forEach(v => v.pause()));
lead.addEventListener("seeked", () => videos.slice(1).forEach(v => {{ v.currentTime = lead.currentTime; }}));
setInterval(() => videos.slice(1).forEach(v => {{
  if (!lead.paused && Math.abs(v.currentTime - lead.currentTime) > 0.1) v.currentTime = lead.currentTime;
}}), 500);
// index.html#selftest: play everything and report, in a <pre id="selftest">, whether each video
// loaded (its duration) and played (its currentTime advanced). Used by the browser test.
if (location.hash === "#selftest") {{
  const report = videos.map(v => ({{src: v.getAttribute("src"), error: null, duration: null, start: null, later: null}}));
  videos.forEach((v, i) => v.addEventListener("error", () => {{ report[i].error = v.error ? v.error.code : -1; }}));
  const write = () => {{
    let out = document.getElementById("selftest");
    if (!out) {{ out = document.createElement("pre"); out.id = "selftest"; document.body.appendChild(out); }}
    out.textContent = JSON.stringify(report);
  }};
  Promise.all(videos.map(v => v.readyState >= 1 ? null : new Promise(r => {{ v.addEventListener("loadedmetadata", r); v.addEventListener("error", r); }})))
    .then(() => {{
      videos.forEach((v, i) => {{ report[i].duration = v.duration; report[i].start = v.currentTime; v.play().catch(e => {{ report[i].error = String(e); }}); }});
      setTimeout(() => {{ videos.forEach((v, i) => {{ report[i].later = v.currentTime; }}); write(); }}, 1500);
    }});
}}
</script>
</body></html>
"""


def write_html(path: Path, input_name: str, layer_files: Sequence[str], info: dict, input_file: str | None = None) -> None:
    """The page: the input (when ``input_file`` is given, a path relative to the page) and the
    layers side by side, played in sync."""
    figures = []
    entries = ([(input_file, f"input: {input_name}")] if input_file else []) + [(f, f"layer {i + 1}") for i, f in enumerate(layer_files)]
    for src, caption in entries:
        figures.append(f'<figure><video src="{html.escape(src)}" muted loop playsinline preload="auto" controls></video>'
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    page = _PAGE.format(title=html.escape(input_name), figures="\n".join(figures), info=html.escape(json.dumps(info, indent=2)))
    path.write_text(page)


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """A run's ``metrics.jsonl``: (training records, validation records)."""
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if "loss" in r], [r["val"] for r in records if "val" in r]


def plot_learning_curves(runs: Sequence[tuple[str, str | Path, int]], path: str | Path) -> Path:
    """Training loss and validation ratio (loss / identity) of runs laid end to end.

    Args:
        runs: ``(label, run folder, step offset)``: a fine-tuning run continues at its offset.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, run_dir, offset in runs:
        train, val = read_metrics(run_dir)
        steps = [offset + r["step"] for r in train]
        left.plot(steps, [r["loss"] for r in train], label=f"{label}: PIT loss", linewidth=0.8)
        left.plot(steps, [r["identity"] for r in train], label=f"{label}: identity", linewidth=0.8, alpha=0.6)
        right.plot([offset + r["step"] for r in val], [r["ratio"] for r in val], marker="o", label=label)
    left.set(xlabel="step", ylabel="training loss (Eq. 2)", title="Training batches")
    right.set(xlabel="step", ylabel="PIT loss / identity loss", title="Held-back real videos (validation)")
    right.axhline(1.0, color="grey", linestyle=":")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
