"""GPU protocol, part 1 (issue 11): training speed and MFU at paper size, and ``medsr sr`` wall time.

* Training steps/s of SAKG (constructor defaults) and the Dual-ArbNet-style model (the paper's sizes), bf16
  autocast on CUDA (float32 on CPU), batch ``--batch`` of LR patches ``--patch`` at x2 with an HR reference and
  3 adjacent slices; FLOPs per step (forward + backward) from ``torch.utils.flop_counter.FlopCounterMode``
  (matrix products and convolutions; FFTs and sampling not counted); MFU = FLOPs/s over the device's dense bf16
  peak (``--peak-tflops``; H100/H200: 989.4).
* ``medsr sr`` (the CLI, a fresh process: imports, weights, self-test and file output included) on a
  128x128x150 volume to 256x256x150 (x2 in-plane) with the shipped weights.

Each part writes its JSON as soon as it is done (``--out``). The device is chosen at run time (CUDA when
present). ``--smoke``: CPU-sized models, 3 steps, a 32x32x6 volume, then ``benchmarks/fair.py``'s smallest
run; under a minute on one core.

    python benchmarks/gpu.py [--smoke] [--out benchmarks/results/gpu] [--batch 16] [--patch 48] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEAKS_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}
SMOKE_FAIR = ["--quick", "--only", "sakg", "--steps", "2", "--seeds", "2", "--lrs", "1e-3", "--scales", "2",
              "--curve-points", "2", "--val-slices", "1",
              "--test-slices", "1", "--synth-items", "1", "--patch", "8", "--batch", "2", "--workers", "1"]


def write(out: Path, name: str, record: dict[str, Any]) -> None:
    from medsr.io.atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / name) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record), flush=True)


def peak_tflops(device: str, given: float | None) -> float | None:
    import torch

    if given is not None or not device.startswith("cuda"):
        return given
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAKS_TFLOPS.items() if k in name), None)


def train_speed(spec: dict[str, Any], device: str, batch: int, patch: int, steps: int,
                peak: float | None) -> dict[str, Any]:
    """Steps/s, FLOPs per step and MFU of one model (random inputs at x2, HR reference, 3 slices)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medsr.models.base import as_image
    from medsr.optim import make_optimizer, update
    from medsr.registry import MODELS

    model = MODELS.build(spec).to(device).train()
    optimiser = make_optimizer(model.parameters(), 1e-4)
    lr = torch.rand(batch, 3, patch, patch, device=device)
    hr = torch.rand(batch, 1, 2 * patch, 2 * patch, device=device)
    bf16 = device.startswith("cuda")

    def step() -> None:
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = (as_image(model(lr, hr.shape[-2:], hr)) - hr).abs().mean()
        update(optimiser, None, loss.float())

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    step()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    rate = steps / (time.perf_counter() - start)
    achieved = flops * rate / 1e12
    return {"model": spec["type"], "params": sum(p.numel() for p in model.parameters()), "batch": batch,
            "lr_patch": patch, "scale": 2, "precision": "bf16 autocast" if bf16 else "float32",
            "steps_per_s": rate, "gflops_per_step": flops / 1e9, "achieved_tflops": achieved,
            "mfu": None if peak is None else achieved / peak}


def sr_wall_time(device: str, shape: tuple[int, int, int], weights: str | None) -> dict[str, Any]:
    """Wall time of ``medsr sr --scale 2,2,1`` (a fresh process) on a random volume of ``shape``."""
    import nibabel as nib
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "lr.nii.gz", Path(tmp) / "sr.nii.gz"
        volume = np.random.default_rng(0).random(shape, dtype=np.float32)
        nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 1.0, 1.0])), str(src))
        flag = "auto" if device.startswith("cuda") else device  # the CLI takes auto, cpu or cuda:N
        cmd = [sys.executable, "-m", "medsr", "sr", str(src), str(dst), "--scale", "2,2,1", "--device", flag]
        cmd += ["--weights", weights] if weights else []
        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's medsr
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        seconds = time.perf_counter() - start
        out_shape = list(nib.load(str(dst)).shape)
    return {"input": list(shape), "output": out_shape, "device": device, "seconds": seconds,
            "includes": "process start, imports, weights, self-test, NIfTI read and write"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU-sized, under a minute")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--weights", help="weights for medsr sr (default: the shipped ones)")
    args = parser.parse_args(argv)

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak = peak_tflops(device, args.peak_tflops)
    if args.smoke:
        from medsr.config import find_config, load_config, to_dict

        specs = [to_dict(load_config(find_config(n)))["model"] for n in ("sakg", "dualarb")]
        sizes = {"batch": 2, "patch": 8, "steps": 3}
        volume = (32, 32, 6)
    else:
        specs = [{"type": "sakg"}, {"type": "dualarb"}]
        sizes = {"batch": args.batch, "patch": args.patch, "steps": args.steps}
        volume = (128, 128, 150)
    speed = [train_speed(s, device, peak=peak, **sizes) for s in specs]
    write(args.out, "train_speed.json", {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                                         "peak_tflops": peak, "paper_size": not args.smoke, "rows": speed})
    write(args.out, "sr_time.json", sr_wall_time(device, volume, args.weights))
    if args.smoke:
        sys.path.insert(0, str(Path(__file__).parent))
        import fair

        fair.main([*SMOKE_FAIR, "--out", str(args.out), "--work", str(args.out / "work")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
