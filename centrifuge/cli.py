"""The ``centrifuge`` command: argparse subcommands that call the library, nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__

EPILOG = "Run `centrifuge COMMAND --help` for a command's options."


class UserError(Exception):
    """An error the user can fix; printed as one line, exit status 1."""


def _check_at_least(args, **lowest: int) -> None:
    """A ``UserError`` naming the first option below its lowest sensible value (None: not given):
    ``--size 0`` is one line before any work, not a division by zero inside it."""
    for name, low in lowest.items():
        value = getattr(args, name)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on blended pairs of videos",
                       description="Train a centrifuge model. Re-running the same command in the same run folder resumes it.")
    p.add_argument("-o", "--out", default="runs/default", help="run folder: checkpoints, metrics, TensorBoard logs (default: %(default)s)")
    p.add_argument("--preset", default="cpu", help="named configuration: paper, paper-predictor, cpu, tiny (default: %(default)s)")
    p.add_argument("--config", help="JSON file of training options, applied over the preset")
    p.add_argument("--data", help="'synthetic' (embedded generator), a folder of videos, or comma-separated files")
    p.add_argument("--val-data", help="folder or comma-separated files of held-back videos for validation")
    p.add_argument("--steps", type=int, help="total training steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any option, e.g. --set lr=0.01 --set model.num_layers=2 (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run folder that already has checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from .checkpoint import list_checkpoints
    from .config import make_config
    from .train import model_config_for, train

    overrides = list(args.overrides)
    for key in ("data", "val_data", "steps"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        config = make_config(args.preset, args.config, overrides)
        model_config_for(config)  # a bad model.* option is one line now, not a traceback later
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.no_resume and list_checkpoints(Path(args.out) / "checkpoints"):
        raise UserError(f"{args.out} already holds checkpoints; choose another --out or drop --no-resume to continue it")
    logging.getLogger("centrifuge.train").setLevel(logging.INFO)  # say which data it trains and validates on
    result = train(config, args.out, device=args.device, progress=not args.quiet)
    last = result.validation[-1] if result.validation else None
    summary = f"trained to step {result.step} in {args.out}"
    if last:
        summary += f"; validation loss {last['loss']:.4f} vs identity {last['identity']:.4f} (ratio {last['ratio']:.3f})"
    print(summary)
    return 0


def _add_separate(sub) -> None:
    p = sub.add_parser("separate", help="separate videos into layer videos with a report",
                       description="Separate each INPUT into layers: OUT/<name>/layer1.mp4, layer2.mp4, preview.png, index.html, info.json.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files")
    p.add_argument("-o", "--out", default="separated", help="output folder (default: %(default)s)")
    p.add_argument("--model", default=None, help="bundled model name, checkpoint folder, run folder or .safetensors file (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--all-layers", action="store_true", help="also write every output layer to layers/")
    p.add_argument("--window", type=int, default=64, help="frames per temporal window; the last window is the video's last "
                   "frames (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=8, help="frames shared by consecutive windows, each weighted by how "
                   "central it sits in its window (default: %(default)s)")
    p.add_argument("--max-size", type=_max_size, default="auto", help="longest side the network sees; larger frames are separated at this "
                   "size and each layer brought back to full size by a guided filter fitted there (default: auto, the scale the model "
                   "trained at: the shortest side its training clips had, 74 px for the bundled model; 0 = the network at full resolution)")
    p.add_argument("--encoder-preset", default="balanced", metavar="PRESET", help="x264 preset of the videos written: balanced "
                   "(about veryfast's file sizes at half its encoding time), or one of x264's: ultrafast, superfast, veryfast, faster, "
                   "fast, medium, slow, ... (ultrafast: about 3x less encoding time than veryfast, files up to 2.7x larger at the same "
                   "quality; default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_separate)


def _max_size(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected auto or a whole number of pixels, got {text!r}")
    return int(text)


def _run_separate(args) -> int:
    from .separate import Centrifuge, separate_files
    from .video import ENCODER_PRESETS

    if args.encoder_preset not in ENCODER_PRESETS:  # before the model loads, not once per input
        raise UserError(f"--encoder-preset must be one of {', '.join(ENCODER_PRESETS)}, not {args.encoder_preset!r}")
    if args.window < 1 or not 0 <= args.overlap < args.window:
        raise UserError(f"need --window of at least 1 frame and 0 <= --overlap < --window, got {args.window} and {args.overlap}")
    model = Centrifuge.from_pretrained(args.model, device=args.device)
    failures = separate_files(model, args.inputs, args.out, all_layers=args.all_layers, window=args.window, overlap=args.overlap,
                              max_size=args.max_size, force=args.force, progress=not args.quiet, encoder_preset=args.encoder_preset)
    return 1 if failures else 0


EXPERIMENTS = {
    "table1": "identity / untrained / models (Table 1, default)",
    "layers": "Table 2: loss against the number of output layers, predictor vs predictor-corrector (one MODEL per cell)",
    "frozen": "Table 3: each MODEL (trained on normal or frozen clips) on frozen / normal / mixed pairs",
    "depth": "Table 4: loss against the encoder's endpoint (one MODEL per endpoint)",
    "colors": "Figure 4: a video blended with each of the paper's eight colours (first MODEL)",
    "diversity": "section 4.2: mean min_{i!=j} l(Oi, Oj) on normal and frozen pairs; --plot draws the most diverse (Fig. 6)",
    "classes": "section 4.2: random pairs vs pairs of the same class (class sub-folders, or --data synthetic-classes)",
    "recognition": "section 4.1: two-label accuracy of --classifier on blends, separated layers, clean pairs (first MODEL)",
}


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="the paper's experiments: PIT loss vs identity, tables 1-4, figure 4, diversity, recognition",
                       description="Blend clips of different videos (alpha 0.5, centre crops) and score models against the identity "
                                   "baseline. Each of the paper's experiments is one --experiment: "
                                   + "; ".join(f"{k}: {v}" for k, v in EXPERIMENTS.items()) + ".")
    p.add_argument("models", nargs="*", metavar="MODEL", help="bundled model name, run folder, checkpoint folder or .safetensors file (default: the bundled model)")
    p.add_argument("--data", help="a folder of videos or comma-separated files, never trained on; 'synthetic' for held-back generated clips, "
                                   "'synthetic-classes' for the labelled generator (not needed with --benchmark)")
    p.add_argument("--benchmark", choices=["held-back"], help="the bundled model's benchmark: --pairs pairs (default 64) of the held-back videos "
                   "(bikes, carphone, cup, from --videos), --photo-pairs pairs of held-back photographs and --light-pairs held-back "
                   "videos under a light, by content kind")
    p.add_argument("--videos", help="--benchmark: the folder holding the held-back videos (default: $CENTRIFUGE_VIDEOS or ../shared/videos)")
    p.add_argument("--photo-pairs", type=int, default=32, help="--benchmark: pairs of held-back photographs (default: %(default)s)")
    p.add_argument("--light-pairs", type=int, default=None, help="--benchmark: the first video of as many real pairs each under a light "
                   "(a flat colour, coloured light, gradient or shadow: a shadow or coloured light on a scene); 0: none (default: --pairs)")
    p.add_argument("--pairs", type=int, default=None, help="blended pairs (default: 24; 64 with --benchmark)")
    p.add_argument("--frames", type=int, default=32, help="frames per clip (default: %(default)s)")
    p.add_argument("--size", type=int, default=112, help="crop size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="which clips are drawn (default: %(default)s)")
    p.add_argument("--experiment", choices=list(EXPERIMENTS), default="table1", help="which experiment (default: %(default)s)")
    p.add_argument("--plot", help="colors/frozen: a bar chart PNG; diversity: the image grid of the most diverse examples; "
                                  "--benchmark: four held-back real blends with each model's layers; table1: the first four blends likewise")
    p.add_argument("--untrained", metavar="CONFIG", help="table1: add a row for a freshly initialised model of this config (e.g. small)")
    p.add_argument("--classifier", help="recognition: a classifier .safetensors from `centrifuge train-classifier`")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--calibrate", type=int, default=0, metavar="CLIPS",
                   help="first re-estimate each model's BatchNorm statistics on CLIPS clips of its own training mix at the "
                        "scored size (--frames, --size): for models trained at another size (default: off; nothing is written)")
    p.add_argument("--network-size", type=int, default=0, metavar="PX",
                   help="--benchmark: run each model as `separate --max-size PX` does: on the blend shrunk to PX, its layers "
                        "brought back to --size by the guided filter; --calibrate then estimates at PX (default: off, the "
                        "network at --size)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from . import evaluate as ev
    from .separate import Centrifuge

    names = args.models or [None]
    if args.benchmark is None and not args.data:
        raise UserError("evaluate needs --data (held-back videos, synthetic or synthetic-classes) or --benchmark held-back")
    _check_at_least(args, calibrate=0, pairs=1, photo_pairs=0, light_pairs=0, frames=1, size=8)
    if args.network_size and (args.network_size < 16 or args.benchmark is None):
        raise UserError(f"--network-size needs --benchmark and at least 16 px, got {args.network_size}")
    models = [(str(name or "bundled default"), Centrifuge.from_pretrained(name, device=args.device).net) for name in names]
    if args.calibrate:
        models = _calibrated(names, models, args)
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    if args.benchmark:
        return _run_held_back(args, names, models, settings)
    args.pairs = args.pairs or 24
    _warn_about_overlap(names, args.data)
    common = (args.data, args.pairs, args.frames, args.size, args.seed)
    if args.experiment == "recognition":
        return _run_recognition(args, models[0])
    if args.experiment == "diversity":
        results = ev.run_diversity_experiment(models, *common, grid=args.plot)
        print(ev.format_diversity(results))
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": settings, "rows": results}, indent=2, default=str))
        return 0
    if args.experiment in ("table1", "layers", "depth"):
        rows = ev.run_benchmark(models, *common, untrained=args.untrained if args.experiment == "table1" else None)
        text = ev.format_table(rows)
        if args.experiment != "table1":
            layout = ev.format_layers_table if args.experiment == "layers" else ev.format_depth_table
            text = layout(rows[1:], models) + f"\n(identity baseline: loss {rows[0].loss:.4f})"
    elif args.experiment == "colors":
        rows = ev.run_color_experiment(models[0][1], *common)
        text = ev.format_table(rows)
    elif args.experiment == "frozen":
        rows = ev.run_frozen_experiment(models, *common)
        text = ev.format_frozen_grid(rows)
    else:
        try:
            rows = ev.run_class_experiment(models, *common)
        except ValueError as e:
            raise UserError(f"{args.data}: {e}") from None
        text = ev.format_table(rows)
    if args.plot and args.experiment in ("colors", "frozen"):
        ev.plot_rows(rows, args.plot, f"{models[0][0]}: {args.experiment}")
    print(text)
    if args.plot and args.experiment == "table1":  # the first four pairs and each model's layers, to look at
        print(f"wrote {ev.plot_separations(models, ev.benchmark_pairs(args.data, min(4, args.pairs), args.frames, args.size, args.seed), args.plot)}")
    if args.json:
        ev.write_json(args.json, rows, settings)
    return 0


def _calibrated(names, models, args) -> list:
    """Each model with its BatchNorm statistics re-estimated at the scored size (a copy; the
    model's files are not touched). A model whose training data cannot be read is one line."""
    from .calibrate import Calibration
    from .separate import model_path
    from .train import TrainingError, load_calibrated_model

    size = min(args.size, args.network_size or args.size)  # the size the network sees
    calibration = Calibration(args.calibrate, args.frames, size)
    calibrated = []
    for name, (label, net) in zip(names, models):
        try:
            net = load_calibrated_model(model_path(name), calibration, device=next(net.parameters()).device)
        except TrainingError as e:
            raise UserError(str(e)) from None
        calibrated.append((f"{label} (BN at {args.frames}x{size})", net))
    return calibrated


def _warn_about_overlap(names, data_specs: list[str] | str) -> None:
    """A warning naming the benchmark files a model was trained on (its run's training_files.json)."""
    from .evaluate import training_overlap

    for name in names:
        overlap = training_overlap(name, data_specs)
        if overlap:
            print(f"centrifuge: warning: {name or 'the bundled model'} was trained on {len(overlap)} of these videos: "
                  + ", ".join(Path(p).name for p in overlap), file=sys.stderr)


def _run_held_back(args, names, models, settings) -> int:
    from . import evaluate as ev

    videos = Path(args.videos) if args.videos else ev.default_videos_dir()
    if videos is None:
        raise UserError("--benchmark held-back needs the folder of held-back videos: --videos DIR or $CENTRIFUGE_VIDEOS")
    _warn_about_overlap(names, [str(videos / n) for n in ev.HELD_BACK_VIDEOS])
    if args.light_pairs is not None and args.light_pairs > (args.pairs or 64):
        raise UserError(f"--light-pairs {args.light_pairs}: at most one per real pair (--pairs {args.pairs or 64})")
    try:
        results = ev.run_held_back_benchmark(models, videos, args.pairs or 64, args.photo_pairs, args.frames, args.size, args.seed,
                                             args.network_size or None, args.light_pairs)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    print(ev.format_held_back(results))
    if args.plot:  # four real pairs and each model's layers, to look at
        pairs = ev.held_back_benchmark(videos, 4, 0, args.frames, args.size, args.seed, light_pairs=0)["real"]
        print(f"wrote {ev.plot_separations(models, pairs, args.plot, network_size=args.network_size or None)}")
    if args.json:
        from .photos import available_photos

        payload = {"settings": settings, "videos": list(ev.HELD_BACK_VIDEOS), "photographs": [p.name for p in available_photos("held-back")],
                   "kinds": {k: [r.to_dict() for r in rows] for k, rows in results.items()}}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))
    return 0


