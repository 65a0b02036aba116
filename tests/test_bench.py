"""`centrifuge bench --only train`: the trainer's own step, timed."""

import math

import torch

from centrifuge.bench import format_train_step, train_step_figures


def test_train_step_figures_time_the_trainers_step():
    rows = train_step_figures(torch.device("cpu"), quick=True)
    assert [r["clip"] for r in rows] == [[16, 32, 32]]
    row = rows[0]
    assert math.isfinite(row["clips_s"]) and row["clips_s"] > 0
    assert math.isclose(row["seconds_per_step"], 8 / row["clips_s"])
    assert "16x32x32" in format_train_step(rows)
