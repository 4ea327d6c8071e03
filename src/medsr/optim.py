"""The one optimisation step of medsr, without Lightning: the optimiser, the learning-rate schedule, the update
and the EMA shadow, shared by ``medsr train`` (:class:`medsr.tasks.base.TrainingTask`, through Lightning's
manual optimisation), the benchmarks that train outside the engine (``benchmarks/fair.py``, ``joint.py``,
``gpu.py``) and test-time adaptation (``medsr sr --adapt``, :mod:`medsr.infer.adapt`).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn


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


def make_optimizer(params: Iterable[nn.Parameter], lr: float, kind: str = "adam",
                   betas: Sequence[float] = (0.9, 0.999), weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam or AdamW (``kind``) over ``params``."""
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, total: int, spec: Mapping[str, Any]
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of step ``s`` is ``lr * lr_factor(s, total, spec)``; ``spec``: ``type`` (cosine, step,
    constant), ``warmup_steps``, ``min_factor``, ``milestones``, ``gamma`` (missing keys: no warm-up, floor 0)."""
    full = {"warmup_steps": 0, "min_factor": 0.0, "milestones": [], "gamma": 0.5, **spec}
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, full))


def clip_norm(model: nn.Module, max_norm: float) -> Callable[[], None]:
    """A clipping hook for :func:`update`: the global gradient norm of ``model`` clipped at ``max_norm``."""

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    return clip


def update(optimizer: Any, scheduler: Any, loss: torch.Tensor,
           backward: Callable[[torch.Tensor], None] | None = None, clip: Callable[[], None] | None = None) -> None:
    """One optimiser step on ``loss``: clear the gradients, ``backward(loss)`` (default ``loss.backward()``;
    Lightning's ``manual_backward`` in the engine), ``clip()`` if given, the optimiser step, then the schedule's
    step (``scheduler`` None: a constant rate)."""
    optimizer.zero_grad(set_to_none=True)
    if backward is None:
        loss.backward()
    else:
        backward(loss)
    if clip is not None:
        clip()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
