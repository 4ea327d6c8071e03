"""The base training task: a LightningModule owning the model, its EMA shadow, the weighted losses, optimisers and
schedule, RNG state, export and the one step counter. Tasks (``sr``, ``segmentation``) are siblings on it.

Contract of a task (docs/architecture.md, "Tasks"):

* ``dataset(split, training=...)``: the items of a split; ``batch_sampler(num_items, ...)``: the specs of each
  training step, a pure function of ``(seed, step)`` (default: :class:`~medsr.data.datasets.StepBatchSampler`);
* ``compute_loss(batch) -> (loss, terms, prediction)``: the weighted loss, its unweighted terms by name and the
  model's output;
* ``validation_metrics(trainer, dataset, subjects) -> {name: value}``: scores of :attr:`eval_model` on this rank's
  validation subjects (reduced over ranks); ``monitor`` names the one (higher is better) that selects
  ``best.ckpt``;
* ``export_meta() -> dict``: what the weights file records beyond the model spec;
* ``adversarial_target``: the batch key of real images when the task supports ``train.gan`` (else None);
* ``intensity``: the rule (:mod:`medsr.intensity`) that maps a volume to the network's range and back,
  recorded in the weights' ``meta.norm`` (default: the store's percentile rule);
* ``data_keys``: the ``data`` keys the task reads besides :data:`COMMON_DATA_KEYS`; a config that sets any other
  ``data`` key away from its default is refused when the task is built (a mask in a denoise config, a noise
  scale in an SR config), so no key is accepted and silently ignored. ``None`` (a task that does not declare
  them): nothing is refused.

Steps are counted here (``self.step``, one per training batch, saved in checkpoints) because Lightning's
``global_step`` counts optimiser steps and adversarial training makes two per batch. Optimisation is manual, one
code path for every task: generator (and, with ``train.gan``, discriminator) update (:func:`medsr.optim.update`,
the step the benchmarks and ``--adapt`` take too), then :meth:`_finish_step`.
"""

from __future__ import annotations

import abc
import dataclasses
import fnmatch
import math
import random
from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from medsr.checkpoint import build_model, start_from_weights
from medsr.config import DataConfig, RunConfig, to_dict
from medsr.data.datasets import StepBatchSampler
from medsr.errors import InputError
from medsr.losses import WeightedSum
from medsr.intensity import HURule, PercentileRule
from medsr.models.base import Output
from medsr.optim import EMA, make_optimizer, make_scheduler, update
from medsr.tasks.adversarial import Adversary


# ``data`` keys every task reads: where the store is, how it is made and split, how it is batched.
COMMON_DATA_KEYS = frozenset({"root", "embedded", "batch_size", "num_workers", "train_split", "val_split"})


