#!/usr/bin/env bash
# Trains the shipped CT denoising weights src/medsr/weights/cncl_ct.pth (issue 13), the default of `medsr denoise`:
# CNCL-lite (src/medsr/configs/ct_cncl_lite.yaml, model cncl_lite) on the embedded CT data (built at data/ct on
# first use: real CT slices shipped by installed packages, 25% dose simulated in the projection domain), on 2 CPU
# cores, at most MINUTES of training (default 25; the store's first build adds about 3 min), then copies the run's
# weights file.
# Smoke test: STEPS=10 MINUTES=1 RUNS=/tmp/ct_runs OUT=/tmp/cncl_ct.pth scripts/train_ct_weights.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-4000}"
MINUTES="${MINUTES:-25}"
RUNS="${RUNS:-runs}"
OUT="${OUT:-src/medsr/weights/cncl_ct.pth}"
MEDSR="${MEDSR:-.venv/bin/medsr}"
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $MEDSR train ct_cncl_lite --overwrite --name cncl_ct \
  "train.steps=$STEPS" "train.max_minutes=$MINUTES" "val.every=1000" "logging.runs_dir=$RUNS" ${EXTRA:-}
mkdir -p "$(dirname "$OUT")"
cp "$RUNS/cncl_ct/weights.pth" "$OUT"
ls -l "$OUT"
