"""Run directories and the ``medsr train`` entry point.

``runs/<name>/`` holds ``config.yaml`` (resolved), ``command.txt``, ``env.json`` (git hash, versions, host,
devices), ``train.log``, TensorBoard events (``tensorboard/``), ``checkpoints/last.ckpt`` and ``best.ckpt`` (by
validation PSNR), ``ranks.json`` (a fingerprint of the final weights on every rank) and ``weights.pth`` (the
exported inference file). An existing run directory is never replaced silently: ``resume`` continues it exactly
(optimiser, scheduler, EMA, RNG states, step, sampler position), ``overwrite`` deletes it first, and only
when it is a run (:func:`is_run_dir`): any other non-empty folder is refused.

Under DDP the launcher (Lightning's, ``torchrun`` or SLURM) starts one process per device running this same
code; only the global rank 0 touches the run directory.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import medsr
from medsr.checkpoint import save_weights
from medsr.config import config_hash, load_config, RunConfig, to_yaml
from medsr.data.embedded import ensure_mni
from medsr.data.embedded_ct import ensure_ct
from medsr.engine.callbacks import Checkpointer, StepBar
from medsr.engine.datamodule import TaskDataModule
from medsr.errors import InputError
from medsr.io.atomic import atomic_path, check_output, os_errors, write_json
from medsr.registry import TASKS

log = logging.getLogger("medsr.engine")

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK")


def is_primary_process() -> bool:
    """True unless a launcher marked this process as a non-zero rank (Lightning, torchrun, SLURM)."""
    return all(int(os.environ.get(var, "0") or 0) == 0 for var in RANK_VARIABLES)


def git_hash(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions, host, devices and the git commit of the code that runs."""
    import lightning
    import numpy
    import torch

    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    return {
        "medsr": medsr.__version__,
        "git": git_hash(Path(medsr.__file__).parent),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "hostname": platform.node(),
        "platform": platform.platform(),
        "devices": devices,
        "cpu_threads": torch.get_num_threads(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_directory(runs_dir: str | Path, name: str) -> Path:
    """``runs_dir / name`` for a plain run name (letters, digits, ``._-+=``, not starting with a dot); anything
    else (``..``, ``.``, ``a/b``, an absolute path) is refused, so a run name never reaches outside the runs
    folder and ``--overwrite`` deletes only a run."""
    text = str(name)
    plain = bool(text) and not text.startswith(".") and all(c.isalnum() or c in "._-+=" for c in text)
    if not plain:
        raise InputError("--name", f"run name {text!r} must be a plain name (letters, digits, . _ - + =, not "
                         "starting with a dot); it is created inside logging.runs_dir")
    return Path(runs_dir) / text


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


RUN_FILES = ("config.yaml", "command.txt")
"""What makes a folder a run: :func:`prepare_run_dir` writes these first, and only such a folder is replaced."""


def is_run_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding :data:`RUN_FILES` (a run medsr made)."""
    return all((path / name).is_file() for name in RUN_FILES)


def check_run_dir(run_dir: Path, inputs: Sequence[str | Path | None] = (), *, resume: bool, overwrite: bool,
                  flag: str = "--overwrite") -> None:
    """Everything that decides whether the run may go to ``run_dir``, checked before any work: a writable place
    for a folder that is none of the run's ``inputs`` (data root, mask file), and an existing run only with
    ``resume`` (it must have a checkpoint) or ``overwrite`` (it must be a run: a store, a thesis or a home folder
    is never deleted to make room for a run; the refusal names ``flag``)."""
    if resume and overwrite:
        raise InputError("--resume", "cannot be combined with --overwrite")
    check_output(run_dir, inputs, folder=True)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(run_dir, "is a file; a run needs a folder here")
    exists = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise InputError(run_dir, "nothing to resume: no checkpoints/last.ckpt")
    elif exists and not overwrite:
        raise InputError(run_dir, "run directory exists; use --resume to continue it, --overwrite to replace it or "
                         "--name to start another run")
    elif exists and not is_run_dir(run_dir):
        raise InputError(flag, f"{run_dir} exists and is not a medsr run folder (no {' and '.join(RUN_FILES)}); it "
                         "is not replaced")


def prepare_run_dir(run_dir: Path, cfg: RunConfig, argv: Sequence[str], *, resume: bool, overwrite: bool) -> None:
    """Check (:func:`check_run_dir`) and (re)create the run directory, then record the config, command line and
    environment; operating-system errors name the folder."""
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    old = run_dir / "config.yaml"
    if resume and old.is_file() and config_hash(load_config(old)) != config_hash(cfg):
        log.warning("resuming with a configuration that differs from %s", old)
    with os_errors(run_dir):
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", to_yaml(cfg))
        with open(run_dir / "command.txt", "a") as f:
            f.write(" ".join(argv) + "\n")
    write_json(run_dir / "env.json", environment())


def attach_log(run_dir: Path) -> logging.Handler:
    """Send medsr's and Lightning's log records to ``train.log`` (appending) and medsr's to stderr."""
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("medsr", "lightning.pytorch"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler) -> None:
    for name in ("medsr", "lightning.pytorch"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def build_module(cfg: RunConfig) -> Any:
    """The training task (a LightningModule) that ``cfg.task`` names in ``TASKS``."""
    return TASKS.get(cfg.task)(cfg)


def build_trainer(cfg: RunConfig, run_dir: Path, module: Any, callbacks: Sequence[Any] = ()) -> Any:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    t = cfg.train
    return pl.Trainer(
        max_epochs=1,
        max_steps=-1,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        deterministic=t.deterministic,
        max_time=datetime.timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        logger=TensorBoardLogger(run_dir, name="", version="tensorboard", default_hp_metric=False),
        callbacks=[Checkpointer(run_dir, t.checkpoint_every, cfg.val.every, cfg.logging.image_every), StepBar(),
                   *callbacks],
        enable_checkpointing=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        log_every_n_steps=cfg.logging.log_every,
        default_root_dir=run_dir,
    )


def checked_trainer(cfg: RunConfig, run_dir: Path, module: Any, callbacks: Sequence[Any]) -> Any:
    """:func:`build_trainer`, with Lightning's rejection of ``train.accelerator``/``strategy``/``devices``/
    ``precision`` as an :class:`InputError` (it writes nothing, so it runs before the run directory exists)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return build_trainer(cfg, run_dir, module, callbacks)
    except (MisconfigurationException, ValueError, RuntimeError) as err:
        raise InputError("train", str(err).splitlines()[0]) from None


def fit(trainer: Any, module: Any, datamodule: Any, ckpt: Path | None) -> None:
    """``trainer.fit``; Ctrl-C (after :class:`~medsr.engine.callbacks.Checkpointer` saved ``last.ckpt``) comes
    back as :class:`KeyboardInterrupt` instead of Lightning's ``sys.exit(1)``, with the SIGINT handler restored."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=False)
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt(f"interrupted at step {module.step}; checkpoints/last.ckpt saved, continue with "
                                "--resume") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def weights_meta(cfg: RunConfig, module: Any) -> dict[str, Any]:
    """What ``weights.pth`` records: the run's identity and normalisation, then the task's ``export_meta``."""
    return {
        "task": cfg.task,
        "norm": module.intensity.meta(),
        **module.export_meta(),
        "config_hash": config_hash(cfg),
        "steps": int(module.step),
        "run": cfg.name,
        "seed": cfg.seed,
    }


def train(
    config: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    resume: bool = False,
    overwrite: bool = False,
    name: str | None = None,
    argv: Sequence[str] | None = None,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train the run a config describes; return its directory (``weights.pth`` inside once finished)."""
    import lightning.pytorch as pl

    cfg = load_config(config, overrides)
    if name is not None:
        cfg.name = name
    run_dir = run_directory(cfg.logging.runs_dir, cfg.name)
    primary = is_primary_process()
    if primary:
        check_run_dir(run_dir, [cfg.data.root, cfg.data.mask.file], resume=resume, overwrite=overwrite)
    if primary and cfg.data.embedded == "mni":
        ensure_mni(cfg.data.root)
    if primary and cfg.data.embedded == "ct":

        ensure_ct(cfg.data.root)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg)
    datamodule = TaskDataModule(cfg, module)
    trainable = any(True for _ in module.model.parameters())
    # Everything that can reject the config runs before the run directory is touched.
    trainer = checked_trainer(cfg, run_dir, module, callbacks) if trainable else None
    if primary:
        datamodule.check()
        prepare_run_dir(run_dir, cfg, argv if argv is not None else sys.argv, resume=resume, overwrite=overwrite)
    handler = attach_log(run_dir) if primary else None
    try:
        exporter = primary
        if trainer is not None:
            ckpt = run_dir / "checkpoints" / "last.ckpt" if resume else None
            log.info("run %s: %s", cfg.name, "resuming from " + str(ckpt) if ckpt else "starting")
            fit(trainer, module, datamodule, ckpt)
            exporter = trainer.is_global_zero
        else:
            log.info("run %s: model %s has no parameters; nothing to train", cfg.name, module.model_spec["type"])
        if exporter:
            params, params_ema = module.state_for_export()
            save_weights(run_dir / "weights.pth", module.model_spec, params, params_ema,
                         weights_meta(cfg, module))
            log.info("run %s finished at step %d: %s", cfg.name, module.step, run_dir / "weights.pth")
    finally:
        if handler is not None:
            detach_log(handler)
    return run_dir
