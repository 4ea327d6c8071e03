"""``medsr prepare`` on small fake IXI, BraTS, fastMRI and pairs datasets built here."""

import hashlib
import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from medsr.cli import main
from medsr.data.prepare import brats, ixi
from medsr.data.prepare.common import assign_split, centre_fit, group_by_subject, parse_options, slice_axis
from medsr.data.store import SliceStore
from medsr.errors import InputError
from medsr.registry import DATASETS

T2_AFFINE = np.array([[1.0, 0, 0, -6.0], [0, 1.0, 0, -5.0], [0, 0, 1.5, -6.0], [0, 0, 0, 1]])
SHAPE = (12, 10, 8)


def _world(affine, shape):
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape((3, *shape))


def _head(affine, shape, contrast):
    """A smooth positive function of world position, faint in the outermost slices along z."""
    x, y, z = _world(affine, shape)
    weight = {"T1": 1.0, "T2": 2.0, "PD": 3.0}.get(contrast, 1.5)
    vol = weight * (2.0 + np.sin(0.3 * x + 0.2 * y) + 0.1 * z)
    vol[..., [0, -1]] *= 0.01
    return vol.astype(np.float32)


def _save(path, data, affine=T2_AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def _ixi(root, sids=("IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212")):
    t1_affine = np.array([[0, 0, 1.2, -7.0], [1.3, 0, 0, -7.0], [0, 1.3, 0, -8.0], [0, 0, 0, 1]])
    for i, sid in enumerate(sids):
        for c in ("T2", "PD"):
            _save(root / f"IXI-{c}" / f"{sid}-{c}.nii.gz", _head(T2_AFFINE, SHAPE, c) * (1 + i))
        _save(root / "IXI-T1" / f"{sid}-T1.nii.gz", _head(t1_affine, (12, 12, 14), "T1"), t1_affine)
    _save(root / "IXI-T2" / "IXI099-IOP-0999-T2.nii.gz", _head(T2_AFFINE, SHAPE, "T2"))  # no PD: skipped
    (root / "IXI-T2" / "README.txt").write_text("not an image")
    return root


def _run(*argv):
    return main(["prepare", *map(str, argv), "--no-progress"])


def _error(capsys, argv, out):
    assert _run(*argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsr: error: "), lines
    assert not (out / "manifest.json").exists()
    return lines[0]


def _store_values(root):
    store = SliceStore(root)
    return {(sid, c): store.volume(sid, c) for sid in store.subjects() for c in store.contrasts}


def _check_geometry(store, sid, contrast, source, source_affine):
    """Every store voxel holds the source voxel its affine points at (zero where it was padded)."""
    vol = store.volume(sid, contrast) * store.norm(sid, contrast)
    to_voxel = np.linalg.solve(source_affine, store.affine(sid))
    idx = np.indices(vol.shape).reshape(3, -1)
    vox = np.rint(to_voxel[:3, :3] @ idx + to_voxel[:3, 3:4]).astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(source.shape)[:, None]), axis=0)
    np.testing.assert_allclose(vol.reshape(-1)[inside], source[tuple(vox[:, inside])], rtol=1e-5)
    assert not vol.reshape(-1)[~inside].any()


def test_ixi_t2_pd(tmp_path, capsys):
    src, out = _ixi(tmp_path / "ixi"), tmp_path / "out"
    assert _run("ixi", src, out, "--workers", "1") == 0
    assert "3 subjects (train 1, val 1, test 1)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["contrasts"] == ["T2", "PD"]
    params = manifest["parameters"]
    assert params["format"] == "ixi" and params["target"] == "T2" and params["reference"] == "PD"
    assert params["skipped"] == {"IXI099-IOP-0999": "no PD image"}
    assert params["min_signal"] == 0.1 and params["multiple"] == 1 and params["split"] == [0.8, 0.1, 0.1]
    record = manifest["subjects"]["IXI002-Guys-0828"]
    t2 = src / "IXI-T2" / "IXI002-Guys-0828-T2.nii.gz"
    assert record["sources"]["T2"]["sha256"] == hashlib.sha256(t2.read_bytes()).hexdigest()
    assert record["sources"]["T2"]["path"] == "IXI-T2/IXI002-Guys-0828-T2.nii.gz"
    assert record["sources"]["PD"]["bytes"] > 0
    assert record["reference_resampled"] is False and record["slice_axis"] == 2
    assert record["slices"] == [1, 7] and record["shape"] == [6, 12, 10]
    store = SliceStore(out)
    split = json.loads((out / "split.json").read_text())
    assert sorted(sum(split.values(), [])) == store.subjects() == sorted(manifest["subjects"])
    data = np.asarray(nib.load(str(t2)).dataobj)
    _check_geometry(store, "IXI002-Guys-0828", "T2", data, T2_AFFINE)
    assert store.volume("IXI002-Guys-0828", "T2").shape == (6, 12, 10)


