"""The ``centrifuge`` command as a user runs it: in a subprocess, real files, exit codes, one-line errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

from centrifuge import __version__
from centrifuge.checkpoint import latest_valid_checkpoint, load_weights, MODEL_FILE
from centrifuge.video import write_video

from conftest import moving_frames

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "centrifuge", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=ENV)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("centrifuge: error:")]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert errors, result.stderr
    for fragment in fragments:
        assert any(fragment in line for line in errors), (fragment, result.stderr)


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "separate", "evaluate", "export", "demo"):
        assert command in result.stdout
    assert run_cli("--version").stdout.strip() == f"centrifuge {__version__}"


def test_the_command_line_sets_up_separate_before_torch_loads(tmp_path):
    """OpenMP reads its wait policy once, when torch loads it: the package must not load torch on
    import, and `separate` must set the policy first (a user's own setting wins)."""
    script = ("import os, sys; import centrifuge.cli as c; loaded = 'torch' in sys.modules; "
              "c.main(['separate', 'missing.mp4', '-o', sys.argv[1], '--quiet']); print(loaded, os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", script, "out"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.stdout.split()[-2:] == ["False", "PASSIVE"], done.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    done = subprocess.run([sys.executable, "-c", script, "out"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.stdout.split()[-2:] == ["False", "ACTIVE"], done.stderr


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_separate_reports_each_bad_input_in_one_line_and_goes_on_with_the_rest(tmp_path):
    good = write_video(tmp_path / "good.mp4", moving_frames(8, 32, 40))
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio = _audio_only(tmp_path / "audio.m4a")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:600])
    inputs = [str(tmp_path / "missing.mp4"), str(noise), str(empty), str(audio), str(truncated), str(good)]
    result = run_cli("separate", *inputs, "-o", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 1
    assert_one_line_error(result, "missing.mp4", "noise.mp4", "empty.mp4", "audio.m4a", "truncated.mp4")
    assert "separated 1 of 6" in result.stdout
    assert (tmp_path / "out" / "good" / "layer1.mp4").exists()


def test_an_unwritable_output_folder_is_one_line(tmp_path):
    good = write_video(tmp_path / "good.mp4", moving_frames(4, 16, 16))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("separate", str(good), "-o", str(blocker / "out"), "--quiet")
    assert_one_line_error(result, "cannot write")
    assert blocker.read_text() == "not a folder"


def test_bad_training_options_are_one_line(tmp_path):
    assert_one_line_error(run_cli("train", "--preset", "nope", "-o", str(tmp_path / "r")), "unknown preset")
    assert_one_line_error(run_cli("train", "--preset", "tiny", "--data", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "r")), "no such video")
    assert_one_line_error(run_cli("separate", str(tmp_path / "x.mp4"), "--model", str(tmp_path / "nomodel")), "no such model")
    assert_one_line_error(run_cli("separate", str(tmp_path / "x.mp4"), "--encoder-preset", "warp"), "--encoder-preset", "ultrafast")
    assert_one_line_error(run_cli("train", "--preset", "tiny", "--set", "ordered_weight=2", "-o", str(tmp_path / "weighted")), "ordered_weight")
    assert_one_line_error(run_cli("train", "--preset", "tiny", "--set", "ordered_contrast=1", "-o", str(tmp_path / "weighted")), "ordered_contrast")
    for option, message in [("lr=abc", "lr must be a number"), ("steps=1.5", "steps must be a whole number"),
                            ("lr_milestones=[1,\"a\"]", "a list of whole numbers"), ("model.num_layers=many", "model.num_layers"),
                            ("model.colour=red", "unknown model option(s): model.colour"), ("model.num_layers=3", "even number"),
                            ("crop_size=0", "crop_size must be at least 1"), ("precision=fp8", "precision must be")]:
        assert_one_line_error(run_cli("train", "--preset", "tiny", "--set", "model.output=affine", "--set", option,
                                      "-o", str(tmp_path / "weighted")), message)
    assert not (tmp_path / "weighted").exists()  # refused before a run folder is made
    for window, overlap in [("0", "0"), ("8", "8"), ("8", "-1")]:
        result = run_cli("separate", str(tmp_path / "x.mp4"), "--window", window, "--overlap", overlap, "-o", str(tmp_path / "sep"))
        assert_one_line_error(result, "--window", "--overlap")
    assert not (tmp_path / "sep").exists()
    for option, value in [("--pairs", "0"), ("--frames", "0"), ("--size", "1"), ("--photo-pairs", "-1")]:
        assert_one_line_error(run_cli("evaluate", "--data", "synthetic", option, value), option)
    for command in [("preview-data", "--examples", "0", "-o", str(tmp_path / "p.png")), ("demo", "--steps", "0", "-o", str(tmp_path / "d")),
                    ("train-classifier", "--size", "0", "-o", str(tmp_path / "c.safetensors")),
                    ("export", str(tmp_path / "r"), str(tmp_path / "m.safetensors"), "--shard-mib", "-1")]:
        option = next(word for word in command if word.startswith("--"))
        assert_one_line_error(run_cli(*command), f"{option} must be at least")
    assert not any((tmp_path / name).exists() for name in ("p.png", "d", "c.safetensors", "m.safetensors"))


def test_recognition_and_table_experiments_from_the_command_line(tmp_path, shared_videos):
    classifier = tmp_path / "clf.safetensors"
    trained = run_cli("train-classifier", "-o", str(classifier), "--steps", "8", "--frames", "4", "--size", "32")
    assert trained.returncode == 0, trained.stderr
    assert classifier.exists() and classifier.with_suffix(".json").exists() and "top-1" in trained.stdout
    assert_one_line_error(run_cli("train-classifier", "-o", str(classifier), "--steps", "1"), "exists")
    common = ["--data", "synthetic-classes", "--pairs", "4", "--frames", "4", "--size", "32"]
    result = run_cli("evaluate", "--experiment", "recognition", "--classifier", str(classifier), "--json", str(tmp_path / "r.json"), *common)
    assert result.returncode == 0, result.stderr
    assert "(a) blend, top-2" in result.stdout and "(b) separated layers, top-1" in result.stdout
    scores = json.loads((tmp_path / "r.json").read_text())["result"]
    assert all(0 <= scores[k] <= 1 for k in ("blend_top2", "separated_top1", "clean_top1"))
    assert_one_line_error(run_cli("evaluate", "--experiment", "recognition", *common), "--classifier")
    two = f"{shared_videos / 'cup.mp4'},{shared_videos / 'box.mp4'}"
    assert_one_line_error(run_cli("evaluate", "--experiment", "classes", "--data", two, "--pairs", "2", "--frames", "4", "--size", "32"),
                          "class folders")
    layers = run_cli("evaluate", "--experiment", "layers", *common)
    assert layers.returncode == 0, layers.stderr
    assert layers.stdout.splitlines()[1].split()[0] == "4"  # the bundled model: 4 layers, no corrector
    table = run_cli("evaluate", "--plot", str(tmp_path / "table1.png"), *common)  # Table 1 with its blends to look at
    assert table.returncode == 0, table.stderr
    assert "wrote" in table.stdout and (tmp_path / "table1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_writes_the_report_folder(tmp_path):
    result = run_cli("demo", "-o", str(tmp_path / "demo"), "--steps", "6")
    assert result.returncode == 0, result.stderr
    assert "PIT loss" in result.stdout and "index.html" in result.stdout
    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    for name in ("blend.mp4", "source1.mp4", "source2.mp4"):
        assert (tmp_path / "demo" / name).exists()
    folder = tmp_path / "demo" / "blend"
    assert (folder / "index.html").exists() and (folder / "layer1.mp4").exists()
    assert all(0 < summary[k] < 1 for k in ("pit_loss", "pit_loss_chosen_pair", "identity_loss"))
    says = "no closer to the true clips than the blend" if summary["ratio"] >= 1 else "closer to the true clips than the blend is"
    assert says in result.stdout  # what the ratio means, said the way it came out
    # A second run replaces its own output; a folder it did not write is refused.
    assert run_cli("demo", "-o", str(tmp_path / "demo"), "--steps", "2").returncode == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    assert_one_line_error(run_cli("demo", "-o", str(mine), "--steps", "2"), "not written by the demo")
    assert (mine / "thesis.txt").read_text() == "precious"


TRAIN_ARGS = ["train", "--preset", "tiny", "--quiet", "--set", "batch_size=2", "--set", "workers=0", "--set", "val_every=1000",
              "--set", "checkpoint_every=1000", "--set", "log_every=1", "--set", "deterministic=true"]


def test_sigterm_checkpoints_exits_143_and_the_same_command_resumes_to_the_same_weights(tmp_path):
    steps = ["--steps", "12"]
    straight = run_cli(*TRAIN_ARGS, *steps, "-o", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    run = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "centrifuge", *TRAIN_ARGS, *steps, "-o", str(run)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    stopped_at = latest_valid_checkpoint(run / "checkpoints")
    assert stopped_at is not None and 3 <= int(stopped_at.name.split("_")[1]) < 12

    resumed = run_cli(*TRAIN_ARGS, *steps, "-o", str(run))
    assert resumed.returncode == 0, resumed.stderr
    a = load_weights(latest_valid_checkpoint(tmp_path / "straight" / "checkpoints") / MODEL_FILE)
    b = load_weights(latest_valid_checkpoint(run / "checkpoints") / MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_ddp_with_gloo_trains_and_resumes(tmp_path):
    """torchrun --nproc_per_node=2 on CPU: the global batch of 4 is split 2 + 2, checkpoints are
    written once, and a second call resumes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "centrifuge",
               *TRAIN_ARGS, "--set", "checkpoint_every=2", "-o", str(tmp_path / "ddp")]
    first = subprocess.run([*command, "--steps", "2"], capture_output=True, text=True, timeout=600, env=ENV)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run([*command, "--steps", "4"], capture_output=True, text=True, timeout=600, env=ENV)
    assert second.returncode == 0, second.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert latest_valid_checkpoint(tmp_path / "ddp" / "checkpoints").name == "step_00000004"


def test_preview_data_writes_a_grid_and_keeps_an_existing_file(tmp_path):
    out = tmp_path / "preview.png"
    result = run_cli("preview-data", "-o", str(out), "--examples", "3", "--size", "32", "--frames", "4", "--set", "layer_blur=1.0")
    assert result.returncode == 0, result.stderr
    from PIL import Image

    image = np.asarray(Image.open(out))
    assert image.shape == (3 * 32 + 2 * 4, 3 * (3 * 32 + 4) - 4, 3)
    assert image[:32, :96].std() > 10  # real picture content, not a blank tile
    before = out.read_bytes()
    assert_one_line_error(run_cli("preview-data", "-o", str(out)), "exists")
    assert out.read_bytes() == before
    assert_one_line_error(run_cli("preview-data", "-o", str(tmp_path / "x.jpg")), ".png")


def test_the_held_back_benchmark_from_the_command_line(tmp_path, shared_videos):
    out = tmp_path / "bench.json"
    result = run_cli("evaluate", "--benchmark", "held-back", "--videos", str(shared_videos), "--pairs", "4", "--photo-pairs", "2",
                     "--frames", "4", "--size", "32", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "trained on" not in result.stderr  # the bundled model trained on none of the benchmark's videos
    assert "real: 4 pairs" in result.stdout and "photographs: 2 pairs" in result.stdout and "lights: 4 pairs" in result.stdout
    assert json.loads(out.read_text())["kinds"]["lights"][0]["pairs"] == 4
    rows = json.loads(out.read_text())["kinds"]["real"]
    assert rows[0]["ratio"] == 1.0 and rows[1]["pairs"] == 4 and "ssim_layers" in rows[1] and rows[1]["ratio_se"] > 0
    assert len(rows[1]["pair_losses"]) == 4 and rows[1]["pair_groups"] == rows[0]["pair_groups"]  # for pair-by-pair comparisons
    assert_one_line_error(run_cli("evaluate", "--benchmark", "held-back", "--videos", str(tmp_path)), "held-back videos")
    assert_one_line_error(run_cli("evaluate", "--benchmark", "held-back", "--videos", str(shared_videos), "--pairs", "4", "--light-pairs", "5"),
                          "at most one per real pair")
    assert_one_line_error(run_cli("evaluate"), "--data")


def test_a_source_with_one_video_is_refused_in_one_line(tmp_path):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "only.mp4", moving_frames(12, 40, 40))
    assert_one_line_error(run_cli("train", "--preset", "tiny", "--data", str(tmp_path / "videos"), "-o", str(tmp_path / "r")),
                          "at least two different videos")
    assert_one_line_error(run_cli("evaluate", "--data", str(tmp_path / "videos" / "only.mp4"), "--pairs", "2", "--frames", "4", "--size", "32"),
                          "at least two different videos")


def test_the_gpu_script_smoke_run_trains_and_returns_a_model_on_the_cpu(tmp_path):
    """``SMOKE=1 scripts/gpu_train.sh`` runs the GPU run's path at toy sizes on the CPU: it must leave
    a loadable fp16 model and the figures the GPU run reports. With ``SHARD_MIB`` below the model's
    size (15 on the GPU, where a returned file has at most 16 MiB) the model comes back in shards."""
    root = Path(__file__).resolve().parents[1]
    env = {**ENV, "SMOKE": "1", "PYTHON": sys.executable, "SHARD_MIB": "2"}
    result = subprocess.run(["bash", str(root / "scripts" / "gpu_train.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "run.json").read_text())
    for key in ("clips_per_s", "achieved_tflops", "share_of_bf16_peak", "data_wait_share", "loss_curve", "inference", "separate_frames_per_s_224p"):
        assert key in report, key
    assert report["final_step"] > 0 and len(report["loss_curve"]) > 1 and 0 <= report["data_wait_share"] < 1
    assert report["separate_1080p"]["frames_per_second"] > 0 and "network" in report["separate_1080p"]["ms_per_frame"]  # issue 13 on the card
    assert report["data_generator"]["batched_clips_per_s"] > 0
    from centrifuge.separate import Centrifuge

    model = Centrifuge.from_pretrained(str(tmp_path / "out" / "model.safetensors"), device="cpu")
    config = model.net.config
    assert next(model.net.parameters()).dtype == torch.float32  # the fp16 file loads for inference in fp32
    assert (config.width, config.output, config.input_skip) == (0.31, "affine", True)  # the candidate, not the CPU preset's model
    assert json.loads((tmp_path / "out" / "model.json").read_text())["dtype"] == "float16"
    shards = sorted((tmp_path / "out").glob("model-*.safetensors"))
    listed = set(json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())["weight_map"].values())
    assert len(shards) >= 3 and {p.name for p in shards} == listed  # the last checkpoint's shards only, none left over
    assert not (tmp_path / "out" / "model.safetensors").exists() and not list((tmp_path / "out").glob("*.tmp"))


def test_the_gpu_script_unpacks_the_repacked_pyav_when_its_python_lacks_it(tmp_path):
    """On the GPU machine (no PyAV, no internet) ``gpu_train.sh`` unpacks ``.whl/av-site.tar.xz``
    (what ``gpu_prepare.sh`` carries: 10 MiB less than the wheel) and puts it on the path of the
    training script; ``INFERENCE=0`` hands the script ``--no-inference``. A stand-in training script
    and a stand-in ``av`` keep this to the shell's part; ``python -S`` hides this venv's PyAV."""
    import tarfile

    root = Path(__file__).resolve().parents[1]
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "gpu_train.sh").write_text((root / "scripts" / "gpu_train.sh").read_text())
    (checkout / "scripts" / "gpu_train.py").write_text(
        "import sys, av\nopen(sys.argv[1] + '.txt', 'w').write(av.__file__ + '\\n' + ' '.join(sys.argv[2:]))\n")
    (tmp_path / "fake" / "av").mkdir(parents=True)
    (tmp_path / "fake" / "av" / "__init__.py").write_text("")
    (checkout / ".whl").mkdir()
    with tarfile.open(checkout / ".whl" / "av-site.tar.xz", "w:xz") as tar:
        tar.add(tmp_path / "fake" / "av", arcname="av")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    python.chmod(0o755)
    site = tmp_path / "site"
    result = subprocess.run(["bash", str(checkout / "scripts" / "gpu_train.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                            env={**ENV, "PYTHON": str(python), "AV_SITE": str(site), "INFERENCE": "0"}, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    where, args = (tmp_path / "out.txt").read_text().splitlines()
    assert Path(where).parent.parent == site and args.split() == ["--no-inference"]

    (checkout / ".whl" / "av-site.tar.xz").unlink()
    missing = subprocess.run(["bash", str(checkout / "scripts" / "gpu_train.sh"), str(tmp_path / "again")], capture_output=True,
                             text=True, env={**ENV, "PYTHON": str(python), "AV_SITE": str(tmp_path / "site2")}, timeout=60)
    assert missing.returncode == 1 and "gpu_prepare.sh" in missing.stderr and "Traceback" not in missing.stderr


def test_the_gpu_script_runs_arms_side_by_side_each_returning_a_model_with_its_report(tmp_path):
    """``ARMS=...`` trains several configurations at once on the one GPU; each arm returns two files
    (the limit on files coming back is 8), its report inside ``model.json``. An arm whose settings
    make no model fails the command in one line."""
    root = Path(__file__).resolve().parents[1]
    env = {**ENV, "SMOKE": "1", "BUDGET": "6", "PYTHON": sys.executable, "RUN_ROOT": str(tmp_path / "runs"),
           "ARMS": "rounded:model.channel_multiple=8 written_weight=1;direct:model.output=direct model.input_skip=false"}
    result = subprocess.run(["bash", str(root / "scripts" / "gpu_train.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "direct/model.json", "direct/model.safetensors", "rounded/model.json", "rounded/model.safetensors"]
    from centrifuge.separate import Centrifuge

    for arm, (output, multiple) in {"rounded": ("affine", 8), "direct": ("direct", 1)}.items():
        report = json.loads((tmp_path / "out" / arm / "model.json").read_text())["gpu_run"]
        assert report["arm"] == arm and report["final_step"] > 0 and report["model_step_only_clips_per_s"] > 0
        assert any("convolution" in line for line in report["model_step_profile"])  # where a step's time goes, by operator
        config = Centrifuge.from_pretrained(str(tmp_path / "out" / arm / "model.safetensors"), device="cpu").net.config
        assert (config.output, config.channel_multiple) == (output, multiple)
        trained = json.loads((tmp_path / "out" / arm / "model.json").read_text())["train_config"]
        assert trained["written_weight"] == (1.0 if arm == "rounded" else 0.0)
    assert "inference" in json.loads((tmp_path / "out" / "rounded" / "model.json").read_text())["gpu_run"]  # the first arm times it

    bad = subprocess.run(["bash", str(root / "scripts" / "gpu_train.sh"), str(tmp_path / "bad")], capture_output=True, text=True,
                         env={**env, "ARMS": "bad:model.width=-1"}, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stdout + bad.stderr and "width must be positive" in bad.stdout


def test_the_long_cpu_run_continues_the_shipped_model_with_its_recipe(tmp_path, shared_videos):
    """``scripts/train_long.sh`` is the background run behind the next bundled model: its recipe must
    load the shipped weights into its network (one step here, the script's settings otherwise)."""
    from centrifuge.separate import Centrifuge

    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "long"
    small = ["steps=1", "val_every=1000", "val_clips=2", "workers=0", "batch_size=2", "num_frames=8", "crop_size=32"]  # the clips' size is not the recipe
    result = subprocess.run(["bash", str(root / "scripts" / "train_long.sh"), str(run), *(f"--set={s}" for s in small)],
                            capture_output=True, text=True, timeout=300, cwd=root,
                            env={**ENV, "NICE": "0", "VIDEOS": str(shared_videos), "CENTRIFUGE": str(Path(sys.executable).parent / "centrifuge")})
    assert result.returncode == 0, result.stderr[-2000:]
    settings = json.loads((run / "config.json").read_text())
    assert (settings["init_weights"], settings["exclusion_weight"], settings["time_budget"]) == ("default", 0.1, 18000)
    assert latest_valid_checkpoint(run / "checkpoints") is not None
    assert Centrifuge.from_pretrained(str(run), device="cpu").net.config == Centrifuge.from_pretrained(device="cpu").net.config


def test_the_planned_gpu_arms_build_and_each_candidate_fits_a_file_that_comes_back():
    """``scripts/gpu_recipes.sh`` is the next GPU call: every arm must make a model from the GPU
    run's settings, and what the arms return must fit the 8 files of at most 16 MiB that come back
    (per arm ``model.json`` and the weights, in 15-MiB shards plus an index when larger; and the log)."""
    import importlib.util

    from centrifuge.config import make_config
    from centrifuge.models import build_model
    from centrifuge.train import load_initial_weights

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gpu_train", root / "scripts" / "gpu_train.py")
    gpu_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_train)
    printed = subprocess.run(["bash", str(root / "scripts" / "gpu_recipes.sh"), "--print-arms"], capture_output=True, text=True, check=True)
    arms = dict(arm.split(":", 1) for arm in printed.stdout.strip().split(";"))
    assert 1 <= len(arms) <= 3
    files = 1  # log.txt
    for name, overrides in arms.items():
        config = make_config("cpu", overrides=gpu_train.MODEL + gpu_train.GPU + overrides.split())
        model = build_model(config.model, **config.model_overrides)
        if config.init_weights:  # an arm that continues a model: it must load into the arm's network
            load_initial_weights(model, config.init_weights)
        size = sum(t.numel() * 2 for t in model.state_dict().values() if t.is_floating_point())
        files += 2 if size <= gpu_train.SHARD_BYTES else math.ceil(size / gpu_train.SHARD_BYTES) + 2
    assert files <= 8, files


def test_the_held_back_benchmark_at_a_network_size_calibrates_and_plots_at_that_size(tmp_path, shared_videos):
    run = tmp_path / "run"
    assert run_cli("train", "--preset", "tiny", "--data", "synthetic", "--set", "steps=1", "--set", "val_every=1000",
                   "--set", "checkpoint_every=1", "-o", str(run)).returncode == 0
    plot = tmp_path / "layers.png"
    result = run_cli("evaluate", str(run), "--benchmark", "held-back", "--videos", str(shared_videos), "--pairs", "2", "--photo-pairs", "0",
                     "--frames", "4", "--size", "48", "--network-size", "24", "--calibrate", "2", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert "(BN at 4x24)" in result.stdout and plot.stat().st_size > 0  # statistics estimated at the size the network sees
    assert_one_line_error(run_cli("evaluate", "--data", "synthetic", "--network-size", "24"), "--network-size")
