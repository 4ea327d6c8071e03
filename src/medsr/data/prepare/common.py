"""Machinery shared by the real-data preparers: options, per-subject processing, the parallel write loop, splits.

A preparer lists its subjects (a target volume, a reference volume, optionally a label map) in a ``dataset``
function registered with :func:`preparer`, which hands them to :func:`prepare_store`. Each subject is processed
in a worker process by a loader (here :func:`load_nifti_subject`; fastMRI has its own), and the main process
writes the results through
:class:`medsr.data.store.StoreWriter`:

1. the reference (and the labels) are resampled onto the target's voxel grid through the two affines when the grids
   differ (:mod:`medsr.resample`; trilinear for images, nearest for labels); a reference that covers less than
   :data:`MIN_OVERLAP` of the target is an error naming both files;
2. slices are taken along the slice axis (``--axis``; default: the axis with the coarsest spacing, or, when the
   spacing is isotropic, the axis closest to the world's inferior-superior direction, i.e. axial slices); the store
   holds ``[Z, H, W]`` with ``H, W`` the two other voxel axes in order;
3. edge slices whose mean target signal is below ``min_signal`` times the mean over all slices are dropped (only
   from both ends, so the kept slices stay contiguous);
4. the in-plane size is zero-padded, centred, up to the next multiple of ``multiple``;
5. the subject's ``affine`` maps store indices ``(z, h, w)`` to world millimetres.

A re-run skips subjects already in the store (also after an interrupted run, whose finished subjects are complete
in ``slices.h5``); re-running into a folder prepared with other :data:`RESUME_PARAMETERS` is an error. The split
is by subject: the counts follow the fractions (every split with a positive fraction gets at least one subject
when there are enough), the subjects are drawn by a permutation seeded with ``seed``, and subjects listed in an
existing ``split.json`` keep their split (new subjects fill the remaining quotas).
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import multiprocessing
import os
import re
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from nibabel.affines import voxel_sizes

from medsr.data.heldout import refuse_heldout
from medsr.data.store import MANIFEST_FILE, SPLIT_FILE, SPLITS, StoreWriter, sha256_file
from medsr.errors import InputError, as_integer, as_number, require
from medsr.io.nifti import read_volume
from medsr.registry import DATASETS
from medsr.resample import MIN_OVERLAP, overlap_fraction, resample_to_grid

GRID_TOLERANCE_MM = 1e-3
ANISOTROPY = 1.01
DEFAULT_MIN_SIGNAL = 0.1
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
MAX_MULTIPLE = 1024
RESUME_PARAMETERS = ("format", "target", "reference", "min_signal", "multiple", "axis", "split", "seed")


@dataclass(frozen=True)
class Options:
    """Preparation settings; ``workers`` and ``progress`` do not change the outputs."""

    min_signal: float = DEFAULT_MIN_SIGNAL
    multiple: int = 1
    split: tuple[float, float, float] = DEFAULT_SPLIT
    seed: int = 0
    axis: int | None = None
    workers: int = 1
    progress: bool = True


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def parse_options(
    workers: object = None,
    min_signal: object = None,
    multiple: object = None,
    split: object = None,
    seed: object = None,
    axis: object = None,
    progress: bool = True,
) -> Options:
    """Check command-line values (strings or numbers) and build :class:`Options`; errors name the flag."""
    n_workers = as_integer(workers, "--workers") if workers is not None else default_workers()
    require(n_workers >= 1, "--workers", f"must be at least 1, got {workers}")
    signal = as_number(min_signal, "--min-signal") if min_signal is not None else DEFAULT_MIN_SIGNAL
    require(signal >= 0, "--min-signal", f"must be >= 0, got {min_signal}")
    mult = as_integer(multiple, "--multiple") if multiple is not None else 1
    require(1 <= mult <= MAX_MULTIPLE, "--multiple", f"must be between 1 and {MAX_MULTIPLE}, got {multiple}")
    fractions = _parse_split(split) if split is not None else DEFAULT_SPLIT
    seed_value = as_integer(seed, "--seed") if seed is not None else 0
    require(seed_value >= 0, "--seed", f"must be a non-negative integer, got {seed}")
    axis_value = as_integer(axis, "--axis") if axis is not None else None
    require(axis_value is None or -3 <= axis_value <= 2, "--axis", f"must be in [-3, 2], got {axis}")
    return Options(signal, mult, fractions, seed_value, None if axis_value is None else axis_value % 3, n_workers,
                   progress)


def _parse_split(value: object) -> tuple[float, float, float]:
    parts = str(value).split(",")
    require(len(parts) == 3, "--split", f"must be three fractions train,val,test, got {value!r}")
    fractions = tuple(as_number(p, "--split") for p in parts)
    require(min(fractions) >= 0 and fractions[0] > 0, "--split", f"fractions must be >= 0 with train > 0: {value}")
    require(abs(sum(fractions) - 1) < 1e-6, "--split", f"fractions must sum to 1, got {value}")
    return fractions


@dataclass(frozen=True)
class Subject:
    """One subject's files; ``labels`` is optional."""

    sid: str
    target: Path
    reference: Path
    labels: Path | None = None


