"""Training: exact resume, safe checkpoints, non-finite steps, the learning-rate schedule, and a
behaviour test that a few hundred steps on the embedded data beat the identity baseline."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re

import pytest
import torch
from safetensors.torch import load_file

import centrifuge.checkpoint as ckpt
import centrifuge.train as train_module
from centrifuge.checkpoint import CheckpointError, latest_valid_checkpoint, list_checkpoints, load_state, save_checkpoint
from centrifuge.config import make_config
from centrifuge.losses import pit_loss
from centrifuge.models import build_model
from centrifuge.train import TrainingError, learning_rate, load_trained_model, make_optimizer, train, train_step


def quick_config(*overrides: str):
    """The tiny preset shrunk to seconds: 4 clips of 8×32×32 a step, no worker processes,
    bit-reproducible convolutions (see ``TrainConfig.deterministic``)."""
    return make_config("tiny", overrides=["deterministic=true", "batch_size=4", "workers=0", "val_every=1000", "val_clips=4", "checkpoint_every=5", "log_every=1", *overrides])


# --------------------------------------------------------------------------- resume


def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(tmp_path):
    config = quick_config("steps=8", "checkpoint_every=100")
    straight = train(config, tmp_path / "straight", progress=False)
    first = train(config, tmp_path / "resumed", progress=False, max_steps_this_call=4)
    assert first.step == 4 and len(first.losses) == 4
    second = train(config, tmp_path / "resumed", progress=False)
    assert second.step == 8
    assert first.losses + second.losses == straight.losses  # bit-equal floats
    a = load_trained_model(tmp_path / "straight").state_dict()
    b = load_trained_model(tmp_path / "resumed").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_worker_processes_sees_the_same_data(tmp_path):
    config = quick_config("steps=4", "workers=2")
    straight = train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", progress=False, max_steps_this_call=2)
    second = train(config, tmp_path / "resumed", progress=False)
    assert second.losses == straight.losses[2:]


def test_a_run_folder_refuses_a_different_configuration(tmp_path):
    train(quick_config("steps=2"), tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="different settings \\(lr\\)"):
        train(quick_config("steps=2", "lr=0.5"), tmp_path / "run", progress=False)


# --------------------------------------------------------------------------- fine-tuning


def _parameters(state: dict, model_name: str = "tiny") -> dict:
    """The learnable tensors of a state dict (BatchNorm's running statistics move in any step)."""
    names = {name for name, _ in build_model(model_name).named_parameters()}
    return {k: v for k, v in state.items() if k in names}


def test_a_run_started_from_a_model_starts_from_its_weights_named_by_path_or_bundled_name(tmp_path, monkeypatch):
    import centrifuge.separate as separate_module
    from centrifuge.train import export_model

    source = tmp_path / "source"
    train(quick_config("steps=2", "seed=3"), source, progress=False)
    bundled = tmp_path / "pretrained"
    bundled.mkdir()
    export_model(source, bundled / "mine.safetensors", half=False)
    monkeypatch.setattr(separate_module, "PRETRAINED_DIR", bundled)
    expected = _parameters(load_trained_model(source).state_dict())
    fresh = _parameters(build_model("tiny").state_dict())
    assert not all(torch.equal(fresh[k], expected[k]) for k in expected)  # the check below can tell them apart
    for name, init in (("by_path", str(source)), ("by_name", "mine")):
        run = tmp_path / name
        train(quick_config("steps=1", "lr=0", "checkpoint_every=1", f"init_weights={init}"), run, progress=False)
        started = _parameters(load_trained_model(run).state_dict())  # a step at lr 0 moves no parameter
        assert all(torch.equal(started[k], expected[k]) for k in expected), name


def test_a_model_to_start_from_that_is_missing_or_of_another_shape_is_refused(tmp_path):
    source = tmp_path / "source"
    train(quick_config("steps=1", "model.num_layers=2"), source, progress=False)
    with pytest.raises(TrainingError, match="differs from this run's"):
        train(quick_config("steps=1", f"init_weights={source}"), tmp_path / "other_shape", progress=False)
    with pytest.raises(TrainingError, match="no such model file or folder"):
        train(quick_config("steps=1", "init_weights=no_such_model"), tmp_path / "missing", progress=False)
    fixed = train(quick_config("steps=1", f"init_weights={source}", "model.num_layers=2"), tmp_path / "other_shape", progress=False)
    assert fixed.step == 1  # the refused start left nothing in its folder that blocks the corrected command


def test_learning_rate_is_piecewise_constant_in_iterations():
    config = make_config("paper")
    assert learning_rate(config, 0) == 0.1
    assert learning_rate(config, 99_999) == 0.1
    assert learning_rate(config, 100_000) == 0.05
    assert learning_rate(config, 150_000) == 0.025
    assert learning_rate(config, 239_999) == 0.01


# --------------------------------------------------------------------------- checkpoints


def _tiny_model():
    torch.manual_seed(0)
    return build_model("tiny")


def test_a_save_that_fails_part_way_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = _tiny_model()
    good = save_checkpoint(tmp_path, 1, model, {"model_config": {}}, {"step": 1})
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    def exploding_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, model, {"model_config": {}}, {"step": 2})
    assert list_checkpoints(tmp_path) == [good]
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == [good.name]  # no temporary folder left behind
    assert latest_valid_checkpoint(tmp_path) == good


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    model = _tiny_model()
    good = save_checkpoint(tmp_path, 1, model, {}, {"step": 1})
    broken = save_checkpoint(tmp_path, 2, model, {}, {"step": 2})
    weights = broken / ckpt.MODEL_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        assert latest_valid_checkpoint(tmp_path) == good
    assert "broken checkpoint" in caplog.text and "step_00000002" in caplog.text


