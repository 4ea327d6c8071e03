"""``medsr sr`` on undersampled inputs: the input's sampling (``--mask ...``) against the degradation the weights
were trained for (``meta["degradation"]``, written by ``task: joint``), refused when they differ unless
``--force``.

Weights record the mask kind, the grid it lives on, the acceleration and centre fraction (fastMRI-style kinds),
the mask file and the effective R per validation scale. Compared: kind, grid, acceleration, centre fraction, and
a mask file's contents. Weights without the record were trained on fully sampled inputs.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from medsr.data.masks import MaskSpec, load_mask
from medsr.errors import InputError


def describe(record: Mapping[str, Any] | None) -> str:
    """A trained degradation (or a :class:`MaskSpec` as one) in words."""
    if record is None:
        return "fully sampled"
    words = [f"{record['mask']} mask on the {str(record['grid']).upper()} grid"]
    if record.get("acceleration") is not None:
        words.append(f"R {record['acceleration']:g}, centre {record['center_fraction']:g}")
    if record.get("file"):
        words.append(f"file {record['file']}")
    if record.get("effective_acceleration"):
        words.append("effective R " + ", ".join(f"{k} {v}" for k, v in record["effective_acceleration"].items()))
    if record.get("mirror_acceleration"):
        words.append("R counting conjugate mirrors " + ", ".join(f"{k} {v}" for k, v in
                                                                 record["mirror_acceleration"].items()))
    return "; ".join(words)


def as_record(spec: MaskSpec | None) -> dict[str, Any] | None:
    """A :class:`MaskSpec` in the form of a weights file's degradation record (without the effective R)."""
    if spec is None:
        return None
    return {"mask": spec.kind, "grid": spec.grid, "acceleration": spec.acceleration,
            "center_fraction": spec.center_fraction if spec.acceleration is not None else None, "file": spec.file}


def mismatch(trained: Mapping[str, Any] | None, given: MaskSpec | None) -> str | None:
    """Why ``given`` (the input's sampling, None: fully sampled) differs from the ``trained`` record, or None."""
    mine = as_record(given)
    if trained is None or mine is None:
        return None if trained is None and mine is None else "sampling differs"
    for key in ("mask", "grid", "acceleration", "center_fraction"):
        if trained.get(key) != mine[key]:
            return f"{key} differs"
    if mine["file"] is not None and not np.array_equal(load_mask(mine["file"]), load_mask(trained["file"])):
        return "mask files differ"
    return None


def check_degradation(meta: Mapping[str, Any], given: MaskSpec | None, force: bool, weights: object) -> list[str]:
    """Notes for ``medsr sr``; an :class:`InputError` (one line) when the input's sampling is not the trained one
    and ``force`` is off."""
    trained = meta.get("degradation")
    why = mismatch(trained, given)
    if why is None:
        return [] if given is None else [f"input sampling matches the weights: {describe(trained)}"]
    text = f"trained for {describe(trained)} inputs, but the input is {describe(as_record(given))} ({why})"
    if not force:
        hint = "state the input's sampling with --mask/--mask-grid/--acceleration/--mask-file" if given is None \
            else "use weights trained for this sampling"
        raise InputError(weights, f"{text}; {hint}, or --force")
    return [f"--force: {text}"]
