"""Typed run configuration: YAML merged onto dataclass schemas with OmegaConf, plus dotlist overrides.

Idea after DIRECT's typed configs: every key has a declared type and default, so an unknown or mistyped key is
an error that names it (``medsr train demo train.lr=2e-4``). Free-form parts (the model spec, the loss terms,
curriculum stages, the discriminator) are dicts with a ``type`` key, built through the registries; the curriculum
and the loss terms are parsed into their typed forms (:func:`curriculum`, :func:`loss_terms`) when the config
loads, so a bad stage or term fails before any work, naming its key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medsr.errors import InputError
from medsr.kspace import check_scale
from medsr.registry import LOSSES
from medsr.scales import Curriculum


def _default_curriculum() -> list[dict[str, Any]]:
    return [{"until_step": None, "scale": {"type": "uniform", "low": 1.5, "high": 4.0}, "ref": "none"}]


@dataclass
class SynthConfig:
    """Domain-randomised training data (``data.dataset: synth``, :mod:`medsr.data.synth`). ``real_fraction``:
    share of items taken from the real store instead; ``procedural_fraction``: share of synthetic items drawn
    from procedural label maps (the rest from the store's train-split tissue labels); ``region``: side (HR
    pixels) of the smallest generated field of view; ranges are ``[low, high]`` of uniform draws."""

    real_fraction: float = 0.2
    procedural_fraction: float = 0.3
    region: int = 64
    snr_db: List[float] = field(default_factory=lambda: [15.0, 40.0])
    rotation_deg: float = 20.0
    zoom: List[float] = field(default_factory=lambda: [0.75, 1.4])
    shear: float = 0.08
    elastic_px: float = 3.0
    bias: float = 0.35
    gamma_std: float = 0.3
    texture: float = 0.15
    pv_sigma: List[float] = field(default_factory=lambda: [0.3, 1.0])
    head_layers: float = 0.6
    zero_background: float = 0.3
    hr_blur: float = 0.1


@dataclass
class MaskConfig:
    """Undersampling of the LR input (:mod:`medsr.data.masks`): ``type`` random | equispaced | t2net | file (null:
    none); ``grid`` lr (crop, then mask: T2Net's order, the default) or hr (mask, then crop); ``acceleration`` and
    ``center_fraction`` (default 0.08) for random/equispaced; ``file`` (.npy/.mat/.png) for type file. Masks are
    seeded per subject."""

    type: Optional[str] = None
    acceleration: Optional[float] = None
    center_fraction: Optional[float] = None
    grid: Optional[str] = None
    file: Optional[str] = None


@dataclass
class DataConfig:
    """Slice store, contrasts and sampling. ``patch_size`` is the LR patch side (None: whole slices).
    ``embedded: mni`` prepares the embedded MNI store at ``root`` when it is missing. ``pairs``
    (``["T2:T1", "T1:PD", ...]``, TARGET:REF) trains on all of them mixed (``medsr.data.mixture``); validation
    keeps ``target``/``ref``. ``dataset: synth`` trains on domain-randomised images (``synth``) mixed with the
    store's (validation stays on the store). ``mask`` undersamples the LR inputs of training and validation.
    ``fov`` and ``intensity`` (orthonormal | t2net-compat) apply to the reconstruction and joint tasks
    (:mod:`medsr.data.undersampled`). ``phase`` (none | smooth-random, SR task) puts a smooth random phase on each HR
    slice before it is sampled, so a mask's acceleration is not flattered by Hermitian symmetry; ``slices``
    (all | t2net) reads every slice or T2Net's 21 per volume (:data:`medsr.data.datasets.SLICE_SUBSETS`).
    Each task reads only some of these keys (its ``data_keys``, :mod:`medsr.tasks.base`); setting another one
    is refused when the task is built."""

    dataset: str = "store"
    root: str = "data/mni"
    embedded: Optional[str] = None
    target: str = "T2"
    ref: Optional[str] = None
    n_adjacent: int = 0
    patch_size: Optional[int] = 24
    augment: bool = True
    use_labels: bool = False
    batch_size: int = 8
    num_workers: int = 0
    train_split: str = "train"
    val_split: str = "val"
    curriculum: List[Dict[str, Any]] = field(default_factory=_default_curriculum)
    pairs: List[str] = field(default_factory=list)
    synth: SynthConfig = field(default_factory=SynthConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    fov: Optional[List[int]] = None
    intensity: str = "orthonormal"
    phase: str = "none"
    slices: str = "all"
    noise_scale: Optional[List[float]] = None  # task denoise: [low, high] factor on each training item's ld - fd


@dataclass
class SchedulerConfig:
    """Learning-rate schedule: linear warm-up, then ``cosine`` (to ``min_factor``), ``step`` or ``constant``."""

    type: str = "cosine"
    warmup_steps: int = 0
    milestones: List[int] = field(default_factory=list)
    gamma: float = 0.5
    min_factor: float = 0.0


@dataclass
class GanConfig:
    """Adversarial training: a discriminator (MODELS spec), its loss, weight and update ratio; ``condition`` (a
    batch key, e.g. ``ld``) and ``noise`` add the network input and the noise estimate to what the discriminator
    sees (:mod:`medsr.tasks.adversarial`)."""

    enabled: bool = False
    discriminator: Dict[str, Any] = field(default_factory=lambda: {"type": "patch_discriminator"})
    loss: str = "lsgan"
    weight: float = 0.01
    g_steps_per_d_step: int = 1
    d_lr: float = 1e-4
    condition: Optional[str] = None
    noise: bool = False


@dataclass
class TrainConfig:
    """Optimisation and the Lightning trainer. ``ema`` is the EMA decay (0 = off). ``max_minutes`` bounds the
    training steps of one invocation (a resumed run gets a fresh budget); the final validation and the export
    of ``weights.pth`` come after it and are not counted. ``init``: a weights file whose evaluation parameters
    the model starts from (fine-tuning; :func:`medsr.checkpoint.start_from_weights`)."""

    steps: int = 1000
    lr: float = 2e-4
    optimizer: str = "adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    grad_clip: float = 0.0
    ema: float = 0.0
    precision: str = "32"
    freeze: List[str] = field(default_factory=list)
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    checkpoint_every: int = 500
    max_minutes: Optional[float] = None
    deterministic: bool = False
    gan: GanConfig = field(default_factory=GanConfig)
    init: Optional[str] = None


@dataclass
class ValConfig:
    """Validation on whole volumes at fixed scales; ``every`` in steps (0 = only at the end). With ``ref: lr``
    the reference is downsampled at ``ref_scale`` (default: the target's scale)."""

    every: int = 500
    scales: List[float] = field(default_factory=lambda: [2.0, 3.0, 4.0])
    ref: str = "hr"
    ref_scale: Optional[float] = None
    max_subjects: Optional[int] = None
    batch_size: int = 8


@dataclass
class LoggingConfig:
    runs_dir: str = "runs"
    log_every: int = 10
    image_every: int = 500


@dataclass
class RunConfig:
    """A whole run. ``task`` picks the training task: a name in ``medsr.registry.TASKS`` (``sr``, ``segmentation``,
    one per module of ``medsr/tasks``, or a plugin's), checked when the engine builds it
    (:func:`medsr.engine.runs.build_module`), so reading a config never imports the tasks and Lightning."""

    name: str = "run"
    seed: int = 0
    task: str = "sr"
    data: DataConfig = field(default_factory=DataConfig)
    model: Dict[str, Any] = field(default_factory=lambda: {"type": "liif"})
    loss: List[Dict[str, Any]] = field(default_factory=lambda: [{"type": "l1", "weight": 1.0}])
    train: TrainConfig = field(default_factory=TrainConfig)
    val: ValConfig = field(default_factory=ValConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


CHOICES = {
    "train.optimizer": ("adam", "adamw"),
    "train.scheduler.type": ("cosine", "step", "constant"),
    "train.precision": ("32", "bf16-mixed", "16-mixed"),
    "train.gan.loss": ("lsgan", "vanilla", "hinge"),
    "val.ref": ("hr", "lr", "none"),
    "data.embedded": (None, "mni", "ct"),
    "data.dataset": ("store", "synth"),
    "data.intensity": ("orthonormal", "t2net-compat"),
}


# Counts and sizes (None, where allowed, means "none" or "all").
AT_LEAST_ONE = ("train.steps", "data.batch_size", "val.batch_size", "train.checkpoint_every", "train.num_nodes",
                "train.gan.g_steps_per_d_step", "data.patch_size", "data.synth.region", "val.max_subjects",
                "logging.log_every")
# Zero switches the feature off (grad_clip, weight decay, warm-up, validation every N steps, loader workers);
# a negative value means nothing.
NON_NEGATIVE = ("train.grad_clip", "train.weight_decay", "train.scheduler.warmup_steps", "train.gan.weight",
                "val.every", "logging.image_every", "data.num_workers", "data.synth.rotation_deg", "data.synth.shear",
                "data.synth.elastic_px", "data.synth.bias", "data.synth.gamma_std", "data.synth.texture",
                "data.synth.hr_blur")
POSITIVE = ("train.scheduler.gamma",)
UNIT_INTERVAL = ("train.scheduler.min_factor", "data.synth.real_fraction", "data.synth.procedural_fraction",
                 "data.synth.head_layers", "data.synth.zero_background")
# [low, high] ranges of positive numbers.
POSITIVE_RANGES = ("data.synth.zoom", "data.synth.pv_sigma", "data.noise_scale")


def _omegaconf_error(source: str | Path, err: OmegaConfBaseException) -> InputError:
    key = getattr(err, "full_key", None)
    message = str(err).splitlines()[0]
    return InputError(source, f"{key}: {message}" if key else message)


def _validate(cfg: RunConfig, source: str | Path) -> None:
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise InputError(source, f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
    for key in AT_LEAST_ONE:
        value = OmegaConf.select(cfg, key)
        if value is not None and value < 1:
            raise InputError(source, f"{key}: must be at least 1, got {value}")
    if not 0.0 <= cfg.train.ema < 1.0:
        raise InputError(source, f"train.ema: decay must be in [0, 1), got {cfg.train.ema}")
    if "type" not in cfg.model:
        raise InputError(source, "model: needs a 'type'")
    _validate_numbers(cfg, source)
    curriculum(cfg, source)
    loss_terms(cfg, source)


def curriculum(cfg: RunConfig, source: str | Path | None = None) -> Curriculum:
    """The typed ``data.curriculum`` (stages and their scale samplers, :mod:`medsr.scales`); a bad stage is an
    :class:`InputError` naming the key (``data.curriculum: stages[0].scale.low: ...``)."""
    try:
        return Curriculum.from_config(OmegaConf.to_container(cfg.data.curriculum))
    except ValueError as err:
        raise InputError(source, f"data.curriculum: {err}") from None


@dataclass(frozen=True)
class LossTerm:
    """One term of ``loss``: a registered loss ``type``, its ``weight`` and the constructor's ``args`` (checked
    against its signature)."""

    type: str
    weight: float
    args: Dict[str, Any]

    @classmethod
    def from_config(cls, spec: Any, where: str, source: str | Path | None) -> "LossTerm":
        if not isinstance(spec, dict) or "type" not in spec:
            raise InputError(source, f"{where}: needs a 'type'")
        args = {k: v for k, v in spec.items() if k not in ("type", "weight")}
        weight = spec.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise InputError(source, f"{where}.weight: must be a finite number, got {weight!r}")
        try:
            LOSSES.check({"type": spec["type"], **args})
        except InputError as err:
            raise InputError(source, f"{where}: {err.message}") from None
        return cls(str(spec["type"]), float(weight), args)


def loss_terms(cfg: RunConfig, source: str | Path | None = None) -> list[LossTerm]:
    """The typed ``loss`` list; an unknown loss or an argument its constructor lacks is an :class:`InputError`."""
    return [LossTerm.from_config(term, f"loss[{i}]", source) for i, term in enumerate(OmegaConf.to_container(cfg.loss))]


def _validate_numbers(cfg: RunConfig, source: str | Path) -> None:
    """Learning rates, seed, time budget, validation scales and the model's numeric arguments."""

    for key in ("train.lr", "train.gan.d_lr"):
        value = OmegaConf.select(cfg, key)
        if not (math.isfinite(value) and value > 0):
            raise InputError(source, f"{key}: must be a positive number, got {value}")
    if not 0 <= cfg.seed < 2**32:
        raise InputError(source, f"seed: must be in [0, 2^32), got {cfg.seed}")
    minutes = cfg.train.max_minutes
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise InputError(source, f"train.max_minutes: must be a positive number of minutes or null, got {minutes}")
    if not cfg.val.scales:
        raise InputError(source, "val.scales: needs at least one scale")
    try:
        for i, scale in enumerate(cfg.val.scales):
            check_scale(scale, f"val.scales[{i}]")
        if cfg.val.ref_scale is not None:
            check_scale(cfg.val.ref_scale, "val.ref_scale")
    except ValueError as err:
        raise InputError(source, str(err)) from None
    _validate_signs(cfg, source)
    if cfg.data.n_adjacent < 0:
        raise InputError(source, f"data.n_adjacent: must not be negative, got {cfg.data.n_adjacent}")
    for key, value in _numbers(OmegaConf.to_container(cfg.model), "model"):
        if value < 0 or not math.isfinite(value):
            raise InputError(source, f"{key}: must be a non-negative finite number, got {value}")


def _validate_signs(cfg: RunConfig, source: str | Path) -> None:
    """The sign and range rules of :data:`NON_NEGATIVE`, :data:`POSITIVE`, :data:`UNIT_INTERVAL`,
    :data:`POSITIVE_RANGES` and ``train.betas`` (each in [0, 1)); every number must be finite."""
    rules = [(NON_NEGATIVE, lambda v: v >= 0, "must be >= 0 (0: off)"), (POSITIVE, lambda v: v > 0, "must be > 0"),
             (UNIT_INTERVAL, lambda v: 0 <= v <= 1, "must be in [0, 1]")]
    for keys, holds, rule in rules:
        for key in keys:
            value = OmegaConf.select(cfg, key)
            if not (math.isfinite(value) and holds(value)):
                raise InputError(source, f"{key}: {rule}, got {value}")
    for key in POSITIVE_RANGES:
        pair = OmegaConf.select(cfg, key)
        if pair is not None and not (len(pair) == 2 and all(math.isfinite(v) and v > 0 for v in pair)
                                     and pair[0] <= pair[1]):
            raise InputError(source, f"{key}: must be [low, high] with 0 < low <= high, got {list(pair)}")
    betas = list(cfg.train.betas)
    if not (len(betas) == 2 and all(math.isfinite(b) and 0 <= b < 1 for b in betas)):
        raise InputError(source, f"train.betas: must be two numbers in [0, 1), got {betas}")


def _numbers(spec: Any, where: str) -> list[tuple[str, float]]:
    """``(key, value)`` for every number inside a nested spec (booleans excluded)."""
    if isinstance(spec, dict):
        return [item for k, v in spec.items() for item in _numbers(v, f"{where}.{k}")]
    if isinstance(spec, list):
        return [item for i, v in enumerate(spec) for item in _numbers(v, f"{where}[{i}]")]
    return [(where, float(spec))] if isinstance(spec, (int, float)) and not isinstance(spec, bool) else []


CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The built-in configs (package data): ``medsr train sakg`` loads ``CONFIG_DIR / "sakg.yaml"``."""

# Keys naming files a run reads: relative values in a user's config file resolve against that file's folder.
INPUT_PATHS = ("data.root", "data.mask.file", "train.init")


def builtin_configs() -> list[str]:
    """Names of the built-in configs, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def find_config(name_or_path: str | Path, base_dir: Path | None = None) -> Path:
    """A config file from a path (relative to ``base_dir`` when given, else the working directory; ``.yaml`` may
    be left off) or a built-in config's name (``sakg``, ``bases/mni_sr``); a file that exists wins over a
    built-in of the same name."""
    text = str(name_or_path)
    yaml_name = text if text.endswith((".yaml", ".yml")) else f"{text}.yaml"
    path = Path(text).expanduser()
    folder = base_dir if base_dir is not None and not path.is_absolute() else Path()
    for candidate in (folder / path, folder / Path(yaml_name).expanduser(), CONFIG_DIR / yaml_name):
        if candidate.is_file():
            return candidate
    raise InputError(text, f"no such config file or built-in config (built-in: {', '.join(builtin_configs())})")


def _read_layer(path: Path) -> DictConfig:
    try:
        layer = OmegaConf.load(path)
    except Exception as err:
        raise InputError(path, f"not a readable YAML mapping ({type(err).__name__}: {err})") from None
    if not isinstance(layer, DictConfig):
        raise InputError(path, "must be a YAML mapping")
    return layer


def _anchor_paths(layer: DictConfig, folder: Path) -> None:
    """Make the layer's relative input paths (``INPUT_PATHS`` and every ``weights`` key of the model and loss
    specs) absolute against ``folder``."""
    keys = [k for k in INPUT_PATHS if isinstance(OmegaConf.select(layer, k), str)]
    specs = [("model", layer.get("model"))] + [(f"loss[{i}]", t) for i, t in enumerate(layer.get("loss") or [])]
    for where, spec in specs:
        if isinstance(spec, DictConfig) and isinstance(spec.get("weights"), str):
            keys.append(f"{where}.weights")
    for key in keys:
        value = Path(OmegaConf.select(layer, key)).expanduser()
        if not value.is_absolute():
            OmegaConf.update(layer, key, str(folder / value))


def config_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[DictConfig]:
    """The YAML layers of a config file, its ``base:`` chain first (a built-in name or a path relative to the
    file). Relative input paths of a user's file resolve against its folder, a built-in config's against the
    working directory (its data belong to the user's project, not to the installed package); both become
    absolute, so a run folder's saved ``config.yaml`` reloads to the same values."""
    path = path.resolve()
    if path in seen:
        raise InputError(path, "base: configs include each other in a cycle")
    layer = _read_layer(path)
    base = layer.pop("base", None)
    _anchor_paths(layer, Path.cwd() if CONFIG_DIR in path.parents else path.parent)
    if base is None:
        return [layer]
    if not isinstance(base, str):
        raise InputError(path, f"base: must be a config name or path, got {base!r}")
    return config_layers(find_config(base, path.parent), seen + (path,)) + [layer]


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Schema defaults, then the YAML file (a path or a built-in name; its ``base:`` chain first), then
    ``key=value`` overrides; errors name the key. The run name defaults to the YAML file's stem."""
    schema = OmegaConf.structured(RunConfig)
    layers: list[Any] = []
    source: str | Path = "config"
    if path is not None:
        source = find_config(path)
        layers = [OmegaConf.create({"name": source.stem}), *config_layers(source)]
    try:
        cfg = OmegaConf.merge(schema, *layers)
    except OmegaConfBaseException as err:
        raise _omegaconf_error(source, err) from None
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise InputError(bad[0], "overrides are written key=value")
    try:
        cfg = OmegaConf.merge(cfg, *(_override(o) for o in overrides))
    except OmegaConfBaseException as err:
        raise _omegaconf_error("override", err) from None
    _validate(cfg, source)
    if layers and not any("model" in layer for layer in layers) and not any(o.startswith("model") for o in overrides):
        raise InputError(source, f"sets no model (e.g. model: {{type: edsr}}); built-in configs: {CONFIG_DIR}")
    return cfg


def _override(text: str) -> DictConfig:
    """One ``key=value`` override as a config layer; a value that is not valid YAML (``a=[1,``) names it."""
    try:
        return OmegaConf.from_dotlist([text])
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or type(err).__name__
        raise InputError(text, f"the value is not valid YAML ({problem})") from None


def to_yaml(cfg: RunConfig) -> str:
    """The resolved configuration as YAML."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)


def config_hash(cfg: RunConfig) -> str:
    """A short stable hash of the resolved configuration (run name excluded)."""
    content = {k: v for k, v in to_dict(cfg).items() if k != "name"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
