"""Losses, registered in ``medsr.registry.LOSSES`` with the signature ``loss(pred, target, batch) -> scalar``.

Every term is a :class:`~medsr.losses.base.Loss`. ``pred`` is the model's image (or logits); a term that reads
auxiliary outputs sets ``needs_aux`` (the key of ``ModelOutput.aux`` it reads) and receives the whole
:class:`~medsr.models.base.ModelOutput` instead. Nothing is read from hidden state. ``medsr.registry.LOSSES`` imports every module of this package on first use, so each
registers its losses. A run's loss is the weighted sum of a config list ``[{type, weight, **args}]``
(:class:`WeightedSum`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from medsr.losses.base import Loss
from medsr.models.base import Denoiser, Output, SRModel, as_image
from medsr.registry import LOSSES


class WeightedSum(nn.Module):
    """``sum_i weight_i * loss_i(pred, target, batch)``; ``forward`` also returns each term (unweighted) by name."""

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
            term = LOSSES.build(args)
            if not isinstance(term, Loss):
                raise TypeError(f"loss '{name}' ({type(term).__name__}) is not a medsr.losses.base.Loss")
            terms.append(term)
        self.terms = nn.ModuleList(terms)

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` when a term reads an auxiliary output that ``model`` does not declare."""
        declared = model.aux_outputs if isinstance(model, (SRModel, Denoiser)) else ()
        for name, term in zip(self.names, self.terms):
            needs = term.needs_aux
            if needs is not None and needs not in declared:
                raise ValueError(f"{name} needs a model with {needs} logits, not {type(model).__name__}")

    def forward(
        self, output: Output, target: torch.Tensor | None, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = as_image(output)
        values = {name: term(output if term.needs_aux else image, target, batch)
                  for name, term in zip(self.names, self.terms)}
        total = sum(w * v for w, v in zip(self.weights, values.values()))
        return total, values
