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
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d{8})$")
MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "state.pt", "meta.json"
INDEX_SUFFIX = ".index.json"  # beside a sharded X.safetensors: X.safetensors.index.json


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


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """``safetensors.torch.save_file`` with the permissions any other file gets.

    safetensors creates its file readable by its owner only (0600) whatever the umask, so a model
    exported for a team, a shared cache or a web server would be unreadable to them; give it
    ``0666 & ~umask`` as ``open()`` would."""
    save_file(tensors, str(path))
    os.chmod(path, 0o666 & ~_current_umask())


def _current_umask() -> int:
    """The process umask, read without setting it where Linux allows (setting it is process-wide,
    and a checkpoint may be written beside other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        save_tensors(model_state_for_saving(model), tmp / MODEL_FILE)
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
    """Load a safetensors weight file (no pickle), or the shards that ``path + ".index.json"`` lists
    when ``path`` itself does not exist (:func:`save_weights`)."""
    path = Path(path)
    if path.name.endswith(INDEX_SUFFIX):
        return _load_shards(path)
    if not path.exists() and shard_index(path).exists():
        return _load_shards(shard_index(path))
    return _load_file(path)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e)[:120]})") from None


def shard_index(path: str | os.PathLike) -> Path:
    """Where the index of a sharded ``X.safetensors`` lives: ``X.safetensors.index.json`` (the layout
    Hugging Face tools read too)."""
    return Path(str(path) + INDEX_SUFFIX)


def weights_exist(path: str | os.PathLike) -> bool:
    """A weight file, or the index of its shards, is there."""
    return Path(path).exists() or shard_index(path).exists()


def save_weights(tensors: dict[str, torch.Tensor], destination: str | os.PathLike, max_shard_bytes: int | None = None) -> list[Path]:
    """Write ``tensors`` as ``destination``; when they hold more than ``max_shard_bytes``, as shards
    of at most that size (a tensor larger than that gets a shard of its own) beside an index
    ``destination + ".index.json"``. Returns the files written.

    A lent GPU machine returns files of at most 16 MiB, so a wider model comes back in pieces. The
    index is replaced last and atomically, its shards under names no earlier index used, so a
    reader (or a copy cut off mid-write) sees the previous complete set or the new one, never a mix;
    a single file replaces an earlier sharded set, and the other way round."""
    destination = Path(destination)
    index = shard_index(destination)
    try:
        old_shards = sorted(set(read_shard_index(index).values())) if index.exists() else []
    except CheckpointError:  # an unreadable old index is replaced; its shards cannot be named
        old_shards = []
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        tmp = destination.with_name(destination.name + ".tmp")
        save_tensors(tensors, tmp)
        os.replace(tmp, destination)
        index.unlink(missing_ok=True)
        _remove(destination.parent, old_shards)
        return [destination]
    groups: list[list[str]] = [[]]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += nbytes
    token = secrets.token_hex(4)
    stem = destination.name[: -len(".safetensors")] if destination.name.endswith(".safetensors") else destination.name
    names = [f"{stem}-{token}-{k + 1:05d}-of-{len(groups):05d}.safetensors" for k in range(len(groups))]
    for name, keys in zip(names, groups):
        save_tensors({k: tensors[k] for k in keys}, destination.parent / name)
    payload = {"metadata": {"total_size": total}, "weight_map": {k: name for name, keys in zip(names, groups) for k in keys}}
    write_text_atomically(index, json.dumps(payload, indent=1))
    destination.unlink(missing_ok=True)
    _remove(destination.parent, [n for n in old_shards if n not in names])
    return [destination.parent / n for n in names] + [index]


def write_text_atomically(path: Path, text: str) -> None:
    """Replace ``path`` whole: a reader sees the old text or the new, never part of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _remove(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)


def read_shard_index(index: Path) -> dict[str, str]:
    """An index's map from tensor name to shard file, each shard checked to be a plain
    ``.safetensors`` name in the index's own folder (an index cannot point anywhere else)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a readable shard index ({str(e)[:120]})") from None
    for name in set(weight_map.values()):
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors") or name.startswith("."):
            raise CheckpointError(f"{index}: shard {name!r} is not a .safetensors file beside the index")
    return weight_map


def _load_shards(index: Path) -> dict[str, torch.Tensor]:
    weight_map = read_shard_index(index)
    tensors: dict[str, torch.Tensor] = {}
    for name in sorted(set(weight_map.values())):
        shard = _load_file(index.parent / name)
        if set(shard) != {k for k, v in weight_map.items() if v == name}:
            raise CheckpointError(f"{index.parent / name}: holds other tensors than its index lists")
        tensors.update(shard)
    return tensors


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
