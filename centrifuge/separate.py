"""Separating real videos of any length and size: the ``Centrifuge`` API used by the CLI.

Long videos go through the network in overlapping temporal windows, streamed (decode, separate,
encode as we go), so memory does not grow with the video's length. Each window's layers are
matched to the previous window's on the shared frames (the permutation with the lowest Eq. 3 loss,
as in the training loss) and cross-faded, so a layer never jumps to another slot mid-video.

Frames larger than ``max_size`` are separated at that size; the full-resolution layer is the input
frame plus the upsampled difference between the small layer and the small input, so the fine
detail both layers share is kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .devices import autocast_dtype, resolve_device, use_channels_last
from .losses import best_assignment, pairwise_loss_matrix
from .models import CentrifugeNet, fold_batchnorm
from .video import VideoError, VideoWriter, iter_frames, mux_audio, probe

log = logging.getLogger(__name__)

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "default"


class SeparationError(Exception):
    """A separation job that cannot run (bad model path, output exists, unwritable folder…)."""


def available_models() -> list[str]:
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


class Centrifuge:
    """A trained centrifuge network, ready to separate videos.

    Example:
        >>> model = Centrifuge.from_pretrained()            # the bundled default model
        >>> layers = model.separate(torch.rand(8, 40, 50, 3))
        >>> layers.shape[1:]
        torch.Size([8, 40, 50, 3])
    """

    def __init__(self, net: CentrifugeNet, name: str = "custom", precision: str = "auto"):
        # BatchNorm folded into the convolutions: the same layers, 8-13 % faster (centrifuge bench --levers).
        self.net = fold_batchnorm(net.eval())
        self.name = name
        self.amp_dtype = autocast_dtype(self.device, precision)
        if use_channels_last(self.device, self.amp_dtype):
            self.net = self.net.to(memory_format=torch.channels_last_3d)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, device: str = "auto") -> "Centrifuge":
        """Load the bundled model (``None`` or a bundled name) or a checkpoint folder, run folder or
        ``.safetensors`` file written by ``centrifuge train``. Weights load without pickle."""
        from .checkpoint import CheckpointError
        from .train import TrainingError, load_trained_model

        name_or_path = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
        bundled = PRETRAINED_DIR / f"{name_or_path}.safetensors"
        path = bundled if bundled.exists() else Path(name_or_path)
        if not path.exists():
            known = ", ".join(available_models()) or "none"
            raise SeparationError(f"{name_or_path}: no such model file or folder (bundled models: {known})")
        try:
            net = load_trained_model(path, device=resolve_device(device))
        except (CheckpointError, TrainingError, KeyError, RuntimeError) as e:
            raise SeparationError(f"{name_or_path}: cannot load the model ({str(e).splitlines()[0][:200]})") from None
        return cls(net, name=name_or_path)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def num_layers(self) -> int:
        return self.net.num_layers

    @torch.inference_mode()
    def separate_window(self, frames: torch.Tensor, max_size: int | None = None) -> torch.Tensor:
        """Separate one window: ``(T, H, W, 3)`` float in [0, 1] → ``(n, T, H, W, 3)`` (unclamped)."""
        video = frames.to(self.device, torch.float32).permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, T, H, W)
        h, w = video.shape[-2:]
        small = video
        if max_size and max(h, w) > max_size:
            scale = max_size / max(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            small = F.interpolate(video[0].transpose(0, 1), size=size, mode="bilinear", antialias=True, align_corners=False).transpose(0, 1)[None]
        if use_channels_last(self.device, self.amp_dtype):
            small = small.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            layers = self.net(small).float()[0]  # (n, 3, T, h', w')
        if small is not video:
            difference = layers - small  # what each layer changes in the (small) input
            n, c, t = difference.shape[:3]
            up = F.interpolate(difference.reshape(n * c, t, *difference.shape[-2:]).transpose(0, 1), size=(h, w), mode="bilinear", align_corners=False)
            layers = video + up.transpose(0, 1).reshape(n, c, t, h, w)
        return layers.permute(0, 2, 3, 4, 1)

    def separate_stream(self, frames: Iterable[np.ndarray], window: int = 32, overlap: int = 8, max_size: int | None = 256) -> Iterator[np.ndarray]:
        """Separate a stream of ``(H, W, 3)`` uint8 frames; yields ``(n, H, W, 3)`` float32 layer
        frames in [0, 1], one per input frame, in order. Memory holds one window."""
        if window < 1 or overlap < 0 or overlap >= window:
            raise ValueError("need window ≥ 1 and 0 ≤ overlap < window")
        buffer: list[np.ndarray] = []
        pending: torch.Tensor | None = None  # the previous window's last `overlap` layer frames
        previous_tail: torch.Tensor | None = None
        first_window = True
        iterator = iter(frames)
        exhausted = False
        while not exhausted:
            while len(buffer) < window:
                frame = next(iterator, None)
                if frame is None:
                    exhausted = True
                    break
                buffer.append(frame)
            if first_window and not buffer:
                return
            new_frames = len(buffer) - (0 if first_window else overlap)
            if new_frames <= 0:
                break
            clip = torch.from_numpy(np.stack(buffer)).float() / 255.0
            layers = self.separate_window(clip, max_size).cpu()  # (n, T, H, W, 3)
            shared = 0 if first_window else min(overlap, layers.shape[1])
            if previous_tail is not None:
                layers = layers[_match_layers(previous_tail, layers[:, : max(shared, 1)])]
            if shared:
                ramp = torch.linspace(0, 1, shared + 2)[1:-1].view(1, shared, 1, 1, 1)
                for k in range(shared):
                    mixed = (1 - ramp[:, k]) * pending[:, k] + ramp[:, k] * layers[:, k]
                    yield mixed.clamp(0, 1).numpy()
            keep = overlap if not exhausted else 0
            end = layers.shape[1] - keep
            for k in range(shared, end):
                yield layers[:, k].clamp(0, 1).numpy()
            pending = layers[:, end:]
            previous_tail = layers[:, -max(overlap, 1):]
            buffer = buffer[len(buffer) - overlap:] if overlap else []
            first_window = False
        if pending is not None:
            for k in range(pending.shape[1]):
                yield pending[:, k].clamp(0, 1).numpy()

    def separate(self, video: torch.Tensor | np.ndarray, window: int = 32, overlap: int = 8, max_size: int | None = None) -> torch.Tensor:
        """Separate a whole video held in memory.

        Args:
            video: ``(T, H, W, 3)``, float in [0, 1] or uint8; any T ≥ 1 and H, W ≥ 1.
        Returns:
            ``(n, T, H, W, 3)`` float in [0, 1].
        """
        video = torch.as_tensor(video)
        if video.dim() != 4 or video.shape[-1] != 3:
            raise ValueError(f"video must be (T, H, W, 3), got {tuple(video.shape)}")
        if video.dtype != torch.uint8:
            video = (video.float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
        frames = (f.numpy() for f in video)
        return torch.from_numpy(np.stack(list(self.separate_stream(frames, window, overlap, max_size)), axis=1))


def _match_layers(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """The order of ``current``'s layers that best continues ``previous`` (Eq. 3 distance).

    previous, current: ``(n, K, H, W, 3)`` on the shared frames. Returns ``(n,)`` indices.
    """
    k = min(previous.shape[1], current.shape[1])
    prev = previous[:, -k:].permute(0, 4, 1, 2, 3).unsqueeze(0)  # (1, n, 3, K, H, W)
    cur = current[:, :k].permute(0, 4, 1, 2, 3).unsqueeze(0)
    costs = pairwise_loss_matrix(cur, prev)  # (1, n current, n previous)
    return best_assignment(costs)[0]


def most_distant_pair(layers: torch.Tensor) -> tuple[int, int]:
    """The two layers farthest apart in pixel space (the paper's test-time choice): ``layers`` is
    ``(n, …)``; returns ``(i, j)`` with i < j."""
    from .losses import most_distant_pair as _pair

    return _pair(layers)


# --------------------------------------------------------------------------- files and reports

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(path: str | os.PathLike) -> str:
    """A folder name from a file's stem: unsafe characters replaced, no leading dot or dash."""
    stem = _UNSAFE.sub("_", Path(path).stem).strip("._-")
    return stem or "video"


@dataclass
class SeparationReport:
    input: str
    folder: Path
    frames: int
    seconds: float
    pair: tuple[int, int]


def _preview_times(num_frames: int, count: int = 4) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, max(0, num_frames - 1), count)})


