#!/usr/bin/env bash
# The long CPU run behind the next bundled model (issue 12): the shipped model continued with its own
# recipe (docs/MODEL_CARD.md: DATA, light layers in a fifth of the pairs) at a tenth of its last rate,
# with the exclusion term at 0.1, the best continuation measured (session 29: 0.713 against the
# shipped 0.731 after 45 minutes; at the same rate without the term, 0.724; docs/results.md). A
# 5-hour budget planned over wall-clock training time (warm-up, cosine), a checkpoint every 10
# minutes, at the lowest priority so other work goes on. Its run folder lives outside the repository;
# re-running the same command resumes it where the machine kept it, and on a new machine it starts
# again from the shipped weights. Score it with the benchmark that decides what ships:
#   centrifuge evaluate default RUN_DIR --network-size 64 --calibrate 64 --benchmark held-back --videos ../shared/videos
# Usage: scripts/train_long.sh [RUN_DIR [--set KEY=VALUE ...]] (default ~/centrifuge-runs/long);
# VIDEOS: the folder of the three training videos (../shared/videos); NICE: its priority (19).
set -euo pipefail
RUN=${1:-$HOME/centrifuge-runs/long}
shift || true
V=${VIDEOS:-../shared/videos}
CENTRIFUGE=${CENTRIFUGE:-centrifuge}
exec nice -n "${NICE:-19}" "$CENTRIFUGE" train --preset cpu --data "$V/bigbuckbunny.mp4,$V/box.mp4,$V/tree.avi" \
  --set synthetic_fraction=0.7 --set model.output=affine --set model.input_skip=true --set pipeline=loader \
  --set photos=scikit-image --set video_textures=false --set layer_blur=0 --set layer_dim=0 --set alpha=0.5 \
  --set layer_light=0.2 --set init_weights=default --set lr=1e-4 --set exclusion_weight=0.1 \
  --set time_budget=18000 --set steps=1000000000 --set checkpoint_seconds=600 --set checkpoint_every=1000000000 \
  --set val_every=500 --set keep_checkpoints=3 --quiet "$@" -o "$RUN"
