"""The training loop: one process (CPU or GPU) or many (``torchrun``, DistributedDataParallel).

Semantics that stay the same whatever the number of processes:

- the batch size is global: with W processes each takes ``batch_size / W`` of the same global batch
  the single-process run would see (``StepSampler``, :class:`~centrifuge.batched.StepBatches`),
  α included; on CUDA BatchNorm is synchronised (SyncBatchNorm). PyTorch has no SyncBatchNorm on
  the CPU: under gloo each process normalises with its own slice's statistics, and the running
  statistics saved are rank 0's;
- the data at step s is a pure function of ``(seed, s)``, so a resumed run sees exactly the clips an
  uninterrupted one would; the learning rate is a pure function of the iteration (skipped steps
  count), or of the training time spent with a ``time_budget``.

A non-finite loss or gradient skips the step on every rank together; ``max_bad_steps`` in a row stop
the run. SIGTERM and Ctrl-C finish the current step, write a checkpoint and exit with 143 / 130.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from . import __version__
from .checkpoint import INDEX_SUFFIX, MODEL_FILE, CheckpointError, STATE_FILE, latest_valid_checkpoint, load_state, load_weights, read_meta, save_checkpoint, save_weights, write_text_atomically
from .config import TrainConfig
from .data import LayerPairs, SyntheticSource, VideoFolder, blend_layers, sample_alpha
from .generator import BatchedGenerator, default_bank_size
from .photos import available_photos, bank_tensor, describe, video_textures
from .synthetic import SyntheticConfig
from .video import VideoError, find_videos
from .batched import BatchedPairs, ClipBank, LayerKinds, StepBatches, blend_linear_light
from .devices import autocast_dtype, resolve_device, use_channels_last
from .losses import identity_outputs, keep_loss, light_labels, pit_loss
from .models import CentrifugeNet, ModelConfig, build_model

if TYPE_CHECKING:
    from .calibrate import Calibration

log = logging.getLogger(__name__)


class TrainingError(Exception):
    """A run that cannot start or must stop; the message says why and what to do."""


class Interrupted(Exception):
    """SIGTERM or Ctrl-C arrived; a checkpoint was written. ``exit_code`` is 143 or 130."""

    def __init__(self, exit_code: int, checkpoint: Path | None):
        super().__init__(f"interrupted; checkpoint written to {checkpoint}")
        self.exit_code = exit_code
        self.checkpoint = checkpoint


# --------------------------------------------------------------------------- distributed


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (a no-op otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


class StepSampler(Sampler[int]):
    """Global item indices for steps ``start_step, start_step+1, …``: the global batch at step s is
    items ``[s·B, (s+1)·B)``, and rank r of W takes its contiguous share of it."""

    def __init__(self, batch_size: int, start_step: int, total_steps: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise TrainingError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
        self.global_batch = batch_size
        self.local_batch = batch_size // world_size
        self.start_step, self.total_steps = start_step, total_steps
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.total_steps):
            first = step * self.global_batch + self.rank * self.local_batch
            yield from range(first, first + self.local_batch)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.local_batch


# --------------------------------------------------------------------------- data


def video_folder(spec: str) -> VideoFolder:
    """A folder of videos, or a comma-separated list of video files and folders."""
    parts = [Path(p) for p in spec.split(",") if p.strip()]
    if len(parts) == 1 and parts[0].is_dir():
        return VideoFolder(parts[0])
    files: list[Path] = []
    for part in parts:
        files.extend(find_videos(part) if part.is_dir() else [part])
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise TrainingError(f"no such video file: {missing[0]}")
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    return VideoFolder(root, files=files)


# In-memory banks of decoded training videos up to this size (bytes); larger folders stream from disk.
BANK_BUDGET = {"cpu": 2 * 2**30, "cuda": 16 * 2**30}
# The light head has no other loss: with Adam its weight only matters against gradient clipping.
LIGHT_GATE_WEIGHT = 0.1


def _training_folder(spec: str) -> VideoFolder:
    folder = video_folder(spec)
    if len(folder) < 2:
        raise TrainingError(f"{spec}: un-mixing needs at least two different videos, this source has {len(folder)}")
    return folder


def _training_sources(config: TrainConfig, seed: int, folder: VideoFolder | None):
    generated = SyntheticSource(seed=seed, config=SyntheticConfig(scene_sprites=config.scene_sprites), split="train")
    if folder is None:
        return [generated], None
    if config.synthetic_fraction > 0:
        f = config.synthetic_fraction
        return [folder, generated], [1 - f, f]
    return [folder], None


def _validation_set(config: TrainConfig, frozen: tuple[bool, bool], data_device: torch.device, batched: bool):
    """Fixed held-back blends: the ``val_data`` videos, else generated clips of the held-back photographs."""
    if config.val_data:
        return LayerPairs([video_folder(config.val_data)], length=config.val_clips, num_frames=config.num_frames,
                          crop_size=config.crop_size, train=False, seed=config.seed + 1, frozen=frozen)
    if not batched:  # a generator seed the training stream never uses, filming photographs it never films
        return LayerPairs([SyntheticSource(seed=10_000 + config.seed, split="held-back")], length=config.val_clips, num_frames=config.num_frames,
                          crop_size=config.crop_size, train=False, seed=config.seed + 1, frozen=frozen)
    photos = available_photos("held-back", wallpapers=config.photos == "auto")
    generator = BatchedGenerator(bank_tensor(photos, *default_bank_size(config.crop_size)), data_device, seed=10_000 + config.seed)
    pairs = BatchedPairs(generator, None, 0.0, config.num_frames, config.crop_size, seed=config.seed + 1, frozen=frozen, train=False)
    layers = pairs.examples(range(config.val_clips))["layers"].cpu()
    return [{"layers": layers[i]} for i in range(len(layers))]


def build_datasets(config: TrainConfig) -> tuple[LayerPairs, LayerPairs]:
    """The clip-by-clip training stream (``pipeline=loader``) and its fixed validation set."""
    folder = None if config.data == "synthetic" else _training_folder(config.data)
    if folder is not None:
        folder.zoom = config.video_zoom
    sources, weights = _training_sources(config, config.seed, folder)
    frozen = (config.frozen, config.frozen)
    train = LayerPairs(sources, length=1_000_000, num_frames=config.num_frames, crop_size=config.crop_size,
                       train=True, seed=config.seed, weights=weights, frozen=frozen, light=config.layer_light,
                       still=config.layer_still, blur=config.layer_blur, dim=config.layer_dim,
                       jitter=config.layer_jitter)
    return train, _validation_set(config, frozen, torch.device("cpu"), batched=False)


@dataclass
class TrainingData:
    batches: object  # an iterable of this process's batches, one per step: {"layers", and "alpha" when drawn}
    validation: object  # a sequence of {"layers": (2, 3, T, H, W)}
    description: str
    pipeline: str
    training_files: list[dict] = field(default_factory=list)


def choose_pipeline(config: TrainConfig, folder: VideoFolder | None, device: torch.device) -> str:
    """``batched`` unless asked otherwise or the videos do not fit the in-memory budget."""
    if config.pipeline not in ("auto", "batched", "loader"):
        raise TrainingError(f"pipeline must be auto, batched or loader, not {config.pipeline!r}")
    if config.video_zoom < 1:
        raise TrainingError(f"video_zoom is a magnification of at least 1, not {config.video_zoom}")
    if config.carried_motion and folder is not None:
        if config.pipeline == "loader" or config.video_zoom > 1:
            raise TrainingError("carried_motion works in the batched pipeline only: set pipeline=batched (or auto), without video_zoom")
        return "batched"
    if config.video_zoom > 1 and folder is not None:
        if config.pipeline == "batched":
            raise TrainingError("video_zoom works in the clip-by-clip pipeline only: set pipeline=loader (or auto)")
        return "loader"
    if config.pipeline != "auto":
        return config.pipeline
    if folder is None or config.synthetic_fraction >= 1:
        return "batched"
    return "batched" if ClipBank.estimate_bytes(folder, config.crop_size) <= BANK_BUDGET.get(device.type, BANK_BUDGET["cpu"]) else "loader"


def _file_record(path: str) -> dict:
    resolved = Path(path).resolve()
    return {"path": str(resolved), "size": resolved.stat().st_size}


def _keep(item):
    """A DataLoader collate that leaves a :class:`~centrifuge.batched.BatchPlan` as it is."""
    return item


def make_batched_pairs(config: TrainConfig, folder: VideoFolder | None, data_device: torch.device) -> tuple[BatchedPairs, str]:
    """The batched training stream of ``config`` on ``data_device``, and a line saying what it holds."""
    real_share = 0.0 if folder is None else 1.0 - config.synthetic_fraction
    bank = ClipBank(folder, config.crop_size, data_device) if folder is not None and real_share > 0 else None
    generator, parts = None, []
    carried = bank is not None and config.carried_motion > 0
    training_photos = available_photos("train", wallpapers=config.photos == "auto") if carried or real_share < 1 else []
    if bank is not None:
        parts.append(f"{len(bank)} real videos held in memory ({real_share:.0%} of layers)")
        if carried:
            bank.carry_motion(bank_tensor(training_photos, *default_bank_size(config.crop_size)))
            parts.append(f"{config.carried_motion:.0%} of them shown on {len(training_photos)} training photographs")
    if real_share < 1:
        photos = list(training_photos)
        if bank is not None and config.video_textures:
            photos += video_textures(bank.decoded)
        generator = BatchedGenerator(bank_tensor(photos, *default_bank_size(config.crop_size)), data_device, seed=config.seed,
                                     config=SyntheticConfig(scene_sprites=config.scene_sprites))
        parts.append(f"generated clips of {len(photos)} training photographs ({describe(photos)})")
    kinds = LayerKinds(alpha=tuple(config.alpha) if isinstance(config.alpha, list) else config.alpha, blur=config.layer_blur,
                       dim=config.layer_dim, linear_light=config.linear_light, light=config.layer_light,
                       still=config.layer_still, jitter=config.layer_jitter, carried=config.carried_motion)
    pairs = BatchedPairs(generator, bank, real_share, config.num_frames, config.crop_size, seed=config.seed, kinds=kinds,
                         frozen=(config.frozen, config.frozen))
    return pairs, f"batched pipeline on {data_device.type}: " + " + ".join(parts)


def build_training_data(config: TrainConfig, device: torch.device, ddp: "Distributed", start_step: int, end_step: int) -> TrainingData:
    """The training batches of steps ``[start_step, end_step)`` for this process, and the validation set."""
    folder = None if config.data == "synthetic" else _training_folder(config.data)
    files = [_file_record(v.path) for v in folder.videos] if folder is not None else []
    pipeline = choose_pipeline(config, folder, device)
    frozen = (config.frozen, config.frozen)
    if pipeline == "loader":
        train_set, val_set = build_datasets(config)
        sampler = StepSampler(config.batch_size, start_step, end_step, ddp.rank, ddp.world_size)
        loader = DataLoader(train_set, batch_size=sampler.local_batch, sampler=sampler, num_workers=config.workers,
                            persistent_workers=False, prefetch_factor=4 if config.workers else None, pin_memory=device.type == "cuda")
        what = "videos streamed from disk clip by clip" + (f" (+{config.synthetic_fraction:.0%} generated clips)" if folder and config.synthetic_fraction else "")
        return TrainingData(loader, val_set, f"loader pipeline: {what}", pipeline, files)

    data_device = device if device.type == "cuda" else torch.device("cpu")
    pairs, text = make_batched_pairs(config, folder, data_device)
    if config.batch_size % ddp.world_size:
        raise TrainingError(f"batch_size {config.batch_size} is not divisible by the {ddp.world_size} processes")
    render_here = device.type == "cuda" if config.render_in_trainer is None else config.render_in_trainer
    steps = StepBatches(pairs.planner() if render_here else pairs, config.batch_size, ddp.rank, ddp.world_size, plans_only=render_here)
    order = range(start_step, end_step)  # lazy: a time-budgeted run may name a huge step count
    if config.workers == 0:
        batches = (steps[s] for s in order)
    else:  # CPU workers plan (GPU) or make (CPU) the next batches while the model trains
        batches = DataLoader(steps, batch_size=None, sampler=order, num_workers=config.workers, persistent_workers=False,
                             prefetch_factor=4 if render_here else 2, collate_fn=_keep if render_here else None)
    if render_here:
        batches = (pairs.render(plan) for plan in batches)
    return TrainingData(batches, _validation_set(config, frozen, data_device, batched=True), text, pipeline, files)


# --------------------------------------------------------------------------- optimisation


# The light head (``model.light_gate``) learns at this multiple of the run's rate: a 12-input
# classifier that the training blends separate to 95 % (fitted apart at 1e-2), which at a
# fine-tuning rate of 3e-4 had moved its probabilities by under 0.06 after 400 steps (session 37).
LIGHT_HEAD_LR_SCALE = 30.0


def _light_gated(model: torch.nn.Module) -> CentrifugeNet | None:
    """The network under any DDP wrapper when it has a light gate, else None."""
    net = getattr(model, "module", model)
    return net if getattr(getattr(net, "config", None), "light_gate", False) else None


def parameter_groups(model: torch.nn.Module) -> list[dict]:
    """The trainable parameters, with the light head in a group of its own whose ``lr_scale``
    multiplies the run's learning rate (the ``lr_scale`` key as timm's layer decay uses it)."""
    net = _light_gated(model)
    head = {id(p) for p in net.light_head.parameters()} if net is not None else set()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in head], "lr_scale": 1.0}]
    if head:
        groups.append({"params": [p for p in model.parameters() if p.requires_grad and id(p) in head], "lr_scale": LIGHT_HEAD_LR_SCALE})
    return groups


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [dict(group, lr=config.lr * group["lr_scale"]) for group in parameter_groups(model)]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise TrainingError(f"unknown optimizer {config.optimizer!r}; choose sgd, adam or adamw")


def learning_rate(config: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """The learning rate at iteration ``step`` (skipped steps count: the schedule follows the
    iteration counter, so a skipped non-finite step shifts nothing).

    Without a time budget: piecewise constant, ``lr`` until the first milestone, then
    ``lr_values[i]`` (section 4). With ``time_budget``: a linear warm-up over the first ``warmup``
    share of the budget, then a cosine from ``lr`` to 1 % of it at ``elapsed == time_budget``.
    """
    if config.time_budget:
        progress = min(1.0, max(0.0, elapsed / config.time_budget))
        if config.warmup > 0 and progress < config.warmup:
            return config.lr * (0.1 + 0.9 * progress / config.warmup)
        rest = (progress - config.warmup) / max(1e-9, 1 - config.warmup)
        return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * rest)))
    lr = config.lr
    for milestone, value in zip(config.lr_milestones, config.lr_values):
        if step >= milestone:
            lr = value
    return lr


def exclusion_weight_at(config: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """The exclusion term's weight now: ``exclusion_weight``, falling linearly to 0 at the
    ``exclusion_until`` share of the run (of the time budget when there is one, else of ``steps``)."""
    if config.exclusion_until is None or not config.exclusion_weight:
        return config.exclusion_weight
    progress = elapsed / config.time_budget if config.time_budget else step / max(1, config.steps)
    return config.exclusion_weight * max(0.0, 1.0 - progress / config.exclusion_until)


@dataclass
class StepResult:
    loss: float  # the PIT reconstruction loss (Eq. 2), comparable with ``identity``
    identity: float
    applied: bool
    problem: str = ""  # what was non-finite when the step was skipped
    objective: float = float("nan")  # what was minimised: ``loss`` plus any recomposition / diversity term


def _non_finite_parts(loss: torch.Tensor, model: torch.nn.Module) -> str:
    """Name what was non-finite on this rank (the loss, or the first parameters whose gradient was)."""
    if not torch.isfinite(loss).all():
        return "loss"
    names = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if not names:
        return "loss or gradient on another rank"
    return f"gradient ({', '.join(names[:3])}" + (f" and {len(names) - 3} more)" if len(names) > 3 else ")")


def _all_finite(loss: torch.Tensor, model: torch.nn.Module, ddp: Distributed) -> tuple[bool, torch.Tensor | None]:
    """Whether the loss and every gradient are finite, and the gradients' total norm (which is
    finite exactly when they all are, and which clipping reuses). One multi-tensor norm instead of
    a check per parameter: on a GPU, three small kernels per parameter cost more than the check."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads) if grads else None
    finite = torch.isfinite(loss).all() if norm is None else torch.isfinite(loss).all() & torch.isfinite(norm)
    flag = finite.float().to(loss.device)
    if ddp.enabled:  # every rank skips together, or none does
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0), norm


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    layers: torch.Tensor,
    alpha: torch.Tensor,
    config: TrainConfig,
    amp_dtype: torch.dtype | None,
    ddp: Distributed = Distributed(),
    exclusion_weight: float | None = None,
    kept_model: torch.nn.Module | None = None,
    carried: torch.Tensor | None = None,
) -> StepResult:
    """Blend the layers (Eq. 1), separate, PIT loss (Eq. 2), one optimizer step unless non-finite.

    Args:
        layers: ``(B, 2, 3, T, H, W)`` on the model's device.
        alpha: ``(B,)``.
        exclusion_weight: this step's weight of the exclusion term (default ``config``'s).
        kept_model: the frozen ``keep_from`` model of the keep term (``config.keep_weight``).
        carried: ``(B,)`` bool, the blends with a carried layer (the batched pipeline's
            ``carried``); with ``config.written_on_carried`` off the written-pair term skips them.
    """
    blend = blend_linear_light(layers, alpha) if config.linear_light else blend_layers(layers, alpha)
    device_type = layers.device.type
    net = _light_gated(model)
    # A light gate is shown the answer: the range's bias trains on blends with a light only.
    light = light_labels(layers) if net is not None else None
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        outputs = model(blend) if light is None else model(blend, light=light)
        if kept_model is not None:
            with torch.no_grad():
                kept = kept_model(blend) if light is None else kept_model(blend, light=light)
    result = pit_loss(outputs.float(), layers, blend=blend, alpha=alpha,
                      recomposition_weight=config.recomposition_weight, diversity_weight=config.diversity_weight,
                      ordered_weight=config.ordered_weight, ordered_contrast=config.ordered_contrast,
                      exclusion_weight=config.exclusion_weight if exclusion_weight is None else exclusion_weight,
                      written_weight=config.written_weight, colour_invariant_weight=config.colour_invariant_weight,
                      written_mask=None if config.written_on_carried or carried is None else ~carried)
    objective = result.loss
    if kept_model is not None:
        holds_light = light if light is not None else light_labels(layers)
        objective = objective + config.keep_weight * keep_loss(outputs.float(), kept.float(), holds_light)
    if net is not None:
        objective = objective + LIGHT_GATE_WEIGHT * torch.nn.functional.binary_cross_entropy_with_logits(net.light_logit.float(), light)
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    applied, grad_norm = _all_finite(objective.detach(), model, ddp)
    if applied:
        if config.grad_clip and grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(model.parameters(), config.grad_clip, grad_norm)
        optimizer.step()
    with torch.no_grad():
        identity = pit_loss(identity_outputs(blend), layers).loss
    problem = "" if applied else _non_finite_parts(objective.detach(), model)
    return StepResult(loss=float(result.per_example.detach().mean()), identity=float(identity), applied=applied, problem=problem,
                      objective=float(objective.detach()))


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: LayerPairs, device: torch.device, amp_dtype=None, batch_size: int = 4, alpha: float = 0.5) -> dict[str, float]:
    """Mean PIT loss of the model and of the identity baseline on a fixed set of blends."""
    was_training = model.training
    model.eval()
    losses, identities = [], []
    for start in range(0, len(dataset), batch_size):
        layers = torch.stack([dataset[i]["layers"] for i in range(start, min(len(dataset), start + batch_size))]).to(device)
        blend = blend_layers(layers, alpha)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            outputs = model(blend)
        losses.append(pit_loss(outputs.float(), layers).per_example.cpu())
        identities.append(pit_loss(identity_outputs(blend), layers).per_example.cpu())
    model.train(was_training)
    loss, identity = float(torch.cat(losses).mean()), float(torch.cat(identities).mean())
    return {"loss": loss, "identity": identity, "ratio": loss / identity}


