"""Held-out transfer scans stay held out: the manifest is true, no shipped config or script names them, and the
preparers (hence every slice store and training dataset) refuse them, copies included."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from medsr.cli import main
from medsr.data import heldout
from medsr.data.store import sha256_file

REPO = Path(__file__).resolve().parents[1]


def test_every_case_is_installed_and_matches_its_recorded_hash():
    cases = heldout.cases()
    assert len({c["id"] for c in cases}) == len(cases) >= 2
    assert len({c["distribution"] for c in cases}) >= 2  # at least two independent sources
    for case in cases:
        path = heldout.verified_path(case)
        assert sha256_file(path) == case["sha256"]
        assert heldout.is_heldout(path)
        assert case["licence"] and case["description"]


def _training_texts():
    roots = [REPO / "configs", REPO / "src" / "medsr" / "configs", REPO / "scripts"]
    return [p for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file()]


def test_no_training_config_or_script_names_a_heldout_file():
    texts = _training_texts()
    assert any(p.suffix == ".yaml" for p in texts)
    names = {Path(c["path"]).name for c in heldout.cases()} | {c["distribution"] for c in heldout.cases()}
    names |= {Path(c["file"]).name for c in heldout.manifest()["development"]}
    for path in texts:
        text = path.read_text(errors="replace")
        found = [n for n in names if n in text]
        assert not found, f"{path} names held-out data {found}"
        assert "heldout" not in text and "data_store" not in text, path


def test_a_copy_is_recognised_by_its_hash_and_a_changed_copy_is_not(tmp_path):
    case = next(c for c in heldout.cases() if c["kind"] == "nifti")
    copy = tmp_path / "renamed.nii.gz"
    shutil.copy(heldout.verified_path(case), copy)
    assert heldout.is_heldout(copy)
    copy.write_bytes(copy.read_bytes() + b"\0")
    assert not heldout.is_heldout(copy)
    assert not heldout.is_heldout(tmp_path / "missing.nii.gz")


def test_prepare_refuses_heldout_scans_and_writes_nothing(tmp_path, capsys):
    case = next(c for c in heldout.cases() if c["kind"] == "nifti")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(heldout.verified_path(case), data / "t.nii.gz")
    shutil.copy(heldout.verified_path(case), data / "r.nii.gz")
    csv = tmp_path / "pairs.csv"
    csv.write_text("subject,target,ref\ns,data/t.nii.gz,data/r.nii.gz\n")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["prepare", "pairs", str(csv), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t.nii.gz" in err[0] and "held-out" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("kind", ["npy2d", "nifti", "dicom2d"])
def test_benchmark_loader_reads_each_kind(kind):
    import importlib.util

    spec = importlib.util.spec_from_file_location("transfer", REPO / "benchmarks" / "transfer.py")
    transfer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transfer)
    case = next(c for c in heldout.cases() if c["kind"] == kind)
    volume, voxel = transfer.load_case(case)
    assert volume.ndim == 3 and volume.dtype == np.float32 and len(voxel) == 3
    assert np.isfinite(volume).all() and volume.max() > volume.min()
    if "crop" in case:
        assert list(volume.shape[:2]) == case["crop"]


def test_development_scans_are_matched_by_size_and_hash(tmp_path, monkeypatch):
    """A file with the size and SHA-256 of a development entry is held out wherever it lies, and named."""
    scan = tmp_path / "renamed_patient.nii.gz"
    scan.write_bytes(b"a development patient")
    entry = {"id": "patient-x", "file": "ct/x.nii.gz", "bytes": scan.stat().st_size, "sha256": sha256_file(scan)}
    manifest = {**heldout.manifest(), "development": [entry]}
    monkeypatch.setattr(heldout, "manifest", lambda: manifest)
    heldout._fingerprints.cache_clear()
    try:
        assert heldout.is_heldout(scan) and heldout.source_name(scan) == "patient-x"
        other = tmp_path / "other.nii.gz"
        other.write_bytes(b"a development pAtient")  # same size, another hash
        assert not heldout.is_heldout(other) and heldout.source_name(other) == ""
    finally:
        heldout._fingerprints.cache_clear()
