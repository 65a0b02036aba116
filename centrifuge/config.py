"""Training configurations: a dataclass, named presets, JSON files and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in the run folder and in every checkpoint.

    Attributes:
        model: a named model configuration (``centrifuge.models.MODEL_CONFIGS``).
        model_overrides: fields of that configuration to change, e.g. ``{"num_layers": 2}``.
        data: ``synthetic`` (the embedded generator, no file needed) or a folder of videos.
        synthetic_fraction: with a folder, the share of layers drawn from the generator instead.
        val_data: a folder of videos for validation (default: held-back synthetic clips).
        alpha: the blend's α (Eq. 1), a number or ``[low, high]`` for a uniform draw.
        frozen: train on frozen clips (a frame repeated; Table 3).
        ordered_weight: share of the loss under a fixed assignment of layers to outputs, the
            faster-moving layer first (``losses.speed_assignment``), the rest Eq. 2 (not in the
            paper; 0 is the paper's loss).
        ordered_contrast: with ``ordered_weight``, clips whose layers' speeds differ less than this
            (``losses.speed_contrast``: 0 same speed, 1 one layer still) keep Eq. 2 alone.
        exclusion_weight: weight of the gradient exclusion term between matched outputs
            (``losses.exclusion_loss``; not in the paper): penalises an edge in both layers.
        exclusion_until: the share of the run (of ``time_budget``, else of ``steps``) at which that
            weight has fallen linearly to 0; None keeps it. Continuations without the term
            brought the darker and lighter copies back (docs/results.md, "The exclusion term").
        written_weight: weight of Eq. 2 on the two outputs ``separate`` writes, the most distant
            pair (``losses.written_pair_losses``; not in the paper). With n > 2 outputs Eq. 2 lets
            the answer pick the best two, and the pair a user gets drifts away from it with training.
        written_on_carried: whether the written-pair term also counts blends with a carried layer
            (``carried_motion``), whose two layers show one photograph. With carried layers the
            term cost real pairs 0.036 (session 39); without those blends it still cost 0.028
            (session 40), so they were not the cause.
        keep_weight: weight of Eq. 3 between each output and the same output of the ``keep_from``
            model, on the blends that hold no light (not in the paper; Learning without Forgetting,
            Li & Hoiem 2016): a fine-tune on lights keeps what its starting model does on two
            videos, which 1,500 steps on lights alone cost 0.045 of the real-pair ratio (session 38).
        keep_from: the model the keep term holds to (a bundled model's name, a run folder, checkpoint
            or .safetensors file, as ``init_weights``); needed when ``keep_weight`` is above 0.
        colour_invariant_weight: weight of Eq. 3 between the matched outputs and their targets after
            the best per-clip, per-channel gain and offset (``losses.colour_invariant_losses``; not
            in the paper): a global colour change of the blend earns nothing under it.
        lr_milestones / lr_values: piecewise-constant learning rate: ``lr_values[i]`` from step
            ``lr_milestones[i]`` on.
        precision: ``auto`` (bf16 autocast where the hardware has fast bf16, else fp32), ``fp32``, ``bf16``.
        max_bad_steps: consecutive non-finite losses after which the run stops.
        init_weights: the model to start from (fine-tuning): a bundled model's name (``default``), a
            run folder, checkpoint or .safetensors file; ignored when the run folder already has a
            checkpoint to resume.
        deterministic: train in fp32 whatever ``precision`` says. Under bf16 autocast, oneDNN's
            3D-convolution backward (PyTorch 2.13, CPU) is not bit-reproducible; fp32 is exact.
        pipeline: how training data is made. ``batched``: a batch at a time on the model's device
            (the batched generator, real clips decoded once into memory); ``loader``: clip by clip
            in DataLoader workers, streaming videos from disk (folders too big for memory);
            ``auto``: batched when the videos fit in memory.
        photos: the generator's photographs: ``auto`` (scikit-image's, plus the wallpaper cache of
            ``make photos`` when present) or ``scikit-image``. Training uses their training part.
        video_textures: also use frames of the training videos as textures (batched pipeline).
        layer_blur / layer_dim: probability that one layer of a pair is out of focus (σ 1–5 px) /
            dimmer (×0.4–0.9), fixed over the clip (both pipelines). linear_light: blend in linear light (gamma 2.2).
        layer_light: probability that one layer of a pair is a light instead of a clip: a flat,
            saturated, black or white colour (the paper's Figure 4), a coloured light, a gradient or a
            shadow, varying slowly over the clip (both pipelines).
        layer_still: probability that one layer of a pair is still (one of its frames repeated)
            under a moving one (both pipelines). With ``ordered_weight`` and ``ordered_contrast``
            near 1, such pairs are the ones given the fixed order (the moving layer first).
        scene_sprites: generated clips' moving objects belong to their scene (textured from its
            photograph, in its colours, carried by its camera) instead of being drawn from any
            photograph and moving on their own (both pipelines).
        layer_jitter: probability that a layer's contrast (×0.5–1.5), colour balance (×0.8–1.2 per
            channel) and brightness (±0.2) are changed at random, fixed over the clip (both
            pipelines), so that how a scene looks cannot tell which layer it is.
        carried_motion: probability that a real training layer keeps its clip's motion (optical
            flow) and shows a training photograph carried along by it instead of the video's own look
            (batched pipeline; ``centrifuge.motion``); the two such layers of a pair show one
            photograph, so that only how they move tells them apart.
        video_zoom: real training clips seen at a magnification drawn log-uniformly between 1 (the
            paper's view: shortest side 1.15 × the crop) and this, from frames decoded at this × the
            usual size (clip-by-clip pipeline only): more distinct views of a few videos.
        time_budget: seconds of training; when set, the learning rate warms up over the first
            ``warmup`` share of the budget, then follows a cosine to 1 % of ``lr``, and the run
            stops (with a checkpoint) when the budget is spent, whatever ``steps`` says.
        checkpoint_seconds: also checkpoint whenever this many seconds have passed since the last.
        render_in_trainer: batched pipeline: workers only plan batches and the training process
            renders them on its device (None: on a GPU, yes; on a CPU workers render too). The
            GPU script's CPU smoke run sets it to exercise the GPU's data path.
    """

    model: str = "small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: str = "synthetic"
    synthetic_fraction: float = 0.0
    val_data: str | None = None
    num_frames: int = 16
    crop_size: int = 64
    batch_size: int = 8
    steps: int = 2000
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: list[int] = field(default_factory=list)
    lr_values: list[float] = field(default_factory=list)
    alpha: float | list[float] = 0.5
    frozen: bool = False
    recomposition_weight: float = 0.0
    diversity_weight: float = 0.0
    ordered_weight: float = 0.0
    ordered_contrast: float = 0.0
    exclusion_weight: float = 0.0
    exclusion_until: float | None = None
    written_weight: float = 0.0
    written_on_carried: bool = True
    colour_invariant_weight: float = 0.0
    keep_weight: float = 0.0
    keep_from: str | None = None
    grad_clip: float | None = 5.0
    precision: str = "auto"
    workers: int = 2
    seed: int = 0
    log_every: int = 10
    val_every: int = 500
    val_clips: int = 16
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    max_bad_steps: int = 20
    deterministic: bool = False
    init_weights: str | None = None
    pipeline: str = "auto"
    photos: str = "auto"
    video_textures: bool = True
    layer_blur: float = 0.0
    layer_dim: float = 0.0
    linear_light: bool = False
    layer_light: float = 0.0
    layer_still: float = 0.0
    scene_sprites: bool = False
    layer_jitter: float = 0.0
    carried_motion: float = 0.0
    video_zoom: float = 1.0
    time_budget: float | None = None
    checkpoint_seconds: float | None = None
    render_in_trainer: bool | None = None
    warmup: float = 0.05

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        config = cls(**checked_fields(cls, d, "training option"))
        for name, (fits, wanted) in _OPTION_RANGES.items():
            value = getattr(config, name)
            if not all(v is None or fits(v) for v in (value if isinstance(value, list) else [value])):
                raise ValueError(f"{name} must be {wanted}, got {value!r}")
        if config.keep_weight and not config.keep_from:
            raise ValueError("keep_weight needs keep_from, the model whose outputs it keeps")
        if isinstance(config.alpha, list) and len(config.alpha) != 2:
            raise ValueError(f"alpha must be a number or [low, high], got {config.alpha!r}")
        return config