def test_ixi_t1_reference_is_resampled_onto_target_grid(tmp_path):
    src, out = _ixi(tmp_path / "ixi", ("IXI002-Guys-0828",)), tmp_path / "out"
    assert _run("ixi", src, out, "--ref", "t1", "--workers", "1", "--min-signal", "0") == 0
    record = json.loads((out / "manifest.json").read_text())["subjects"]["IXI002-Guys-0828"]
    assert record["reference_resampled"] is True and 0.5 <= record["reference_overlap"] <= 1
    store = SliceStore(out)
    assert store.contrasts == ["T2", "T1"]
    ref = store.volume("IXI002-Guys-0828", "T1") * store.norm("IXI002-Guys-0828", "T1")
    x, y, z = _world(store.affine("IXI002-Guys-0828"), ref.shape)
    want = 2.0 + np.sin(0.3 * x + 0.2 * y) + 0.1 * z
    inner = (slice(2, -2), slice(3, -3), slice(3, -3))
    assert np.abs(ref - want)[inner].max() < 0.05


def test_resume_skips_finished_subjects_and_keeps_outputs(tmp_path, monkeypatch):
    src, out = _ixi(tmp_path / "ixi"), tmp_path / "out"
    assert _run("ixi", src, out, "--workers", "1", "--multiple", "8") == 0
    before = {name: (out / name).read_bytes() for name in ("manifest.json", "split.json")}
    values = _store_values(out)

    def refuse(*args):
        raise AssertionError("a finished subject was loaded again")

    monkeypatch.setattr("medsr.data.prepare.ixi.load_nifti_subject", refuse)
    assert _run("ixi", src, out, "--workers", "2", "--multiple", "8") == 0
    assert before == {name: (out / name).read_bytes() for name in ("manifest.json", "split.json")}
    after = _store_values(out)
    assert after.keys() == values.keys() and all(np.array_equal(values[k], after[k]) for k in values)


def test_interrupted_run_resumes_with_complete_manifest(tmp_path, capsys):
    src, out = _ixi(tmp_path / "ixi"), tmp_path / "out"
    bad = src / "IXI-PD" / "IXI013-HH-1212-PD.nii.gz"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    line = _error(capsys, ["ixi", src, out, "--workers", "1"], out)
    assert "IXI013-HH-1212-PD.nii.gz" in line
    with h5py.File(out / "slices.h5", "r") as f:
        assert sorted(f["subjects"]) == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    bad.write_bytes(good)
    assert _run("ixi", src, out, "--workers", "1") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["subjects"]) == ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212"]
    assert all("sha256" in r["sources"]["T2"] for r in manifest["subjects"].values())


def test_changed_settings_on_existing_store_is_an_error(tmp_path, capsys):
    src, out = _ixi(tmp_path / "ixi", ("IXI002-Guys-0828",)), tmp_path / "out"
    assert _run("ixi", src, out, "--workers", "1") == 0
    assert _run("ixi", src, out, "--workers", "1", "--min-signal", "0.3") == 2
    assert "min_signal: 0.1 then, 0.3 now" in capsys.readouterr().err
    assert _run("ixi", src, out, "--workers", "1", "--seed", "5") == 2
    assert "seed: 0 then, 5 now" in capsys.readouterr().err


def test_workers_processes_give_the_same_store(tmp_path):
    src = _ixi(tmp_path / "ixi")
    assert _run("ixi", src, tmp_path / "one", "--workers", "1", "--axis", "0") == 0
    assert _run("ixi", src, tmp_path / "two", "--workers", "2", "--axis", "0") == 0
    one, two = _store_values(tmp_path / "one"), _store_values(tmp_path / "two")
    assert one.keys() == two.keys() and all(np.array_equal(one[k], two[k]) for k in one)
    assert next(iter(one.values())).shape == (12, 10, 8)
    assert (tmp_path / "one" / "split.json").read_text() == (tmp_path / "two" / "split.json").read_text()