def _run_recognition(args, separator) -> int:
    from .evaluate import clip_source
    from .recognition import different_class_pairs, format_recognition, load_classifier, run_recognition_experiment

    if not args.classifier:
        raise UserError("the recognition experiment needs --classifier (train one with `centrifuge train-classifier`)")
    try:
        classifier = load_classifier(args.classifier, device=next(separator[1].parameters()).device)
        layers, labels = different_class_pairs(clip_source(args.data), args.pairs, args.frames, args.size, args.seed)
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None
    result = run_recognition_experiment(separator[1], classifier, layers, labels)
    print(format_recognition(separator[0], result))
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "func"}
        Path(args.json).write_text(json.dumps({"settings": settings, "result": result.to_dict()}, indent=2, default=str))
    return 0


def _add_train_classifier(sub) -> None:
    p = sub.add_parser("train-classifier", help="train a small video classifier for the recognition experiment",
                       description="Train a narrow I3D classifier on clean labelled clips: the labelled generator "
                                   "('synthetic-classes', no file needed) or a folder of videos in class sub-folders.")
    p.add_argument("-o", "--out", required=True, help="the classifier file to write (.safetensors; a .json is written beside it)")
    p.add_argument("--data", default="synthetic-classes", help="'synthetic-classes' or a folder with class sub-folders (default: %(default)s)")
    p.add_argument("--steps", type=int, default=300, help="training steps (default: %(default)s)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="crop size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_train_classifier)


