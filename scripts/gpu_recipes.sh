#!/usr/bin/env bash
# The next lent GPU's call (docs/results.md, "The exclusion term", session 18): the gradient
# exclusion term pulls each object into one layer (the first recipe to do so by eye), at a cost in
# the ratio after 35 CPU minutes (0.803 / 0.844 against 0.740); released, the reconstruction loss
# alone brought back the darker and lighter copies. Does far more training make its decisions
# right often enough to win? Two arms at equal time, the term kept on, each comparable with
# session 18's `affine8` (0.751): weights 0.1 and 0.3.
#   device run, carry [".whl", ".gpu-data"], timeout ~590:  bash scripts/gpu_recipes.sh $OUT
# Session 18's arms (affine8 0.751, ordered8 0.830, the full-width paper predictor) are in
# docs/results.md, "Three recipes side by side on the second GPU".
#   bash scripts/gpu_recipes.sh --print-arms   prints the arms (a test checks that each builds).
set -euo pipefail
ARMS=${ARMS:-"excl10:model.channel_multiple=8 exclusion_weight=0.1;excl30:model.channel_multiple=8 exclusion_weight=0.3"}
if [ "${1:-}" = "--print-arms" ]; then echo "$ARMS"; exit 0; fi
export ARMS BUDGET=${BUDGET:-420}
exec bash "$(dirname "$0")/gpu_train.sh" "$@"