def _brats(root):
    seg = np.zeros(SHAPE, dtype=np.int16)
    seg[4:8, 3:6, 2:5] = 2
    seg[5:7, 4:5, 3:4] = 4
    seg[5, 3, 3] = 1
    layout = {"BraTS20_Training_001": True, "BraTS2021_00000": True, "BraTS2021_00001": False}
    for sid, with_seg in layout.items():
        for m in ("t1", "t2", "flair"):
            _save(root / "train" / sid / f"{sid}_{m}.nii.gz", _head(T2_AFFINE, SHAPE, m))
        if with_seg:
            _save(root / "train" / sid / f"{sid}_seg.nii.gz", seg)
    _save(root / "BraTS2021_00002" / "BraTS2021_00002_t2.nii.gz", _head(T2_AFFINE, SHAPE, "t2"))  # no t1
    return root, seg


def test_brats_both_layouts_and_labels(tmp_path, capsys):
    (src, seg), out = _brats(tmp_path / "brats"), tmp_path / "out"
    assert _run("brats", src, out, "--workers", "1", "--min-signal", "0") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["subjects"]) == ["BraTS2021_00000", "BraTS2021_00001", "BraTS20_Training_001"]
    assert manifest["parameters"]["skipped"] == {"BraTS2021_00002": "no t1 image"}
    assert manifest["contrasts"] == ["t2", "t1"]
    assert manifest["labels"]["3"].startswith("enhancing tumour")
    store = SliceStore(out)
    assert store.has_labels("BraTS20_Training_001") and not store.has_labels("BraTS2021_00001")
    labels = store.volume("BraTS2021_00000", "label")
    assert labels.dtype == np.uint8
    want = np.moveaxis(np.select([seg == 4, seg == 2, seg == 1], [3, 2, 1], 0), 2, 0)
    np.testing.assert_array_equal(labels, want)
    seg[0, 0, 0] = 3
    _save(src / "train" / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz", seg)
    line = _error(capsys, ["brats", src, tmp_path / "out2", "--workers", "1"], tmp_path / "out2")
    assert "BraTS2021_00000_seg.nii.gz" in line and "[3]" in line


ISMRMRD_HEADER = b"""<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<reconSpace><matrixSize><x>14</x><y>12</y><z>1</z></matrixSize>
<fieldOfView_mm><x>140.0</x><y>96.0</y><z>3.0</z></fieldOfView_mm></reconSpace></encoding></ismrmrdHeader>"""


def _fastmri_file(path, recon, key="reconstruction_rss"):
    with h5py.File(path, "w") as f:
        f["kspace"] = np.zeros((recon.shape[0], 2, 4, 4), dtype=np.complex64)
        f[key] = recon
        f["ismrmrd_header"] = ISMRMRD_HEADER


def test_fastmri_pairs(tmp_path, capsys):
    src, out = tmp_path / "knee", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    pdfs = rng.uniform(1, 2, size=(5, 12, 14)).astype(np.float32)
    pd = rng.uniform(1, 2, size=(5, 12, 16)).astype(np.float32)
    _fastmri_file(src / "file1000.h5", pdfs)
    _fastmri_file(src / "file2000.h5", pd, "reconstruction_esc")
    (tmp_path / "pairs.csv").write_text("pd,pdfs\nfile2000.h5,file1000.h5\n")
    assert _run("fastmri", src, out, "--pairs", tmp_path / "pairs.csv", "--workers", "1", "--multiple", "8") == 0
    store = SliceStore(out)
    assert store.contrasts == ["PDFS", "PD"] and store.subjects() == ["file1000"]
    record = store.manifest["subjects"]["file1000"]
    assert record["common_in_plane"] == [12, 14] and record["shape"] == [5, 16, 16]
    assert record["sources"]["PD"]["dataset"] == "reconstruction_esc"
    assert record["spacing_mm"] == [3.0, 8.0, 10.0]
    ref = store.volume("file1000", "PD") * store.norm("file1000", "PD")
    np.testing.assert_allclose(ref[:, 2:14, 1:15], pd[:, :, 1:15], rtol=1e-6)
    np.testing.assert_allclose(np.diag(store.affine("file1000"))[:3], [3.0, 8.0, 10.0])
    _fastmri_file(src / "file3000.h5", pd[:4])
    (tmp_path / "bad.csv").write_text("pd,pdfs\nfile3000.h5,file1000.h5\n")
    line = _error(capsys, ["fastmri", src, tmp_path / "o2", "--pairs", tmp_path / "bad.csv", "--workers", "1"],
                  tmp_path / "o2")
    assert "file1000.h5" in line and "file3000.h5" in line and "slices" in line
    with h5py.File(src / "nores.h5", "w") as f:
        f["kspace"] = np.zeros((2, 4, 4), dtype=np.complex64)
    (tmp_path / "nores.csv").write_text("pd,pdfs\nnores.h5,file1000.h5\n")
    line = _error(capsys, ["fastmri", src, tmp_path / "o3", "--pairs", tmp_path / "nores.csv"], tmp_path / "o3")
    assert "nores.h5" in line and "reconstruction_rss" in line


def _pairs_csv(tmp_path, rows, header="subject,target,ref,label"):
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join([header, *[",".join(r) for r in rows]]) + "\n")
    return path