def check_data_keys(cfg: RunConfig, task: str, keys: frozenset[str] | None) -> None:
    """Refuse a ``data`` key that task ``task`` does not read (``keys`` besides :data:`COMMON_DATA_KEYS`) when the
    config sets it away from its default."""
    if keys is None:
        return
    given, defaults = to_dict(cfg)["data"], dataclasses.asdict(DataConfig())
    for name in sorted(given):
        if name not in COMMON_DATA_KEYS | keys and given[name] != defaults[name]:
            raise InputError(f"data.{name}", f"task {task} does not read it (its data keys: "
                             f"{', '.join(sorted(COMMON_DATA_KEYS | keys))}); remove it from the config")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; ``step`` is the step that produced it."""

    def __init__(self, step: int, value: float):
        self.step = step
        super().__init__(f"non-finite loss ({value}) at step {step}; training stopped")


def build(kind: str, build_fn: Callable[[Any], Any], spec: Any) -> Any:
    """Build a configured object; a ``ValueError`` (how constructors reject a bad value), or a module with an
    empty parameter (a zero width), becomes an :class:`InputError` naming ``kind``. Other exceptions keep their
    traceback."""
    try:
        built = build_fn(spec)
    except ValueError as err:
        raise InputError(kind, str(err)) from None
    empty = [name for name, p in built.named_parameters() if p.numel() == 0] if isinstance(built, nn.Module) else []
    if empty:
        raise InputError(kind, f"parameter {empty[0]} has no elements: a width (channels, features, hidden units) "
                         "is 0")
    return built


def freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    """Stop gradients for parameters whose names match any fnmatch pattern; return the frozen names."""
    frozen = []
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


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


class TrainingTask(pl.LightningModule, abc.ABC):
    """Base of every task (see the module docstring for the contract subclasses fill in)."""

    monitor: str = ""
    adversarial_target: str | None = None
    data_keys: frozenset[str] | None = None
    intensity: PercentileRule | HURule = PercentileRule()

    def __init__(self, cfg: RunConfig):
        super().__init__()
        check_data_keys(cfg, cfg.task, self.data_keys)
        self.cfg = cfg
        plain = to_dict(cfg)
        self.model_spec = plain["model"]
        self.model = build("model", build_model, self.model_spec)
        if cfg.train.init is not None:
            start_from_weights(self.model, cfg.train.init)
        self.frozen = freeze(self.model, list(cfg.train.freeze))
        self.ema = EMA(self.model, cfg.train.ema) if cfg.train.ema > 0 else None
        self.criterion = build("loss", WeightedSum, plain["loss"])
        build("loss", self.criterion.check, self.model)
        self.adversary: Adversary | None = None
        if cfg.train.gan.enabled:
            if self.adversarial_target is None:
                raise InputError("train.gan.enabled", f"no adversarial mode for task: {cfg.task}")
            gan = cfg.train.gan
            self.adversary = build("train.gan", lambda spec: Adversary(
                spec, gan.loss, gan.weight, gan.g_steps_per_d_step, self.adversarial_target, gan.condition, gan.noise),
                plain["train"]["gan"]["discriminator"])
            build("train.gan", self.adversary.check, self.model)
        self.automatic_optimization = False
        self.step = 0
        self.best_score = -math.inf
        self.val_sample: dict[str, Any] | None = None

    # --- the contract -------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def dataset(self, split: str, *, training: bool) -> torch.utils.data.Dataset:
        """The dataset of ``split`` (training items when ``training``)."""

    def batch_sampler(self, num_items: int, **position: Any) -> StepBatchSampler:
        """The training batches from ``position`` (``start_step``, ``num_steps``, ``rank``, ``world_size``)."""
        return StepBatchSampler(num_items, self.cfg.data.batch_size, self.cfg.seed, **position)

    @abc.abstractmethod
    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Output]:
        """``(loss, named terms, prediction)`` of one training batch."""

    @abc.abstractmethod
    def validation_metrics(self, trainer: pl.Trainer, dataset: Any, subjects: Sequence[str]) -> dict[str, float]:
        """Metrics over this rank's validation ``subjects`` (sums reduced across ranks inside)."""

    def export_meta(self) -> dict[str, Any]:
        return {}

    # --- shared machinery ---------------------------------------------------------------------------------------

    @property
    def eval_model(self) -> nn.Module:
        """The network used for validation and exported as ``params_ema``."""
        return self.ema.shadow if self.ema is not None else self.model

    def _optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        t = self.cfg.train
        return make_optimizer(params, lr, t.optimizer, t.betas, t.weight_decay)

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return make_scheduler(optimizer, self.cfg.train.steps, to_dict(self.cfg)["train"]["scheduler"])

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters (model has none, or train.freeze matches them all)")
        optimizers = [self._optimizer(params, self.cfg.train.lr)]
        if self.adversary is not None:
            optimizers.append(self._optimizer(list(self.adversary.parameters()), self.cfg.train.gan.d_lr))
        return optimizers, [self._scheduler(opt) for opt in optimizers]

    def _check_finite(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).float()
        if self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce(finite, reduce_op="min")
        if float(finite) < 1:
            raise NonFiniteLossError(self.step, float(loss.detach()))

    def _update(self, optimizer: Any, scheduler: Any, loss: torch.Tensor) -> None:
        """One optimiser and schedule step on ``loss`` (gradient clipping: :meth:`on_before_optimizer_step`)."""
        self._check_finite(loss)
        self.toggle_optimizer(optimizer)
        update(optimizer, scheduler, loss, self.manual_backward)
        self.untoggle_optimizer(optimizer)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the generator's gradients (after AMP unscaling, which Lightning does before this hook)."""
        if self.cfg.train.grad_clip > 0 and optimizer is self.trainer.optimizers[0]:
            self.clip_gradients(optimizer, gradient_clip_val=self.cfg.train.grad_clip, gradient_clip_algorithm="norm")

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        optimizers, schedulers = self.optimizers(), self.lr_schedulers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        lr = optimizers[0].param_groups[0]["lr"]
        loss, terms, prediction = self.compute_loss(batch)
        if self.adversary is not None:
            adv = self.adversary.generator_loss(prediction, batch)
            loss, terms = loss + self.adversary.weight * adv, {**terms, "gan_g": adv}
        self._update(optimizers[0], schedulers[0], loss)
        if self.adversary is not None and self.adversary.due(self.step):
            d_loss = self.adversary.discriminator_loss(prediction, batch)
            self._update(optimizers[1], schedulers[1], d_loss)
            terms["gan_d"] = d_loss
        self._log_terms(loss, terms, lr)
        self._finish_step()

    def _log_terms(self, loss: torch.Tensor, terms: Mapping[str, torch.Tensor], lr: float) -> None:
        batch_size = self.cfg.data.batch_size
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=batch_size)
        self.log("train/lr", lr, batch_size=batch_size)

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

    def state_for_export(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(params, params_ema)`` state dicts of the trained network."""
        return self.model.state_dict(), self.eval_model.state_dict()
