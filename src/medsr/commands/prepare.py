"""``medsr prepare NAME ...``: build a store with the preparer ``NAME`` of ``medsr.registry.DATASETS`` (slice
stores for MR, CT pair stores for CT). Each preparer declares its own arguments
(:class:`medsr.data.prepare.common.Preparer`), so they are read only when that preparer is asked for: the other
commands never import the preparers."""

from __future__ import annotations

import argparse

from medsr.commands import Parser


class ListPreparers(argparse.Action):
    """``medsr prepare --help``: the usage and every registered preparer with what it prepares."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object):
        super().__init__(option_strings, dest, nargs=0, help="list the preparers and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from medsr.registry import DATASETS

        lines = [parser.format_help(), "preparers (medsr prepare NAME --help for the arguments of one):"]
        lines += [f"  {name:8s} {DATASETS.get(name).help}" for name in DATASETS.names()]
        print("\n".join(lines))
        parser.exit()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="prepare a dataset into a store", add_help=False,
                                   description="Prepare a dataset into a store with one of the registered "
                                               "preparers; MR re-runs skip finished subjects.")
    parser.add_argument("-h", "--help", action=ListPreparers)
    parser.add_argument("name", metavar="NAME", help="the preparer (medsr prepare --help lists them)")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="its arguments (medsr prepare NAME --help)")
    parser.set_defaults(func=run)


def preparer_parser(name: str) -> Parser:
    """The parser of ``medsr prepare NAME``, from the arguments the preparer declares."""
    from medsr.errors import InputError
    from medsr.registry import DATASETS

    if name not in DATASETS:
        raise InputError("medsr prepare", f"no preparer {name!r} (known: {', '.join(DATASETS.names())})")
    entry = DATASETS.get(name)
    parser = Parser(prog=f"medsr prepare {name}", description=f"Prepare {entry.help}.")
    entry.add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from medsr.io.atomic import check_output
    from medsr.registry import DATASETS

    options = preparer_parser(args.name).parse_args(args.arguments)
    entry = DATASETS.get(args.name)
    check_output(options.out_dir, [getattr(options, name, None) for name in entry.inputs], folder=True)
    print(entry.run(options))
    return 0
