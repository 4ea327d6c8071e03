#!/usr/bin/env bash
# The paired measurement of the reference-guided base (model.reference_base, issue 21 item 3) behind
# benchmarks/results/reference/guided_base.md: the shipped weights fine-tuned twice for 250 steps with the same seed,
# batches and schedule (the last curriculum stage of sakg_synth, lr 2e-4, no warm-up, one thread), once as they are
# (zero-filling base) and once with the guided base, then both scored by benchmarks/reference_anchors.py.
# Usage: bash scripts/finetune_reference_base.sh SHARED_DATA_DIR   (the breast DCE pair; see reference_anchors.py)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:?give the shared data folder holding mr/ucsfbr06_dce_phase*.nii.gz}
for arm in plain guided; do
  extra=()
  [ "$arm" = guided ] && extra=(model.reference_base=true)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/medsr train sakg_synth --overwrite --name ft_$arm \
    train.init="$PWD/src/medsr/weights/sakg_synth.pth" train.steps=250 train.lr=2e-4 train.scheduler.warmup_steps=0 \
    train.max_minutes=null data.num_workers=0 val.every=250 val.max_subjects=1 logging.image_every=250 \
    train.checkpoint_every=250 \
    'data.curriculum=[{until_step: null, scale: {type: uniform, low: 1.5, high: 4.0, asymmetric: true}, ref: lr, ref_scale: {type: uniform, low: 1.0, high: 4.0}, ref_dropout: 0.3}]' \
    "${extra[@]}"
done
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reference_anchors.py --shared "$shared" \
  --weights "fine-tuned 250 steps, zero-filling base=runs/ft_plain/weights.pth" \
  --weights "fine-tuned 250 steps, guided base=runs/ft_guided/weights.pth" --out benchmarks/results/reference/guided_base
