"""``medsr clip-score IMG_DIR TXT_DIR``: CLIP-S of images against their prompts, paired by name."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medsr.commands.evaluate import add_report_arguments

DESCRIPTION = """Score each image against its prompt: IMG_DIR/cat.jpg pairs with TXT_DIR/cat.txt. Reports per
pair the cosine similarity of the CLIP embeddings and CLIP-S = 100 * max(cos, 0), and their means. Prompts longer
than the model's context are truncated keeping the end-of-text token (one warning with the count). --model is a
local directory in the Hugging Face format or a hub name (which needs the hub or a cached copy)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("clip-score", help="CLIP-S of images against prompts paired by name",
                                   description=DESCRIPTION)
    parser.add_argument("img_dir", type=Path, help="image file or directory")
    parser.add_argument("txt_dir", type=Path, help="prompt .txt file or directory")
    parser.add_argument("--model", default="openai/clip-vit-base-patch32", metavar="NAME_OR_PATH",
                        help="Hugging Face CLIP model directory or hub name (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="pairs per forward pass")
    add_report_arguments(parser, csv=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.commands.evaluate import check_reports
    from medsr.evaluation.clip import clip_score

    check_reports(args, [args.img_dir, args.txt_dir, args.model])
    result = clip_score(args.img_dir, args.txt_dir, args.model, args.device, args.batch_size, args.allow_missing)
    if result.truncated:
        print(f"medsr: warning: {result.truncated} prompt(s) longer than {result.context} tokens were truncated "
              "(end-of-text token kept)", file=sys.stderr)
    print(result.evaluation.text())
    result.evaluation.write(args.json, None)
    return 0
