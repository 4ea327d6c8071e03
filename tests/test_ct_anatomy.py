"""Procedural CT anatomy (``medsr.data.ct_anatomy``) and its place in ``medsr prepare ctvol --synthetic``:
seeded, physically plausible HU, pixel sizes that follow the anatomy, the noise-free image as the target of the
simulator's whole low-dose scan."""

import json

import numpy as np
import pytest

from medsr import kspace
from medsr.data.ct_anatomy import anatomy_slice
from medsr.data.ct_pairs import CTPairStore
from medsr.data.prepare import ct_volumes
from tests.test_ct_volumes import _ct


@pytest.mark.parametrize("kind", ["body", "head"])
def test_slices_are_seeded_and_hold_air_soft_tissue_and_bone(kind):
    a = anatomy_slice(np.random.default_rng(3), kind, 128)
    b = anatomy_slice(np.random.default_rng(3), kind, 128)
    c = anatomy_slice(np.random.default_rng(4), kind, 128)
    np.testing.assert_array_equal(a.hu, b.hu)
    assert not np.array_equal(a.hu, c.hu) and a.kind == kind
    assert a.hu.shape == (128, 128) and a.hu.dtype == np.float32
    assert a.hu[0, 0] == -1000.0 and a.hu.min() >= -1000.0  # air in the corner, nothing below air
    assert ((a.hu > 0) & (a.hu < 100)).mean() > 0.1  # soft tissue
    assert a.hu.max() > 300  # bone (vertebra or skull)


def test_pixel_size_follows_the_anatomy():
    heads = [anatomy_slice(np.random.default_rng(i), "head").pixel_mm for i in range(4)]
    bodies = [anatomy_slice(np.random.default_rng(i), "body").pixel_mm for i in range(4)]
    assert max(heads) < min(bodies)
    assert 0.35 <= min(heads) and max(bodies) <= 1.0
    with pytest.raises(ValueError, match="kind"):
        anatomy_slice(np.random.default_rng(0), "knee")


def test_synthetic_slices_join_the_training_split_as_scanned_pairs(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    _ct(src / "pa.nii.gz", 0)
    _ct(src / "pb.nii.gz", 1)
    monkeypatch.setattr(ct_volumes, "SYNTHETIC_SIZE", 64)
    split = ct_volumes.prepare_ct_volumes(src, tmp_path / "store", val=["pb"], realisations=2, progress=False,
                                          synthetic=2)
    assert split["train"] == ["pa", "synth-body-0000", "synth-head-0001"] and split["val"] == ["pb"]
    store = CTPairStore(tmp_path / "store")
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["parameters"]["synthetic"] == 2
    for sid in ("synth-body-0000", "synth-head-0001"):
        record = manifest["subjects"][sid]
        assert record["realisations"] == 2 and 0.2 <= record["dose"] <= 0.35 and record["target"] == "noise-free"
        ld, fd = store.volume_pair(sid, 0)
        assert fd.shape == ld.shape == (1, 64, 64)
        tissue = fd[0] > -500
        assert 1.0 < float((ld - fd)[0][tissue].std()) < 300.0  # the low-dose scan's noise in the tissue
        assert not np.array_equal(store.volume_pair(sid, 1)[0], ld)
    again = ct_volumes.synthetic_subject(1, 2, 64)[1]
    np.testing.assert_allclose(again["fd"], store.volume_pair("synth-head-0001", 0)[1], atol=1e-3)
    rng = np.random.default_rng(kspace.seed_from_name("ctvol/synthetic/1"))
    clean = anatomy_slice(rng, "head", 64).hu
    np.testing.assert_array_equal(again["fd"][0], clean)  # the target is the noise-free image


def test_cli_adds_synthetic_slices(tmp_path, monkeypatch, capsys):
    from medsr.cli import main

    src = tmp_path / "src"
    src.mkdir()
    _ct(src / "p1.nii.gz", 0)
    _ct(src / "p2.nii.gz", 1)
    monkeypatch.setattr(ct_volumes, "SYNTHETIC_SIZE", 48)
    out = tmp_path / "store"
    assert main(["prepare", "ctvol", str(src), str(out), "--val", "p2", "--realisations", "1", "--synthetic", "3",
                 "--no-progress"]) == 0
    assert "(train 4, val 1, test 1)" in capsys.readouterr().out
    assert json.loads((out / "split.json").read_text())["train"][1:] == [
        "synth-body-0000", "synth-head-0001", "synth-body-0002"]
