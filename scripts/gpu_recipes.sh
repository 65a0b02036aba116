#!/usr/bin/env bash
# The next lent GPU's call: two arms at equal time, each comparable with session 18's `affine8`
# (0.751 on the held-back benchmark; docs/results.md, "Three recipes side by side on the second GPU").
# - excl10: the gradient exclusion term kept on at 0.1 ("The exclusion term", session 18), the
#   first recipe whose layers take one scene's objects by eye, at a cost in the ratio on the CPU;
#   does far more training make its decisions right often enough to win? (Weight 0.3 was worse
#   than 0.1 in every CPU test and is dropped.)
# - half8: width 0.5 (17 MiB in fp16, back in two 15-MiB shards beside model.safetensors.index.json):
#   capacity at the GPU's scale. On the CPU, half width fitted its own videos best per step but
#   had half the steps (session 16); no wider affine model has trained on a GPU.
#   device run, carry [".whl", ".gpu-data"], timeout ~590:  bash scripts/gpu_recipes.sh $OUT
#   bash scripts/gpu_recipes.sh --print-arms   prints the arms (a test checks each builds and that
#   what they return fits the 8 files that come back).
set -euo pipefail
ARMS=${ARMS:-"excl10:model.channel_multiple=8 exclusion_weight=0.1;half8:model.channel_multiple=8 model.width=0.5"}
if [ "${1:-}" = "--print-arms" ]; then echo "$ARMS"; exit 0; fi
export ARMS BUDGET=${BUDGET:-380}  # session 18: 420 s of training took 549 s of wall; the first arm now also times separate at 1080p
exec bash "$(dirname "$0")/gpu_train.sh" "$@"