def _share(v: float) -> bool:
    return 0 <= v <= 1


# Values no run can use, caught when the configuration is read: `--set crop_size=0` or
# `--set precision=fp8` is one line at the start, not a traceback or an empty run later.
# None (where the type allows it) means "off" and is not checked; lists are checked item by item.
_OPTION_RANGES: dict[str, tuple[Any, str]] = {
    **{name: (lambda v: v >= 1, "at least 1") for name in (
        "num_frames", "crop_size", "batch_size", "steps", "log_every", "val_every", "val_clips",
        "checkpoint_every", "keep_checkpoints", "max_bad_steps")},
    **{name: (lambda v: v >= 0, "at least 0") for name in (
        "workers", "lr", "lr_values", "momentum", "weight_decay", "recomposition_weight", "diversity_weight",
        "exclusion_weight", "written_weight", "colour_invariant_weight", "keep_weight", "lr_milestones")},
    **{name: (_share, "between 0 and 1") for name in (
        "synthetic_fraction", "ordered_weight", "warmup", "layer_blur", "layer_dim", "layer_light",
        "layer_still", "layer_jitter", "carried_motion")},
    **{name: (lambda v: v > 0, "above 0") for name in (
        "grad_clip", "time_budget", "checkpoint_seconds")},
    "alpha": (lambda v: 0 < v < 1, "between 0 and 1 (exclusive)"),
    "exclusion_until": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "ordered_contrast": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "video_zoom": (lambda v: v >= 1, "at least 1"),
    "optimizer": (lambda v: v in ("sgd", "adam", "adamw"), "sgd, adam or adamw"),
    "precision": (lambda v: v in ("auto", "fp32", "bf16"), "auto, fp32 or bf16"),
    "pipeline": (lambda v: v in ("auto", "batched", "loader"), "auto, batched or loader"),
    "photos": (lambda v: v in ("auto", "scikit-image"), "auto or scikit-image"),
}


