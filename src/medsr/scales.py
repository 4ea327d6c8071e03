"""Scale samplers and curriculum stages, built from plain dicts (YAML).

A sampler draws one ``(sy, sx)`` pair per batch from a generator it is given (it owns no state), so the
batch sampler can make every draw a pure function of ``(seed, step)``:

* ``{"type": "fixed", "value": 2}`` or ``{"type": "fixed", "value": [2, 3], "asymmetric": true}``;
* ``{"type": "choice", "values": [2, 3, 4], "asymmetric": false}``;
* ``{"type": "uniform", "low": 1.5, "high": 4, "asymmetric": true}`` (continuous, as in Meta-SR / LIIF
  training, Hu et al. CVPR 2019, Chen et al. CVPR 2021).

``asymmetric: true`` draws ``sy`` and ``sx`` independently (Dual-ArbNet-style asymmetric scales); otherwise both
axes share one draw. A curriculum is a list of stages ``{"until_step": N | null, "scale": {...}, "ref": "hr" |
"lr" | "none", "ref_scale": {...} | null, "ref_dropout": 0.0}``; stage ``i`` is active for steps below its
``until_step`` (and at or above the previous stage's); steps past the last bound stay in the last stage.
Invalid values raise ``ValueError`` naming the offending key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from medsr.kspace import check_scale

Scale = tuple[float, float]
REF_MODES = ("hr", "lr", "none")


class ScaleSampler(Protocol):
    asymmetric: bool
    """Whether ``sy`` and ``sx`` may differ."""

    def sample(self, rng: np.random.Generator) -> Scale:
        """One ``(sy, sx)`` pair drawn with ``rng``."""

    def range(self) -> Scale:
        """Smallest and largest scale this sampler can return on either axis."""


@dataclass(frozen=True)
class FixedScale:
    """Always the same ``(sy, sx)``."""

    value: Scale

    @property
    def asymmetric(self) -> bool:
        return self.value[0] != self.value[1]

    def sample(self, rng: np.random.Generator) -> Scale:
        return self.value

    def range(self) -> Scale:
        return min(self.value), max(self.value)


@dataclass(frozen=True)
class ChoiceScale:
    """Uniformly one of ``values`` (per axis when ``asymmetric``)."""

    values: tuple[float, ...]
    asymmetric: bool = False

    def sample(self, rng: np.random.Generator) -> Scale:
        sy = self.values[int(rng.integers(len(self.values)))]
        sx = self.values[int(rng.integers(len(self.values)))] if self.asymmetric else sy
        return sy, sx

    def range(self) -> Scale:
        return min(self.values), max(self.values)


@dataclass(frozen=True)
class UniformScale:
    """Uniform in ``[low, high]`` (per axis when ``asymmetric``)."""

    low: float
    high: float
    asymmetric: bool = False

    def sample(self, rng: np.random.Generator) -> Scale:
        sy = float(rng.uniform(self.low, self.high))
        sx = float(rng.uniform(self.low, self.high)) if self.asymmetric else sy
        return sy, sx

    def range(self) -> Scale:
        return self.low, self.high


def _check_keys(spec: Mapping[str, Any], allowed: Sequence[str], required: Sequence[str], where: str) -> None:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {spec!r}")
    for key in spec:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in spec:
            raise ValueError(f"{where}.{key}: required")


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value


def sampler_from_config(spec: Mapping[str, Any], where: str = "scale") -> ScaleSampler:
    """Build a sampler from ``{"type": "fixed" | "choice" | "uniform", ...}``; scales must lie in [1, 16]."""
    _check_keys(spec, ("type", "value", "values", "low", "high", "asymmetric"), ("type",), where)
    kind = spec["type"]
    asymmetric = _flag(spec.get("asymmetric", False), f"{where}.asymmetric")
    if kind == "fixed":
        _check_keys(spec, ("type", "value", "asymmetric"), ("value",), where)
        value = spec["value"]
        pair = value if isinstance(value, (list, tuple)) else (value, value)
        if len(pair) != 2:
            raise ValueError(f"{where}.value: expected a number or [sy, sx], got {value!r}")
        sy, sx = (check_scale(v, f"{where}.value") for v in pair)
        if (sy != sx) != asymmetric:
            raise ValueError(f"{where}.value: {value!r} needs asymmetric: {str(sy != sx).lower()}")
        return FixedScale((sy, sx))
    if kind == "choice":
        _check_keys(spec, ("type", "values", "asymmetric"), ("values",), where)
        values = spec["values"]
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{where}.values: expected a non-empty list, got {values!r}")
        return ChoiceScale(tuple(check_scale(v, f"{where}.values[{i}]") for i, v in enumerate(values)), asymmetric)
    if kind == "uniform":
        _check_keys(spec, ("type", "low", "high", "asymmetric"), ("low", "high"), where)
        low, high = check_scale(spec["low"], f"{where}.low"), check_scale(spec["high"], f"{where}.high")
        if high < low:
            raise ValueError(f"{where}.high: {high:g} is below low {low:g}")
        return UniformScale(low, high, asymmetric)
    raise ValueError(f"{where}.type: unknown sampler {kind!r} (known: fixed, choice, uniform)")


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: the target scale sampler and how the reference is given.

    ``ref``: ``"hr"`` (reference on the target's HR grid), ``"lr"`` (reference downsampled at its own scale,
    drawn from ``ref_scale``) or ``"none"``. ``ref_dropout``: probability that a batch gets no reference.
    """

    until_step: int | None
    scale: ScaleSampler
    ref: str = "none"
    ref_scale: ScaleSampler | None = None
    ref_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.until_step is not None and (isinstance(self.until_step, bool) or not isinstance(self.until_step, int)
                                            or self.until_step < 1):
            raise ValueError(f"until_step: expected a positive integer or null, got {self.until_step!r}")
        if self.ref not in REF_MODES:
            raise ValueError(f"ref: expected one of {', '.join(REF_MODES)}, got {self.ref!r}")
        if (self.ref == "lr") != (self.ref_scale is not None):
            raise ValueError("ref_scale: required when ref is 'lr', not allowed otherwise")
        dropout = self.ref_dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"ref_dropout: expected a probability in [0, 1], got {dropout!r}")
        if self.ref == "none" and dropout:
            raise ValueError("ref_dropout: no reference to drop when ref is 'none'")

    @classmethod
    def from_config(cls, spec: Mapping[str, Any], where: str = "stage") -> "Stage":
        _check_keys(spec, ("until_step", "scale", "ref", "ref_scale", "ref_dropout"), ("scale",), where)
        ref_scale = spec.get("ref_scale")
        try:
            return cls(
                until_step=spec.get("until_step"),
                scale=sampler_from_config(spec["scale"], f"{where}.scale"),
                ref=spec.get("ref", "none"),
                ref_scale=None if ref_scale is None else sampler_from_config(ref_scale, f"{where}.ref_scale"),
                ref_dropout=spec.get("ref_dropout", 0.0),
            )
        except ValueError as err:
            message = str(err)
            raise ValueError(message if message.startswith(where) else f"{where}.{message}") from None


