"""``medsr prepare mni``: the embedded MNI ICBM152 2009a dataset (:mod:`medsr.data.embedded`), with its own slabs
and split; of the options only ``workers`` and ``progress`` apply."""

from __future__ import annotations

from pathlib import Path

from medsr.data.embedded import prepare_mni
from medsr.data.prepare.common import Options
from medsr.data.store import SliceStore
from medsr.registry import DATASETS


@DATASETS.register("mni")
def prepare(out_dir: str | Path, options: Options) -> dict[str, list[str]]:
    """Build the store in ``out_dir``; returns its split."""
    return SliceStore(prepare_mni(out_dir, workers=options.workers, progress=options.progress)).split
