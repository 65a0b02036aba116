"""Run by tests/test_ddp.py under torchrun: train with a NaN injected on one rank at one step.

Usage: torchrun --nproc_per_node=2 tests/ddp_script.py RUN_DIR STEPS POISON_RANK POISON_STEP
(POISON_RANK -1: no poison). Each rank appends its parameter checksum after each step to RUN_DIR.rankR.jsonl.
"""

import json
import os
import sys


import centrifuge.train as train_module
from centrifuge.config import make_config

run_dir, steps, poison_rank, poison_step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rank = int(os.environ.get("RANK", "0"))
real_train_step = train_module.train_step
calls = {"n": 0}


def observed_train_step(model, optimizer, layers, alpha, config, amp_dtype, ddp, **kwargs):
    calls["n"] += 1
    if rank == poison_rank and calls["n"] == poison_step:
        layers = layers.clone()
        layers[0, 0, 0, 0, 0, 0] = float("nan")  # this rank's loss becomes NaN
    outcome = real_train_step(model, optimizer, layers, alpha, config, amp_dtype, ddp, **kwargs)
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    with open(f"{run_dir}.rank{rank}.jsonl", "a") as log:
        log.write(json.dumps({"rank": rank, "call": calls["n"], "applied": outcome.applied, "checksum": checksum}) + "\n")
    return outcome


train_module.train_step = observed_train_step
config = make_config("tiny", overrides=["deterministic=true", "batch_size=4", "workers=0", "val_every=1000", "checkpoint_every=2",
                                        "log_every=1", f"steps={steps}"])
train_module.train(config, run_dir, progress=False)