def test_keep_last_k_and_never_delete_the_one_resumed_from(tmp_path):
    model = _tiny_model()
    paths = [save_checkpoint(tmp_path, step, model, {}, keep=2) for step in range(1, 6)]
    assert list_checkpoints(tmp_path) == paths[-2:]
    protected = paths[-2]
    for step in range(6, 9):
        save_checkpoint(tmp_path, step, model, {}, keep=2, protect=protected)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == [protected.name, "step_00000007", "step_00000008"]


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_model_exported_in_shards_loads_as_the_single_file_does_and_replaces_cleanly(tmp_path, capsys):
    """A lent GPU returns files of at most 16 MiB: ``export --shard-mib`` writes a wider model as
    shards beside ``X.safetensors.index.json``, and every reader takes ``X.safetensors`` as before."""
    from centrifuge.cli import main
    from centrifuge.separate import Centrifuge

    train(quick_config("steps=2", "checkpoint_every=2"), tmp_path / "run", progress=False)
    single, sharded = tmp_path / "single.safetensors", tmp_path / "out" / "model.safetensors"
    assert main(["export", str(tmp_path / "run"), str(single)]) == 0
    assert main(["export", str(tmp_path / "run"), str(sharded), "--shard-mib", "0.01"]) == 0
    index = tmp_path / "out" / "model.safetensors.index.json"
    shards = sorted(p.name for p in sharded.parent.glob("model-*.safetensors"))
    assert not sharded.exists() and index.exists() and len(shards) >= 3
    for shard in sharded.parent.glob("model-*.safetensors"):  # within the size, or one tensor larger than it
        held = load_file(str(shard))
        assert sum(t.numel() * t.element_size() for t in held.values()) <= 0.01 * 2**20 or len(held) == 1
    assert sorted(set(json.loads(index.read_text())["weight_map"].values())) == shards

    clip = torch.rand(1, 3, 8, 32, 32)
    expected = load_trained_model(single)(clip)
    assert torch.equal(load_trained_model(sharded)(clip), expected)
    assert torch.equal(load_trained_model(index)(clip), expected)  # the index names the model too
    assert Centrifuge.from_pretrained(str(sharded)).net is not None
    assert main(["export", str(tmp_path / "run"), str(sharded), "--shard-mib", "0.01"]) == 1  # nothing overwritten unasked
    assert "exists" in capsys.readouterr().err

    assert main(["export", str(tmp_path / "run"), str(sharded), "--shard-mib", "0.02", "--force"]) == 0
    again = sorted(p.name for p in sharded.parent.glob("model-*.safetensors"))
    assert not set(again) & set(shards) and sorted(set(json.loads(index.read_text())["weight_map"].values())) == again  # old shards gone
    assert main(["export", str(tmp_path / "run"), str(sharded), "--force"]) == 0  # small enough now: one file, no shards left
    assert sharded.exists() and not index.exists() and not list(sharded.parent.glob("model-*.safetensors"))
    assert torch.equal(load_trained_model(sharded)(clip), expected)


