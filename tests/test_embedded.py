"""The embedded MNI dataset: contents, contrasts, geometry, split and determinism."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from medsr.data import embedded
from medsr.data.store import SliceStore
from medsr.errors import InputError


@pytest.fixture(scope="module")
def store(mni_store):
    return SliceStore(mni_store)


def test_contrasts_labels_shapes_and_normalisation(store):
    assert store.contrasts == ["T1", "T2", "PD"]
    assert store.manifest["labels"] == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}
    assert len(store.subjects()) == embedded.NUM_SLABS
    for sid in store.subjects():
        z, h, w = store.shape(sid)
        assert z >= 5 and h % 8 == 0 and w % 8 == 0
        for contrast in store.contrasts:
            vol = store.volume(sid, contrast)
            assert vol.dtype == np.float32 and vol.shape == (z, h, w)
            assert np.isfinite(vol).all() and vol.min() >= 0
            assert np.percentile(vol[vol > 0], 99.5) == pytest.approx(1.0, abs=1e-3)
        label = store.volume(sid, "label")
        assert label.dtype == np.uint8 and label.shape == (z, h, w)
        assert set(np.unique(label)) == {0, 1, 2, 3}
        # every contrast is zero exactly where the label is background
        assert ((store.volume(sid, "T1") > 0) == (label > 0)).all()


def test_contrast_ordering_follows_physics(store):
    sid = store.subjects("val")[0]
    label = store.volume(sid, "label")
    mean = {c: [float(store.volume(sid, c)[label == k].mean()) for k in (1, 2, 3)] for c in store.contrasts}
    csf, gm, wm = mean["T1"]
    assert wm > gm > csf
    csf, gm, wm = mean["T2"]
    assert csf > gm > wm
    csf, gm, wm = mean["PD"]
    assert min(csf, gm) > wm


def test_spin_echo_matches_the_equation():
    s = embedded.spin_echo(0.8, 1331.0, 110.0, 5000.0, 100.0)
    assert s == pytest.approx(0.8 * (1 - np.exp(-5000 / 1331)) * np.exp(-100 / 110))
    pure = {name: np.ones((2, 2), np.float32) * (name == "GM") for name in embedded.TISSUES}
    image = embedded.synthesise(pure, embedded.SEQUENCES["T2"])
    assert np.allclose(image, embedded.tissue_signals(embedded.SEQUENCES["T2"])["GM"])


def test_split_by_slab_disjoint_with_gaps(store):
    split = store.split
    ids = [sid for name in ("train", "val", "test") for sid in split[name]]
    assert len(ids) == len(set(ids)) == embedded.NUM_SLABS
    assert split["val"] and split["test"] and len(split["train"]) > len(split["val"])
    ranges = {sid: store.manifest["subjects"][sid]["source_z"] for sid in ids}
    which = {sid: name for name in split for sid in split[name]}
    ordered = sorted(ids, key=lambda sid: ranges[sid][0])
    for a, b in zip(ordered, ordered[1:]):
        gap = ranges[b][0] - ranges[a][1]
        assert gap == (embedded.SPLIT_GAP if which[a] != which[b] else 0)


def test_affine_maps_store_voxels_to_source_voxels(store):
    src_img = nib.load(str(embedded.source_dir() / embedded.SOURCE_FILES["t1"]))
    source = np.asarray(src_img.dataobj, dtype=np.float32)
    sid = store.subjects("test")[0]
    vol = store.volume(sid, "T1") * store.norm(sid, "T1")
    index = np.argwhere(vol > 0)[:: 997]
    world = store.affine(sid) @ np.c_[index, np.ones(len(index))].T
    ijk = np.round(np.linalg.inv(src_img.affine) @ world).astype(int)[:3]
    assert np.allclose(vol[tuple(index.T)], source[tuple(ijk)])


def test_manifest_records_sources_and_protocol(store):
    params = store.manifest["parameters"]
    assert set(params["sources"]) == {"t1", "gm", "wm"}
    assert all(len(s["sha256"]) == 64 for s in params["sources"].values())
    assert params["sequences_ms"]["T2"]["TE"] > params["sequences_ms"]["PD"]["TE"]
    assert params["relaxation_ms_and_pd"]["WM"]["T1"] < params["relaxation_ms_and_pd"]["GM"]["T1"]
    assert params["split_rule"]["gap_slices"] == embedded.SPLIT_GAP


def _digest(root) -> dict:
    store = SliceStore(root)
    return {
        (sid, c): hashlib.sha256(store.volume(sid, c).tobytes()).hexdigest()
        for sid in store.subjects() for c in store.contrasts + ["label"]
    }


def test_deterministic_and_ensure_reuses(tmp_path, mni_store):
    out = embedded.ensure_mni(tmp_path / "again")
    assert embedded.is_finished(out)
    assert _digest(out) == _digest(mni_store)
    assert json.loads((out / "split.json").read_text()) == json.loads((mni_store / "split.json").read_text())
    stamp = (out / "slices.h5").stat().st_mtime_ns
    assert embedded.ensure_mni(out) == out and (out / "slices.h5").stat().st_mtime_ns == stamp


def test_unfinished_dir_is_prepared(tmp_path):
    out = tmp_path / "partial"
    out.mkdir()
    (out / "slices.h5").write_bytes(b"not hdf5")
    (out / "manifest.json").write_text(json.dumps({"name": embedded.NAME}))  # an MNI store medsr began
    assert not embedded.is_finished(out)
    embedded.ensure_mni(out)
    assert embedded.is_finished(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_path_that_is_a_file_is_an_input_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        embedded.prepare_mni(target, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_another_dataset_is_never_overwritten(tmp_path):
    out = tmp_path / "ixi"
    out.mkdir()
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps({"name": "ixi"}))
    with pytest.raises(InputError, match="another dataset"):
        embedded.ensure_mni(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_nifti_volumes_hold_the_source_voxels_at_their_world_positions(store, mni_store):
    src_img = nib.load(str(embedded.source_dir() / embedded.SOURCE_FILES["t1"]))
    source = np.asarray(src_img.dataobj, dtype=np.float32)
    for name in ("T1", "T2", "PD", "labels"):
        img = nib.load(str(mni_store / embedded.NIFTI_DIR / f"{name}.nii.gz"))
        assert img.ndim == 3 and img.header.get_xyzt_units()[0] == "mm"
    t1 = nib.load(str(mni_store / embedded.NIFTI_DIR / "T1.nii.gz"))
    data = np.asarray(t1.dataobj)
    index = np.argwhere(data > 0)[::991]
    world = t1.affine @ np.c_[index, np.ones(len(index))].T
    ijk = np.round(np.linalg.inv(src_img.affine) @ world).astype(int)[:3]
    assert np.allclose(data[tuple(index.T)], source[tuple(ijk)])
    sid = store.subjects("test")[0]
    z0 = store.manifest["subjects"][sid]["source_z"][0] - store.manifest["parameters"]["kept_z"][0]
    t2 = np.asarray(nib.load(str(mni_store / embedded.NIFTI_DIR / "T2.nii.gz")).dataobj)
    slab = store.volume(sid, "T2") * store.norm(sid, "T2")
    assert np.allclose(np.transpose(t2, (2, 1, 0))[z0 : z0 + len(slab)], slab, rtol=1e-5, atol=1e-6)
