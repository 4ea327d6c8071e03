"""``medsr prepare mni``: the embedded MNI ICBM152 2009a dataset (:mod:`medsr.data.embedded`), with its own slabs
and split; of the store options only ``--workers`` and ``--no-progress`` apply."""

from __future__ import annotations

import argparse

from medsr.data.embedded import prepare_mni
from medsr.data.prepare.common import Preparer, parse_options, split_summary
from medsr.data.store import SliceStore
from medsr.registry import DATASETS


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--workers", metavar="N", help="worker processes (default: min(4, CPUs))")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> str:
    options = parse_options(workers=args.workers, progress=not args.no_progress)
    store = SliceStore(prepare_mni(args.out_dir, workers=options.workers, progress=options.progress))
    return split_summary(args.out_dir, store.split)


DATASETS.register("mni")(Preparer("the embedded MNI ICBM152 2009a multi-contrast dataset (no download)", arguments,
                                  run, inputs=()))
