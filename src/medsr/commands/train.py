"""``medsr train CONFIG [key=value ...] [--resume] [--overwrite] [--name NAME]``."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML config into runs/<name>/",
        description="Train from a YAML config (dotlist overrides such as train.lr=2e-4 after it). The run goes "
        "to <logging.runs_dir>/<name>/; an existing run is an error unless --resume or --overwrite.",
    )
    parser.add_argument("config", help="a YAML config file, or a built-in config by name (sakg, liif, demo, ...; base: NAME inherits one)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.steps=100")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    parser.add_argument("--name", help="run name (default: the config's name, i.e. its file name)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.tasks.base import NonFiniteLossError
    from medsr.engine.runs import is_primary_process, train

    try:
        run_dir = train(args.config, args.overrides, resume=args.resume, overwrite=args.overwrite, name=args.name,
                        argv=sys.argv)
    except NonFiniteLossError as err:
        print(f"medsr: error: {err}; the last good checkpoint is kept (resume with --resume after fixing the "
              f"config)", file=sys.stderr)
        return 1
    if is_primary_process():
        print(f"run: {run_dir}\nweights: {run_dir / 'weights.pth'}")
    return 0
