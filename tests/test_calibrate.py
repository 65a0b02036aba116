"""BatchNorm statistics re-estimated at the scale a model runs at, and the export that records it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from centrifuge.calibrate import batchnorm_layers, recalibrate_batchnorm
from centrifuge.cli import main
from centrifuge.config import make_config
from centrifuge.models import build_model
from centrifuge.train import load_trained_model, train


def test_recalibrated_statistics_are_the_average_over_the_calibration_batches_of_each_layers_input():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    layers = batchnorm_layers(model)
    for bn in layers:  # statistics from some other scale: far off
        bn.running_mean.normal_(0, 2)
        bn.running_var.uniform_(5, 10)
    seen: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}
    hooks = [bn.register_forward_hook(lambda m, inputs, out, i=i: seen[i].append(inputs[0].detach())) for i, bn in enumerate(layers)]
    blends = [torch.rand(2, 3, 8, 32, 32), torch.rand(2, 3, 8, 32, 32) * 0.5]
    momentum = layers[0].momentum
    assert recalibrate_batchnorm(model, blends) == 2
    for hook in hooks:
        hook.remove()
    assert not model.training and layers[0].momentum == momentum
    for i, bn in enumerate(layers):
        x = [t.transpose(0, 1).flatten(1) for t in seen[i]]  # (C, N·T·H·W) per batch
        assert torch.allclose(bn.running_mean, torch.stack([t.mean(1) for t in x]).mean(0), atol=1e-5)
        assert torch.allclose(bn.running_var, torch.stack([t.var(1) for t in x]).mean(0), rtol=1e-4, atol=1e-6)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    recalibrate_batchnorm(model, [torch.rand(2, 3, 8, 32, 32)])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # no weight moves


def test_export_with_calibration_changes_only_the_statistics_and_says_so(tmp_path, capsys):
    config = make_config("tiny", overrides=["steps=2", "batch_size=2", "workers=0", "val_every=1000", "val_clips=2", "checkpoint_every=2"])
    train(config, tmp_path / "run", progress=False)
    plain, calibrated = tmp_path / "plain.safetensors", tmp_path / "calibrated.safetensors"
    assert main(["export", str(tmp_path / "run"), str(plain), "--fp32"]) == 0
    assert main(["export", str(tmp_path / "run"), str(calibrated), "--fp32", "--calibrate", "4", "--calibrate-shape", "8x48"]) == 0
    a, b = load_file(str(plain)), load_file(str(calibrated))
    assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)
    assert any(not torch.allclose(a[k], b[k]) for k in a if "running_mean" in k)
    info = json.loads(calibrated.with_suffix(".json").read_text())
    assert info["batchnorm_calibration"]["clips"] == 4 and info["batchnorm_calibration"]["crop_size"] == 48
    assert "batchnorm_calibration" not in json.loads(plain.with_suffix(".json").read_text())
    model = load_trained_model(calibrated)
    assert model(torch.rand(1, 3, 8, 48, 48)).shape[1] == model.num_layers


def test_evaluate_calibrate_scores_the_same_model_as_a_calibrated_export_and_writes_nothing(tmp_path, capsys):
    """``evaluate --calibrate N`` re-estimates the statistics at the scored size in memory: its row
    equals that of ``export --calibrate N`` at that size, and the run folder is left as it was."""
    config = make_config("tiny", overrides=["steps=2", "batch_size=2", "workers=0", "val_every=1000", "val_clips=2", "checkpoint_every=2"])
    run = tmp_path / "run"
    train(config, run, progress=False)
    files_before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    exported = tmp_path / "calibrated.safetensors"
    assert main(["export", str(run), str(exported), "--fp32", "--calibrate", "4", "--calibrate-shape", "8x48"]) == 0
    common = ["--data", "synthetic", "--pairs", "2", "--frames", "8", "--size", "48"]
    assert main(["evaluate", str(run), str(exported), *common, "--calibrate", "4", "--json", str(tmp_path / "a.json")]) == 0
    assert main(["evaluate", str(run), str(exported), *common, "--json", str(tmp_path / "b.json")]) == 0
    with_calibration = {r["name"]: r["loss"] for r in json.loads((tmp_path / "a.json").read_text())["rows"]}
    as_saved = {r["name"]: r["loss"] for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert with_calibration[f"{run} (BN at 8x48)"] == pytest.approx(as_saved[str(exported)], rel=1e-4)
    assert as_saved[str(run)] != pytest.approx(as_saved[str(exported)], rel=1e-4)  # the statistics matter here
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files_before
    assert main(["evaluate", str(run), *common, "--calibrate", "-1"]) != 0 and "--calibrate" in capsys.readouterr().err


@pytest.mark.parametrize("shape", ["32", "0x112", "ax112"])
def test_a_bad_calibration_shape_is_one_line_and_writes_nothing(tmp_path, capsys, shape):
    config = make_config("tiny", overrides=["steps=1", "batch_size=2", "workers=0", "val_every=1000", "val_clips=2", "checkpoint_every=1"])
    train(config, tmp_path / "run", progress=False)
    destination = tmp_path / "model.safetensors"
    assert main(["export", str(tmp_path / "run"), str(destination), "--calibrate", "4", "--calibrate-shape", shape]) != 0
    assert "--calibrate" in capsys.readouterr().err and not destination.exists()


def test_calibrating_a_run_whose_training_videos_are_gone_is_one_line(tmp_path, capsys):
    import shutil

    from centrifuge.video import write_video
    from conftest import moving_frames

    videos = tmp_path / "videos"
    videos.mkdir()
    for seed in (1, 2):
        write_video(videos / f"{seed}.mp4", moving_frames(12, 40, 40, seed=seed))
    config = make_config("tiny", overrides=["steps=1", "batch_size=2", "workers=0", "val_every=1000", "val_clips=2", "checkpoint_every=1",
                                            f"data={videos}", "pipeline=loader"])
    train(config, tmp_path / "run", progress=False)
    shutil.rmtree(videos)
    destination = tmp_path / "model.safetensors"
    assert main(["export", str(tmp_path / "run"), str(destination), "--calibrate", "2", "--calibrate-shape", "8x32"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "calibrat" in err and "Traceback" not in err and not destination.exists()