def test_a_shard_index_that_points_elsewhere_or_lies_is_refused(tmp_path):
    model = _tiny_model()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    target = tmp_path / "m.safetensors"
    ckpt.save_weights(tensors, target, max_shard_bytes=4096)
    index = ckpt.shard_index(target)
    payload = json.loads(index.read_text())
    assert set(ckpt.load_weights(target)) == set(tensors)
    first_key = next(iter(payload["weight_map"]))
    for bad in ("../m.safetensors", "/etc/passwd", "sub/x.safetensors", "x.pt"):
        index.write_text(json.dumps({"weight_map": {**payload["weight_map"], first_key: bad}}))
        with pytest.raises(CheckpointError, match="not a .safetensors file beside the index"):
            ckpt.load_weights(target)
    other = next(v for v in payload["weight_map"].values() if v != payload["weight_map"][first_key])
    index.write_text(json.dumps({"weight_map": {**payload["weight_map"], first_key: other}}))  # a tensor listed in the wrong shard
    with pytest.raises(CheckpointError, match="other tensors than its index lists"):
        ckpt.load_weights(target)
    index.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable shard index"):
        ckpt.load_weights(target)


def test_training_state_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "state.pt"
    with open(path, "wb") as f:
        pickle.dump({"step": 1, "evil": payload}, f)
    assert marker.exists() is False
    with pytest.raises(CheckpointError, match="refused"):
        load_state(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- non-finite steps


def test_a_non_finite_loss_skips_the_step_and_leaves_parameters_unchanged():
    model = _tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = torch.rand(2, 2, 3, 8, 32, 32)
    layers[0, 0, 0, 0, 0, 0] = float("nan")
    outcome = train_step(model, optimizer, layers, torch.full((2,), 0.5), quick_config(), None)
    assert not outcome.applied and outcome.problem == "loss"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert not optimizer.state  # Adam took no step


def test_the_written_pair_term_skips_blends_with_a_carried_layer_when_written_on_carried_is_off():
    layers = torch.rand(2, 2, 3, 8, 32, 32)
    alpha = torch.full((2,), 0.5)

    def objective_and_loss(carried, *overrides: str) -> tuple[float, float]:
        torch.manual_seed(0)
        model = _tiny_model()
        outcome = train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), layers, alpha,
                             quick_config("written_weight=1.0", *overrides), None, carried=carried)
        return outcome.objective, outcome.loss

    both = torch.tensor([True, True])
    objective, loss = objective_and_loss(both)  # on by default: carried blends count
    assert objective >= 2 * loss - 1e-6
    objective, loss = objective_and_loss(both, "written_on_carried=false")
    assert objective == pytest.approx(loss, rel=1e-6)  # every blend carried: no written term
    assert objective_and_loss(torch.tensor([False, True]), "written_on_carried=false")[0] > loss  # the other blend counts
    assert objective_and_loss(None, "written_on_carried=false")[0] >= 2 * loss - 1e-6  # a pipeline without carried layers


def test_one_non_finite_gradient_under_a_finite_loss_skips_the_step_and_names_the_parameter():
    model = _tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    name, parameter = next(iter(model.named_parameters()))
    before = parameter.detach().clone()
    parameter.register_hook(lambda grad: grad.index_fill(0, torch.tensor([0]), float("inf")))
    outcome = train_step(model, optimizer, torch.rand(2, 2, 3, 8, 32, 32), torch.full((2,), 0.5), quick_config(), None)
    assert math.isfinite(outcome.objective) and not outcome.applied and name in outcome.problem
    assert torch.equal(parameter.detach(), before) and not optimizer.state


