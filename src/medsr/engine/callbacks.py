"""Engine callbacks: validation on whole volumes, image grids, atomic ``last``/``best`` checkpoints, and a
check that all ranks end with the same weights.

Validation runs here, not in Lightning's validation loop: the module's ``validation_metrics`` scores whole
volumes exactly as ``medsr test`` does (:mod:`medsr.evaluation.scores`), with subjects sharded across ranks and
per-volume sums reduced, never means of means.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import TQDMProgressBar

from medsr.io.atomic import write_json
from medsr.models.base import bicubic_upsample

log = logging.getLogger("medsr.engine")


def image_row(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """``[1, H, 5 W]`` grid of 2-D slices: LR (nearest-upsampled), bicubic, SR, HR, |SR - HR| (x4), clipped to
    [0, 1]."""
    size = tuple(hr.shape[-2:])
    lr = lr[None, None].float()
    panels = [F.interpolate(lr, size=size, mode="nearest")[0, 0], bicubic_upsample(lr, size)[0, 0], sr, hr,
              4 * (sr - hr).abs()]
    return torch.cat([p.float().clamp(0, 1) for p in panels], dim=-1)[None]


def fingerprint(module: torch.nn.Module) -> int:
    """A 63-bit hash of a module's parameters (bit-exact comparison across ranks)."""
    digest = hashlib.sha256()
    for name, param in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def save_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """Save through a temporary name and rename (rank 0 writes), so a kill never leaves a broken file."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("medsr_checkpoint")


def _zeroed(state: Any) -> Any:
    """A loop-progress state dict with every counter set to 0 (same keys)."""
    if isinstance(state, dict):
        return {k: _zeroed(v) for k, v in state.items()}
    return 0 if isinstance(state, int) and not isinstance(state, bool) else state


class StepBar(TQDMProgressBar):
    """Lightning's bar for one epoch of ``train.steps`` batches: no ``v_num`` (the logger's version folder) and
    no "Epoch 0/0"."""

    def get_metrics(self, trainer: pl.Trainer, module: Any) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, module)
        metrics.pop("v_num", None)
        return metrics

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description("steps")


class Checkpointer(pl.Callback):
    """Every ``checkpoint_every`` steps: ``last.ckpt``; every ``val_every`` steps and at the end: validation,
    ``best.ckpt`` by the module's ``monitor`` metric (higher is better); at the end: ``last.ckpt`` and
    ``ranks.json``."""

    def __init__(self, run_dir: Path, checkpoint_every: int, val_every: int, image_every: int):
        self.dir = Path(run_dir) / "checkpoints"
        self.run_dir = Path(run_dir)
        self.checkpoint_every, self.val_every, self.image_every = checkpoint_every, val_every, image_every
        self.last_validated = -1
        self.last_image = None

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = module.step
        if self.val_every and step % self.val_every == 0:
            self.validate(trainer, module)
        if step % self.checkpoint_every == 0:
            save_checkpoint(trainer, self.dir / "last.ckpt")

    def on_load_checkpoint(self, trainer: pl.Trainer, module: Any, checkpoint: dict[str, Any]) -> None:
        """Resuming continues to the current ``train.steps`` (the module's step is already restored): the fit
        loop's progress is reset so a finished or time-limited epoch runs again over the remaining steps (the
        sampler starts at the module's step), and ``train.max_minutes`` budgets this invocation afresh."""
        checkpoint.get("callbacks", {}).pop("Timer", None)
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        if module.step < module.cfg.train.steps:
            for key in ("epoch_progress", "epoch_loop.batch_progress"):
                if key in fit_loop:
                    fit_loop[key] = _zeroed(fit_loop[key])

    def on_exception(self, trainer: pl.Trainer, module: Any, exception: BaseException) -> None:
        """On Ctrl-C (SIGINT) save ``last.ckpt`` at the current step, so ``--resume`` loses nothing."""
        if isinstance(exception, KeyboardInterrupt) and module.step > 0:
            save_checkpoint(trainer, self.dir / "last.ckpt")
            log.info("interrupted at step %d: saved %s", module.step, self.dir / "last.ckpt")

    def on_train_end(self, trainer: pl.Trainer, module: Any) -> None:
        if self.last_validated != module.step:
            self.validate(trainer, module)
        save_checkpoint(trainer, self.dir / "last.ckpt")
        prints = trainer.strategy.all_gather(torch.tensor([fingerprint(module.eval_model)], device=module.device))
        prints = [int(p) for p in prints.flatten().tolist()]
        if trainer.is_global_zero:
            same = len(set(prints)) == 1
            write_json(self.run_dir / "ranks.json", {"world_size": len(prints), "identical": same,
                                                     "fingerprints": prints})
            (log.info if same else log.error)(
                "final weights %s on %d rank(s)", "identical" if same else "DIFFER", len(prints))

    def validate(self, trainer: pl.Trainer, module: Any) -> dict[str, float]:
        """Score the module on the validation split (``module.validation_metrics``, subjects sharded over ranks);
        log, and save ``best.ckpt`` when ``metrics[module.monitor]`` improves."""
        dataset = trainer.datamodule.val_dataset
        subjects = sorted(dataset.subjects)[: module.cfg.val.max_subjects]
        mine = subjects[trainer.global_rank :: trainer.world_size]
        model = module.eval_model
        was_training = model.training
        metrics = module.validation_metrics(trainer, dataset, mine)
        model.train(was_training)
        self.last_validated = module.step
        if trainer.is_global_zero:
            self._report(trainer, module, metrics, module.val_sample or {})
        if metrics[module.monitor] > module.best_score:
            module.best_score = metrics[module.monitor]
            save_checkpoint(trainer, self.dir / "best.ckpt")
        return metrics

    def _report(self, trainer: pl.Trainer, module: Any, metrics: dict[str, float], sample: dict[str, Any]) -> None:
        step = module.step
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=step)
            due = self.last_image is None or step - self.last_image >= self.image_every
            experiment = getattr(trainer.logger, "experiment", None)
            if due and sample and hasattr(experiment, "add_image"):
                grid = image_row(sample["lr"], sample["sr"], sample["hr"])
                experiment.add_image(f"val/x{sample['scale']:g} LR|bicubic|SR|HR|err", grid, step)
                self.last_image = step
        text = ", ".join(f"{k[4:]} {v:.4f}" for k, v in metrics.items())
        log.info("step %d validation: %s", step, text)
