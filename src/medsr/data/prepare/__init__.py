"""Real-data preparers: IXI, BraTS, fastMRI and generic CSV pairs into slice stores (see ``common`` for the steps
shared by all of them; the embedded MNI dataset lives in :mod:`medsr.data.embedded`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsr.data.prepare import brats, fastmri, ixi, pairs
from medsr.data.prepare.common import Options, parse_options, prepare_store

PREPARERS = {"ixi": ixi.dataset, "brats": brats.dataset, "fastmri": fastmri.dataset, "pairs": pairs.dataset}

__all__ = ["PREPARERS", "Options", "parse_options", "prepare"]


def prepare(kind: str, out_dir: str | Path, options: Options, **sources: Any) -> dict[str, list[str]]:
    """Prepare a store of ``kind`` (a key of :data:`PREPARERS`) in ``out_dir``; returns the split.

    ``sources`` are the arguments of that preparer's ``dataset`` function (e.g. ``src``, ``target``, ``reference``).
    """
    return prepare_store(PREPARERS[kind](**sources), out_dir, options)
