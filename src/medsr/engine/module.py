"""The super-resolution LightningModule: model, weighted losses, EMA shadow, optimiser and schedule, optional GAN.

Steps are counted by the module itself (``self.step``, one per training batch, saved in checkpoints), because
Lightning's ``global_step`` counts optimiser steps and a GAN makes two per batch. Automatic optimisation is used
unless the GAN mode needs two optimisers (then manual).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import random
from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from medsr.config import RunConfig, to_dict
from medsr.errors import InputError
from medsr.registry import MODELS


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; ``step`` is the step that produced it."""

    def __init__(self, step: int, value: float):
        self.step = step
        super().__init__(f"non-finite loss ({value}) at step {step}; training stopped")


class EMA(nn.Module):
    """Exponential moving average of a model's parameters and buffers (Polyak averaging), for evaluation.

    ``update`` after optimiser step ``n`` (0-based): ``shadow = d * shadow + (1 - d) * param`` with the warm-up
    ``d = min(decay, (1 + n) / (10 + n))`` of TensorFlow's ``ExponentialMovingAverage(num_updates)``, so early
    shadows are not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = float(decay)
        self.shadow = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, n: int) -> None:
        decay = min(self.decay, (1 + n) / (10 + n))
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.lerp_(p.detach().to(s.dtype), 1.0 - decay)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)


def build(kind: str, build_fn: Any, spec: Any) -> Any:
    """Build a configured object; unknown names and bad arguments become an :class:`InputError` naming ``kind``."""
    try:
        return build_fn(spec)
    except (KeyError, TypeError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise InputError(kind, str(message)) from None


def freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    """Stop gradients for parameters whose names match any fnmatch pattern; return the frozen names."""
    frozen = []
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def lr_factor(step: int, total: int, scheduler: Mapping[str, Any]) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine (SGDR, Loshchilov & Hutter 2017,
    without restarts) down to ``min_factor``, step decay by ``gamma`` at ``milestones``, or constant."""
    warmup = int(scheduler["warmup_steps"])
    if step < warmup:
        return (step + 1) / warmup
    kind = scheduler["type"]
    if kind == "cosine":
        span = max(total - warmup, 1)
        progress = min((step - warmup) / span, 1.0)
        floor = float(scheduler["min_factor"])
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "step":
        return float(scheduler["gamma"]) ** sum(step >= m for m in scheduler["milestones"])
    return 1.0


def rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class SRModule(pl.LightningModule):
    """Trains ``cfg.model`` on batches ``{lr, hr, ref?}`` with the weighted loss list ``cfg.loss``.

    Validation (run by :class:`medsr.engine.callbacks.Checkpointer`) calls :meth:`validation_metrics`; the
    metric named ``monitor`` (higher is better) selects ``best.ckpt``.
    """

    monitor = "val/psnr"

    def __init__(self, cfg: RunConfig):
        super().__init__()
        import medsr.models  # noqa: F401  (registers the architectures)
        from medsr.losses import WeightedSum
        from medsr.losses.gan import AdversarialLoss

        self.cfg = cfg
        plain = to_dict(cfg)
        self.model_spec = plain["model"]
        self.model = build("model", MODELS.build, self.model_spec)
        self.frozen = freeze(self.model, list(cfg.train.freeze))
        self.ema = EMA(self.model, cfg.train.ema) if cfg.train.ema > 0 else None
        self.criterion = build("loss", WeightedSum, plain["loss"])
        self.criterion.attach(self.model)
        gan = cfg.train.gan
        d_spec = plain["train"]["gan"]["discriminator"]
        self.discriminator = build("train.gan.discriminator", MODELS.build, d_spec) if gan.enabled else None
        self.adversarial = AdversarialLoss(gan.loss) if gan.enabled else None
        self.automatic_optimization = not gan.enabled
        self.step = 0
        self.best_score = -math.inf
        self.val_sample: dict[str, Any] | None = None

    @property
    def eval_model(self) -> nn.Module:
        """The network used for validation and exported as ``params_ema``."""
        return self.ema.shadow if self.ema is not None else self.model

    def forward(self, lr: torch.Tensor, out_size: tuple[int, int], ref: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(lr, out_size, ref)

    def _optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        t = self.cfg.train
        kind = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        return kind(params, lr=lr, betas=tuple(t.betas), weight_decay=t.weight_decay)

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        spec = to_dict(self.cfg)["train"]["scheduler"]
        total = self.cfg.train.steps
        lam = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, spec))
        return {"scheduler": lam, "interval": "step"}

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters (model has none, or train.freeze matches them all)")
        opt_g = self._optimizer(params, self.cfg.train.lr)
        if self.discriminator is None:
            return {"optimizer": opt_g, "lr_scheduler": self._scheduler(opt_g)}
        opt_d = self._optimizer(list(self.discriminator.parameters()), self.cfg.train.gan.d_lr)
        return [opt_g, opt_d], [self._scheduler(opt_g), self._scheduler(opt_d)]

    def _check_finite(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).float()
        if self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce(finite, reduce_op="min")
        if float(finite) < 1:
            raise NonFiniteLossError(self.step, float(loss.detach()))

    def _generator_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        hr = batch["hr"]
        sr = self.model(batch["lr"], tuple(hr.shape[-2:]), batch.get("ref"))
        loss, terms = self.criterion(sr, hr, batch)
        return sr, loss, terms

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.discriminator is not None:
            return self._gan_step(batch)
        _, loss, terms = self._generator_loss(batch)
        self._check_finite(loss)
        self._log_terms(loss, terms)
        return loss

    def _gan_step(self, batch: Mapping[str, Any]) -> None:
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        gan = self.cfg.train.gan
        self.toggle_optimizer(opt_g)
        sr, loss, terms = self._generator_loss(batch)
        adv = self.adversarial.generator(self.discriminator(sr))
        loss = loss + gan.weight * adv
        self._check_finite(loss)
        opt_g.zero_grad()
        self.manual_backward(loss)
        if self.cfg.train.grad_clip > 0:
            self.clip_gradients(opt_g, gradient_clip_val=self.cfg.train.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        sched_g.step()
        self.untoggle_optimizer(opt_g)
        terms = {**terms, "gan_g": adv.detach()}
        if (self.step + 1) % gan.g_steps_per_d_step == 0:
            self.toggle_optimizer(opt_d)
            d_loss = self.adversarial.discriminator(self.discriminator(batch["hr"]), self.discriminator(sr.detach()))
            self._check_finite(d_loss)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
            sched_d.step()
            self.untoggle_optimizer(opt_d)
            terms["gan_d"] = d_loss.detach()
        self._log_terms(loss, terms)
        self._finish_step()

    def _log_terms(self, loss: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> None:
        batch_size = self.cfg.data.batch_size
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=batch_size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=batch_size)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self._finish_step()

    def _finish_step(self) -> None:
        """After the generator's optimiser step: update the EMA shadow and count the step (callbacks see it)."""
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.step += 1

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["medsr"] = {"step": self.step, "best_score": self.best_score, "rng": rng_states(),
                               "model": self.model_spec}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["medsr"]
        self.step = int(state["step"])
        self.best_score = float(state["best_score"])
        set_rng_states(state["rng"])

    def validation_metrics(self, trainer: pl.Trainer, dataset: Any, subjects: Sequence[str]) -> dict[str, float]:
        """PSNR/SSIM per validation scale over the volumes of this rank's ``subjects`` (per-volume sums reduced
        over ranks), and ``val/psnr``, their mean over scales. Keeps a sample slice in ``val_sample``."""
        from medsr.engine import evaluation

        cfg = self.cfg
        metrics: dict[str, float] = {}
        self.val_sample = None
        for scale in cfg.val.scales:
            scores, sample = evaluation.evaluate_scale(
                self.eval_model, dataset, scale, cfg.val.ref, ref_scale=cfg.val.ref_scale, device=self.device,
                batch_size=cfg.val.batch_size, subjects=subjects,
            )
            if sample and self.val_sample is None:
                self.val_sample = {**sample, "scale": scale}
            totals = trainer.strategy.reduce(evaluation.moments(scores).to(self.device), reduce_op="sum").cpu()
            summary = evaluation.summarise(totals)
            metrics[f"val/psnr_x{scale:g}"] = summary.psnr
            metrics[f"val/ssim_x{scale:g}"] = summary.ssim
        psnrs = [v for k, v in metrics.items() if k.startswith("val/psnr_")]
        metrics["val/psnr"] = sum(psnrs) / len(psnrs)
        return metrics

    def state_for_export(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(params, params_ema)`` state dicts of the trained network."""
        return self.model.state_dict(), self.eval_model.state_dict()
