"""The loss interface: ``forward(pred, target, batch) -> scalar``; ``needs_aux`` names the key of
:attr:`medsr.models.base.ModelOutput.aux` a term reads (it then receives the whole output), None for none."""

from __future__ import annotations

from torch import nn


class Loss(nn.Module):
    """Base class of every registered loss term."""

    needs_aux: str | None = None
