"""Losses, registered in ``medsr.registry.LOSSES`` with the signature ``loss(sr, hr, batch) -> scalar``.

Importing this package imports every module in it, so each registers its losses. A run's loss is the weighted
sum of a config list ``[{type, weight, **args}]`` (:class:`WeightedSum`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from medsr.registry import LOSSES

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")


class WeightedSum(nn.Module):
    """``sum_i weight_i * loss_i(sr, hr, batch)``; ``forward`` also returns each term (unweighted) by name.

    A term that needs the trainee (e.g. to read an auxiliary output) defines ``attach(model)``; the training
    module calls it once with the model it trains.
    """

    def __init__(self, specs: Sequence[Mapping[str, Any]]):
        super().__init__()
        if not specs:
            raise ValueError("the loss list is empty")
        self.names: list[str] = []
        self.weights: list[float] = []
        terms = []
        for spec in specs:
            args = dict(spec)
            self.weights.append(float(args.pop("weight", 1.0)))
            name = str(args["type"])
            self.names.append(name if name not in self.names else f"{name}_{len(self.names)}")
            terms.append(LOSSES.build(args))
        self.terms = nn.ModuleList(terms)

    def attach(self, model: nn.Module) -> None:
        for term in self.terms:
            if hasattr(term, "attach"):
                term.attach(model)

    def forward(
        self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = {name: term(sr, hr, batch) for name, term in zip(self.names, self.terms)}
        total = sum(w * v for w, v in zip(self.weights, values.values()))
        return total, values
