"""The slice store: one chunked HDF5 file of normalised volumes + ``manifest.json`` + ``split.json``.

Layout of ``OUT/slices.h5``: ``/subjects/<sid>/<contrast>`` float32 ``[Z, H, W]`` chunked one slice per chunk,
divided by the volume's robust scale (attribute ``norm``); optional ``/subjects/<sid>/label`` uint8 ``[Z, H, W]``;
attribute ``affine`` (4x4) on each subject group. A subject is complete when its group has ``done = True``,
which is what makes preparers resumable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

import medsr
from medsr.errors import InputError
from medsr.io.atomic import write_json

STORE_FILE = "slices.h5"
MANIFEST_FILE = "manifest.json"
SPLIT_FILE = "split.json"
SPLITS = ("train", "val", "test")


NORM_PERCENTILE = 99.5


def robust_scale(volume: np.ndarray, percentile: float = NORM_PERCENTILE) -> float:
    """Intensity scale of a volume: the given percentile of its non-zero voxels (1.0 for an empty volume)."""
    values = volume[volume > 0]
    if values.size == 0:
        return 1.0
    scale = float(np.percentile(values, percentile))
    return scale if scale > 0 else 1.0


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class StoreWriter:
    """Appends subjects to a store; reopening an existing store keeps finished subjects and their manifest
    records (each subject's record is also kept as a JSON attribute), so an interrupted run resumes."""

    def __init__(self, out_dir: str | Path, contrasts: Iterable[str], label_names: Mapping[int, str] | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.contrasts = list(contrasts)
        self.label_names = dict(label_names) if label_names else None
        self._file = h5py.File(self.out_dir / STORE_FILE, "a")
        self._subjects = self._file.require_group("subjects")
        self.records: dict[str, dict[str, Any]] = {
            sid: json.loads(group.attrs["record"]) for sid, group in self._subjects.items()
            if group.attrs.get("done", False) and "record" in group.attrs
        }

    def done(self, sid: str) -> bool:
        return sid in self._subjects and bool(self._subjects[sid].attrs.get("done", False))

    def add_subject(
        self,
        sid: str,
        volumes: Mapping[str, np.ndarray],
        labels: np.ndarray | None = None,
        affine: np.ndarray | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> None:
        """Store raw (unnormalised) ``[Z, H, W]`` volumes of one subject; the robust scale is computed here."""
        missing = set(self.contrasts) - set(volumes)
        if missing:
            raise ValueError(f"subject {sid} lacks contrasts {sorted(missing)}")
        if sid in self._subjects:
            del self._subjects[sid]
        group = self._subjects.create_group(sid)
        shape = next(iter(volumes.values())).shape
        norms = {}
        for name in self.contrasts:
            vol = np.asarray(volumes[name], dtype=np.float32)
            if vol.shape != shape:
                raise ValueError(f"subject {sid}: {name} has shape {vol.shape}, expected {shape}")
            norms[name] = robust_scale(vol)
            ds = group.create_dataset(name, data=vol / norms[name], chunks=(1,) + shape[1:], compression="lzf")
            ds.attrs["norm"] = norms[name]
        if labels is not None:
            group.create_dataset("label", data=np.asarray(labels, dtype=np.uint8), chunks=(1,) + shape[1:],
                                 compression="lzf")
        group.attrs["affine"] = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        self.records[sid] = {"shape": list(shape), "norm": norms, "labels": labels is not None, **(record or {})}
        group.attrs["record"] = json.dumps(self.records[sid], sort_keys=True)
        group.attrs["done"] = True
        self._file.flush()

    def close(self) -> None:
        """Close the HDF5 file without writing the manifest (finished subjects stay for a later run)."""
        self._file.close()

    def finish(self, name: str, split: Mapping[str, list[str]], parameters: Mapping[str, Any]) -> None:
        """Write ``manifest.json`` and ``split.json`` (subjects of earlier runs are kept from the old manifest)."""
        self._file.close()
        manifest_path = self.out_dir / MANIFEST_FILE
        old = json.loads(manifest_path.read_text()).get("subjects", {}) if manifest_path.exists() else {}
        manifest = {
            "name": name,
            "medsr_version": medsr.__version__,
            "contrasts": self.contrasts,
            "labels": {str(k): v for k, v in self.label_names.items()} if self.label_names else None,
            "parameters": dict(parameters),
            "subjects": {**old, **self.records},
        }
        write_json(manifest_path, manifest, sort_keys=True)
        write_json(self.out_dir / SPLIT_FILE, {s: list(split.get(s, [])) for s in SPLITS}, sort_keys=True)


class StoreReader:
    """Read access to a prepared store folder (``data_file`` + manifest.json + split.json): the manifest and split
    read once, the HDF5 file opened lazily in each process (safe with DataLoader workers)."""

    data_file = STORE_FILE
    prepare_hint = "not a prepared medsr dataset (run 'medsr prepare')"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        for name in (self.data_file, MANIFEST_FILE, SPLIT_FILE):
            if not (self.root / name).is_file():
                raise InputError(self.root / name, f"missing: {self.prepare_hint}")
        self.manifest: dict[str, Any] = json.loads((self.root / MANIFEST_FILE).read_text())
        self.split: dict[str, list[str]] = json.loads((self.root / SPLIT_FILE).read_text())
        self._file: h5py.File | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            try:
                self._file = h5py.File(self.root / self.data_file, "r")
            except OSError as err:
                raise InputError(self.root / self.data_file,
                                 f"not a readable HDF5 store ({err}); prepare it again") from None
        return self._file

    def subjects(self, split: str | None = None) -> list[str]:
        if split is None:
            return sorted(self.manifest["subjects"])
        if split not in self.split:
            raise InputError(self.root / SPLIT_FILE, f"no split '{split}' (has {', '.join(self.split)})")
        return list(self.split[split])


class SliceStore(StoreReader):
    """A prepared slice store (``slices.h5``)."""

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.contrasts: list[str] = list(self.manifest["contrasts"])

    def check_contrast(self, contrast: str) -> None:
        if contrast not in self.contrasts:
            raise InputError(self.root, f"no contrast '{contrast}' (has {', '.join(self.contrasts)})")

    def num_slices(self, sid: str) -> int:
        return int(self.manifest["subjects"][sid]["shape"][0])

    def shape(self, sid: str) -> tuple[int, int, int]:
        return tuple(self.manifest["subjects"][sid]["shape"])

    def norm(self, sid: str, contrast: str) -> float:
        return float(self.manifest["subjects"][sid]["norm"][contrast])

    def has_labels(self, sid: str) -> bool:
        return bool(self.manifest["subjects"][sid].get("labels"))

    def slices(self, sid: str, contrast: str, z: slice | int | list[int]) -> np.ndarray:
        """Normalised slices ``[..., H, W]`` of one contrast (``contrast='label'`` for the label map)."""
        try:
            return self.file["subjects"][sid][contrast][z]
        except (OSError, KeyError) as err:
            raise InputError(self.root / STORE_FILE, f"cannot read {sid}/{contrast} (truncated or incomplete store: "
                             f"{str(err).splitlines()[0]}); prepare it again") from None

    def volume(self, sid: str, contrast: str) -> np.ndarray:
        return self.slices(sid, contrast, slice(None))

    def affine(self, sid: str) -> np.ndarray:
        return np.asarray(self.file["subjects"][sid].attrs["affine"])
