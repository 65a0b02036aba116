#!/usr/bin/env bash
# The long CPU run behind the next bundled model (issue 12): the `cpu` preset with layer kinds
# (recipe (c) of docs/results.md, best on one seed of two) at the benchmark's scale (16x112x112 clips), a 5-hour time budget planned over wall-clock training time,
# a checkpoint every 10 minutes, at the lowest priority so other work goes on. Its run folder lives
# outside the repository; re-running the same command resumes it where the machine kept it. It
# starts from scratch, not from the shipped weights: those saw `bikes`, a benchmark video.
# Usage: scripts/train_long.sh [RUN_DIR] (default ~/centrifuge-runs/long); VIDEOS: ../shared/videos.
set -euo pipefail
RUN=${1:-$HOME/centrifuge-runs/long}
V=${VIDEOS:-../shared/videos}
CENTRIFUGE=${CENTRIFUGE:-centrifuge}
exec nice -n 19 "$CENTRIFUGE" train --preset cpu --data "$V/bigbuckbunny.mp4,$V/box.mp4,$V/tree.avi" \
  --val-data "$V/bikes.mp4,$V/carphone_pristine.mp4,$V/cup.mp4" --set synthetic_fraction=0.7 --set model.output=symmetric \
  --set layer_blur=0.3 --set layer_dim=0.3 --set alpha="[0.35,0.65]" \
  --set crop_size=112 --set num_frames=16 --set time_budget=18000 --set steps=1000000000 --set checkpoint_seconds=600 \
  --set checkpoint_every=1000000000 --set val_every=500 --set keep_checkpoints=3 --quiet -o "$RUN"
