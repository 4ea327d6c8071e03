"""The undersampled-MRI task, in two branches: ``task: joint`` (undersampled LR input -> HR image, with the clean,
fully sampled LR as an auxiliary reconstruction target; T2Net, Feng et al., MICCAI 2021) and ``task:
reconstruction`` (undersampled image -> fully sampled image on the same grid; MTrans' reconstruction setting,
random mask R 4, centre 0.08, Feng et al., IEEE TMI 2022). One class, :class:`UndersampledTask`; the branch is
the only difference:

* ``sr`` (joint): scales from the curriculum (:class:`~medsr.tasks.sr.SRTask`'s), loss against ``hr``, ``val/psnr``
  = the SR branch's mean over the validation scales;
* ``recon`` (reconstruction): scale 1 by construction (the LR grid is the HR grid; a config sets no curriculum and
  no validation scales, and one that asks for another scale is refused), loss against ``lr_clean``, the model's
  output on the input's grid, ``val/psnr`` = the reconstruction's PSNR.

Data: :class:`~medsr.data.undersampled.JointSliceDataset` (``data.mask`` required; ``data.fov``,
``data.intensity``), for training with ``data.dataset: synth`` mixed with generated items undersampled the same
way. Loss: the config's weighted list against the branch's target; the term ``recon_l1`` scores ``aux["recon"]``
against ``lr_clean`` (T2Net's protocol: 0.8 ``l1`` + 0.2 ``recon_l1``). Models that ``uses_kspace`` receive the
batch's ``mask`` and measured ``kspace``. Validation: both branches per validation scale
(:mod:`medsr.evaluation.undersampled`). The weights record the degradation they were trained for
(``meta["degradation"]``).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
import torch
from omegaconf import OmegaConf

from medsr.data import masks
from medsr.data.undersampled import JointSliceDataset, protocol
from medsr.data.store import SliceStore
from medsr.data.synth import SynthMixture, SynthSliceDataset
from medsr.errors import InputError
from medsr import config
from medsr.config import DataConfig, ValConfig, to_dict
from medsr.evaluation.undersampled import BRANCHES, PROTOCOL as EVAL_PROTOCOL, evaluate_joint
from medsr.kspace import lr_shape
from medsr.evaluation.report import protocol_header
from medsr.models.base import Output
from medsr.registry import TASKS
from medsr.scales import ChoiceScale, Curriculum, Stage
from medsr.tasks.sr import SRTask

TARGETS = {"sr": "hr", "recon": "lr_clean"}  # what each branch's loss compares the output with


def degradation_meta(cfg: Any, spec: masks.MaskSpec, hr_shape: tuple[int, int], val_scales: Sequence[float]
                     ) -> dict[str, Any]:
    """What weights record of their training degradation: the mask settings, intensity scale, field of view and,
    per validation scale, the effective R of the mask on an ``hr_shape`` slice's LR grid (subject seed 0), nominal
    and counting the conjugate mirrors of a magnitude image's spectrum (:func:`medsr.data.masks.mirror_acceleration`)."""
    effective, mirror = {}, {}
    for scale in val_scales:
        lr = lr_shape(hr_shape, scale)
        try:
            mask = masks.on_lr_grid(spec.draw(hr_shape, lr, 0), spec.grid, lr)
            effective[f"x{scale:g}"] = round(masks.effective_acceleration(mask), 4)
            mirror[f"x{scale:g}"] = round(masks.mirror_acceleration(mask), 4)
        except InputError:
            effective[f"x{scale:g}"] = mirror[f"x{scale:g}"] = None
    return {"mask": spec.kind, "grid": spec.grid, "acceleration": spec.acceleration,
            "center_fraction": spec.center_fraction if spec.kind in ("random", "equispaced") else None,
            "file": spec.file, "effective_acceleration": effective, "mirror_acceleration": mirror,
            "intensity": cfg.data.intensity,
            "fov": None if cfg.data.fov is None else list(cfg.data.fov)}


