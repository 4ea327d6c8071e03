"""Self-describing weights files: ``params``, ``params_ema`` and ``meta`` (the model spec and how data was
normalised), loadable with ``torch.load(weights_only=True)`` so a file alone rebuilds its model."""

from __future__ import annotations

import math
import importlib.resources
from pathlib import Path
from typing import Any, Mapping

import torch

import medsr
from medsr.errors import InputError
from medsr.io.atomic import atomic_path
from medsr.models.base import SRModel
from medsr.intensity import rule_from_meta
from medsr.registry import MODELS



SHIPPED_WEIGHTS = "sakg_synth.pth"  # package data medsr/weights/: the default of medsr sr and the demo's comparison


def shipped_weights() -> Path | None:
    """Path of the shipped weights file when it is installed, else None."""
    resource = importlib.resources.files("medsr").joinpath("weights").joinpath(SHIPPED_WEIGHTS)
    return Path(str(resource)) if resource.is_file() else None

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


def weights_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/weights.pth`` for a run directory."""
    path = Path(path)
    return path / "weights.pth" if path.is_dir() else path


def load_weights(path: str | Path) -> dict[str, Any]:
    """Read a medsr weights file (or a run directory's ``weights.pth``) safely and check its ``meta``
    (:func:`check_meta`); every failure names it."""
    path = weights_path(path)
    payload = read_torch_file(path)
    if (not isinstance(payload, dict) or not {"params", "meta"} <= payload.keys()
            or not isinstance(payload["meta"], dict) or "model" not in payload["meta"]):
        raise InputError(path, "not a medsr weights file (needs params and meta.model)")
    check_meta(path, payload["meta"])
    check_finite(path, payload)
    return payload


def check_finite(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Every tensor of ``params`` and ``params_ema`` must be finite: NaN or Inf weights (a diverged run) are
    refused when the file is read, naming the file and the first bad tensor, not after a whole volume has run."""
    for group in ("params", "params_ema"):
        tensors = payload.get(group) or {}
        if not isinstance(tensors, Mapping):
            raise InputError(path, f"not a medsr weights file ({group} is not a mapping of tensors)")
        for name, tensor in tensors.items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise InputError(path, f"{group}.{name} holds non-finite values (NaN or Inf: the run diverged?); "
                                 "these weights cannot be used")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_meta(path: str | Path, meta: Mapping[str, Any]) -> None:
    """The one check of a weights file's ``meta``: the model spec (a mapping whose ``type`` this medsr knows),
    ``task``, ``n_adjacent`` (an integer >= 0), ``norm`` (a mapping with a percentile in (0, 100]) and
    ``scales`` (``[low, high]`` with 1 <= low <= high)."""
    spec = meta["model"]
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        raise InputError(path, f"meta.model must be a spec with a 'type', got {spec!r}")
    if spec["type"] not in MODELS:
        raise InputError(path, f"meta.model: unknown model type {spec['type']!r} (written by a newer medsr? known: "
                         f"{', '.join(MODELS.names())})")
    if not isinstance(meta.get("task", "sr"), str):
        raise InputError(path, f"meta.task must be a task name, got {meta.get('task')!r}")
    n_adjacent = meta.get("n_adjacent", 0)
    if n_adjacent is not None and not (isinstance(n_adjacent, int) and not isinstance(n_adjacent, bool)
                                       and n_adjacent >= 0):
        raise InputError(path, f"meta.n_adjacent must be an integer >= 0, got {n_adjacent!r}")
    try:
        rule_from_meta(meta)
    except ValueError as err:
        raise InputError(path, str(err)) from None
    scales = meta.get("scales")
    if scales is not None and not (isinstance(scales, (list, tuple)) and len(scales) == 2
                                   and all(_number(s) for s in scales) and 1 <= scales[0] <= scales[1]):
        raise InputError(path, f"meta.scales must be [low, high] with 1 <= low <= high, got {scales!r}")


def rebuild_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The model spec a weights file is rebuilt from: ``spec`` without the model's ``init_args`` (arguments that
    only initialise parameters from another file, which the weights file's own parameters replace)."""
    cls = MODELS.get(spec["type"])
    drop = cls.init_args if isinstance(cls, type) and issubclass(cls, SRModel) else ()
    return {k: v for k, v in spec.items() if k not in drop}


def build_model(spec: Mapping[str, Any]) -> torch.nn.Module:
    """Build a model from its spec (``MODELS``), then fill each submodule named by the model's ``init_args`` from
    the weights file its argument gives (:func:`start_from_weights`), so no model constructor reads a file."""
    model = MODELS.build(rebuild_spec(spec))
    for arg, target in getattr(type(model), "init_args", {}).items():
        if spec.get(arg) is None:
            continue
        try:
            submodule = model.get_submodule(target)
        except AttributeError:
            raise InputError(f"model.{arg}", f"is given, but this {spec['type']} model has no {target} to "
                             "initialise (check its options)") from None
        start_from_weights(submodule, spec[arg])
    return model


def build_from_weights(path: str | Path, ema: bool = True, task: str | tuple[str, ...] | None = None
                       ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a weights file describes, load its (EMA) parameters, return it in eval mode with meta.
    ``task`` (``"sr"``, ``"segmentation"``, or a tuple of accepted tasks) refuses weights trained for another."""
    payload = load_weights(path)
    meta = payload["meta"]
    accepted = (task,) if isinstance(task, str) else task
    if accepted is not None and meta.get("task", "sr") not in accepted:
        raise InputError(path, f"holds {meta.get('task')} weights ({meta['model']['type']}); this command needs "
                         f"{' or '.join(accepted)} weights")
    try:
        model = MODELS.build(rebuild_spec(meta["model"]))
    except (TypeError, ValueError, KeyError) as err:
        raise InputError(path, f"meta.model {dict(meta['model'])}: cannot build it ({err})") from None
    state = payload.get("params_ema") if ema and payload.get("params_ema") else payload["params"]
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(path, f"parameters do not fit model {meta['model'].get('type')}: {err}") from None
    return model.eval(), meta


def start_from_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load the evaluation (EMA) parameters of a weights file into ``model`` (in place), to fine-tune it
    (``train.init``). The file's model type must be ``model``'s; parameters the file lacks are allowed only when
    they are all zero in ``model`` (zero-initialised branches, e.g. a new in-band correction), so the fine-tuning
    starts from the file's function; anything else that does not fit is an :class:`InputError` naming the file."""
    payload = load_weights(path)
    path, kind = weights_path(path), payload["meta"]["model"]["type"]
    if MODELS.get(kind) is not type(model):
        raise InputError(path, f"holds {kind} weights, the config's model is {type(model).__name__}")
    state = payload.get("params_ema") or payload["params"]
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    new = sorted(k for k in set(own) - set(state) if own[k].any())
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if extra or new or wrong:
        problem = (f"parameters the model lacks: {', '.join(extra[:3])}" if extra else
                   f"misses non-zero-initialised parameters: {', '.join(new[:3])}" if new else
                   f"shapes differ: {', '.join(wrong[:3])}")
        raise InputError(path, f"does not fit the config's model ({problem})")
    model.load_state_dict(state, strict=False)
