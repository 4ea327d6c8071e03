"""Training speed of every baseline config through the engine: steps/s on CPU, and on GPU when one is present.

Each config in configs/ (baselines and the flagship) trains a few steps on the embedded MNI data with its own
model, batch and patch size; the first steps are warm-up and not timed. Validation and start-up are excluded.
Prints one table with steps/s, samples/s and the speed relative to LIIF on the same device, side by side.

    python benchmarks/train_speed.py [--steps 12] [--warmup 3] [--configs liif,edsr] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from medsr.config import CONFIG_DIR, load_config
from medsr.data.embedded import ensure_mni
from medsr.engine.runs import train

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("edsr", "rdn", "liif", "metasr", "dualarb", "sakg", "bicubic", "zerofill")


class StepTimer(pl.Callback):
    """Wall time between the end of step ``warmup`` and the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        if module.step == self.warmup:
            self.start = time.perf_counter()
        elif module.step > self.warmup:
            self.end, self.steps = time.perf_counter(), module.step - self.warmup


def measure(config: Path, accelerator: str, data: Path, runs: Path, steps: int, warmup: int) -> float | None:
    """Steps per second of one config on one accelerator (None for a model without parameters)."""
    timer = StepTimer(warmup)
    overrides = [f"data.root={data}", f"train.steps={steps}", "val.every=0", "val.max_subjects=1", "val.scales=[2]",
                 f"train.accelerator={accelerator}", "train.devices=1", "train.max_minutes=null",
                 f"logging.runs_dir={runs}", f"train.checkpoint_every={steps}"]
    train(config, overrides, name=f"{config.stem}_{accelerator}", overwrite=True, argv=["train_speed"],
          callbacks=[timer])
    return timer.steps / (timer.end - timer.start) if timer.start is not None and timer.end else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--configs", default=",".join(BASELINES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])
    names = [n for n in args.configs.split(",") if (CONFIG_DIR / f"{n}.yaml").is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        data = ensure_mni(Path(tmp) / "mni")
        speeds = {(n, d): measure(CONFIG_DIR / f"{n}.yaml", d, data, Path(tmp) / "runs", args.steps,
                                  args.warmup) for n in names for d in devices}
    print(f"\ntraining speed, {args.steps - args.warmup} timed steps after {args.warmup} warm-up, "
          f"CPU threads {args.threads}" + (f", GPU {torch.cuda.get_device_name(0)}" if "gpu" in devices else ""))
    header = f"{'config':<10} {'batch':>5} {'patch':>5}"
    for d in devices:
        header += f" {d + ' steps/s':>14} {d + ' samples/s':>16} {'vs liif':>8}"
    print(header)
    for n in names:
        cfg = load_config(CONFIG_DIR / f"{n}.yaml")
        line = f"{n:<10} {cfg.data.batch_size:>5} {str(cfg.data.patch_size):>5}"
        for d in devices:
            s, ref = speeds[(n, d)], speeds.get(("liif", d))
            if s is None:
                line += f" {'no training':>14} {'':>16} {'':>8}"
            else:
                rel = f"{s / ref:.2f}x" if ref else "-"
                line += f" {s:>14.2f} {s * cfg.data.batch_size:>16.1f} {rel:>8}"
        print(line)


if __name__ == "__main__":
    main()
