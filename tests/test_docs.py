"""Documentation that cannot rot (issue 23, item 3): every ```bash block of README.md and docs/*.md is read, and
each ``medsr ...`` line must name an existing subcommand and only flags that its argparse parser defines (the
parser is built by ``medsr.cli.build_parser``); ``medsr train NAME key=value ...`` must name a built-in config and
load with its overrides. Every relative link and image of those pages must point to an existing file, and every
``--8<--`` include (pymdownx.snippets, path from the repository root) to an existing results file.

Lines that need data the repository does not embed end with ``# needs: <what>``; they are flag-checked all the
same. ``python tests/test_docs.py`` prints the other ``medsr`` lines as one bash script, run by
``make docs-check`` in a scratch folder (those examples take minutes to hours, so ``make test`` does not run them).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDS = re.compile(r"#\s*needs:\s*(.+)$")
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::[0-9:]*)?"', re.M)


def doc_pages(root: Path = ROOT) -> list[Path]:
    """README.md, then the docs pages (the hooks folder holds no page)."""
    pages = sorted(p for p in (root / "docs").rglob("*.md") if "_hooks" not in p.parts)
    return [root / "README.md", *pages]


@dataclass(frozen=True)
class Example:
    where: str  # page:line
    text: str  # the command, continuation lines joined, comment removed
    needs: str | None  # what external data or time it needs, from a trailing "# needs: ..."


def examples(text: str, page: str) -> list[Example]:
    """The commands of every ```bash block of one page (one per line after joining ``\\`` continuations)."""
    found = []
    for block in BLOCK.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        lines = block.group(1).split("\n")
        i = 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            needs = NEEDS.search(line)
            tokens = shlex.split(line, comments=True)
            if tokens:
                found.append(Example(f"{page}:{first + start}", shlex.join(tokens),
                                     needs.group(1).strip() if needs else None))
    return found


def all_examples(root: Path = ROOT) -> list[Example]:
    return [ex for page in doc_pages(root) for ex in examples(page.read_text(), str(page.relative_to(root)))]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def check_medsr(tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Problems of one ``medsr ...`` command line: unknown subcommand, unknown flag, unknown built-in config or
    override; empty when it is sound."""
    from medsr.config import builtin_configs, find_config, load_config
    from medsr.errors import InputError

    args, names = tokens[1:], []
    while (choices := _subparsers(parser)) and args and not args[0].startswith("-"):
        if args[0] not in choices:
            return [f"unknown subcommand {' '.join(names + args[:1])!r} (choices: {', '.join(sorted(choices))})"]
        names.append(args[0])
        parser, args = choices[args[0]], args[1:]
    if names == ["prepare"]:  # each preparer declares its own arguments (medsr.commands.prepare)
        from medsr.commands.prepare import preparer_parser
        from medsr.registry import DATASETS

        if not args or args[0] not in DATASETS:
            return [f"unknown subcommand {' '.join(names + args[:1])!r} (choices: {', '.join(DATASETS.names())})"]
        parser, names, args = preparer_parser(args[0]), [*names, args[0]], args[1:]
    if _subparsers(parser):
        return [f"{' '.join(['medsr', *names])} needs a subcommand"]
    problems = [f"{' '.join(['medsr', *names])}: unknown flag {a.split('=')[0]}" for a in args
                if a.startswith("--") or re.fullmatch(r"-[A-Za-z]\S*", a)
                if a.split("=")[0] not in parser._option_string_actions]
    if names == ["train"]:
        positional = [a for a in args if not a.startswith("-") and "=" not in a]
        overrides = [a for a in args if "=" in a and not a.startswith("-")]
        if positional and not positional[0].endswith((".yaml", ".yml")):
            if positional[0] not in builtin_configs():
                problems.append(f"medsr train: no built-in config {positional[0]!r}")
            else:
                try:
                    load_config(find_config(positional[0]), overrides)
                except InputError as err:
                    problems.append(f"medsr train {positional[0]}: {err}")
    return problems


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    from medsr.cli import build_parser

    return build_parser()


def test_every_documented_command_exists(parser):
    found = [ex for ex in all_examples() if ex.text.startswith("medsr ")]
    assert len(found) >= 40, "the docs' bash blocks were not found"
    problems = [f"{ex.where}: {p}" for ex in found for p in check_medsr(shlex.split(ex.text), parser)]
    assert not problems, "\n".join(problems)


def test_config_files_in_examples_are_marked_as_needed():
    """``medsr train my.yaml`` refers to a file of the user's: the line must say so."""
    bad = [ex.where for ex in all_examples() if re.match(r"medsr train \S+\.ya?ml", ex.text) and not ex.needs]
    assert not bad, f"mark these lines '# needs: <the file>': {bad}"


@pytest.mark.parametrize("line, problem", [
    ("medsr srr in.nii.gz out.nii.gz", "unknown subcommand 'srr'"),
    ("medsr sr in.nii.gz out.nii.gz --scales 2", "medsr sr: unknown flag --scales"),
    ("medsr prepare ixi /data/IXI out --contrast T2", "medsr prepare ixi: unknown flag --contrast"),
    ("medsr prepare nosuch out", "unknown subcommand 'prepare nosuch'"),
    ("medsr viz", "medsr viz needs a subcommand"),
    ("medsr train no_such_config", "no built-in config 'no_such_config'"),
    ("medsr train liif train.no_such_key=1", "no_such_key"),
])
def test_checker_catches_rot(parser, line, problem):
    problems = check_medsr(shlex.split(line), parser)
    assert any(problem in p for p in problems), problems


def test_checker_accepts_sound_lines(parser):
    for line in ("medsr sr in.nii.gz out.nii.gz --scale 2,2,1 --ref r.nii.gz",
                 "medsr prepare ixi /data/IXI data/ixi --target T2 --ref PD",
                 "medsr train liif train.steps=200 --resume",
                 "medsr viz scales work/test.json --out work/scales.png"):
        assert check_medsr(shlex.split(line), parser) == [], line


def test_block_parsing_joins_continuations_and_reads_needs():
    text = "x\n```bash\nmedsr a --b \\\n    --c 1   # needs: IXI\n\n# comment\nmedsr d\n```\n```text\nmedsr e\n```\n"
    found = examples(text, "p.md")
    assert [(e.where, e.text, e.needs) for e in found] == [
        ("p.md:3", "medsr a --b --c 1", "IXI"), ("p.md:7", "medsr d", None)]


def test_links_and_includes_resolve():
    broken = []
    for page in doc_pages():
        text = page.read_text()
        prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
        for target in LINK.findall(prose):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
        broken += [f"{page.relative_to(ROOT)}: include {p}" for p in SNIPPET.findall(text) if not (ROOT / p).is_file()]
    assert not broken, "\n".join(broken)


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def runnable_script(root: Path = ROOT) -> str:
    """The examples that need only the embedded data, in page order, each once, as a bash script for a scratch
    folder (``make docs-check``)."""
    seen, lines = set(), ["set -ex", "mkdir -p work", "medsr prepare mni data/mni"]
    for ex in all_examples(root):
        if ex.needs is None and ex.text.startswith(("medsr ", "mkdir ")) and ex.text not in seen:
            seen.add(ex.text)
            lines.append(ex.text)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(runnable_script())
