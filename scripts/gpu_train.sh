#!/usr/bin/env bash
# One command on a lent GPU machine (Python 3.12 with its own CUDA torch, no PyAV, no internet):
#   bash scripts/gpu_train.sh OUTDIR        (device run, carry [".whl", ".gpu-data"]; prepare with scripts/gpu_prepare.sh)
#   SMOKE=1 bash scripts/gpu_train.sh DIR   (the same path on the CPU at toy sizes, under 2 minutes: a CI test)
# BUDGET=SECONDS sets the training time (default 390, which keeps the whole command under 9 minutes);
# GPU_SET="key=value ..." adds training overrides (e.g. "model.output=symmetric model.input_skip=false model.width=0.35");
# ARMS="name:key=value ...;name:..." runs up to 3 such runs side by side (each into OUTDIR/name).
# INFERENCE=0 skips the timings after training (a short second call spends its seconds on training),
# e.g. continuing a returned model: GPU_SET="init_weights=$PWD/.gpu-data/models/NAME/model.safetensors ...".
set -euo pipefail
OUTDIR=${1:?usage: scripts/gpu_train.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
SITE=${AV_SITE:-/tmp/centrifuge-site}  # where PyAV is unpacked when this Python lacks it
if ! "$PY" -c 'import av' 2>/dev/null; then
  wheel=$(ls "$ROOT"/.whl/av-*.whl 2>/dev/null | head -1 || true)
  if [ -f "$ROOT/.whl/av-site.tar.xz" ]; then  # the wheel's files repacked by gpu_prepare.sh: 10 MiB less to carry
    mkdir -p "$SITE" && tar -xJf "$ROOT/.whl/av-site.tar.xz" -C "$SITE"
  elif [ -n "$wheel" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$wheel"
  else
    echo "gpu_train: PyAV is missing and .whl/ holds neither av-site.tar.xz nor a wheel (run scripts/gpu_prepare.sh here first)" >&2; exit 1
  fi
  export PYTHONPATH="$SITE"${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
smoke=(); if [ "${SMOKE:-0}" = 1 ]; then smoke=(--smoke); fi
if [ "${INFERENCE:-1}" = 0 ]; then smoke+=(--no-inference); fi
if [ -z "${ARMS:-}" ]; then
  run_dir=(); if [ "${SMOKE:-0}" = 1 ]; then run_dir=(--run-dir "$OUTDIR/.run"); fi
  exec "$PY" "$ROOT/scripts/gpu_train.py" "$OUTDIR" "${smoke[@]}" "${run_dir[@]}"
fi
# ARMS="name:overrides;name:overrides": several runs side by side on the one GPU (a small model
# leaves most of it idle), each into OUTDIR/name with its share of the data workers; the first
# also times inference. At most 3 arms: 2 files each, and 8 files come back from the GPU machine.
IFS=';' read -ra arms <<< "$ARMS"
if [ "${#arms[@]}" -gt 3 ]; then echo "gpu_train: at most 3 arms" >&2; exit 2; fi
cores=$(nproc); workers=$(( (cores - 2) / ${#arms[@]} )); [ "$workers" -ge 1 ] || workers=1
threads=$(( cores / ${#arms[@]} )); [ "$threads" -ge 1 ] || threads=1  # the arms share the cores, not each all of them
pids=(); first=1
for arm in "${arms[@]}"; do
  name=${arm%%:*}; set=""; [ "$arm" != "$name" ] && set=${arm#*:}
  case $name in ''|*[!A-Za-z0-9_-]*) echo "gpu_train: arm name '$name' must be letters, digits, _ or -" >&2; exit 2;; esac
  extra=(); [ "$first" = 1 ] || extra=(--no-inference); first=0
  OMP_NUM_THREADS=$threads GPU_SET="${GPU_SET:-} $set" "$PY" "$ROOT/scripts/gpu_train.py" "$OUTDIR/$name" --arm "$name" --workers "$workers" \
    --run-dir "${RUN_ROOT:-/tmp/centrifuge-gpu-arms}/$name" "${smoke[@]}" "${extra[@]}" 2>&1 | sed -u "s/^/[$name] /" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