# --------------------------------------------------------------------------- the run


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: list[float] = field(default_factory=list)  # PIT loss of every step this call ran
    identities: list[float] = field(default_factory=list)
    objectives: list[float] = field(default_factory=list)  # the minimised loss (PIT plus any extra terms)
    learning_rates: list[float] = field(default_factory=list)  # applied at each step
    skipped_steps: int = 0
    validation: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None


class _SignalFlag:
    """Turn SIGTERM / SIGINT into a flag read at step boundaries (and restore the handlers)."""

    def __init__(self):
        self.code: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            try:
                self._previous[sig] = signal.signal(sig, lambda *_ , c=code: self._set(c))
            except ValueError:  # not the main thread
                pass
        return self

    def _set(self, code: int) -> None:
        self.code = code

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_version": random.getstate()[0]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_config_for(config: TrainConfig) -> ModelConfig:
    return build_model(config.model, **config.model_overrides).config


def _check_run_folder(run_dir: Path, config: TrainConfig) -> None:
    saved = run_dir / "config.json"
    if not saved.exists():
        return
    # Options added in later versions take their default in a run folder written before them.
    previous = {**TrainConfig().to_dict(), **json.loads(saved.read_text())}
    # Steps, logging and worker counts may change on resume; what defines the run may not.
    free = {"steps", "workers", "log_every", "val_every", "checkpoint_every", "keep_checkpoints", "precision", "max_bad_steps",
            "deterministic", "time_budget", "checkpoint_seconds", "render_in_trainer"}
    differing = sorted(k for k in set(previous) | set(config.to_dict()) if k not in free and previous.get(k) != config.to_dict().get(k))
    if differing:
        raise TrainingError(f"{run_dir} holds a run with different settings ({', '.join(differing)}); "
                            "choose another output folder, or the same settings to resume it")


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    max_steps_this_call: int | None = None,
    on_checkpoint: Callable[[Path, dict], None] | None = None,
) -> TrainResult:
    """Train (or resume) a run in ``run_dir``; returns what happened. See the module docstring.

    ``max_steps_this_call`` stops early after that many steps (with a checkpoint), as if interrupted.
    ``on_checkpoint(path, progress)`` is called on the main process after every checkpoint (the GPU
    script exports the model from it, so a run cut short still leaves one).
    With ``config.deterministic`` the run is bit-reproducible on CPU (fp32, no bf16 autocast).
    """
    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    ddp = init_distributed(torch_device.type)
    if ddp.enabled and torch_device.type == "cuda":
        torch_device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(torch_device)
    amp_dtype = autocast_dtype(torch_device, "fp32" if config.deterministic else config.precision)
    channels_last = use_channels_last(torch_device, amp_dtype)
    if torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip sizes: let cuDNN pick its fastest 3D convolutions

    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _check_run_folder(run_dir, config)
    if ddp.enabled:
        dist.barrier()

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    model: torch.nn.Module = CentrifugeNet(model_config_for(config))
    optimizer = make_optimizer(model, config)
    step, optimizer_steps, skipped_total, elapsed = 0, 0, 0, 0.0
    resumed_from = latest_valid_checkpoint(run_dir / "checkpoints") if resume else None
    if resumed_from is not None:
        model.load_state_dict(load_weights(resumed_from / MODEL_FILE))
        state = load_state(resumed_from / STATE_FILE)
        optimizer.load_state_dict(state["optimizer"])
        step, optimizer_steps, skipped_total = int(state["step"]), int(state["optimizer_steps"]), int(state["skipped_steps"])
        elapsed = float(state.get("train_seconds", 0.0))
        _set_rng_state(state["rng"])
        if ddp.is_main:
            log.info("resuming %s from step %d", run_dir, step)
    elif config.init_weights:
        load_initial_weights(model, config.init_weights)
    if ddp.is_main:  # only now: a run that could not start leaves no settings that would block a corrected retry
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    model.to(torch_device)
    _move_optimizer_state(optimizer, torch_device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    kept_model = _kept_model(config, torch_device, channels_last) if config.keep_weight else None
    train_model = model
    if ddp.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if torch_device.type == "cuda" else model
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[torch_device.index] if torch_device.type == "cuda" else None)

    end_step = config.steps if max_steps_this_call is None else min(config.steps, step + max_steps_this_call)
    data = build_training_data(config, torch_device, ddp, step, end_step)
    val_set = data.validation
    meta = {"version": __version__, "model_config": model_config_for(config).to_dict(), "train_config": config.to_dict()}
    if ddp.is_main:
        log.info("training data: %s", data.description)
        if not config.val_data:
            log.info("validating on generated clips of the held-back photographs (no --val-data given)")
        _record_training_files(run_dir, data)
    result = TrainResult(run_dir=run_dir, step=step)
    writer = _summary_writer(run_dir) if ddp.is_main else None
    bar = _progress_bar(progress and ddp.is_main, step, config.steps)
    consecutive_bad, started, clips_done = 0, time.time(), 0
    metrics_file = open(run_dir / "metrics.jsonl", "a") if ddp.is_main else None
    global_alpha = tuple(config.alpha) if isinstance(config.alpha, list) else config.alpha
    waited, stepped = 0.0, 0.0  # seconds spent waiting for data / in the model step, this call

    def validate_and_log() -> None:
        if ddp.is_main:
            val = validate(model, val_set, torch_device, amp_dtype)
            val["step"] = step
            result.validation.append(val)
            metrics_file.write(json.dumps({"step": step, "val": val}) + "\n")
            metrics_file.flush()
            if writer is not None:
                for key in ("loss", "identity", "ratio"):
                    writer.add_scalar(f"val/{key}", val[key], step)
                _log_images(writer, model, val_set, torch_device, step)
            if bar is not None:
                bar.write(f"step {step}: validation loss {val['loss']:.4f}, identity {val['identity']:.4f}, ratio {val['ratio']:.3f}")
        if ddp.enabled:
            dist.barrier()

    last_checkpoint = time.time()

    def checkpoint_now() -> Path | None:
        nonlocal last_checkpoint
        last_checkpoint = time.time()
        state = {"optimizer": optimizer.state_dict(), "step": step, "optimizer_steps": optimizer_steps,
                 "skipped_steps": skipped_total, "rng": _rng_state(), "train_seconds": elapsed}
        path = None
        if ddp.is_main:
            path = save_checkpoint(run_dir / "checkpoints", step, model, meta, state, keep=config.keep_checkpoints, protect=resumed_from)
        if ddp.enabled:
            dist.barrier()
        if on_checkpoint is not None and path is not None:
            on_checkpoint(path, {"step": step, "train_seconds": elapsed, "losses": result.losses, "identities": result.identities,
                                 "validation": result.validation, **throughput()})
        return path

    def throughput() -> dict:
        busy = max(waited + stepped, 1e-9)
        return {"clips_per_s": clips_done / busy, "data_wait_share": waited / busy}

    try:
        with _SignalFlag() as signals:
            train_model.train()
            batches = iter(data.batches)
            while step < end_step:
                if config.time_budget and _agree(elapsed >= config.time_budget, ddp):  # every rank stops together
                    break
                tick = time.perf_counter()
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                layers = batch["layers"].to(torch_device, non_blocking=True)
                if "alpha" in batch:
                    alpha = batch["alpha"].to(torch_device)
                else:  # the α of this process's slice of the one global batch
                    alpha = sample_alpha(config.batch_size, global_alpha, torch.Generator().manual_seed(config.seed * 1_000_003 + step))
                    alpha = alpha[ddp.rank * layers.shape[0] : (ddp.rank + 1) * layers.shape[0]].to(torch_device)
                got_data = time.perf_counter()
                lr = learning_rate(config, step, elapsed)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                outcome = train_step(train_model, optimizer, layers, alpha, config, amp_dtype, ddp,
                                     exclusion_weight=exclusion_weight_at(config, step, elapsed), kept_model=kept_model,
                                     carried=batch["carried"].to(torch_device) if "carried" in batch else None)
                done = time.perf_counter()
                waited, stepped = waited + got_data - tick, stepped + done - got_data
                elapsed += done - tick
                step += 1
                clips_done += config.batch_size
                result.losses.append(outcome.loss)
                result.identities.append(outcome.identity)
                if outcome.applied:
                    optimizer_steps += 1
                    consecutive_bad = 0
                else:
                    skipped_total += 1
                    result.skipped_steps += 1
                    consecutive_bad += 1
                    log.warning("step %d skipped: non-finite %s (%d in a row)", step, outcome.problem, consecutive_bad)
                    if consecutive_bad >= config.max_bad_steps:
                        raise TrainingError(f"{consecutive_bad} non-finite steps in a row at step {step}; stopping. "
                                            f"The last good checkpoint is in {run_dir / 'checkpoints'}; lower the learning rate.")
                result.objectives.append(outcome.objective)
                result.learning_rates.append(lr)
                if bar is not None:
                    rate = clips_done / max(time.time() - started, 1e-9)
                    bar.update(1)
                    bar.set_postfix(loss=f"{outcome.loss:.4f}", identity=f"{outcome.identity:.4f}", clips_s=f"{rate:.1f}")
                if ddp.is_main and (step % config.log_every == 0 or step == end_step):
                    n = config.log_every
                    loss, identity = float(np.mean(result.losses[-n:])), float(np.mean(result.identities[-n:]))
                    record = {"step": step, "loss": loss, "identity": identity, "ratio": loss / identity,
                              "objective": float(np.mean(result.objectives[-n:])), "lr": lr,
                              "skipped": skipped_total, "time": time.time(), "train_seconds": elapsed, **throughput()}
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    if writer is not None:
                        for key in ("loss", "identity", "ratio", "objective", "lr"):
                            writer.add_scalar(f"train/{key}", record[key], step)
                if step % config.val_every == 0 or step == config.steps:
                    validate_and_log()
                due = config.checkpoint_seconds and time.time() - last_checkpoint >= config.checkpoint_seconds
                if step % config.checkpoint_every == 0 or step == end_step or _agree(bool(due), ddp):
                    result.checkpoint = checkpoint_now()
                if signals.code is not None:
                    if step % config.checkpoint_every != 0 and step != end_step:
                        result.checkpoint = checkpoint_now()
                    raise Interrupted(signals.code, result.checkpoint)
            if step < end_step and step > result.step:  # the time budget ended the run: keep its last step
                if not result.validation or result.validation[-1]["step"] != step:
                    validate_and_log()
                result.checkpoint = checkpoint_now()
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if metrics_file is not None:
            metrics_file.close()
    result.step = step
    return result