def test_pairs_with_labels_and_resampled_reference(tmp_path):
    data = tmp_path / "data"
    _save(data / "a_t.nii.gz", _head(T2_AFFINE, SHAPE, "t"))
    shifted = T2_AFFINE.copy()
    shifted[:3, 3] += [1.0, -1.0, 0.0]
    _save(data / "a_r.nii.gz", _head(shifted, SHAPE, "r"), shifted)
    _save(data / "a_l.nii.gz", (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3).astype(np.uint8))
    _save(data / "b_t.nii.gz", _head(T2_AFFINE, SHAPE, "t"))
    _save(data / "b_r.nii.gz", _head(T2_AFFINE, SHAPE, "r"))
    csv_path = _pairs_csv(tmp_path, [("a", "data/a_t.nii.gz", "data/a_r.nii.gz", "data/a_l.nii.gz"),
                                     ("b", "data/b_t.nii.gz", str(data / "b_r.nii.gz"), "")])
    out = tmp_path / "out"
    assert _run("pairs", csv_path, out, "--target", "T2w", "--ref", "T1w", "--workers", "1", "--split",
                "0.5,0.5,0") == 0
    store = SliceStore(out)
    assert store.contrasts == ["T2w", "T1w"] and store.has_labels("a") and not store.has_labels("b")
    assert store.manifest["subjects"]["a"]["reference_resampled"] is True
    assert store.manifest["subjects"]["b"]["reference_resampled"] is False
    assert store.manifest["subjects"]["a"]["sources"]["label"]["path"] == "data/a_l.nii.gz"
    assert store.manifest["parameters"]["csv"]["sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert sorted(store.split["train"] + store.split["val"]) == ["a", "b"] and store.split["test"] == []
    assert set(np.unique(store.volume("a", "label"))) == {0, 1, 2}


def test_pairs_bad_inputs(tmp_path, capsys):
    data = tmp_path / "data"
    _save(data / "t.nii.gz", _head(T2_AFFINE, SHAPE, "t"))
    far = T2_AFFINE.copy()
    far[:3, 3] += 500
    _save(data / "far.nii.gz", _head(far, SHAPE, "r"), far)
    _save(data / "4d.nii.gz", np.ones(SHAPE + (2,), dtype=np.float32))
    nan = _head(T2_AFFINE, SHAPE, "r")
    nan[3, 3, 3] = np.nan
    _save(data / "nan.nii.gz", nan)
    (data / "corrupt.nii.gz").write_bytes(b"garbage")
    out = tmp_path / "out"
    cases = [("far.nii.gz", "cannot be reconciled"), ("4d.nii.gz", "3-D"), ("nan.nii.gz", "non-finite"),
             ("corrupt.nii.gz", "not a readable NIfTI"), ("missing.nii.gz", "no such file")]
    for name, message in cases:
        line = _error(capsys, ["pairs", _pairs_csv(tmp_path, [("s", "data/t.nii.gz", f"data/{name}", "")]), out], out)
        assert name in line and message in line
        assert not out.exists()
    line = _error(capsys, ["pairs", _pairs_csv(tmp_path, [("s", "data/t.nii.gz")], "subject,target"), out], out)
    assert "subject,target,ref" in line
    assert "no rows" in _error(capsys, ["pairs", _pairs_csv(tmp_path, []), out], out)
    rows = [("s", "data/t.nii.gz", "data/t.nii.gz", "")] * 2
    assert "twice" in _error(capsys, ["pairs", _pairs_csv(tmp_path, rows), out], out)


@pytest.mark.parametrize("kind", ["ixi", "brats"])
def test_empty_or_missing_source_directory(tmp_path, capsys, kind):
    (tmp_path / "empty").mkdir()
    for src, message in ((tmp_path / "empty", "no "), (tmp_path / "nowhere", "no such directory")):
        line = _error(capsys, [kind, src, tmp_path / "out"], tmp_path / "out")
        assert str(src) in line and message in line
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,flag", [(["--split", "0.5,0.5"], "--split"), (["--split", "0.9,0.2,0.1"], "--split"),
                                        (["--min-signal", "abc"], "--min-signal"), (["--workers", "0"], "--workers"),
                                        (["--multiple", "0"], "--multiple"), (["--axis", "3"], "--axis"),
                                        (["--target", "T1", "--ref", "T1"], "--ref"), (["--target", "FLAIR"],
                                                                                      "--target")])
