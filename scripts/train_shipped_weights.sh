#!/usr/bin/env bash
# The exact commands that produced src/medsr/weights/sakg_mni.pth (issue 5, item 5): sakg trained on the
# embedded MNI data over every ordered pair of T1/T2/PD (and no reference, by reference dropout), on one CPU
# thread (no GPU was lent to this task), then exported as the run's weights file (params + EMA params + meta).
set -euo pipefail
cd "$(dirname "$0")/.."
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 .venv/bin/medsr train configs/sakg_mni.yaml --overwrite --name sakg_mni
.venv/bin/medsr test runs/sakg_mni/weights.pth --data data/mni --scales 1.5,2,2.5,3,4,6,8 --ref hr \
    --json runs/sakg_mni/test_hr.json
mkdir -p src/medsr/weights
cp runs/sakg_mni/weights.pth src/medsr/weights/sakg_mni.pth
ls -l src/medsr/weights/sakg_mni.pth
