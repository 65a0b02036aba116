"""Checkpoints that describe themselves and load without pickle.

A checkpoint is a folder ``step_00001000/`` holding:

- ``model.safetensors``: the weights (safetensors: no code can ride along);
- ``state.pt``: optimizer, scheduler and RNG states and the data position, only tensors and plain
  Python values, loaded with ``torch.load(weights_only=True)``, which refuses anything else;
- ``meta.json``: model configuration, training configuration, step, library version.

A checkpoint is written into a temporary folder beside the final one, every file fsynced, then
renamed into place, so a crash mid-save never leaves a half checkpoint under a final name. The last
``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d{8})$")
MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "state.pt", "meta.json"


class CheckpointError(Exception):
    """A checkpoint that is missing, incomplete or unsafe to load."""


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def model_state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, contiguous and unshared (safetensors refuses shared storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(folder: str | os.PathLike, step: int, model: torch.nn.Module, meta: dict, state: dict[str, Any] | None = None, keep: int | None = None, protect: Path | None = None) -> Path:
    """Write ``folder/step_XXXXXXXX`` atomically and prune to the last ``keep`` (never ``protect``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:08d}"
    tmp = folder / f".step_{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_file(model_state_for_saving(model), str(tmp / MODEL_FILE))
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps({**meta, "step": step}, indent=2))
        for name in os.listdir(tmp):
            _fsync_file(tmp / name)
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep is not None:
        prune_checkpoints(folder, keep, protect)
    return final


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Complete-looking checkpoint folders, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def prune_checkpoints(folder: Path, keep: int, protect: Path | None = None) -> None:
    keep = max(1, keep)
    checkpoints = list_checkpoints(folder)
    for old in checkpoints[:-keep]:
        if protect is not None and old.resolve() == Path(protect).resolve():
            continue
        shutil.rmtree(old, ignore_errors=True)


def read_meta(checkpoint: str | os.PathLike) -> dict:
    path = Path(checkpoint) / META_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{checkpoint}: unreadable {META_FILE} ({e})") from None


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors weight file (no pickle)."""
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e)[:120]})") from None


def load_state(path: str | os.PathLike) -> dict:
    """Load training state with ``weights_only=True``: a file carrying code is refused, never run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: refused or unreadable training state ({str(e).splitlines()[0][:160]})") from None


def latest_valid_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest checkpoint whose files all load; broken newer ones are skipped with a warning."""
    for checkpoint in reversed(list_checkpoints(folder)):
        try:
            read_meta(checkpoint)
            load_weights(checkpoint / MODEL_FILE)
            if (checkpoint / STATE_FILE).exists():
                load_state(checkpoint / STATE_FILE)
            return checkpoint
        except CheckpointError as e:
            log.warning("skipping a broken checkpoint: %s", e)
    return None