@dataclass(frozen=True)
class Context:
    """What a worker needs besides the subject: contrast names, options, label mapping, the source root."""

    target: str
    reference: str
    options: Options
    root: Path
    label_map: Mapping[int, int] | None = None


@dataclass
class Prepared:
    """A processed subject, ready for :meth:`StoreWriter.add_subject`."""

    sid: str
    volumes: dict[str, np.ndarray]
    labels: np.ndarray | None
    affine: np.ndarray
    record: dict[str, Any]


@dataclass
class Dataset:
    """Everything :func:`prepare_store` needs from a preparer."""

    name: str
    source: Path
    target: str
    reference: str
    subjects: list[Subject]
    loader: Callable[[Subject, Context], Prepared]
    label_names: Mapping[int, str] | None = None
    label_map: Mapping[int, int] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def check_source_dir(path: str | Path) -> Path:
    path = Path(path)
    require(path.exists(), path, "no such directory")
    require(path.is_dir(), path, "not a directory")
    return path


def choose(value: str, allowed: Sequence[str], flag: str) -> str:
    """The entry of ``allowed`` that ``value`` names, case-insensitively; an error naming ``flag`` otherwise."""
    match = {name.lower(): name for name in allowed}.get(str(value).lower())
    require(match is not None, flag, f"must be one of {', '.join(allowed)}, got {value!r}")
    return match


def group_by_subject(root: Path, glob: str, pattern: re.Pattern[str], own_folder: bool = False
                     ) -> dict[str, dict[str, Path]]:
    """``{subject: {contrast: path}}`` of the files below ``root`` matching ``glob`` whose names match ``pattern``
    (groups: subject, contrast); with ``own_folder`` only files in a folder named after their subject. A second
    file for one subject's contrast is an error naming both."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.rglob(glob)):
        match = pattern.match(path.name)
        if not match or not path.is_file() or (own_folder and path.parent.name != match.group(1)):
            continue
        sid, contrast = match.group(1), match.group(2)
        other = found.setdefault(sid, {}).get(contrast)
        require(other is None, path, f"duplicate {contrast} image of {sid} (also {other})")
        found[sid][contrast] = path
    return found


def found_pairs(
    found: Mapping[str, Mapping[str, Path]], target: str, reference: str, root: Path, what: str,
    label: str | None = None,
) -> tuple[list[Subject], dict[str, str]]:
    """Subjects of ``found`` (``{sid: {contrast: path}}``) with both contrasts, and ``{sid: reason}`` skipped."""
    require(target != reference, "--ref", "must differ from --target")
    require(bool(found), root, f"no {what} found")
    subjects, skipped = [], {}
    for sid, files in sorted(found.items()):
        missing = [c for c in (target, reference) if c not in files]
        if missing:
            skipped[sid] = f"no {' or '.join(missing)} image"
        else:
            subjects.append(Subject(sid, files[target], files[reference], files.get(label) if label else None))
    require(bool(subjects), root, f"no subject has both a {target} and a {reference} image")
    return subjects, skipped


def check_sid(sid: str, source: str | Path) -> str:
    require(bool(sid) and "/" not in sid and sid not in (".", ".."), source, f"invalid subject id {sid!r}")
    return sid


def resolve(path: str, root: Path, source: str | Path) -> Path:
    """``path`` relative to ``root`` (unless absolute); it must be an existing file."""
    require(bool(path and path.strip()), source, "empty file name")
    full = Path(path.strip())
    full = full if full.is_absolute() else root / full
    require(full.is_file(), full, "no such file")
    return full


def read_csv(path: str | Path, required: Sequence[str], optional: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file with a header naming at least ``required``; errors name the file."""
    path = Path(path)
    require(path.is_file(), path, "no such file")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"not a readable CSV file ({err})") from None
    wanted = ",".join(list(required) + [f"[{c}]" for c in optional])
    missing = [c for c in required if c not in columns]
    require(not missing, path, f"needs the columns {wanted}; found {','.join(columns) or 'none'}")
    require(bool(rows), path, "has no rows")
    return rows


