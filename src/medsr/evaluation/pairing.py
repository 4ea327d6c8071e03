"""Match prediction and reference files by relative path without extension, and load them in one layout.

Layout of a loaded image: ``[C, H, W]`` for pictures (png, jpg, tif: gray, or RGB with any alpha channel
dropped) and 2-D arrays, ``[1, D, H, W]`` for 3-D arrays and volumes (nii, nii.gz, npy, mat, h5), whose slice axis
is the last array axis (as in ``medsr degrade``), moved to the front.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from medsr.errors import InputError, require
from medsr.io.images import IMAGE_SUFFIXES, read_image, stem
from medsr.io.nifti import on_grid_of

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# ITU-R BT.601 luma weights, used by --gray.
LUMA = (0.299, 0.587, 0.114)
_LISTED = 20


def _has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(suffixes))


def collect(root: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Files under ``root`` (recursively, hidden ones skipped) keyed by relative path without extension; a file
    ``root`` is keyed by its own stem."""
    root = Path(root)
    if root.is_file():
        require(_has_suffix(root, suffixes), root, f"not a supported file (expected {', '.join(suffixes)})")
        return {stem(root): root}
    require(root.is_dir(), root, "no such file or directory")
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if not _has_suffix(path, suffixes):
            continue
        key = (relative.parent / stem(path)).as_posix()
        require(key not in files, path, f"has the same name without extension as {files.get(key)}")
        files[key] = path
    require(bool(files), root, f"no files found (expected {', '.join(suffixes)})")
    return files


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


@dataclass
class Matching:
    """Matched ``(key, first, second)`` triples and the keys found on one side only."""

    pairs: list[tuple[str, Path, Path]]
    only_first: list[str] = field(default_factory=list)
    only_second: list[str] = field(default_factory=list)

    def unmatched_lines(self, first: str, second: str) -> list[str]:
        """Human-readable lines naming the unmatched files."""
        lines = []
        if self.only_first:
            lines.append(f"{len(self.only_first)} in {first} without a match: {_listing(self.only_first)}")
        if self.only_second:
            lines.append(f"{len(self.only_second)} in {second} without a match: {_listing(self.only_second)}")
        return lines


def match_files(first: Path, second: Path, allow_missing: bool,
                suffixes: tuple[Sequence[str], Sequence[str]] = (IMAGE_SUFFIXES, IMAGE_SUFFIXES)) -> Matching:
    """Pair the files of ``first`` and ``second`` (two files, or two directories matched by name).

    Unmatched names are an :class:`InputError` unless ``allow_missing``; no pair at all always is.
    """
    first, second = Path(first), Path(second)
    if first.is_file() and second.is_file():
        for path, allowed in zip((first, second), suffixes):
            collect(path, allowed)
        return Matching([(stem(second), first, second)])
    require(first.is_file() == second.is_file() or not (first.exists() and second.exists()), first,
            f"compare two files or two directories, not a file with a directory ({second})")
    a, b = collect(first, suffixes[0]), collect(second, suffixes[1])
    matching = Matching([(k, a[k], b[k]) for k in sorted(a.keys() & b.keys())], sorted(a.keys() - b.keys()),
                        sorted(b.keys() - a.keys()))
    lines = matching.unmatched_lines(str(first), str(second))
    require(bool(matching.pairs), first, f"no file name in common with {second}")
    require(allow_missing or not lines, first,
            "; ".join(lines) + f" (pass --allow-missing to use the {len(matching.pairs)} matched pairs)")
    return matching


@dataclass
class Loaded:
    """One image or volume in layout ``[C, H, W]`` / ``[1, D, H, W]`` and its stored dtype."""

    data: np.ndarray
    dtype: np.dtype
    volume: bool
    note: str = ""

    def file_shape(self) -> str:
        """The shape in the file's own layout (``HxW``, ``HxWxC`` or ``HxWxD``), for messages."""
        c, *rest = self.data.shape
        shape = (*rest[1:], rest[0]) if self.volume else ((*rest, c) if c > 1 else tuple(rest))
        return "x".join(map(str, shape))


def _is_picture(path: Path) -> bool:
    return _has_suffix(path, PICTURE_SUFFIXES)


def load(path: Path, gray: bool = False, reference: Path | None = None) -> Loaded:
    """Read ``path`` into the common layout; ``gray`` turns RGB into BT.601 luma. With a NIfTI ``reference``, a
    NIfTI ``path`` is put on its voxel grid first (:func:`medsr.io.nifti.on_grid_of`)."""
    data = on_grid_of(path, read_image(path), reference)
    require(data.dtype.kind in "uifb", path, f"cannot evaluate data of type {data.dtype}")
    dtype = data.dtype  # a boolean (1-bit) image keeps its dtype: data range 1
    data = data.astype(np.uint8 if dtype.kind == "b" else dtype, copy=False)
    if data.ndim == 2:
        return Loaded(data[None], dtype, False)
    require(data.ndim == 3, path, f"expected a 2-D image or a 3-D volume, got shape {data.shape}")
    if not _is_picture(path):
        return Loaded(np.moveaxis(data, -1, 0)[None], dtype, True)
    require(data.shape[-1] <= 4, path, f"expected a 2-D image or one with up to 4 channels, got shape {data.shape}")
    channels = data.shape[-1]
    note = "alpha dropped" if channels in (2, 4) else ""
    data = np.moveaxis(data[..., : 3 if channels >= 3 else 1], -1, 0)
    if gray and data.shape[0] == 3:
        luma = np.tensordot(np.asarray(LUMA), data.astype(np.float64), axes=1)[None]
        return Loaded(luma, dtype, False, note)
    return Loaded(data, dtype, False, note)


def load_pair(pred_path: Path, gt_path: Path, gray: bool = False) -> tuple[Loaded, Loaded]:
    """Load a prediction and its reference; differing shapes are an error naming both files."""
    pred, gt = load(pred_path, gray, reference=gt_path), load(gt_path, gray)
    require(pred.data.shape == gt.data.shape, pred_path,
            f"shape {pred.file_shape()} differs from the reference {gt_path} ({gt.file_shape()})")
    return pred, gt


def load_mask(path: Path, spatial: tuple[int, ...]) -> np.ndarray:
    """A foreground mask (non-zero = foreground) in the spatial layout ``[H, W]`` or ``[D, H, W]``."""
    item = load(path)
    require(item.data.shape[0] == 1, path, "a mask must have one channel")
    mask = item.data[0] != 0
    require(mask.shape == spatial, path, f"mask shape {'x'.join(map(str, mask.shape))} differs from the image's "
                                         f"{'x'.join(map(str, spatial))}")
    return mask


class MaskSource:
    """Masks from ``--mask``: one file for every pair, or a directory matched by name like the references."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self.files = collect(self.path) if self.path is not None and self.path.is_dir() else None
        if self.path is not None and self.files is None:
            require(self.path.is_file(), self.path, "no such mask file or directory")
        self._shared: dict[tuple[int, ...], np.ndarray] = {}  # the one mask file, read once per image shape

    def get(self, key: str, spatial: tuple[int, ...]) -> np.ndarray | None:
        if self.path is None:
            return None
        if self.files is None:
            if spatial not in self._shared:
                self._shared[spatial] = load_mask(self.path, spatial)
            return self._shared[spatial]
        if key not in self.files:
            raise InputError(self.path, f"no mask for '{key}'")
        return load_mask(self.files[key], spatial)
