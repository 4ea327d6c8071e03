#!/usr/bin/env bash
# Trains the shipped CT denoising weights src/medsr/weights/dncnn_ct.pth (the default of `medsr denoise`) on the
# development data (real abdomen CT, ../shared/data/ct; not shipped with medsr) on 2 CPU cores: builds the pair
# store data/ct_shared (`medsr prepare ctvol`: CRLM-CT-1006 plus the embedded slices, quarter dose simulated;
# the held-out patient CRLM-CT-1004 is skipped by the preparer), then trains CONFIG (default ct_dncnn_shared) for
# at most MINUTES (default 70), continues it with the second stage CONFIG_FT (default ct_dncnn_shared_ft: a warm
# restart from the first stage's weights, at most 75 minutes; FT=0 skips it) and copies the last stage's weights
# to OUT (the first stage's to RUNS/CONFIG.pth, the comparison row of
# `python benchmarks/ct_dev.py DATA_DIR --weights runs/ct_dncnn_shared.pth`). Both stages together: at most
# 145 minutes of training.
# The CT volumes come from TCIA's Colorectal-Liver-Metastases collection (CC BY 4.0, doi:10.7937/QXK2-QG03), as
# converted to NIfTI in ../shared/data (see its README); any folder of full-dose CT NIfTI volumes in HU works.
# Usage: scripts/train_ct_shared.sh DATA_DIR   (e.g. ../shared/data/ct)
# GPU recipe: the same command on a CUDA machine (train.accelerator auto picks the GPU) with MINUTES=30 STEPS=40000
# EXTRA="data.batch_size=32".
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:?usage: scripts/train_ct_shared.sh DATA_DIR (full-dose CT NIfTI volumes in HU)}"
CONFIG="${CONFIG:-ct_dncnn_shared}"
STORE="${STORE:-data/ct_shared}"
MINUTES="${MINUTES:-70}"
STEPS="${STEPS:-6500}"
RUNS="${RUNS:-runs}"
OUT="${OUT:-src/medsr/weights/dncnn_ct.pth}"
MEDSR="${MEDSR:-.venv/bin/medsr}"
test -d "$STORE" || $MEDSR prepare ctvol "$SRC" "$STORE" --embedded
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $MEDSR train "$CONFIG" --overwrite --name "$CONFIG" "data.root=$STORE" \
  "train.steps=$STEPS" "train.max_minutes=$MINUTES" "logging.runs_dir=$RUNS" ${EXTRA:-}
cp "$RUNS/$CONFIG/weights.pth" "$RUNS/$CONFIG.pth"  # the first stage alone: benchmarks/ct_dev.py --weights
LAST="$CONFIG"
if [ "${FT:-1}" != 0 ]; then
  LAST="${CONFIG_FT:-${CONFIG}_ft}"
  OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $MEDSR train "$LAST" --overwrite --name "$LAST" "data.root=$STORE" \
    "train.init=$RUNS/$CONFIG/weights.pth" "logging.runs_dir=$RUNS" ${EXTRA:-}
fi
cp "$RUNS/$LAST/weights.pth" "$OUT"
ls -l "$OUT"
