"""``medsr prepare ctvol``: CT NIfTI volumes into a CT pair store with a simulated quarter dose, split by patient,
development held-out scans skipped, non-CT refused."""

import json

import nibabel as nib
import numpy as np
import pytest

from medsr.cli import main
from medsr.data import heldout
from medsr.data.ct_pairs import CTPairStore
from medsr.data.prepare import ct_volumes
from medsr.data.store import sha256_file
from medsr.errors import InputError


def _ct(path, seed, slices=2, size=48):
    """A small CT-like volume in HU: air around a soft-tissue disc holding a bone ring; slices on the last axis."""
    y, x = np.mgrid[:size, :size] - size / 2 + 0.5
    r = np.hypot(x, y)
    hu = np.where(r < size * 0.4, 40.0, -1000.0) + np.where(abs(r - size * 0.3) < 2, 700.0, 0.0)
    rng = np.random.default_rng(seed)
    volume = np.stack([hu + rng.normal(0, 5, hu.shape) for _ in range(slices)], axis=-1).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 5.0, 1.0])), path)
    return volume


def test_volumes_become_a_store_split_by_patient(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a = _ct(src / "pa.nii.gz", 0)
    _ct(src / "pb.nii", 1, slices=3)
    split = ct_volumes.prepare_ct_volumes(src, tmp_path / "store", val=["pb"], realisations=2, progress=False)
    assert split == {"train": ["pa"], "val": ["pb"], "test": ["pb"]}
    store = CTPairStore(tmp_path / "store")
    ld, fd = store.volume_pair("pa", 1)
    assert fd.shape == ld.shape == (2, 48, 48)
    np.testing.assert_array_equal(fd, np.moveaxis(a, 2, 0).astype(np.float32))
    added = ld - fd
    assert 1.0 < float(added[:, 20:28, 20:28].std()) < 200.0  # noise was inserted in the tissue
    assert np.array_equal(ld[fd < -1024], fd[fd < -1024])
    assert not np.array_equal(store.volume_pair("pa", 0)[0], ld)  # two realisations differ
    assert store.shape("pb") == (3, 48, 48)
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["parameters"]["dose"] == 0.25 and manifest["parameters"]["dataset"] == "ct-volumes"


def test_seeding_per_slice_makes_the_result_independent_of_the_batch(tmp_path, monkeypatch):
    hu = np.moveaxis(_ct(tmp_path / "v.nii.gz", 2, slices=3), 2, 0).astype(np.float32)
    whole = ct_volumes.simulate_volume(hu, 0.8, 1, "s")
    monkeypatch.setattr(ct_volumes, "BATCH", 1)
    single = ct_volumes.simulate_volume(hu, 0.8, 1, "s")
    np.testing.assert_allclose(whole, single, atol=1e-2)


def test_development_heldout_scans_are_skipped_and_never_read(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _ct(src / "train.nii.gz", 0)
    held = src / "held.nii.gz"
    _ct(held, 1)
    entry = {"id": "held-patient", "file": "ct/held.nii.gz", "bytes": held.stat().st_size,
             "sha256": sha256_file(held)}
    manifest = {**heldout.manifest(), "development": [entry]}
    monkeypatch.setattr(heldout, "manifest", lambda: manifest)
    heldout._fingerprints.cache_clear()
    read = []
    real = ct_volumes.read_ct_volume
    monkeypatch.setattr(ct_volumes, "read_ct_volume", lambda p: read.append(p.name) or real(p))
    try:
        split = ct_volumes.prepare_ct_volumes(src, tmp_path / "store", progress=False)
    finally:
        heldout._fingerprints.cache_clear()
    assert split["train"] == ["train"] and read == ["train.nii.gz"]
    assert "held.nii.gz: skipped, a development held-out scan (held-patient)" in capsys.readouterr().out


def test_mr_values_and_unknown_validation_ids_are_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nib.save(nib.Nifti1Image(np.full((40, 40, 2), 300, np.int16), np.eye(4)), src / "mr.nii.gz")
    with pytest.raises(InputError, match="does not look like CT"):
        ct_volumes.prepare_ct_volumes(src, tmp_path / "s1", progress=False)
    (src / "mr.nii.gz").unlink()
    _ct(src / "p.nii.gz", 0)
    with pytest.raises(InputError, match="no volume for the validation subject"):
        ct_volumes.prepare_ct_volumes(src, tmp_path / "s2", val=["q"], progress=False)
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()


def test_cli_prepares_and_reports_the_split(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _ct(src / "p1.nii.gz", 0)
    _ct(src / "p2.nii.gz", 1)
    out = tmp_path / "store"
    assert main(["prepare", "ctvol", str(src), str(out), "--val", "p2", "--realisations", "1", "--no-progress"]) == 0
    assert "2 patients (train 1, val 1, test 1)" in capsys.readouterr().out
    assert main(["prepare", "ctvol", str(tmp_path / "empty"), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no NIfTI file" in err[0]