class UndersampledTask(SRTask):
    """Trains ``cfg.model`` on ``{lr, lr_clean, kspace, mask, hr, ref?}`` batches; ``branch`` (``sr`` or ``recon``)
    picks the target, the scales and the metric that selects ``best.ckpt`` (module docstring)."""

    data_keys = SRTask.data_keys | {"fov", "intensity"}
    monitor = "val/psnr"
    branch = "sr"

    @property
    def adversarial_target(self) -> str:  # type: ignore[override]
        return TARGETS[self.branch]

    @functools.cached_property
    def curriculum(self) -> Curriculum:
        given = config.curriculum(self.cfg)
        if self.branch == "sr":
            return given
        if OmegaConf.to_container(self.cfg.data.curriculum) != DataConfig().curriculum and any(
                stage.scale.range() != (1, 1) for stage in given.stages):
            raise InputError("data.curriculum", f"task {self.cfg.task} works at scale 1 (the input's grid); "
                             "remove data.curriculum from the config")
        return Curriculum([Stage(until_step=None, scale=ChoiceScale((1,)))])

    @property
    def val_scales(self) -> tuple[float, ...]:
        scales = tuple(self.cfg.val.scales)
        if self.branch == "sr":
            return scales
        if scales not in (tuple(ValConfig().scales), (1,)):
            raise InputError("val.scales", f"task {self.cfg.task} is validated at scale 1 (the input's grid); "
                             "remove val.scales from the config")
        return (1.0,)

    @property
    def mask_spec(self) -> masks.MaskSpec:
        m = self.cfg.data.mask
        spec = masks.parse_mask(m.type, m.acceleration, m.center_fraction, m.grid, m.file, masks.CONFIG_KEYS)
        if spec is None:
            raise InputError("data.mask.type", f"task {self.cfg.task} needs an undersampling mask")
        return spec

    def dataset(self, split: str, *, training: bool) -> Any:
        d = self.cfg.data
        if d.phase != "none":
            raise InputError("data.phase", f"task {self.cfg.task} reconstructs magnitude images with magnitude "
                             "data consistency; a complex (phased) pipeline is not built for it yet")
        real = JointSliceDataset(d.root, split, d.target, ref=d.ref, n_adjacent=d.n_adjacent,
                                 patch_size=d.patch_size if training else None, augment=d.augment and training,
                                 use_labels=d.use_labels, mask=self.mask_spec, fov=d.fov, intensity=d.intensity,
                                 slices=d.slices)
        if not training or d.dataset != "synth":
            return real
        if d.intensity != "orthonormal":
            raise InputError("data.intensity", "generated items (data.dataset: synth) are on the orthonormal scale")
        if d.patch_size is None and d.fov is not None and list(d.fov) != [d.synth.region] * 2:
            raise InputError("data.synth.region", f"whole generated slices are {d.synth.region} pixels square; "
                             f"set it to the data.fov {list(d.fov)} so real and generated items batch together")
        synth = SynthSliceDataset(d.root, d.synth, split=split, n_adjacent=d.n_adjacent, patch_size=d.patch_size,
                                  use_labels=d.use_labels, length=len(real), mask=self.mask_spec)
        return SynthMixture(real, synth, d.synth.real_fraction)

    def protocol(self) -> dict[str, Any]:
        """Every number of the setting, printed when training starts (and recorded in the weights)."""
        d, spec = self.cfg.data, self.mask_spec
        store = SliceStore(d.root)
        shape = tuple(d.fov) if d.fov is not None else tuple(store.shape(store.subjects(d.val_split)[0])[-2:])
        lines = {"task": f"{self.cfg.task} (branch selecting best.ckpt: {self.branch})",
                 "data": f"{d.root} ({d.dataset}), target {d.target}, reference {d.ref or 'none'}",
                 **protocol(d.intensity, d.fov)}
        for scale in self.val_scales:
            lr = lr_shape(shape, scale)
            try:
                mask = masks.on_lr_grid(spec.draw(shape, lr, 0), spec.grid, lr)
                lines[f"x{scale:g}"] = (f"k-space crop {shape[0]}x{shape[1]} -> {lr[0]}x{lr[1]}, then "
                                        f"{spec.kind} {masks.describe(mask, spec, shape)}")
            except InputError as err:
                lines[f"x{scale:g}"] = f"no mask fits: {err}"
        lines["loss"] = ", ".join(f"{t.get('weight', 1.0):g} {t['type']}" for t in to_dict(self.cfg)["loss"])
        lines["evaluation"] = EVAL_PROTOCOL["metrics"]
        return lines

    def on_fit_start(self) -> None:
        if self.trainer.is_global_zero:
            print(protocol_header(self.protocol()), flush=True)

    def measurements(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The keywords a ``uses_kspace`` model takes (none for other models)."""
        return {"mask": batch["mask"], "kspace": batch["kspace"]} if self.model.uses_kspace else {}

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Output]:
        target = batch[TARGETS[self.branch]]
        ref = batch.get("ref") if self.branch == "sr" else None
        output = self.model(batch["lr"], tuple(target.shape[-2:]), ref, **self.measurements(batch))
        loss, terms = self.criterion(output, target, batch)
        return loss, terms, output

    def validation_metrics(self, trainer: pl.Trainer, dataset: Any, subjects: Sequence[str]) -> dict[str, float]:
        """PSNR/SSIM of each branch per validation scale (sums reduced over ranks); ``val/psnr``: the mean over
        scales of this task's branch."""
        cfg = self.cfg
        ref = cfg.val.ref if self.model.uses_ref and cfg.data.ref is not None else "none"
        metrics: dict[str, float] = {}
        for scale in self.val_scales:
            scores = evaluate_joint(self.eval_model, dataset, scale, ref, ref_scale=cfg.val.ref_scale,
                                    device=self.device, batch_size=cfg.val.batch_size, subjects=subjects)
            for branch in BRANCHES:
                mine = [s for s in scores if s.branch == branch]
                if not mine:
                    continue
                sums = torch.tensor([len(mine), sum(s.psnr for s in mine), sum(s.ssim for s in mine)],
                                    dtype=torch.float64, device=self.device)
                n, p, q = trainer.strategy.reduce(sums, reduce_op="sum").cpu().tolist()
                prefix = "val/" if branch == "sr" else "val/recon_"
                metrics[f"{prefix}psnr_x{scale:g}"], metrics[f"{prefix}ssim_x{scale:g}"] = p / n, q / n
        prefix = "val/" if self.branch == "sr" else "val/recon_"
        psnrs = [v for k, v in metrics.items() if k.startswith(f"{prefix}psnr_x")]
        metrics["val/psnr"] = sum(psnrs) / len(psnrs)
        return metrics

    def export_meta(self) -> dict[str, Any]:
        d = self.cfg.data
        store = SliceStore(d.root)
        shape = tuple(d.fov) if d.fov is not None else tuple(store.shape(store.subjects(d.val_split)[0])[-2:])
        return {**super().export_meta(), "degradation": degradation_meta(self.cfg, self.mask_spec, shape,
                                                                         self.val_scales),
                "protocol": self.protocol()}


@TASKS.register("joint")
class JointTask(UndersampledTask):
    """The ``sr`` branch: undersampled LR -> HR, the reconstruction an auxiliary output."""

    branch = "sr"


@TASKS.register("reconstruction")
class ReconstructionTask(UndersampledTask):
    """The ``recon`` branch: undersampled -> fully sampled on the same grid, at scale 1."""

    branch = "recon"
