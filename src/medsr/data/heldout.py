"""Held-out transfer-evaluation scans: real MR (and CT) images shipped inside installable packages, never trained on.

``heldout.json`` (package data) lists each case: the package that ships it, its path inside the package, its
SHA-256, licence and what it shows. ``benchmarks/transfer.py`` evaluates ``medsr sr`` on the MR cases,
``benchmarks/ct.py`` ``medsr denoise``'s models on the CT case (``modality: CT``). Held out means
held out: :func:`refuse_heldout` is called by every preparer before it reads a file (and so guards every slice
store, hence every training dataset built from one), and ``tests/test_heldout.py`` checks that no shipped config
or script names these files.

Its ``development`` list names real patients of the development data (a folder of TCIA volumes, not shipped) that
stay out of training in the same way, matched by size and SHA-256 wherever a copy lies.

Files are located without importing their packages (``importlib.util.find_spec``), so a missing package only
makes its cases unavailable.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import json
from pathlib import Path
from typing import Any, Iterable

from medsr.data.store import sha256_file
from medsr.errors import InputError

MANIFEST = "heldout.json"


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """The parsed ``heldout.json``."""
    return json.loads(importlib.resources.files("medsr.data").joinpath(MANIFEST).read_text())


def cases() -> list[dict[str, Any]]:
    return list(manifest()["cases"])


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None when it is not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate(case: dict[str, Any]) -> Path | None:
    """Path of a case's file when its package is installed and the file is there, else None."""
    root = package_dir(case["package"])
    if root is None:
        return None
    path = root / case["path"]
    return path if path.is_file() else None


def verified_path(case: dict[str, Any]) -> Path:
    """The case's file, checked against its recorded SHA-256 (:class:`InputError` when missing or changed)."""
    path = locate(case)
    if path is None:
        raise InputError(case["id"], f"needs {case['path']} of the package {case['distribution']} "
                                     f"(pip install {case['distribution']})")
    digest = sha256_file(path)
    if digest != case["sha256"]:
        raise InputError(path, f"SHA-256 {digest[:12]}... differs from the manifest's {case['sha256'][:12]}...")
    return path


@functools.lru_cache(maxsize=1)
def _fingerprints() -> tuple[frozenset[Path], frozenset[tuple[int, str]]]:
    paths, sizes = set(), set()
    for case in cases():
        path = locate(case)
        if path is not None:
            paths.add(path.resolve())
            sizes.add((path.stat().st_size, case["sha256"]))
    sizes.update((case["bytes"], case["sha256"]) for case in manifest()["development"])
    return frozenset(paths), frozenset(sizes)


def is_heldout(path: str | Path) -> bool:
    """Whether ``path`` is one of the held-out files: the same file, or a copy with the same SHA-256."""
    path = Path(path)
    if not path.is_file():
        return False
    paths, sizes = _fingerprints()
    if path.resolve() in paths:
        return True
    size = path.stat().st_size
    return any(size == s and sha256_file(path) == digest for s, digest in sizes)


def source_name(path: str | Path) -> str:
    """The id of the held-out case or development scan whose SHA-256 ``path`` has (``""`` when none)."""
    digest = sha256_file(path)
    return next((case["id"] for case in cases() + manifest()["development"] if case["sha256"] == digest), "")


def refuse_heldout(paths: Iterable[str | Path]) -> None:
    """Raise :class:`InputError` naming the first held-out file among ``paths`` (files that are not held out,
    or do not exist, pass: other checks report missing files)."""
    for path in paths:
        if path is not None and is_heldout(path):
            raise InputError(path, "is a held-out transfer-evaluation scan (medsr/data/heldout.json): "
                                   "it may be evaluated on, never trained on or prepared into a store")
