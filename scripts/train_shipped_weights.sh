#!/usr/bin/env bash
# The exact commands that produce the shipped weights src/medsr/weights/sakg_synth.pth (issue 10): sakg trained on
# domain-randomised images mixed with the embedded MNI data (src/medsr/configs/sakg_synth.yaml), on 2 CPU cores (the main
# process on one thread, the data generator in one worker process), then exported as the run's weights file
# (params + EMA params + meta). None of the transfer-evaluation scans is read (a test enforces it).
set -euo pipefail
cd "$(dirname "$0")/.."
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/medsr train sakg_synth --overwrite --name sakg_synth
mkdir -p src/medsr/weights
cp runs/sakg_synth/weights.pth src/medsr/weights/sakg_synth.pth
ls -l src/medsr/weights/sakg_synth.pth