def poison_training_losses(monkeypatch, bad) -> None:
    """Make the training loss of the n-th step (1-based) NaN wherever ``bad(n)`` holds."""
    real_pit_loss = train_module.pit_loss
    calls = {"n": 0}

    def poisoned(outputs, *args, **kwargs):
        if outputs.requires_grad:
            calls["n"] += 1
            if bad(calls["n"]):
                outputs = outputs * float("nan")
        return real_pit_loss(outputs, *args, **kwargs)

    monkeypatch.setattr(train_module, "pit_loss", poisoned)


def test_too_many_non_finite_steps_stop_the_run_with_the_last_checkpoint_intact(tmp_path, monkeypatch):
    poison_training_losses(monkeypatch, lambda n: n > 2)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="3 non-finite steps in a row at step 5"):
        train(quick_config("steps=20", "max_bad_steps=3", "checkpoint_every=2"), run, progress=False)
    # The checkpoint at step 4 holds the weights of step 2: skipped steps changed nothing.
    latest = latest_valid_checkpoint(run / "checkpoints")
    assert latest is not None and latest.name == "step_00000004"
    state = load_state(latest / ckpt.STATE_FILE)
    assert (state["optimizer_steps"], state["skipped_steps"]) == (2, 2)
    weights_2 = ckpt.load_weights(run / "checkpoints" / "step_00000002" / ckpt.MODEL_FILE)
    weights_4 = ckpt.load_weights(latest / ckpt.MODEL_FILE)
    assert all(torch.equal(weights_2[k], weights_4[k]) for k in weights_2 if "running" not in k and "num_batches" not in k)


# --------------------------------------------------------------------------- behaviour


@pytest.mark.slow
def test_a_few_hundred_steps_on_the_embedded_data_beat_the_identity_baseline(tmp_path):
    """The tiny preset (300 steps, fp32 so the figures repeat) must lower the training loss and
    separate fresh generated blends better than returning the blend twice. Measured: training loss
    0.941 of the identity's over the last 30 steps (0.67 of the first 30's); on unseen clips of the
    training photographs ratio 0.946; on the held-back photographs (validation) 0.984 / 0.987 /
    1.041 at steps 100 / 200 / 300: a model this small learns little that carries to photographs
    it never saw."""
    from centrifuge.batched import BatchedPairs
    from centrifuge.evaluate import score_model
    from centrifuge.generator import BatchedGenerator, default_bank_size
    from centrifuge.photos import available_photos, bank_tensor

    result = train(make_config("tiny", overrides=["deterministic=true"]), tmp_path / "run", progress=False)
    assert result.step == 300 and result.skipped_steps == 0
    early = sum(result.losses[:30]) / 30
    late, late_identity = sum(result.losses[-30:]) / 30, sum(result.identities[-30:]) / 30
    assert late < 0.97 * late_identity and late < 0.8 * early, (early, late, late_identity)  # measured 0.941, 0.67
    # The held-back validation ratio is logged, not asserted: at this size it hovers around 1.
    fresh = BatchedPairs(BatchedGenerator(bank_tensor(available_photos("train"), *default_bank_size(32)), seed=777), None, 0.0, 8, 32,
                         seed=777, train=False).examples(range(16))["layers"]
    row = score_model(load_trained_model(tmp_path / "run"), "tiny", fresh)
    assert row.ratio < 0.98, row


# --------------------------------------------------------------------------- schedule, budget, what is logged


def test_the_schedule_follows_the_iteration_so_a_skipped_step_shifts_no_milestone(tmp_path, monkeypatch):
    poison_training_losses(monkeypatch, lambda n: n == 2)
    result = train(quick_config("steps=5", "lr=0.01", "lr_milestones=[3]", "lr_values=[0.001]"), tmp_path / "run", progress=False)
    assert result.skipped_steps == 1
    assert result.learning_rates == [0.01, 0.01, 0.01, 0.001, 0.001]  # iterations 3 and 4, skipped step or not