def test_bad_flags(tmp_path, capsys, flags, flag):
    src = _ixi(tmp_path / "ixi", ("IXI002-Guys-0828",))
    line = _error(capsys, ["ixi", src, tmp_path / "out", *flags], tmp_path / "out")
    assert line.startswith(f"medsr: error: {flag}: ")


def test_prepare_mni_goes_through_the_one_dispatch(tmp_path, capsys):
    out = tmp_path / "mni"
    assert main(["prepare", "mni", str(out), "--workers", "2", "--no-progress"]) == 0
    split = SliceStore(out).split
    assert [len(split[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert capsys.readouterr().out.strip() == f"{out}: 10 subjects (train 6, val 2, test 2)"


def test_every_preparer_is_one_registry_entry_that_declares_its_own_arguments(capsys):
    """``medsr prepare`` has no list of its own: the names, help and arguments come from the DATASETS entries."""
    assert DATASETS.names() == ["brats", "ct", "ctvol", "fastmri", "ixi", "ldct", "mni", "pairs"]
    with pytest.raises(SystemExit) as stop:
        main(["prepare", "--help"])
    listed = capsys.readouterr().out
    assert stop.value.code == 0 and all(f"  {name} " in listed for name in DATASETS.names())
    with pytest.raises(SystemExit):
        main(["prepare", "ctvol", "--help"])
    assert "--synthetic N" in capsys.readouterr().out
    assert main(["prepare", "knee", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no preparer 'knee' (known: brats, ct, ctvol" in err[0]


def test_assign_split_is_deterministic_and_keeps_existing():
    subjects = [f"s{i:02d}" for i in range(20)]
    split = assign_split(subjects, (0.8, 0.1, 0.1), seed=1)
    assert [len(split[k]) for k in ("train", "val", "test")] == [16, 2, 2]
    assert split == assign_split(list(reversed(subjects)), (0.8, 0.1, 0.1), seed=1)
    assert split != assign_split(subjects, (0.8, 0.1, 0.1), seed=2)
    grown = assign_split(subjects + ["s20", "s21"], (0.8, 0.1, 0.1), seed=7, existing=split)
    for name, ids in split.items():
        assert set(ids) <= set(grown[name])
    assert sorted(sum(grown.values(), [])) == sorted(subjects + ["s20", "s21"])
    assert [len(v) for v in assign_split(["a", "b", "c"], (0.8, 0.1, 0.1), 0).values()] == [1, 1, 1]
    assert assign_split(["a"], (0.8, 0.1, 0.1), 0) == {"train": ["a"], "val": [], "test": []}


def test_slice_axis_and_centre_fit():
    assert slice_axis(np.diag([0.9, 0.9, 1.2, 1]), None) == 2
    assert slice_axis(np.diag([3.0, 0.5, 0.5, 1]), None) == 0
    sagittal = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    assert slice_axis(sagittal, None) == 1  # isotropic: the voxel axis along world z
    assert slice_axis(sagittal, 0) == 0
    vol = np.arange(2 * 5 * 4).reshape(2, 5, 4)
    padded = centre_fit(vol, (8, 8))
    np.testing.assert_array_equal(padded[:, 1:6, 2:6], vol)
    assert padded.sum() == vol.sum()
    np.testing.assert_array_equal(centre_fit(vol, (3, 2)), vol[:, 1:4, 1:3])


def test_parse_options_defaults_and_errors():
    options = parse_options(workers="2", axis="-1")
    assert options.workers == 2 and options.axis == 2 and options.split == (0.8, 0.1, 0.1)
    with pytest.raises(InputError):
        parse_options(min_signal="-1")


def test_group_by_subject_refuses_a_second_file_and_keeps_brats_folders(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/IXI002-Guys-0828-T2.nii", "IXI002-Guys-0828-PD.nii.gz", "BraTS_1/BraTS_1_t2.nii.gz",
                 "BraTS_2_t1.nii.gz"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = group_by_subject(tmp_path, "IXI*", ixi.PATTERN)
    assert found == {"IXI002-Guys-0828": {"T2": tmp_path / "a/IXI002-Guys-0828-T2.nii",
                                          "PD": tmp_path / "IXI002-Guys-0828-PD.nii.gz"}}
    assert group_by_subject(tmp_path, "BraTS*", brats.PATTERN, own_folder=True) == {
        "BraTS_1": {"t2": tmp_path / "BraTS_1/BraTS_1_t2.nii.gz"}}
    (tmp_path / "IXI002-Guys-0828-T2.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="duplicate T2 image of IXI002-Guys-0828"):
        group_by_subject(tmp_path, "IXI*", ixi.PATTERN)


# ``medsr prepare ldct --split ldctbench``: LDCT-bench's published patient lists on a fake TCIA-style layout
# (tiny DICOM series written by test_ct_denoise's helpers).


def test_ldctbench_split_uses_the_published_lists(tmp_path, monkeypatch, capsys):
    from test_ct_denoise import _ldct_root

    from medsr.data.prepare.ldct import LDCTBENCH
    from medsr.data.ct_pairs import CTPairStore

    assert {name: len(ids) for name, ids in LDCTBENCH.items()} == {"train": 105, "val": 30, "test": 15}
    for anatomy in "CLN":  # 35 / 10 / 5 patients per anatomy, no patient twice
        assert [sum(p[0] == anatomy for p in LDCTBENCH[n]) for n in ("train", "val", "test")] == [35, 10, 5]
    assert len({p for ids in LDCTBENCH.values() for p in ids}) == 150
    assert LDCTBENCH["test"] == ("C121 C249 C170 C135 C280 L241 L107 L006 L221 L220 "
                                 "N176 N138 N153 N284 N090").split()
    # by sorted id, the former 70/10/20 rule would have tested C135 and L241 and trained C121 and L107
    root = _ldct_root(tmp_path / "tcia", monkeypatch, patients=("C095", "C121", "C135", "L033", "L107", "L241",
                                                                 "X001"))
    out = tmp_path / "store"
    capsys.readouterr()
    assert main(["prepare", "ldct", str(root), str(out), "--split", "ldctbench", "--no-progress"]) == 0
    captured = capsys.readouterr()
    split = json.loads((out / "split.json").read_text())
    assert split == {"train": ["C095"], "val": ["L033"], "test": ["C121", "C135", "L241", "L107"]}
    notes = captured.err.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith("medsr: note: ldctbench split: 144 of LDCT-bench's 150 patients")
    assert "C249" in notes[0] and "1 patients below it are in none of its lists and are left out: X001" in notes[0]
    store = CTPairStore(out)
    assert sorted(store.manifest["subjects"]) == ["C095", "C121", "C135", "L033", "L107", "L241"]  # not X001
    ld, fd = store.volume_pair("C121")
    assert ld.shape == fd.shape == (3, 36, 40) and np.allclose(ld - fd, 7)


def test_ldctbench_split_with_an_empty_list_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from test_ct_denoise import _fail, _ldct_root

    root = _ldct_root(tmp_path / "mayo", monkeypatch, patients=("L067", "L506", "C121"))  # 2016 challenge ids
    out = tmp_path / "store"
    line = _fail(capsys, ["prepare", "ldct", str(root), str(out), "--split", "ldctbench", "--no-progress"], out)
    assert "no patient of LDCT-bench's train or val list is below" in line


def test_ldct_file_split(tmp_path):
    from medsr.data.prepare.ldct import make_split

    patients = [f"L{i:03d}" for i in range(10)] + [f"C{i:03d}" for i in range(10)]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": ["L000"], "val": [], "test": ["C001"]}))
    assert make_split(patients, str(path)) == ({"train": ["L000"], "val": [], "test": ["C001"]}, "")
    path.write_text(json.dumps({"train": ["X1"]}))
    with pytest.raises(InputError, match="X1"):
        make_split(patients, str(path))