def _agree(flag: bool, ddp: Distributed) -> bool:
    """True on every rank when it is true on any (ranks must checkpoint and stop together)."""
    if not ddp.enabled:
        return flag
    value = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)



def _record_training_files(run_dir: Path, data: TrainingData) -> None:
    """``training_files.json``: the video files this run trains on (resolved paths and sizes), so that
    ``centrifuge evaluate`` can warn when a benchmark overlaps them."""
    path = run_dir / "training_files.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = []
    merged = {f["path"]: f for f in known + data.training_files}
    path.write_text(json.dumps(list(merged.values()), indent=2))


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(device)


def _progress_bar(enabled: bool, start: int, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)


def _summary_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


@torch.no_grad()
def _log_images(writer, model, dataset: LayerPairs, device: torch.device, step: int) -> None:
    """One validation example as an image grid: blend, both targets, every output (middle frame)."""
    was_training = model.training
    model.eval()
    layers = dataset[0]["layers"].unsqueeze(0).to(device)
    blend = blend_layers(layers, 0.5)
    outputs = model(blend).clamp(0, 1)
    middle = layers.shape[3] // 2
    tiles = [blend[0, :, middle]] + [layers[0, i, :, middle] for i in range(2)] + [outputs[0, i, :, middle] for i in range(outputs.shape[1])]
    writer.add_image("val/blend_targets_outputs", torch.cat(tiles, dim=2).cpu(), step)
    model.train(was_training)