def test_a_time_budget_warms_up_decays_stops_and_checkpoints(tmp_path):
    config = quick_config("steps=100000", "time_budget=4", "warmup=0.25", "lr=0.01")
    assert learning_rate(config, 0, 0.0) == pytest.approx(0.001)  # warm-up starts at a tenth
    assert learning_rate(config, 0, 1.0) == pytest.approx(0.01)
    assert learning_rate(config, 0, 2.5) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))
    assert learning_rate(config, 0, 4.0) == pytest.approx(0.0001)
    result = train(config, tmp_path / "run", progress=False)
    assert 0 < result.step < 100000
    assert result.checkpoint is not None and result.checkpoint.name == f"step_{result.step:08d}"
    assert result.validation and result.validation[-1]["step"] == result.step
    assert result.learning_rates[0] < result.learning_rates[len(result.learning_rates) // 3] > result.learning_rates[-1]
    state = load_state(result.checkpoint / ckpt.STATE_FILE)
    assert state["train_seconds"] >= 4.0
    again = train(config, tmp_path / "run", progress=False)  # the budget is spent: nothing more to do
    assert again.step == result.step and not again.losses


def test_the_logged_loss_is_the_pit_loss_apart_from_extra_terms(tmp_path):
    result = train(quick_config("steps=3", "diversity_weight=1.0"), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert all(r["loss"] > 0 and r["objective"] < r["loss"] for r in logged)  # the diversity term lowers the objective only
    assert all(r["ratio"] == pytest.approx(r["loss"] / r["identity"]) for r in logged)
    assert result.losses[0] == pytest.approx(logged[0]["loss"])
    train(quick_config("steps=2", "exclusion_weight=0.5"), tmp_path / "excl", progress=False)
    records = [json.loads(line) for line in (tmp_path / "excl" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["objective"] > r["loss"] for r in records if "loss" in r)  # the exclusion term adds
    # the written pair's Eq. 2 is at least Eq. 2 over all pairs, so weight 1 at least doubles it
    train(quick_config("steps=2", "written_weight=1.0"), tmp_path / "written", progress=False)
    records = [json.loads(line) for line in (tmp_path / "written" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["objective"] >= 2 * r["loss"] - 1e-6 for r in records if "loss" in r)
    train(quick_config("steps=2", "colour_invariant_weight=1.0"), tmp_path / "colour", progress=False)
    records = [json.loads(line) for line in (tmp_path / "colour" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["objective"] > r["loss"] for r in records if "loss" in r)  # the colour-invariant term adds


def test_exclusion_until_lowers_the_weight_linearly_to_zero_and_then_the_objective_is_the_loss(tmp_path):
    from centrifuge.config import TrainConfig
    from centrifuge.train import exclusion_weight_at

    by_steps = TrainConfig(steps=100, exclusion_weight=0.4, exclusion_until=0.5)
    assert [exclusion_weight_at(by_steps, s) for s in (0, 25, 50, 90)] == pytest.approx([0.4, 0.2, 0.0, 0.0])
    by_time = TrainConfig(time_budget=60, exclusion_weight=0.4, exclusion_until=0.5)
    assert exclusion_weight_at(by_time, 0, elapsed=45) == 0.0 and exclusion_weight_at(by_time, 0, elapsed=6) == pytest.approx(0.32)
    assert exclusion_weight_at(TrainConfig(steps=100, exclusion_weight=0.4), 90) == 0.4
    with pytest.raises(ValueError, match="exclusion_until"):
        TrainConfig.from_dict({"exclusion_until": 0})
    train(quick_config("steps=4", "exclusion_weight=0.5", "exclusion_until=0.5", "log_every=1"), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r for r in records if "loss" in r}
    assert logged[1]["objective"] > logged[1]["loss"]  # step 0 of 4: the full weight
    assert logged[4]["objective"] == pytest.approx(logged[4]["loss"])  # step 3 of 4: past the half, none


def test_a_single_training_video_is_refused_and_the_files_trained_on_are_recorded(tmp_path):
    from centrifuge.video import write_video
    from conftest import moving_frames

    one = write_video(tmp_path / "one.mp4", moving_frames(20, 40, 48))
    with pytest.raises(TrainingError, match="at least two different videos"):
        train(quick_config("steps=1", f"data={one}"), tmp_path / "run1", progress=False)
    two = write_video(tmp_path / "two.mp4", moving_frames(20, 40, 48, seed=3))
    train(quick_config("steps=1", f"data={one},{two}"), tmp_path / "run2", progress=False)
    recorded = json.loads((tmp_path / "run2" / "training_files.json").read_text())
    assert sorted(r["path"] for r in recorded) == sorted(str(p.resolve()) for p in (one, two))
    assert all(r["size"] > 0 for r in recorded)


def test_the_clip_by_clip_pipeline_draws_each_process_its_slice_of_the_global_alpha(tmp_path, monkeypatch):
    seen = []
    real_step = train_module.train_step

    def spy(model, optimizer, layers, alpha, *args, **kwargs):
        seen.append(alpha.clone())
        return real_step(model, optimizer, layers, alpha, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", spy)
    config = quick_config("steps=2", "pipeline=loader", "alpha=[0.2,0.8]")
    train(config, tmp_path / "run", progress=False)
    global_alpha = train_module.sample_alpha(4, (0.2, 0.8), torch.Generator().manual_seed(config.seed * 1_000_003 + 1))
    assert torch.equal(seen[1], global_alpha)  # rank r of W takes global_alpha[r*B/W:(r+1)*B/W]


def test_a_run_says_which_data_it_trains_and_validates_on(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="centrifuge.train"):
        train(quick_config("steps=1"), tmp_path / "batched", progress=False)
        train(quick_config("steps=1", "pipeline=loader"), tmp_path / "loader", progress=False)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("training data: batched pipeline on cpu: generated clips of") for line in lines)
    assert any(line.startswith("training data: loader pipeline") for line in lines)
    # both pipelines validate on clips of the photographs training does not film (session 34's split)
    assert sum("validating on generated clips of the held-back photographs" in line for line in lines) == 2


def test_weights_and_checkpoints_are_written_with_the_umask_permissions_not_owner_only(tmp_path):
    """safetensors alone creates 0600 files: a model exported for a team or a web server would be
    unreadable to them. Every weight file the project writes gets ``0666 & ~umask``, as open() gives."""
    tensors = {k: v.contiguous() for k, v in _tiny_model().state_dict().items()}
    old = os.umask(0o022)
    try:
        written = ckpt.save_weights(tensors, tmp_path / "one.safetensors")
        (tmp_path / "sharded").mkdir()
        written += ckpt.save_weights(tensors, tmp_path / "sharded" / "m.safetensors", max_shard_bytes=4096)
        folder = save_checkpoint(tmp_path / "run", 1, _tiny_model(), {"config": {}})
        written.append(folder / ckpt.MODEL_FILE)
        for path in written:
            assert os.stat(path).st_mode & 0o777 == 0o644, path
        os.umask(0o077)
        private = ckpt.save_weights(tensors, tmp_path / "private.safetensors")[0]
        assert os.stat(private).st_mode & 0o777 == 0o600  # a stricter umask is kept
    finally:
        os.umask(old)
    assert ckpt.load_weights(tmp_path / "sharded" / "m.safetensors").keys() == tensors.keys()


def test_video_zoom_takes_the_clip_by_clip_pipeline_and_carried_motion_the_batched_one(tmp_path):
    from centrifuge.config import TrainConfig
    from centrifuge.train import choose_pipeline
    from centrifuge.data import VideoFolder
    from centrifuge.video import write_video
    from conftest import moving_frames

    for name, seed in (("a.mp4", 1), ("b.mp4", 2)):
        write_video(tmp_path / name, moving_frames(8, 48, 64, seed=seed))
    folder = VideoFolder(tmp_path, cache=False)
    cpu = torch.device("cpu")
    assert choose_pipeline(TrainConfig(data=str(tmp_path)), folder, cpu) == "batched"  # small enough to hold
    assert choose_pipeline(TrainConfig(data=str(tmp_path), video_zoom=2.0), folder, cpu) == "loader"
    with pytest.raises(TrainingError, match="pipeline=loader"):
        choose_pipeline(TrainConfig(data=str(tmp_path), video_zoom=2.0, pipeline="batched"), folder, cpu)
    with pytest.raises(TrainingError, match="at least 1"):
        choose_pipeline(TrainConfig(data=str(tmp_path), video_zoom=0.5), folder, cpu)
    assert choose_pipeline(TrainConfig(data=str(tmp_path), carried_motion=0.5), folder, cpu) == "batched"
    for refused in ({"pipeline": "loader"}, {"video_zoom": 2.0}):
        with pytest.raises(TrainingError, match="carried_motion works in the batched pipeline only"):
            choose_pipeline(TrainConfig(data=str(tmp_path), carried_motion=0.5, **refused), folder, cpu)


def test_a_config_takes_whole_floats_as_ints_and_ints_as_floats_and_names_a_mistyped_option():
    from centrifuge.config import TrainConfig, make_config

    config = make_config("tiny", overrides=["steps=20.0", "lr=1", "alpha=[0.4,0.6]", "time_budget=null"])
    assert config.steps == 20 and isinstance(config.steps, int) and config.lr == 1 and config.alpha == [0.4, 0.6]
    assert TrainConfig.from_dict(config.to_dict()) == config  # what a run folder saves loads back
    for override, message in [("frozen=1", "frozen must be true or false"), ("val_data=3", "val_data must be text or null"),
                              ("alpha=x", "alpha must be a number or a list of numbers"), ("nonsense=1", "unknown training option"),
                              # values of the right type that no run can use
                              ("crop_size=0", "crop_size must be at least 1"), ("batch_size=0", "batch_size must be at least 1"),
                              ("lr=-1", "lr must be at least 0"), ("lr_values=[0.1,-1]", "lr_values must be at least 0"),
                              ("precision=fp8", "precision must be auto, fp32 or bf16"), ("workers=-1", "workers must be at least 0"),
                              ("synthetic_fraction=2", "synthetic_fraction must be between 0 and 1"), ("grad_clip=0", "grad_clip must be above 0"),
                              ("alpha=1.5", "alpha must be between 0 and 1"), ("alpha=[0.2,1]", "alpha must be between 0 and 1"),
                              ("alpha=[0.1,0.2,0.3]", "alpha must be a number or [low, high]"), ("optimizer=lbfgs", "sgd, adam or adamw")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            make_config("tiny", overrides=[override])
    assert make_config("tiny", overrides=["grad_clip=null", "workers=0", "synthetic_fraction=1"]).grad_clip is None  # None is "off"


def test_a_run_may_add_the_clip_statistics_branch_to_the_model_it_starts_from_but_not_drop_it(tmp_path):
    source = tmp_path / "source"
    train(quick_config("steps=1", "model.output=affine"), source, progress=False)
    grown = tmp_path / "grown"
    train(quick_config("steps=1", "lr=0", "checkpoint_every=1", "model.output=affine", "model.clip_statistics=true",
                       f"init_weights={source}"), grown, progress=False)
    expected = _parameters(load_trained_model(source).state_dict())
    started = _parameters(load_trained_model(grown).state_dict())
    assert all(torch.equal(started[k], expected[k]) for k in expected)
    assert any(k.startswith("statistics_head.") for k in load_trained_model(grown).state_dict())
    with pytest.raises(TrainingError, match="do not fit"):
        train(quick_config("steps=1", "model.output=affine", f"init_weights={grown}"), tmp_path / "dropped", progress=False)


def test_a_gated_run_teaches_its_light_head_which_blends_hold_a_light_and_biases_only_those(shared_videos):
    """Training shows the light gate the answer: the range's bias learns only from blends with a
    light, and the light head learns to tell them from blends of two real clips."""
    import numpy as np

    from centrifuge.data import random_crop, resize_shortest_side, to_clip
    from centrifuge.synthetic import draw_light, render_light
    from centrifuge.video import read_clip

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    videos = [resize_shortest_side(to_clip(read_clip(shared_videos / name, 0, 24)), 48)
              for name in ("bikes.mp4", "cup.mp4", "carphone_pristine.mp4", "box.mp4")]
    model = build_model("tiny", output="affine", clip_statistics=True, light_gate=True)
    # The light head learns at 30x the run's rate (train.LIGHT_HEAD_LR_SCALE): 9e-3 here.
    optimizer = make_optimizer(model, quick_config("lr=3e-4"))

    def batch(lights: int, size: int = 8) -> torch.Tensor:
        def clip() -> torch.Tensor:
            video = videos[rng.integers(len(videos))]
            start = int(rng.integers(video.shape[1] - 8))
            return random_crop(video[:, start : start + 8], 32, rng)
        return torch.stack([torch.stack([clip(), render_light(draw_light(rng), 8, 32, 32) if i < lights else clip()]) for i in range(size)])

    before = {k: v.clone() for k, v in model.statistics_head.state_dict().items()}
    train_step(model, optimizer, batch(0), torch.full((8,), 0.5), quick_config(), None)
    assert all(torch.equal(before[k], v) for k, v in model.statistics_head.state_dict().items())  # no light, no bias learnt
    for _ in range(80):
        train_step(model, optimizer, batch(4), torch.full((8,), 0.5), quick_config(), None)
    assert any(not torch.equal(before[k], v) for k, v in model.statistics_head.state_dict().items())
    model.eval()
    with torch.no_grad():
        model(batch(16, 32).mean(1))
    believed = torch.sigmoid(model.light_logit)  # every blend starts at 0.5
    accuracy = float((believed[:16] > 0.5).float().mean() + (believed[16:] < 0.5).float().mean()) / 2
    assert accuracy >= 0.7 and float(believed[:16].mean() - believed[16:].mean()) > 0.25, believed


def test_the_keep_term_holds_a_fine_tune_on_lights_to_its_starting_model_on_two_videos(tmp_path):
    """A fine-tune whose batches are half lights drifts on blends of two videos; with the keep
    term toward the model it started from it drifts far less there, and still learns the lights."""
    import numpy as np

    from centrifuge.losses import keep_loss
    from centrifuge.synthetic import draw_light, render_light, synthetic_video

    source = tmp_path / "source"
    train(quick_config("steps=2", "seed=3"), source, progress=False)
    with pytest.raises(ValueError, match="keep_weight needs keep_from"):
        quick_config("keep_weight=1")
    clips = [torch.from_numpy(synthetic_video(seed, 8, 32, 32)).permute(3, 0, 1, 2).float() / 255 for seed in range(12)]
    rng = np.random.default_rng(0)
    lights = [render_light(draw_light(rng), 8, 32, 32) for _ in range(12)]

    def pairs(first: int, with_light: bool) -> torch.Tensor:
        return torch.stack([torch.stack([clips[(first + i) % 12], lights[(first + i) % 12] if with_light else clips[(first + i + 5) % 12]])
                            for i in range(4)])

    two_videos = pairs(0, False).mean(1)
    held_lights = pairs(6, True)

    def fine_tune(keep_weight: float) -> tuple[float, float, float]:
        config = quick_config("lr=1e-4", f"keep_weight={keep_weight}", f"keep_from={source}")
        kept = train_module._kept_model(config, torch.device("cpu"), False)
        torch.manual_seed(0)
        model = load_trained_model(source).train()
        optimizer = make_optimizer(model, config)
        with torch.no_grad():
            before = pit_loss(model(held_lights.mean(1)), held_lights).loss
        for step in range(40):
            batch = torch.cat([pairs(step, True), pairs(step + 3, False)])
            train_step(model, optimizer, batch, torch.full((8,), 0.5), config, None, kept_model=kept if keep_weight else None)
        with torch.no_grad():
            drift = keep_loss(model(two_videos), kept(two_videos), torch.zeros(4))
            after = pit_loss(model(held_lights.mean(1)), held_lights).loss
        return float(drift), float(before), float(after)

    free_drift, before, free_after = fine_tune(0.0)
    kept_drift, _, kept_after = fine_tune(3.0)
    assert kept_drift < 0.5 * free_drift, (kept_drift, free_drift)
    assert kept_after < before and free_after < before, (before, kept_after, free_after)