def _run_train_classifier(args) -> int:
    import torch

    from .data import LabelledSyntheticSource
    from .recognition import LabelledClips, save_classifier, train_classifier
    from .train import video_folder

    _check_at_least(args, steps=1, frames=1, size=8)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"{out}: the classifier file must end in .safetensors")
    if out.exists():
        raise UserError(f"{out} exists; choose another name")
    synthetic = args.data == "synthetic-classes"
    source = LabelledSyntheticSource(seed=args.seed) if synthetic else video_folder(args.data)
    num_classes = source.num_classes if synthetic else len(source.classes)
    if num_classes < 2:
        raise UserError(f"{args.data}: needs videos in at least two class sub-folders")
    model = train_classifier(source, num_classes, args.steps, args.frames, args.size, seed=args.seed, log=print)
    clips = LabelledClips(LabelledSyntheticSource(seed=20_000) if synthetic else source, 64, args.frames, args.size, train=False, seed=args.seed + 1)
    with torch.no_grad():
        correct = sum(int(model(clip[None]).argmax()) == label for clip, label in clips)
    save_classifier(model, out)
    where = "held-back generated clips" if synthetic else "clips of the training videos (centre crops)"
    print(f"wrote {out}: {num_classes} classes, top-1 {correct / len(clips):.1%} on 64 {where}")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a trained run's model as one .safetensors file (+ .json) for separate/evaluate",
                       description="Export the latest checkpoint of a run folder (or a checkpoint folder) as MODEL.safetensors and MODEL.json.")
    p.add_argument("source", help="run folder or checkpoint folder")
    p.add_argument("destination", help="output .safetensors file")
    p.add_argument("--fp32", action="store_true", help="keep 32-bit weights (default: 16-bit, half the size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--shard-mib", type=float, default=0, metavar="MIB",
                   help="weights larger than MIB mebibytes go into shards of at most that size beside an index "
                        "DESTINATION.index.json, which separate, evaluate and init_weights read as DESTINATION (default: one file)")
    p.add_argument("--calibrate", type=int, default=0, metavar="CLIPS",
                   help="first re-estimate the BatchNorm statistics on CLIPS clips of the run's own training mix at the "
                        "size the model will run at (default: off)")
    p.add_argument("--calibrate-shape", default="32x112", metavar="FRAMESxSIZE",
                   help="clip length and crop size of the calibration clips (default: %(default)s, the benchmark's)")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from .train import export_model

    from .checkpoint import weights_exist

    if weights_exist(args.destination) and not args.force:
        raise UserError(f"{args.destination} exists; pass --force to overwrite it")
    _check_at_least(args, shard_mib=0, calibrate=0)
    calibration = None
    if args.calibrate:
        from .calibrate import Calibration

        frames, _, size = args.calibrate_shape.partition("x")
        if not (frames.isdigit() and size.isdigit() and int(frames) > 0 and int(size) > 0):
            raise UserError(f"--calibrate-shape must be FRAMESxSIZE, two positive whole numbers, got {args.calibrate_shape!r}")
        calibration = Calibration(args.calibrate, int(frames), int(size))
    shard = int(args.shard_mib * 2**20) or None
    print(export_model(args.source, args.destination, half=not args.fp32, calibration=calibration, max_shard_bytes=shard))
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="speed figures against this machine's own matrix-product ceilings",
                       description="Measure matrix-product ceilings, FLOPs per clip, training and inference speed, separate frames/s, "
                                   "decoding speed and peak memory, all in one run.")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small sizes only (a smoke run, not the published figures)")
    p.add_argument("--json", help="also write the figures as JSON to this file")
    p.add_argument("--levers", action="store_true", help="instead: each speed lever switched on one after another (CPU), "
                                                          "with the prediction made before measuring it")
    p.add_argument("--compile", action="store_true", help="with --levers: also try torch.compile (minutes of compile time)")
    p.add_argument("--memory", action="store_true", help="instead: peak memory of `separate` on a 1-minute and a 10-minute 224p input")
    p.add_argument("--only", choices=["data", "separate", "train"], help="only one group of figures: train = the training step's clips/s; data = generated clips/s, per-clip vs "
                   "batched generator; separate = 224p/720p frames/s with where the time goes, 1080p memory, work per frame, "
                   "fine detail and window seams")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    from .bench import format_memory, levers_main, main as bench_main, separate_memory_by_length

    if args.memory:
        rows = separate_memory_by_length((0.1, 0.5) if args.quick else (1, 10))
        print(format_memory(rows))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    elif args.levers:
        levers_main(args.json, compile_model=args.compile, quick=args.quick)
    else:
        bench_main(args.device, args.quick, args.json, only=args.only)
    return 0


