"""``medsr demo [--task sr|ct] [--minutes N] [--data DIR] [--out DIR]``: train, test and report on the embedded
data (MRI super-resolution, or CT denoising with ``--task ct``)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULTS = {"sr": (Path("data/mni"), Path("runs/demo")), "ct": (Path("data/ct"), Path("runs/demo_ct"))}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train the demo model on the embedded MNI data, test it against bicubic and zero-filling, report",
        description="Prepares the embedded MNI store if needed, trains the built-in demo config within --minutes, tests "
        "it at x1.5, x2, x3, x4 against bicubic and zero-filling (and the shipped weights when present), and "
        "writes OUT/report.md and OUT/comparison.png. An existing OUT is replaced. With --task ct: the embedded CT "
        "store (built on first use), CNCL-lite (config ct_cncl_lite) trained within --minutes and scored against the "
        "low-dose input in the RED-CNN and LDCT-bench abdomen windows.",
    )
    parser.add_argument("--task", choices=tuple(DEFAULTS), default="sr", help="sr (default) or ct")
    parser.add_argument("--minutes", type=float, default=8.0, help="training time budget in minutes (default 8)")
    parser.add_argument("--data", type=Path, default=None, help="data store (default data/mni; ct: data/ct)")
    parser.add_argument("--out", type=Path, default=None, help="run and report folder (runs/demo; ct: runs/demo_ct)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.demo import run_ct_demo, run_demo

    data, out = DEFAULTS[args.task]
    demo = run_ct_demo if args.task == "ct" else run_demo
    report = demo(args.minutes, args.data or data, args.out or out)
    print(f"report: {report}\nfigure: {report.parent / 'comparison.png'}")
    return 0