def load_initial_weights(model: CentrifugeNet, source: str, option: str = "init_weights") -> None:
    """Start a new run from another run's weights (fine-tuning): a bundled model's name
    (``default``), a run or checkpoint folder or a ``.safetensors`` file; the architectures must
    match. ``option`` names the setting in errors."""
    from .separate import SeparationError, model_path

    try:
        trained = load_trained_model(model_path(source))
    except SeparationError as e:
        raise TrainingError(f"{option} {e}") from None
    except (CheckpointError, OSError, KeyError, ValueError) as e:
        raise TrainingError(f"{option} {source}: {e}") from None
    grown = dataclasses.replace(trained.config, clip_statistics=model.config.clip_statistics, light_gate=model.config.light_gate)
    if grown != model.config:
        raise TrainingError(f"{option} {source}: its model {trained.config} differs from this run's {model.config}")
    # A model that gains the colour-range branch (and its gate) starts as it was: the branch's output is zero.
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("statistics_head.", "light_head.")) for k in missing):
        raise TrainingError(f"{option} {source}: weights {', '.join(unexpected + missing)} do not fit this run's model")


def _kept_model(config: TrainConfig, device: torch.device, channels_last: bool) -> CentrifugeNet:
    """The keep term's frozen model: ``keep_from``'s weights in this run's architecture. It stays
    in training mode, so that its BatchNorm normalises each batch as the trained model's does and
    the term starts at 0 from the same weights (its running statistics are never used)."""
    kept = CentrifugeNet(model_config_for(config))
    load_initial_weights(kept, config.keep_from, option="keep_from")
    kept.requires_grad_(False).to(device).train()
    return kept.to(memory_format=torch.channels_last_3d) if channels_last else kept


