#!/usr/bin/env bash
# The next lent GPU's call (docs/results.md, "The exclusion term", session 18): the gradient
# exclusion term pulls each object into one layer (the first recipe to do so by eye, on the CPU),
# fading to nothing at 60 % of the run so that the reconstruction loss alone repairs what it cut.
# Two arms at equal time, both candidates that come back (7 and 13 MiB in fp16):
#   device run, carry [".whl", ".gpu-data"], timeout ~590:  bash scripts/gpu_recipes.sh $OUT
# excl:   the candidate (width 0.31, channels in multiples of 8) with the term;
# excl42: the same at width 0.42 (session 18: the network's step is cheap on the GPU, the data
#         path sets the pace, so a wider model costs little time).
# Session 18's arms (affine8 0.751, ordered8 0.830, the full-width paper predictor) are in
# docs/results.md, "Three recipes side by side on the second GPU".
#   bash scripts/gpu_recipes.sh --print-arms   prints the arms (a test checks that each builds).
set -euo pipefail
ARMS=${ARMS:-"excl:model.channel_multiple=8 exclusion_weight=0.3 exclusion_until=0.6;excl42:model.channel_multiple=8 model.width=0.42 exclusion_weight=0.3 exclusion_until=0.6"}
if [ "${1:-}" = "--print-arms" ]; then echo "$ARMS"; exit 0; fi
export ARMS BUDGET=${BUDGET:-420}
exec bash "$(dirname "$0")/gpu_train.sh" "$@"
