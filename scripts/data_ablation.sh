#!/usr/bin/env bash
# Which training data helps, at equal compute (issue 11): the same model (the bundled model's
# architecture), steps, batch and seed on three data recipes, then each scored on the held-back
# benchmark (real videos never trained on, and held-back photographs).
#   a: the per-clip generator (scikit-image photographs) + three real videos, clip-by-clip loader
#   b: the batched generator with the wider photo bank (wallpapers when `make photos` ran, frames of
#      the training videos) + the same videos
#   c: b + the real-footage layer kinds (one layer blurred or dimmer, α in [0.35, 0.65])
# Usage: scripts/data_ablation.sh [RUNS_DIR] (default runs/data); VIDEOS: another copy of ../shared/videos;
# STEPS (default 400).
set -euo pipefail
RUNS=${1:-runs/data}
V=${VIDEOS:-../shared/videos}
STEPS=${STEPS:-400}
CENTRIFUGE=${CENTRIFUGE:-centrifuge}
TRAIN="$V/bigbuckbunny.mp4,$V/box.mp4,$V/tree.avi"   # bikes, carphone and cup are the benchmark's
common=(--preset ablation --data "$TRAIN" --steps "$STEPS" --set model.num_layers=4 --set synthetic_fraction=0.7
        --set val_every=100000 --set lr_milestones="[$((STEPS * 3 / 4))]" --quiet)

run() {  # run NAME [--set KEY=VALUE ...]
  local name=$1; shift
  echo "== $name"
  "$CENTRIFUGE" train "${common[@]}" -o "$RUNS/$name" "$@"
}

run a-per-clip --set pipeline=loader --set photos=scikit-image --set video_textures=false
run b-batched --set pipeline=batched
run c-kinds --set pipeline=batched --set layer_blur=0.3 --set layer_dim=0.3 --set alpha="[0.35,0.65]"
"$CENTRIFUGE" evaluate "$RUNS/a-per-clip" "$RUNS/b-batched" "$RUNS/c-kinds" --benchmark held-back --videos "$V" \
  --json "$RUNS/data_ablation.json"