def unique_subjects(subjects: Iterable[Subject], source: str | Path) -> list[Subject]:
    result: dict[str, Subject] = {}
    for s in subjects:
        require(s.sid not in result, source, f"subject {s.sid!r} appears twice")
        result[s.sid] = s
    return [result[sid] for sid in sorted(result)]


def file_record(path: Path, root: Path) -> dict[str, Any]:
    """Where a source file is (relative to ``root`` when inside it), its size and its SHA-256."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        rel = str(path)
    return {"path": str(path) if rel.startswith("..") else rel, "bytes": path.stat().st_size,
            "sha256": sha256_file(path)}


def slice_axis(affine: np.ndarray, requested: int | None) -> int:
    """``requested``, else the coarsest axis, else (isotropic) the axis closest to the world's z direction."""
    if requested is not None:
        return requested
    zooms = voxel_sizes(np.asarray(affine, dtype=np.float64))[:3]
    coarse = [a for a in range(3) if zooms[a] * ANISOTROPY >= zooms.max()]
    z_part = np.abs(np.asarray(affine, dtype=np.float64)[2, :3]) / zooms
    return max(coarse, key=lambda a: z_part[a])


def edge_range(target: np.ndarray, min_signal: float, source: str | Path) -> tuple[int, int]:
    """First and one-past-last slice of ``[Z, H, W]`` whose mean is at least ``min_signal`` x the mean slice."""
    means = target.reshape(target.shape[0], -1).mean(axis=1)
    keep = np.flatnonzero(means >= min_signal * means.mean())
    require(means.mean() > 0 and keep.size > 0, source, "has no slice with signal")
    return int(keep[0]), int(keep[-1]) + 1


def fit_start(size: int, new_size: int) -> int:
    """Offset of a centred window of ``new_size`` in an axis of ``size`` (negative when padding)."""
    return (size - new_size) // 2 if new_size <= size else -((new_size - size) // 2)