def separate_file(
    model: Centrifuge,
    path: str | os.PathLike,
    out_root: str | os.PathLike,
    all_layers: bool = False,
    window: int = 32,
    overlap: int = 8,
    max_size: int | None = 256,
    force: bool = False,
    progress: bool = True,
) -> SeparationReport:
    """Separate one video file into ``out_root/<stem>/``: layer1.mp4, layer2.mp4 (the most distant
    pair), optional layers/, preview.png, index.html, info.json. The input is only read."""
    from .report import write_html, write_preview

    path = Path(path)
    info = probe(path)
    out_root = Path(out_root)
    folder = (out_root / safe_stem(path)).resolve()
    if out_root.resolve() not in folder.parents:
        raise SeparationError(f"{path}: output would leave {out_root}")
    if folder.exists() and not force:
        raise SeparationError(f"{folder} exists; use --force to overwrite it")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        work = Path(out_root.resolve() / f".{folder.name}.partial")
        if work.exists():
            shutil.rmtree(work)
        (work / "all").mkdir(parents=True)
    except OSError as e:
        raise SeparationError(f"{out_root}: cannot write there ({e.strerror})") from None

    n = model.num_layers
    writers = [VideoWriter(work / "all" / f"layer{i + 1}.mp4", fps=info.fps) for i in range(n)]
    # The input re-encoded beside the layers: the page plays it whatever the original's codec.
    writers.append(VideoWriter(work / "input.mp4", fps=info.fps))
    times = _preview_times(info.num_frames)
    preview_inputs, preview_layers = {}, {}
    distance = np.zeros((n, n))
    started = time.time()
    count = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=info.num_frames, unit="frame", desc=path.name[:30], dynamic_ncols=True)
    try:
        source = _recording(iter_frames(path, info), preview_inputs, set(times), writers[n])
        for layer_frames in model.separate_stream(source, window, overlap, max_size):
            flat = layer_frames.reshape(n, -1)
            distance += np.abs(flat[:, None] - flat[None]).mean(-1)
            as_uint8 = (layer_frames * 255.0 + 0.5).astype(np.uint8)
            for i in range(n):
                writers[i].write(as_uint8[i])
            if count in times:
                preview_layers[count] = as_uint8
            count += 1
            if bar is not None:
                bar.update(1)
        if count == 0:
            raise VideoError(f"{path}: no frame could be decoded")
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    if count < info.num_frames:
        log.warning("%s: the stream broke after %d of %d frames; separated what decoded", path, count, info.num_frames)
    elapsed = time.time() - started
    i, j = np.unravel_index(np.argmax(distance + np.tril(np.full((n, n), -np.inf))), distance.shape)
    pair = (int(min(i, j)), int(max(i, j)))
    for rank, index in enumerate(pair):
        target = work / f"layer{rank + 1}.mp4"
        source_file = work / "all" / f"layer{index + 1}.mp4"
        if info.has_audio:
            mux_audio(source_file, path, target)
        else:
            shutil.copyfile(source_file, target)
    if all_layers:
        (work / "all").rename(work / "layers")
    else:
        shutil.rmtree(work / "all")
    kept = sorted(preview_layers)
    write_preview(work / "preview.png", [preview_inputs[t] for t in kept], [preview_layers[t] for t in kept], pair, kept)
    payload = {
        "input": str(path), "model": model.name, "num_layers": n, "pair": list(pair), "frames": count,
        "fps": info.fps, "width": info.width, "height": info.height, "window": window, "overlap": overlap,
        "max_size": max_size, "device": str(model.device), "seconds": round(elapsed, 3),
        "frames_per_second": round(count / max(elapsed, 1e-9), 3),
    }
    (work / "info.json").write_text(json.dumps(payload, indent=2))
    write_html(work / "index.html", input_name=path.name, layer_files=["layer1.mp4", "layer2.mp4"], info=payload, input_file="input.mp4")
    if folder.exists():
        shutil.rmtree(folder)
    work.rename(folder)
    return SeparationReport(input=str(path), folder=folder, frames=count, seconds=elapsed, pair=pair)


def _recording(frames: Iterable[np.ndarray], store: dict, wanted: set[int], writer: VideoWriter) -> Iterator[np.ndarray]:
    """Pass frames through, keeping those at the preview times and re-encoding each for the page."""
    for index, frame in enumerate(frames):
        if index in wanted:
            store[index] = frame
        writer.write(frame)
        yield frame


def separate_files(model: Centrifuge, inputs: Sequence[str], out_root: str, progress: bool = True, **options) -> list[str]:
    """Separate several files; a bad input is reported in one line and the others go on.
    Returns the inputs that failed."""
    failures = []
    for index, path in enumerate(inputs):
        try:
            report = separate_file(model, path, out_root, progress=progress, **options)
            print(f"{path}: {report.frames} frames in {report.seconds:.1f} s "
                  f"({report.frames / max(report.seconds, 1e-9):.1f} frames/s) -> {report.folder}/index.html")
        except (VideoError, SeparationError) as e:
            print(f"centrifuge: error: {e}", file=sys.stderr)
            failures.append(path)
    done = len(inputs) - len(failures)
    print(f"separated {done} of {len(inputs)} video(s) into {out_root}")
    return failures