_TYPE_WORDS = {float: "a number", int: "a whole number", bool: "true or false", str: "text", type(None): "null"}


def _type_name(hint) -> str:
    """How an option's type reads in an error: ``float | None`` → "a number or null"."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(args[0]).removeprefix('a ')}s" if args else "a list"
    if args:
        return " or ".join(_type_name(a) for a in args)
    return _TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def checked_fields(cls: type, values: dict, what: str, prefix: str = "") -> dict:
    """``values`` for the dataclass ``cls``, each checked against its field's type (:func:`_checked`);
    a ``ValueError`` names an unknown or mistyped field (as ``prefix`` + name, e.g. ``model.width``)."""
    hints = typing.get_type_hints(cls)
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what}(s): {', '.join(prefix + name for name in sorted(unknown))}")
    return {key: _checked(prefix + key, value, hints[key]) for key, value in values.items()}


def _checked(key: str, value: Any, hint) -> Any:
    """``value`` if it fits the option's type (an int where a float is asked, a whole float where an
    int is), else a ``ValueError`` naming the option: a mistyped ``--set lr=abc`` is one line at the
    start of a run, not a traceback from deep inside it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _checked(key, value, option)
            except ValueError:
                pass
        raise ValueError(f"{key} must be {_type_name(hint)}, got {value!r}")
    if hint is type(None):
        if value is None:
            return value
    elif hint is Any:
        return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            try:
                return [_checked(key, v, args[0]) for v in value] if args else list(value)
            except ValueError:
                pass
    elif origin is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ValueError(f"{key} must be {_type_name(hint)}, got {value!r}")


PRESETS: dict[str, dict[str, Any]] = {
    # Section 4 exactly: SGD, momentum 0.99, lr 0.1 → 0.05 / 0.025 / 0.01 at 100k / 150k / 200k,
    # 240k iterations, batch 10, no weight decay, 32×112×112 clips, α = 0.5, predictor–corrector.
    "paper": dict(
        model="paper", num_frames=32, crop_size=112, batch_size=10, steps=240_000, optimizer="sgd", lr=0.1,
        momentum=0.99, weight_decay=0.0, lr_milestones=[100_000, 150_000, 200_000], lr_values=[0.05, 0.025, 0.01],
        alpha=0.5, grad_clip=None, val_every=5000, checkpoint_every=5000,
    ),
    # The paper's basic predictor (Table 1) with the same schedule.
    "paper-predictor": dict(
        model="paper-predictor", num_frames=32, crop_size=112, batch_size=10, steps=240_000, optimizer="sgd", lr=0.1,
        momentum=0.99, lr_milestones=[100_000, 150_000, 200_000], lr_values=[0.05, 0.025, 0.01], grad_clip=None,
        val_every=5000, checkpoint_every=5000,
    ),
    # About 1.5 hours on a 2-core CPU: a quarter-width I3D U-Net on 16×64×64 clips.
    "cpu": dict(model="small", num_frames=16, crop_size=64, batch_size=8, steps=2400, optimizer="adam", lr=1e-3,
                lr_milestones=[1600, 2100], lr_values=[3e-4, 1e-4], val_every=200, checkpoint_every=200),
    # The ablations of docs/results.md (Tables 2-4): one quarter-width predictor per variant, about
    # 5 minutes each on a 2-core CPU. Vary it with --set model.num_layers=8, model=small-corrector,
    # model.final_endpoint=Mixed_3c, frozen=true.
    "ablation": dict(model="small", model_overrides=dict(output="symmetric", num_layers=2), num_frames=16, crop_size=64,
                     batch_size=8, steps=400, optimizer="adam", lr=1e-3, lr_milestones=[300], lr_values=[3e-4],
                     val_every=400, checkpoint_every=200, keep_checkpoints=2),
    # Minutes: for the demo and the tests.
    "tiny": dict(model="tiny", num_frames=8, crop_size=32, batch_size=8, steps=300, optimizer="adam", lr=2e-3,
                 val_every=100, val_clips=8, checkpoint_every=100, log_every=10),
}


def parse_value(text: str) -> Any:
    """``key=value`` override values: JSON when it parses (numbers, lists, true/null), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def make_config(preset: str = "cpu", config_file: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A preset, then a JSON config file, then ``key=value`` overrides, each on top of the last."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    if config_file is not None:
        try:
            values.update(json.loads(Path(config_file).read_text()))
        except (OSError, ValueError) as e:
            raise ValueError(f"{config_file}: not a readable JSON config ({e})") from None
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        if key.startswith("model."):
            values.setdefault("model_overrides", {})
            values["model_overrides"] = {**values["model_overrides"], key[len("model."):]: parse_value(value)}
        else:
            values[key] = parse_value(value)
    return TrainConfig.from_dict(values)