def centre_fit(volume: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Crop and/or zero-pad the last two axes of ``volume`` to ``size``, centred (see :func:`fit_start`)."""
    out = np.zeros(volume.shape[:-2] + tuple(size), dtype=volume.dtype)
    src, dst = [], []
    for n, m in zip(volume.shape[-2:], size):
        start = fit_start(n, m)
        lo = max(start, 0)
        hi = min(start + m, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[(..., *dst)] = volume[(..., *src)]
    return out


def padded_size(shape: Sequence[int], multiple: int) -> tuple[int, int]:
    return tuple(int(math.ceil(n / multiple) * multiple) for n in shape[-2:])


def index_matrix(axis: int, z0: int, starts: Sequence[int]) -> np.ndarray:
    """4x4 map from store index ``(z, h, w)`` to voxel index, for slices along ``axis`` starting at ``z0`` and
    in-plane windows starting at ``starts``."""
    in_plane = [a for a in range(3) if a != axis]
    matrix = np.zeros((4, 4))
    matrix[3, 3] = 1
    for column, (a, offset) in enumerate(zip([axis, *in_plane], [z0, *starts])):
        matrix[a, column] = 1
        matrix[a, 3] = offset
    return matrix


def finish_subject(
    sid: str,
    volumes: dict[str, np.ndarray],
    labels: np.ndarray | None,
    affine: np.ndarray,
    target: str,
    options: Options,
    source: str | Path,
    record: dict[str, Any],
) -> Prepared:
    """Drop edge slices and pad in-plane to the multiple (steps 3-5) for ``[Z, H, W]`` volumes whose store index
    maps to world coordinates through ``affine``."""
    z0, z1 = edge_range(volumes[target], options.min_signal, source)
    size = padded_size(volumes[target].shape, options.multiple)
    starts = [fit_start(n, m) for n, m in zip(volumes[target].shape[-2:], size)]
    shift = index_matrix(0, z0, starts)
    out = {name: centre_fit(v[z0:z1], size) for name, v in volumes.items()}
    record = {**record, "slices": [z0, z1], "in_plane_start": starts}
    fitted_labels = centre_fit(labels[z0:z1], size) if labels is not None else None
    return Prepared(sid, out, fitted_labels, np.asarray(affine, dtype=np.float64) @ shift, record)


def _same_grid(shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int], affine_b: np.ndarray) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=GRID_TOLERANCE_MM, rtol=0)


def onto_target_grid(
    data: np.ndarray, affine: np.ndarray, path: Path, target: tuple[tuple[int, ...], np.ndarray, Path], order: int
) -> tuple[np.ndarray, bool, float]:
    """``data`` on the target's grid ``(shape, affine, path)``: (resampled data, whether it was resampled, overlap)."""
    shape, target_affine, target_path = target
    if _same_grid(data.shape, affine, shape, target_affine):
        return data, False, 1.0
    overlap = overlap_fraction(data.shape, affine, shape, target_affine)
    require(overlap >= MIN_OVERLAP, path,
            f"covers only {overlap:.0%} of the target {target_path} (at least {MIN_OVERLAP:.0%} needed): "
            "target and reference cannot be reconciled")
    return resample_to_grid(data, affine, shape, target_affine, order=order), True, round(overlap, 6)


def map_labels(labels: np.ndarray, label_map: Mapping[int, int] | None, path: Path) -> np.ndarray:
    """Integer label volume as uint8, through ``label_map`` (source value -> stored value) when given."""
    values = np.unique(labels)
    require(bool(np.all(values == np.round(values))), path, "label map has non-integer values")
    values = values.astype(np.int64)
    if label_map is None:
        require(values.min() >= 0 and values.max() <= 255, path, "label values must be in 0..255")
        return labels.astype(np.uint8)
    unknown = sorted(set(values.tolist()) - set(label_map))
    require(not unknown, path, f"unexpected label values {unknown} (expected {sorted(label_map)})")
    lut = np.zeros(max(label_map) + 1, dtype=np.uint8)
    for src, dst in label_map.items():
        lut[src] = dst
    return lut[labels.astype(np.int64)]


def load_nifti_subject(subject: Subject, context: Context) -> Prepared:
    """Worker: read a NIfTI target/reference(/labels) subject and process it (steps 1-5 of the module doc)."""
    target, img = read_volume(subject.target)
    grid = (target.shape, img.affine, subject.target)
    reference, ref_img = read_volume(subject.reference)
    reference, ref_resampled, overlap = onto_target_grid(reference, ref_img.affine, subject.reference, grid, 1)
    record: dict[str, Any] = {
        "sources": {context.target: file_record(subject.target, context.root),
                    context.reference: file_record(subject.reference, context.root)},
        "source_shape": list(target.shape),
        "reference_resampled": ref_resampled,
        "reference_overlap": overlap,
    }
    labels = None
    if subject.labels is not None:
        raw, label_img = read_volume(subject.labels)
        raw, labels_resampled, _ = onto_target_grid(raw, label_img.affine, subject.labels, grid, 0)
        labels = map_labels(raw, context.label_map, subject.labels)
        record["sources"]["label"] = file_record(subject.labels, context.root)
        record["labels_resampled"] = labels_resampled
    axis = slice_axis(img.affine, context.options.axis)
    record["slice_axis"] = axis
    volumes = {context.target: np.moveaxis(target, axis, 0), context.reference: np.moveaxis(reference, axis, 0)}
    labels = np.moveaxis(labels, axis, 0) if labels is not None else None
    affine = np.asarray(img.affine, dtype=np.float64) @ index_matrix(axis, 0, (0, 0))
    return finish_subject(subject.sid, volumes, labels, affine, context.target, context.options, subject.target,
                          record)


def assign_split(
    subjects: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    existing: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Split subject ids by the fractions; ids already in ``existing`` keep their split (see the module doc)."""
    present = set(subjects)
    known = {sid: name for name in SPLITS for sid in (existing or {}).get(name, []) if sid in present}
    split = {name: [sid for sid, v in known.items() if v == name] for name in SPLITS}
    fresh = sorted(present - set(known))
    order = [fresh[i] for i in np.random.default_rng(seed).permutation(len(fresh))]
    for name, quota in zip(SPLITS, _quota(len(present), fractions)):
        take = max(0, quota - len(split[name]))
        split[name] += order[:take]
        order = order[take:]
    return {name: sorted(ids) for name, ids in split.items()}


def _quota(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder counts for ``n`` items; every positive fraction gets one item when there are enough."""
    raw = [n * f for f in fractions]
    counts = [int(math.floor(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] = 1
    return counts


def _results(jobs: list[Callable[[], Prepared]], workers: int) -> Iterator[Prepared]:
    """Run ``jobs`` in a pool of spawned processes (at most ``2 * workers`` results pending), or in-process."""
    if workers == 1 or len(jobs) <= 1:
        yield from (job() for job in jobs)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        queue = list(reversed(jobs))
        pending: set[Future] = set()
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                pending.add(pool.submit(queue.pop()))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_previous(out_dir: Path, parameters: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """The existing split of a store prepared before with the same :data:`RESUME_PARAMETERS` (an error otherwise)."""
    manifest = out_dir / MANIFEST_FILE
    if not manifest.is_file():
        return None
    try:
        old = json.loads(manifest.read_text()).get("parameters", {})
        split = json.loads((out_dir / SPLIT_FILE).read_text()) if (out_dir / SPLIT_FILE).is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(manifest, f"unreadable manifest or split of an earlier run ({err})") from None
    changed = [k for k in RESUME_PARAMETERS if old.get(k) != parameters.get(k)]
    require(not changed, out_dir, "was prepared with other settings (" + ", ".join(
        f"{k}: {old.get(k)!r} then, {parameters.get(k)!r} now" for k in changed) + "); use another folder")
    return split


def prepare_store(dataset: Dataset, out_dir: str | Path, options: Options) -> dict[str, list[str]]:
    """Process every subject not yet in ``out_dir`` and write the store, manifest and split; returns the split."""
    from tqdm import tqdm

    out = Path(out_dir)
    require(not out.exists() or out.is_dir(), out, "exists and is not a directory")
    require(bool(dataset.subjects), dataset.source, "no subjects found")
    refuse_heldout(f for s in dataset.subjects for f in (s.target, s.reference, s.labels))
    parameters = {
        "format": dataset.name, "source": str(dataset.source.resolve()), "target": dataset.target,
        "reference": dataset.reference, "min_signal": options.min_signal, "multiple": options.multiple,
        "axis": "auto" if options.axis is None else options.axis, "split": list(options.split), "seed": options.seed,
        "min_overlap": MIN_OVERLAP, "resampling": "reference trilinear, labels nearest, through the affines",
        **dataset.parameters,
    }
    previous = _check_previous(out, parameters)
    context = Context(dataset.target, dataset.reference, options, dataset.source, dataset.label_map)
    created = not out.exists()
    writer = StoreWriter(out, [dataset.target, dataset.reference], dataset.label_names)
    try:
        todo = [s for s in dataset.subjects if not writer.done(s.sid)]
        jobs = [partial(dataset.loader, s, context) for s in todo]
        bar = tqdm(total=len(jobs), desc=f"prepare {dataset.name}", unit="subject",
                   disable=None if options.progress else True)
        with bar:
            for item in _results(jobs, options.workers):
                writer.add_subject(item.sid, item.volumes, item.labels, item.affine, item.record)
                bar.update()
        subjects = sorted(writer.records)
        split = assign_split(subjects, options.split, options.seed, previous)
    except BaseException:
        writer.close()
        if created and not writer.records:
            shutil.rmtree(out)
        raise
    writer.finish(dataset.name, split, parameters)
    return split


@dataclass(frozen=True)
class Preparer:
    """One ``medsr prepare NAME`` entry of ``medsr.registry.DATASETS``: what it prepares (``help``), the
    command-line arguments it declares (``add_arguments(parser)``), which of them are input paths (``inputs``: the
    output must be none of them) and ``run(args) -> summary line``, which builds the store."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], str]
    inputs: tuple[str, ...] = ("src",)


def split_summary(out_dir: str | Path, split: Mapping[str, list[str]], unit: str = "subjects") -> str:
    """``OUT: N subjects (train a, val b, test c)`` (a subject in two splits counted once)."""
    counts = ", ".join(f"{name} {len(split.get(name, []))}" for name in SPLITS)
    return f"{out_dir}: {len(set().union(*split.values()))} {unit} ({counts})"


def store_options(parser: argparse.ArgumentParser, axis: bool = True) -> None:
    """The options of every slice-store preparer (:func:`parse_options` checks them)."""
    parser.add_argument("--workers", metavar="N", help="worker processes (default: min(4, CPUs))")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--min-signal", metavar="F", help="drop edge slices whose mean target signal is below F x "
                        "the volume's mean slice signal (default: 0.1; 0 keeps all)")
    parser.add_argument("--multiple", metavar="N", help="zero-pad in-plane, centred, to a multiple of N (default: 1)")
    parser.add_argument("--split", metavar="TR,VA,TE",
                        help="train,val,test fractions by subject (default: 0.8,0.1,0.1)")
    parser.add_argument("--seed", metavar="N", help="seed of the split (default: 0); subjects of an existing "
                        "split.json keep their split")
    if axis:
        parser.add_argument("--axis", metavar="AXIS", help="slice axis (default: the coarsest axis, else axial)")


def contrast_options(parser: argparse.ArgumentParser, target: str, reference: str, choices: str = "") -> None:
    """``--target`` and ``--ref`` (the ``reference`` argument of a dataset function) with their defaults."""
    parser.add_argument("--target", default=target, help=f"target contrast{choices} (default: {target})")
    parser.add_argument("--ref", dest="reference", metavar="REF", default=reference,
                        help=f"reference contrast{choices} (default: {reference})")


def preparer(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None],
             inputs: tuple[str, ...] = ("src",), axis: bool = True
             ) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a ``dataset(**sources) -> Dataset`` function in ``medsr.registry.DATASETS`` as the
    :class:`Preparer` ``name``: its ``arguments`` (named after the function's parameters) first, then ``out_dir``
    and :func:`store_options` (``--axis`` when ``axis``); it runs :func:`prepare_store`."""

    def add(dataset: Callable[..., Dataset]) -> Callable[..., Dataset]:
        def add_arguments(parser: argparse.ArgumentParser) -> None:
            arguments(parser)
            parser.add_argument("out_dir", help="output folder")
            store_options(parser, axis)

        def run(args: argparse.Namespace) -> str:
            options = parse_options(args.workers, args.min_signal, args.multiple, args.split, args.seed,
                                    getattr(args, "axis", None), not args.no_progress)
            sources = {key: getattr(args, key) for key in inspect.signature(dataset).parameters}
            return split_summary(args.out_dir, prepare_store(dataset(**sources), args.out_dir, options))

        DATASETS.register(name)(Preparer(help, add_arguments, run, inputs))
        return dataset

    return add