def _add_photos(sub) -> None:
    p = sub.add_parser("photos", help="the generator's photographs: list them, or build the wallpaper cache",
                       description="List the photographs the generator uses (training and held-back parts), or with --build resize "
                                   "the installed wallpaper photographs (make photos installs the packages) into the cache.")
    p.add_argument("--build", action="store_true", help="build the cache from the wallpaper packages installed under /usr/share")
    p.set_defaults(func=_run_photos)


def _run_photos(args) -> int:
    from .photos import available_photos, build_photo_cache, describe

    if args.build:
        try:
            cache = build_photo_cache()
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
        print(f"wrote {cache}")
    for split in ("train", "held-back"):
        photos = available_photos(split)
        print(f"{split}: {len(photos)} photographs ({describe(photos)}): {', '.join(p.name for p in photos)}")
    return 0


def _add_preview_data(sub) -> None:
    p = sub.add_parser("preview-data", help="a PNG grid of generated training layers and their blends",
                       description="Write a grid: for each example, frames of its two layers and of their blend, as training makes them.")
    p.add_argument("-o", "--out", required=True, help="the PNG file to write")
    p.add_argument("--examples", type=int, default=6, help="rows (default: %(default)s)")
    p.add_argument("--size", type=int, default=112, help="crop size (default: %(default)s)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip; three are shown (default: %(default)s)")
    p.add_argument("--data", default="synthetic", help="'synthetic' or videos mixed in as in training (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="training options that shape the data, e.g. layer_blur=0.5, linear_light=true, synthetic_fraction=0.5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_run_preview_data)


