"""Two processes under torchrun with the gloo backend (CPU): a non-finite loss on one rank is
skipped by both, and a stopped-and-resumed run ends bit-equal to an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from centrifuge.checkpoint import MODEL_FILE, latest_valid_checkpoint, load_weights

SCRIPT = Path(__file__).with_name("ddp_script.py")


def torchrun(run_dir: Path, steps: int, poison_rank: int = -1, poison_step: int = 0) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
               str(run_dir), str(steps), str(poison_rank), str(poison_step)]
    # The timeout bounds a hang: a rank that skipped alone would leave the other waiting in all-reduce.
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for rank in (0, 1) for line in Path(f"{run_dir}.rank{rank}.jsonl").read_text().splitlines()]


def test_a_nan_on_rank_1_is_skipped_by_both_ranks_and_changes_no_parameter(tmp_path):
    records = torchrun(tmp_path / "run", steps=3, poison_rank=1, poison_step=2)
    by_call = {(r["rank"], r["call"]): r for r in records}
    for rank in (0, 1):
        assert [by_call[(rank, c)]["applied"] for c in (1, 2, 3)] == [True, False, True]
        assert by_call[(rank, 2)]["checksum"] == by_call[(rank, 1)]["checksum"]  # the skipped step changed nothing
    assert by_call[(0, 3)]["checksum"] == by_call[(1, 3)]["checksum"]  # the ranks stayed in step


def test_ddp_resume_is_bit_exact(tmp_path):
    torchrun(tmp_path / "straight", steps=4)
    torchrun(tmp_path / "resumed", steps=2)
    torchrun(tmp_path / "resumed", steps=4)
    a = load_weights(latest_valid_checkpoint(tmp_path / "straight" / "checkpoints") / MODEL_FILE)
    b = load_weights(latest_valid_checkpoint(tmp_path / "resumed" / "checkpoints") / MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
