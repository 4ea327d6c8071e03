"""One module per subcommand; each defines ``register(subparsers)`` and keeps heavy imports inside ``run``.
The option groups several commands share are defined once here."""

from __future__ import annotations

import argparse
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line ``medsr: error: ...``, exit status 2, no usage block
    (``--help`` still shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"medsr: error: {self.prog}: {message}\n")


def add_mask_options(parser: argparse.ArgumentParser, kinds: str) -> None:
    """``--mask --mask-file --mask-grid --acceleration --center-fraction`` (read by ``medsr.data.masks``);
    ``kinds`` says what ``--mask`` does in this command."""
    parser.add_argument("--mask", metavar="KIND", help=kinds)
    parser.add_argument("--mask-file", metavar="FILE", help="undersampling mask from a .npy, .mat or .png file")
    parser.add_argument("--mask-grid", metavar="GRID", help="grid the mask lives on: lr (crop, then mask; default) "
                        "or hr (mask, then crop)")
    parser.add_argument("--acceleration", metavar="R", help="acceleration of a random or equispaced mask, R >= 1")
    parser.add_argument("--center-fraction", metavar="F", help="fully sampled centre fraction (default: 0.08)")


def add_inference_options(parser: argparse.ArgumentParser, weights: str, unit: str, batch_size: int) -> None:
    """``--weights --device --batch-size --tile`` of the whole-volume commands (``sr``, ``denoise``)."""
    parser.add_argument("--weights", help=weights)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"{unit}s per model call (default: "
                        f"{batch_size})")
    parser.add_argument("--tile", type=int, default=None, help=f"tile {unit}s larger than N input pixels "
                        f"(overlapping, blended); default: whole {unit}s")
