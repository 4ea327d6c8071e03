"""The one reading of a ``--device`` flag: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:N]``."""

from __future__ import annotations

import torch

from medsr.errors import InputError


def resolve_device(spec: str) -> torch.device:
    """``spec`` as a :class:`torch.device`; an unknown, unsupported or absent device is an :class:`InputError`."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise InputError("--device", f"unknown device {spec!r} (auto, cpu or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError("--device", f"unsupported device {spec!r} (auto, cpu or cuda:N)")
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError("--device", f"{spec} is not available on this machine")
    return device
