"""Command line: ``medsr <command> ...``. Each command lives in ``medsr/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser with ``set_defaults(func=run)``. This file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

import medsr
from medsr import commands
from medsr.commands import Parser
from medsr.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="medsr", description="Medical image restoration research toolkit.")
    parser.add_argument("--version", action="version", version=f"medsr {medsr.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"medsr.commands.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all("=" in e for e in extra):
        args.overrides += extra  # KEY=VALUE overrides given after a flag (medsr train CFG --resume a.b=1)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except InputError as err:
        print("medsr: error: " + " ".join(str(err).split()), file=sys.stderr)  # always one line
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"medsr: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"medsr: interrupted{f': {err}' if str(err) else ''}", file=sys.stderr)
        return 130
    return int(result or 0)