def load_trained_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> CentrifugeNet:
    """Rebuild a model from a checkpoint folder, a run folder (its latest checkpoint) or a
    ``.safetensors`` file with a ``.json`` of the same name beside it. Never unpickles."""
    path = _named_model(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        latest = latest_valid_checkpoint(path / "checkpoints")
        if latest is None:
            raise TrainingError(f"{path}: the run folder has no readable checkpoint")
        path = latest
    if path.is_dir():
        meta, weights = read_meta(path), path / MODEL_FILE
    elif path.suffix == ".safetensors":
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            raise TrainingError(f"{path}: no {meta_path.name} beside it describes the model")
        meta, weights = json.loads(meta_path.read_text()), path
    else:
        raise TrainingError(f"{path}: not a checkpoint folder, run folder or .safetensors file")
    model = CentrifugeNet(ModelConfig.from_dict(meta["model_config"]))
    model.load_state_dict(load_weights(weights))
    return model.to(device).eval()


def export_model(source: str | os.PathLike, destination: str | os.PathLike, half: bool = True, extra: dict | None = None,
                 calibration: "Calibration | None" = None, max_shard_bytes: int | None = None) -> Path:
    """Write a run's model as ``destination`` (.safetensors, fp16 by default: half the size, same
    results to within rounding) and a ``.json`` beside it: what ``Centrifuge.from_pretrained`` loads.

    With ``calibration``, the BatchNorm statistics are first re-estimated on that many clips of the
    run's own training mix at that size (:mod:`centrifuge.calibrate`), and the ``.json`` says so.
    With ``max_shard_bytes``, weights larger than that are written as shards beside an index
    ``destination.index.json`` (:func:`~centrifuge.checkpoint.save_weights`); ``destination`` still
    names the model everywhere."""
    source, destination = Path(source), Path(destination)
    if destination.suffix != ".safetensors":
        raise TrainingError(f"{destination}: the exported model must be a .safetensors file")
    model = load_trained_model(source)
    meta = model_meta(source)
    if calibration is not None:
        extra = {**(extra or {}), "batchnorm_calibration": _calibrate(model, meta.get("train_config"), calibration, source)}
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_weights(tensors, destination, max_shard_bytes)
    info = {"version": __version__, "model_config": model.config.to_dict(), "train_config": meta.get("train_config"),
            "step": meta.get("step"), "dtype": "float16" if half else "float32", **(extra or {})}
    write_text_atomically(destination.with_suffix(".json"), json.dumps(info, indent=2))
    record = (source if source.is_dir() else source.parent) / "training_files.json"
    if not record.is_file():
        record = source.parent.parent / "training_files.json"  # a checkpoint folder inside a run
    if record.is_file():  # what it trained on travels with the model (evaluate warns on overlap)
        write_text_atomically(destination.with_suffix(".training_files.json"), record.read_text())
    return destination


def _named_model(path: str | os.PathLike) -> Path:
    """The model a path names: the index of a sharded model names ``X.safetensors``."""
    path = Path(path)
    return path.with_name(path.name[: -len(INDEX_SUFFIX)]) if path.name.endswith(".safetensors" + INDEX_SUFFIX) else path


def model_meta(source: str | os.PathLike) -> dict:
    """What a run folder, checkpoint folder or exported ``.safetensors`` (or its shard index)
    records about its model: ``model_config``, ``train_config``…; ``{}`` when nothing is recorded."""
    source = _named_model(source)
    checkpoint = latest_valid_checkpoint(source / "checkpoints") if (source / "checkpoints").is_dir() else source
    if checkpoint is not None and checkpoint.is_dir():
        return read_meta(checkpoint)
    if source.suffix == ".safetensors":
        return json.loads(source.with_suffix(".json").read_text())
    return {}


def load_calibrated_model(source: str | os.PathLike, calibration: "Calibration", device: str | torch.device = "cpu") -> CentrifugeNet:
    """A trained model with its BatchNorm statistics re-estimated on its own training mix at the
    calibration's size (:mod:`centrifuge.calibrate`): to score a model at a size it did not train
    at. Nothing is written; the source is left as it was."""
    source = Path(source)
    model = load_trained_model(source)
    _calibrate(model, model_meta(source).get("train_config"), calibration, source)
    return model.to(device).eval()


def _calibrate(model: CentrifugeNet, train_config: dict | None, calibration: "Calibration", source: Path) -> dict:
    from .calibrate import recalibrate_batchnorm, training_mix_blends

    if not train_config:
        raise TrainingError(f"{source}: its training options are not recorded, so its training mix cannot be drawn for calibration")
    config = TrainConfig.from_dict(train_config)
    try:
        recalibrate_batchnorm(model, training_mix_blends(config, calibration))
    except (VideoError, OSError) as e:
        raise TrainingError(f"calibrating {source} on its training data ({config.data}): {e}") from None
    return calibration.to_dict()