def _run_preview_data(args) -> int:
    from .config import make_config
    from .preview import write_data_preview

    _check_at_least(args, examples=1, size=8)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"{out}: the preview is a .png file")
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to overwrite it")
    try:
        config = make_config("cpu", overrides=list(args.overrides) + [f"data={args.data}", f"crop_size={args.size}",
                                                                       f"num_frames={args.frames}", f"seed={args.seed}"])
    except ValueError as e:
        raise UserError(str(e)) from None
    write_data_preview(config, out, args.examples)
    print(f"wrote {out}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="blend two clips, train a few steps, separate with the bundled model, write a report",
                       description="A short end-to-end run that needs no file: everything comes from the embedded data.")
    p.add_argument("-o", "--out", default="demo-output", help="output folder (default: %(default)s)")
    p.add_argument("--steps", type=int, default=60, help="training steps of the tiny model (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an output folder that the demo did not write")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from .demo import run_demo

    _check_at_least(args, steps=1)
    run_demo(Path(args.out), steps=args.steps, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="centrifuge", description="Separate videos into layers (The Visual Centrifuge, CVPR 2019).", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_preview_data(sub)
    _add_photos(sub)
    _add_separate(sub)
    _add_evaluate(sub)
    _add_train_classifier(sub)
    _add_export(sub)
    _add_bench(sub)
    _add_demo(sub)
    return parser


def tune_for_streaming() -> None:
    """Set up this process for ``separate``, where x264's threads run beside torch's; call before
    torch loads (it reads ``OMP_WAIT_POLICY`` once, when OpenMP starts).

    - OpenMP's idle workers sleep instead of spinning after every operation, so the encoders get
      the cores (720p on 2 cores: 13.9 → 17.0 frames/s; the network's own time did not change).
    - glibc keeps freed blocks up to 256 MiB instead of unmapping them: each full-size frame's
      temporaries otherwise come back as fresh pages from the kernel (720p: 5,600 page faults a
      frame, a sixth of the CPU time). Freed memory is reused, so the peak does not grow.
    A user's own setting of either wins."""
    import ctypes
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if sys.platform.startswith("linux") and not any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):  # not glibc: its allocator's defaults stay
            pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "separate":
        tune_for_streaming()
    from .checkpoint import CheckpointError
    from .separate import SeparationError
    from .train import Interrupted, TrainingError
    from .video import VideoError

    try:
        return args.func(args)
    except Interrupted as e:
        print(f"centrifuge: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("centrifuge: interrupted", file=sys.stderr)
        return 130
    except (UserError, VideoError, TrainingError, CheckpointError, SeparationError, FileNotFoundError, PermissionError, RuntimeError) as e:
        print(f"centrifuge: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
