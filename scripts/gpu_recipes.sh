#!/usr/bin/env bash
# The next lent GPU's call (docs/results.md, "The first GPU run", session 17): three recipes side by
# side on the one GPU at equal time, since 22x the bundled model's training with the same recipe
# landed on the same plateau. Prepare with scripts/gpu_prepare.sh, then:
#   device run, carry [".whl", ".gpu-data"], timeout ~590:  bash scripts/gpu_recipes.sh $OUT
# affine8: the candidate with channel counts in multiples of 8 (is the step faster on tensor cores?);
# ordered8: the same with the faster layer first in half the loss (ordered_weight=0.5): on the CPU it
#           trades a small gain on two textured scenes for a loss on the cup pairs, breaking even
#           only in the longest run (docs/results.md, "fixed order, rescored"): do more steps help?
# paper: the paper's predictor at full width (capacity; its 68 MiB of weights do not come back,
#        its report in paper/model.json does).
#   bash scripts/gpu_recipes.sh --print-arms   prints the arms (a test checks that each builds).
set -euo pipefail
ARMS=${ARMS:-"affine8:model.channel_multiple=8;ordered8:model.channel_multiple=8 ordered_weight=0.5;paper:model=paper-predictor model.num_layers=2 model.width=1.0 model.output=direct model.input_skip=false model.correction_steps=0"}
if [ "${1:-}" = "--print-arms" ]; then echo "$ARMS"; exit 0; fi
export ARMS BUDGET=${BUDGET:-420}
exec bash "$(dirname "$0")/gpu_train.sh" "$@"
