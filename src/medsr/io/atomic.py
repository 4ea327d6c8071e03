"""Write to a temporary name beside the target, then rename: nothing partial is ever left behind.

Every writer goes through :func:`atomic_path` / :func:`atomic_dir`, which apply the one output rule
(:func:`check_output`: never one of the inputs, the parent must be a folder) and turn operating-system errors
(read-only file system, no space, permission) into an :class:`InputError` naming the output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from medsr.errors import InputError


def _suffixes(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".tar.gz"):
        if name.endswith(ext):
            return ext
    return path.suffix


def _default_mode() -> int:
    """Permissions a plain ``open(..., "w")`` would give (mkstemp makes files private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(target: str | Path, inputs: Iterable[str | Path | None] = (), *, folder: bool = False) -> Path:
    """The one output rule: ``target`` is none of ``inputs``, it is not an existing folder (unless ``folder``),
    and its nearest existing parent is a writable folder. Commands call it before the work starts (with their
    inputs); the writers call it again just before writing. Returns ``target`` as a Path."""
    target = Path(target)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        if _same_file(target, source):
            raise InputError(target, f"output is the input {source}; choose another output path")
    if not folder and target.is_dir():
        raise InputError(target, "is a directory, expected an output file path")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(target, f"cannot write here: {parent} is a file, not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(target, f"cannot write here: {parent} is not writable")
    return target


@contextlib.contextmanager
def os_errors(target: Path) -> Iterator[None]:
    """Operating-system errors while writing ``target`` as one :class:`InputError` naming it."""
    try:
        yield
    except OSError as err:
        raise InputError(target, f"cannot write ({err.strerror or type(err).__name__})") from None


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path (same extension, same folder); rename it onto ``target`` on success."""
    target = check_output(target)
    with os_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{_suffixes(target)}", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.chmod(tmp_path, _default_mode())
            os.replace(tmp_path, target)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; it replaces ``target`` (which must not exist) on success."""
    target = check_output(target, folder=True)
    with os_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            yield tmp
            os.chmod(tmp, _default_mode() | 0o111)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def write_json(path: str | Path, content: Any, **options: Any) -> None:
    """Write ``content`` as JSON indented by 2 with a final newline, atomically; ``options`` go to ``json.dumps``
    (e.g. ``sort_keys``, ``allow_nan``). The one JSON writer of medsr."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2, **options) + "\n")
