#!/usr/bin/env bash
# GPU protocol of issue 11: at most 8 minutes on one H200, results written part by part.
#   1. benchmarks/gpu.py: training steps/s and MFU of SAKG and the Dual-ArbNet-style model at paper size (bf16),
#      and the wall time of `medsr sr` on 128x128x150 -> 256x256x150 (x2)          -> $OUT/train_speed.json, sr_time.json
#   2. benchmarks/fair.py on the GPU: every variant x 4 seeds, 2000 steps, bf16, 16 runs at a time (one process
#      each, sharing the device)                                                       -> $OUT/fair.md, fair.json (each run as it ends: runs/fair-gpu/progress.jsonl)
# The device is chosen at run time; nothing requires CUDA. --smoke: the same entry points, CPU-sized (< 1 min).
#   usage: benchmarks/gpu.sh [--smoke]      (PYTHON=... to choose the interpreter, OUT=... the results folder)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${1:-}" == "--smoke" ]]; then
  OUT=${OUT:-runs/gpu-smoke}
  exec "$PY" benchmarks/gpu.py --smoke --out "$OUT"
fi
OUT=${OUT:-benchmarks/results/gpu}
"$PY" -m medsr prepare mni data/mni > /dev/null
timeout 100 "$PY" benchmarks/gpu.py --out "$OUT"
timeout 370 "$PY" benchmarks/fair.py --device auto --bf16 --steps 2000 --seeds 4 --workers 16 --batch 16 \
  --patch 24 --test-slices 10 --synth-items 20 --scales 2,3,4 --out "$OUT" --work runs/fair-gpu