class Curriculum:
    """Ordered stages; ``stage_at(step)`` picks the one active at a training step."""

    def __init__(self, stages: Sequence[Stage]):
        if not stages:
            raise ValueError("stages: at least one stage is needed")
        bounds = [s.until_step for s in stages]
        if any(b is None for b in bounds[:-1]):
            raise ValueError("until_step: only the last stage may leave it null")
        numbers = [b for b in bounds if b is not None]
        if any(b <= a for a, b in zip(numbers, numbers[1:])):
            raise ValueError(f"until_step: stages must be ordered by strictly increasing until_step, got {bounds}")
        self.stages = tuple(stages)

    @classmethod
    def from_config(cls, specs: Sequence[Mapping[str, Any]]) -> "Curriculum":
        if isinstance(specs, Mapping) or not isinstance(specs, Sequence):
            raise ValueError(f"stages: expected a list of stages, got {specs!r}")
        return cls([Stage.from_config(spec, f"stages[{i}]") for i, spec in enumerate(specs)])

    def stage_at(self, step: int) -> Stage:
        for stage in self.stages:
            if stage.until_step is None or step < stage.until_step:
                return stage
        return self.stages[-1]

    def scale_range(self) -> Scale:
        """Smallest and largest target scale of any stage (the "scales trained"; outside is out of distribution)."""
        ranges = [stage.scale.range() for stage in self.stages]
        return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)
