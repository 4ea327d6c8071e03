"""MkDocs hook: serve ``benchmarks/results/`` inside the site, so the docs' figures and result files can be linked
with paths that also resolve on GitHub (``../benchmarks/results/...`` from ``docs/*.md``).

``on_files`` adds every figure and JSON file below ``benchmarks/results/`` to the site as ``results/...``; ``on_page_markdown``
rewrites each page's links into ``benchmarks/results/`` to those site paths before MkDocs checks them, so a
link to a missing result still fails ``mkdocs build --strict``. It also tidies the Sphinx roles of the API pages.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

_LINK = re.compile(r"(\]\()((?:\.\./)+)benchmarks/results/")


def _results_root(config) -> Path:
    return Path(config["config_file_path"]).parent / "benchmarks"


def on_files(files, config):
    root = _results_root(config)
    for path in sorted((root / "results").rglob("*")):
        if path.is_file() and path.suffix != ".md":  # result tables are included into pages instead
            files.append(File(path.relative_to(root).as_posix(), str(root), config["site_dir"],
                              config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    """``](../benchmarks/results/x)`` from ``docs/page.md`` -> ``](results/x)``: one ``../`` fewer, since the
    results sit inside the site."""
    return _LINK.sub(lambda m: m.group(1) + m.group(2)[3:] + "results/", markdown)


_ROLE = re.compile(r":(?:func|class|data|meth|mod|attr|obj):(?=<code)")


def on_page_content(html, page, config, files):
    """The API pages' docstrings use Sphinx roles (``:func:`f```), which mkdocstrings leaves as text before the
    code span; drop the role, keep the code."""
    return _ROLE.sub("", html)
