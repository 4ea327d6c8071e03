"""Self-describing weights files: ``params``, ``params_ema`` and ``meta`` (the model spec and how data was
normalised), loadable with ``torch.load(weights_only=True)`` so a file alone rebuilds its model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

import medsr
from medsr.errors import InputError
from medsr.io.atomic import atomic_path
from medsr.registry import MODELS


def save_weights(
    path: str | Path,
    model_spec: Mapping[str, Any],
    params: Mapping[str, torch.Tensor],
    params_ema: Mapping[str, torch.Tensor] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write a weights file; ``model_spec`` is ``{"type": name, **args}`` as accepted by ``MODELS.build``."""
    info = {"model": dict(model_spec), "medsr_version": medsr.__version__, **(meta or {})}
    payload = {
        "params": {k: v.detach().cpu().contiguous() for k, v in params.items()},
        "params_ema": {k: v.detach().cpu().contiguous() for k, v in (params_ema or params).items()},
        "meta": info,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_torch_file(path: str | Path, kind: str = "weights") -> Any:
    """``torch.load`` a file safely (``weights_only=True``, onto the CPU); a missing or unreadable file is an
    :class:`InputError` naming it (``kind`` says what was expected)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"no such {kind} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(path, f"not a readable {kind} file ({type(err).__name__})") from None


def load_weights(path: str | Path) -> dict[str, Any]:
    """Read a medsr weights file safely; every failure names the file."""
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or not {"params", "meta"} <= payload.keys() or "model" not in payload["meta"]:
        raise InputError(path, "not a medsr weights file (needs params and meta.model)")
    return payload


def build_from_weights(path: str | Path, ema: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a weights file describes, load its (EMA) parameters, return it in eval mode with meta."""
    import medsr.models  # noqa: F401  (registers the architectures)

    payload = load_weights(path)
    meta = payload["meta"]
    model = MODELS.build(meta["model"])
    state = payload.get("params_ema") if ema and payload.get("params_ema") else payload["params"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(path, f"parameters do not fit model {meta['model'].get('type')}: {err}") from None
    return model.eval(), meta
