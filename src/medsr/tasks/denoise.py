"""``task: denoise``: low-dose CT denoising on paired low-dose / full-dose slices (:mod:`medsr.data.ct_pairs`).

Inputs and outputs of the network are in the fixed normalisation :func:`medsr.ct.units.hu_to_unit`
(``mu / mu_water = 1 + HU / 1000``, padding below -1024 HU clamped to air), never a statistic of the noisy
image; :func:`medsr.inference.denoise.denoise_slices` maps HU to HU (the one path of validation, the demo, the
benchmarks and ``medsr denoise``). The loss list is the config's (``l1``/``mse`` pixel terms, ``texture``
Gram statistics, ``perceptual``/``gram`` on a local encoder's weights, CNCL's ``complementary`` branch terms),
compared with the full dose ``fd``; ``train.gan`` adds the PatchGAN + LSGAN term of the base task, with
``g_steps_per_d_step`` generator steps per discriminator step, and ``train.ema`` the EMA shadow that validation
scores and the weights file exports.

Validation: every validation slice denoised whole, then PSNR and SSIM per slice, averaged over each volume's
slices, in the windows :data:`medsr.metrics.ct.DENOISE_WINDOWS` (presets, each with its own windowing, data
range and SSIM), means over volumes; ``val/psnr``, their mean over the windows, selects ``best.ckpt``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from medsr.data.ct_pairs import CTPairDataset
from medsr.inference.denoise import denoise_slices
from medsr.intensity import HURule
from medsr.inference.planes import InferenceOptions
from medsr.metrics.ct import DENOISE_WINDOWS, scores_in_windows
from medsr.models.base import Output
from medsr.registry import TASKS
from medsr.tasks.base import TrainingTask

@TASKS.register("denoise")
class DenoiseTask(TrainingTask):
    """The network applied to ``ld``, the losses compared with ``fd``."""

    data_keys = frozenset({"patch_size", "augment", "noise_scale"})
    intensity = HURule()
    monitor = "val/psnr"
    adversarial_target = "fd"

    def dataset(self, split: str, *, training: bool) -> CTPairDataset:
        d = self.cfg.data
        return CTPairDataset(d.root, split, patch_size=d.patch_size if training else None,
                             augment=d.augment and training,
                             noise_scale=tuple(d.noise_scale) if training and d.noise_scale else None)

    def forward(self, x: torch.Tensor) -> Output:
        return self.model(x)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Output]:
        output = self.model(batch["ld"])
        loss, terms = self.criterion(output, batch["fd"], batch)
        return loss, terms, output

    def validation_metrics(self, trainer: Any, dataset: CTPairDataset, subjects: Sequence[str]) -> dict[str, float]:
        """PSNR/SSIM per window per volume of this rank's ``subjects``, summed over ranks, then means."""
        keys = [f"{m}_{name}" for name in DENOISE_WINDOWS for m in ("psnr", "ssim")]
        totals = torch.zeros(1 + len(keys), dtype=torch.float64)
        for _, ld, fd in dataset.volumes(set(subjects)):
            values = scores_in_windows(denoise_slices(self.eval_model, ld, InferenceOptions(
                batch_size=self.cfg.val.batch_size, device=self.device, progress=False)), fd, DENOISE_WINDOWS)
            totals += torch.tensor([1.0, *(values[k] for k in keys)], dtype=torch.float64)
        totals = trainer.strategy.reduce(totals.to(self.device), reduce_op="sum").cpu()
        n = max(float(totals[0]), 1.0)
        metrics = {f"val/{k}": float(v) / n for k, v in zip(keys, totals[1:])}
        metrics["val/psnr"] = sum(metrics[f"val/psnr_{name}"] for name in DENOISE_WINDOWS) / len(DENOISE_WINDOWS)
        return metrics

    def export_meta(self) -> dict[str, Any]:
        return {"data": {"root": self.cfg.data.root, "embedded": self.cfg.data.embedded}}
