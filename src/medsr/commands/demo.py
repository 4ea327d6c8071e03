"""``medsr demo [--minutes N] [--data DIR] [--out runs/demo]``: train, test and report on the embedded data."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train the demo model on the embedded MNI data, test it against bicubic and zero-filling, report",
        description="Prepares the embedded MNI store if needed, trains the built-in demo config within --minutes, tests "
        "it at x1.5, x2, x3, x4 against bicubic and zero-filling (and the shipped weights when present), and "
        "writes OUT/report.md and OUT/comparison.png. An existing OUT is replaced.",
    )
    parser.add_argument("--minutes", type=float, default=8.0, help="training time budget in minutes (default 8)")
    parser.add_argument("--data", type=Path, default=Path("data/mni"), help="MNI store (default data/mni)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run and report folder (runs/demo)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.demo import run_demo

    report = run_demo(args.minutes, args.data, args.out)
    print(f"report: {report}\nfigure: {report.parent / 'comparison.png'}")
    return 0
