#!/usr/bin/env bash
# One command on a lent GPU machine (Python 3.12 with its own CUDA torch, no PyAV, no internet):
#   bash scripts/gpu_train.sh OUTDIR        (device run, carry [".whl", ".gpu-data"]; prepare with scripts/gpu_prepare.sh)
#   SMOKE=1 bash scripts/gpu_train.sh DIR   (the same path on the CPU at toy sizes, under 2 minutes: a CI test)
# BUDGET=SECONDS sets the training time (default 390, which keeps the whole command under 9 minutes);
# GPU_SET="key=value ..." adds training overrides (e.g. "model.output=symmetric model.input_skip=false model.width=0.35").
set -euo pipefail
OUTDIR=${1:?usage: scripts/gpu_train.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
if ! "$PY" -c 'import av' 2>/dev/null; then
  wheel=$(ls "$ROOT"/.whl/av-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then echo "gpu_train: PyAV is missing and no wheel is in .whl/ (run scripts/gpu_prepare.sh here first)" >&2; exit 1; fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/centrifuge-site "$wheel"
  export PYTHONPATH=/tmp/centrifuge-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
args=("$OUTDIR")
if [ "${SMOKE:-0}" = 1 ]; then args+=(--smoke --run-dir "$OUTDIR/.run"); fi
exec "$PY" "$ROOT/scripts/gpu_train.py" "${args[@]}"
