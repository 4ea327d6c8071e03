"""``medsr prepare ct``: the embedded CT dataset (:mod:`medsr.data.embedded_ct`: real CT slices that installed
packages ship, low dose simulated; no download), as a CT pair store."""

from __future__ import annotations

import argparse

from medsr.data.embedded_ct import prepare_ct
from medsr.data.prepare.common import Preparer
from medsr.registry import DATASETS


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="output folder (must not exist)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> str:
    prepare_ct(args.out_dir, progress=not args.no_progress)
    return f"{args.out_dir}: prepared the embedded CT dataset"


DATASETS.register("ct")(Preparer("the embedded CT dataset: real CT slices shipped by installed packages, low dose "
                                 "simulated (no download)", arguments, run, inputs=()))
