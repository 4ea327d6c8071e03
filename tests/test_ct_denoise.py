"""task: denoise end to end on tiny shapes: the embedded CT pair store, its items, training with GAN + EMA, the
weights it exports, ``medsr denoise`` (NIfTI and DICOM, tiles, geometry, HU) and its one-line errors, and
``medsr prepare ldct`` (pairing by slice position, published splits, mismatched pairs)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import test_volume_dicom
from medsr.checkpoint import build_from_weights, save_weights
from medsr.cli import main
from medsr.ct.units import network_input, network_output
from medsr.data import embedded_ct
from medsr.data.ct_pairs import CTPairDataset, CTPairStore
from medsr.data.datasets import ItemSpec
from medsr.engine.runs import train
from medsr.errors import InputError
from medsr.io.dicom import read_dicom_series
from medsr.registry import MODELS


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return embedded_ct.prepare_ct(tmp_path_factory.mktemp("ct") / "store", size=32, progress=False)


def _fail(capsys, argv: list[str], output: Path) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsr: error: ")
    assert not output.exists()
    return lines[0]


def test_embedded_store_is_real_ct_with_simulated_low_dose(store, tmp_path):
    s = CTPairStore(store)
    assert s.split["train"] == ["head", "neck"] and s.split["val"] == s.split["test"] == ["abdomen"]
    for sid in ("head", "abdomen", "neck"):
        ld, fd = s.volume_pair(sid)
        assert fd.min() < -500 and fd.max() > 300  # air and bone: HU, not normalised
        noise = (ld - fd)[fd > -1024]
        assert 1 < noise.std() < 300 and abs(noise.mean()) < noise.std()
    assert s.record("head")["realisations"] == embedded_ct.TRAIN_REALISATIONS
    again = embedded_ct.prepare_ct(tmp_path / "again", size=32, progress=False)
    assert np.array_equal(CTPairStore(again).volume_pair("head", 2)[0], s.volume_pair("head", 2)[0])


def test_embedded_builder_refuses_a_heldout_scan(monkeypatch, tmp_path):
    from medsr.data import heldout

    case = next(c for c in heldout.cases() if c.get("modality") == "CT")
    sources = (("x", case["package"], case["distribution"], case["path"], "train", case["sha256"]),)
    monkeypatch.setattr(embedded_ct, "SOURCES", sources)
    with pytest.raises(InputError, match="held-out"):
        embedded_ct.prepare_ct(tmp_path / "out", size=16, progress=False)
    assert not (tmp_path / "out").exists()


def test_items_are_seeded_patches_in_the_fixed_normalisation(store):
    data = CTPairDataset(store, "train", patch_size=16, augment=True)
    a, b = data[ItemSpec(1, 7)], data[ItemSpec(1, 7)]
    assert a["ld"].shape == (1, 16, 16) and torch.equal(a["ld"], b["ld"]) and torch.equal(a["fd"], b["fd"])
    scaled = CTPairDataset(store, "train", patch_size=16, augment=True, noise_scale=(2.0, 2.0))[ItemSpec(1, 7)]
    assert torch.allclose(scaled["ld"] - scaled["fd"], 2 * (a["ld"] - a["fd"]), atol=1e-5)
    with pytest.raises(InputError, match="noise_scale"):
        CTPairDataset(store, "train", noise_scale=(1.0, 0.5))
    whole = CTPairDataset(store, "val")[0]
    ld, fd = CTPairStore(store).slice_pair("abdomen", 0, 0)
    assert torch.allclose(whole["fd"][0], torch.from_numpy(1 + np.maximum(fd, -1024) / 1000))
    assert torch.allclose(whole["ld"][0], torch.from_numpy(1 + np.maximum(ld, -1024) / 1000))


def test_network_normalisation_round_trips_and_keeps_padding():
    hu = torch.tensor([-3024.0, -1024.0, 0.0, 1500.0])
    x = network_input(hu)
    assert torch.allclose(x, torch.tensor([-0.024, -0.024, 1.0, 2.5]))  # padding clamped to air
    assert torch.allclose(network_output(x, hu), torch.tensor([-3024.0, -1024.0, 0.0, 1500.0]))


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    overrides = [f"data.root={store}", "data.embedded=null", "data.patch_size=16", "data.batch_size=2",
                 "train.steps=4", "val.every=2", f"logging.runs_dir={runs}", "model.width=8", "model.n_blocks=1",
                 "train.gan.discriminator.n_feats=8", "train.ema=0.5"]
    return train("ct_cncl_lite", overrides, overwrite=True, name="cncl_lite") / "weights.pth"


def test_training_exports_denoise_weights_with_the_hu_normalisation(trained):
    model, meta = build_from_weights(trained, task="denoise")
    assert meta["task"] == "denoise" and meta["model"]["type"] == "cncl_lite" and meta["norm"]["method"] == "hu"
    log = (trained.parent / "train.log").read_text()
    assert "psnr_redcnn" in log and "ssim_ldctbench-abdomen" in log
    with pytest.raises(InputError, match="needs sr weights"):
        build_from_weights(trained, task="sr")


def test_medsr_test_scores_denoise_weights_per_window_with_intervals(trained, store, tmp_path, capsys):
    """medsr test on denoise weights: the denoised volumes and the low-dose input per window, volumes the unit,
    and numbers equal to scoring denoise_slices' output directly."""
    from medsr.inference.denoise import denoise_slices
    from medsr.metrics.ct import scores_in_windows

    capsys.readouterr()
    out = tmp_path / "r.json"
    assert main(["test", str(trained), "--data", str(store), "--split", "val", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ldctbench-abdomen" in printed and "low dose" in printed and "95% t-interval" in printed
    report = json.loads(out.read_text())
    rows = {(r["method"], r["window"]): r for r in report["results"]}
    assert set(rows) == {(m, w) for m in ("cncl_lite", "low dose") for w in ("redcnn", "ldctbench-abdomen")}
    model, _ = build_from_weights(trained, task="denoise")
    sid, ld, fd = next(CTPairDataset(store, "val").volumes())
    direct = scores_in_windows(denoise_slices(model, ld), fd, ("redcnn",))
    assert rows[("cncl_lite", "redcnn")]["psnr"] == pytest.approx(direct["psnr_redcnn"], abs=1e-4)
    assert rows[("low dose", "redcnn")]["psnr"] == pytest.approx(scores_in_windows(ld, fd, ("redcnn",))["psnr_redcnn"])
    assert rows[("cncl_lite", "redcnn")]["n_volumes"] == report["protocol"]["volumes"] == 1
    assert main(["test", str(trained), "--data", str(store), "--scales", "2"]) == 2
    assert "is CT denoising weights: --scales does not apply" in capsys.readouterr().err


def test_paper_cncl_trains_with_its_conditional_gan_and_exports(store, tmp_path):
    overrides = [f"data.root={store}", "data.embedded=null", "data.patch_size=16", "data.batch_size=2",
                 "train.steps=2", "val.every=2", f"logging.runs_dir={tmp_path}", "model.base=4", "model.depth=2",
                 "train.gan.discriminator.n_feats=4", "train.gan.discriminator.n_layers=2"]
    weights = train("ct_cncl", overrides, overwrite=True, name="cncl") / "weights.pth"
    model, meta = build_from_weights(weights, task="denoise")
    assert meta["model"]["type"] == "cncl" and type(model) is MODELS.get("cncl")
    state = torch.load(weights.parent / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["state_dict"]["adversary.discriminator.net.0.weight"].shape[1] == 3  # [fused, noise, ld]


def _nifti(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), str(path))
    return path


def _ct_volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = np.full((40, 36, 3), -1000.0, np.float32)
    volume[6:34, 5:31] = 40 + 30 * rng.standard_normal((28, 26, 3))
    volume[:3] = -3024  # padding outside the field of view
    return volume


def test_denoise_nifti_keeps_grid_header_and_padding(trained, tmp_path):
    affine = np.array([[0.7, 0.1, 0, -20], [0, 0.7, 0, 10], [0, 0, 2.5, 5], [0, 0, 0, 1]])
    src = _nifti(tmp_path / "ld.nii.gz", _ct_volume(), affine)
    out = tmp_path / "out.nii.gz"
    assert main(["denoise", str(src), str(out), "--weights", str(trained.parent)]) == 0
    image = nib.load(out)
    assert image.shape == (40, 36, 3) and np.allclose(image.affine, affine) and image.get_data_dtype() == np.float32
    data = image.get_fdata()
    assert np.all(data[:3] == -3024) and np.isfinite(data).all()
    model, _ = build_from_weights(trained)
    from medsr.inference.denoise import denoise_slices

    # the benchmarks' and validation's path gives the command's voxels exactly (same process, same options)
    expected = np.moveaxis(denoise_slices(model, np.moveaxis(_ct_volume(), 2, 0)), 0, 2)
    np.testing.assert_array_equal(data, expected.astype(np.float32))


def test_default_weights_are_the_shipped_dncnn_and_denoise(tmp_path):
    from medsr.infer.denoise import default_ct_weights

    model, meta = build_from_weights(default_ct_weights(), task="denoise")
    assert meta["model"]["type"] == "dncnn" and type(model) is MODELS.get("dncnn")
    assert meta["model"]["depth"] == 17 and sum(p.numel() for p in model.parameters()) < 200_000
    assert meta["norm"]["method"] == "hu"
    src = _nifti(tmp_path / "ld.nii.gz", _ct_volume(), np.eye(4))
    out = tmp_path / "out.nii.gz"
    assert main(["denoise", str(src), str(out)]) == 0
    tissue = (slice(8, 32), slice(7, 29))
    before, after = _ct_volume()[tissue], nib.load(out).get_fdata()[tissue]
    assert after.std() < 0.85 * before.std()  # white noise of 30 HU on 40 HU tissue; measured: 0.74


def test_tiles_give_the_whole_slice_result_for_a_small_receptive_field(tmp_path):
    torch.manual_seed(0)
    spec = {"type": "dncnn", "depth": 2, "width": 4, "batch_norm": False}  # receptive radius 2
    model = MODELS.build(spec)
    weights = tmp_path / "w.pth"
    save_weights(weights, spec, model.state_dict(), meta={"task": "denoise"})
    src = _nifti(tmp_path / "ld.nii.gz", np.tile(_ct_volume(), (2, 2, 1)), np.eye(4))
    whole, tiled = tmp_path / "whole.nii.gz", tmp_path / "tiled.nii.gz"
    assert main(["denoise", str(src), str(whole), "--weights", str(weights)]) == 0
    assert main(["denoise", str(src), str(tiled), "--weights", str(weights), "--tile", "32", "--batch-size", "2"]) == 0
    assert np.allclose(nib.load(whole).get_fdata(), nib.load(tiled).get_fdata(), atol=1e-3)


def _dicom_ct(folder: Path, volume: np.ndarray, monkeypatch, rescale: bool = True, offset: float = 0.0) -> Path:
    import pydicom

    monkeypatch.setattr(test_volume_dicom, "ROW_SPACING", 0.7)
    monkeypatch.setattr(test_volume_dicom, "COL_SPACING", 0.7)
    folder.mkdir(parents=True)
    for k in range(volume.shape[2]):
        path = folder / f"{k}.dcm"
        test_volume_dicom.write_slice(path, volume[..., k].T + 3024, [0.0, 0.0, 2.0 * k + offset], "1.2.3", 1.0,
                                      -3024.0)
        if not rescale:
            ds = pydicom.dcmread(path)
            del ds.RescaleSlope, ds.RescaleIntercept
            ds.save_as(path)
    return folder


def test_denoise_dicom_series_to_dicom_keeps_geometry_and_hu(trained, tmp_path, monkeypatch):
    series = _dicom_ct(tmp_path / "in", np.rint(_ct_volume()), monkeypatch)
    out_dicom, out_nifti = tmp_path / "out", tmp_path / "out.nii.gz"
    assert main(["denoise", str(series), str(out_dicom), "--weights", str(trained)]) == 0
    assert main(["denoise", str(series), str(out_nifti), "--weights", str(trained)]) == 0
    volume, affine = read_dicom_series(out_dicom)
    reference, ref_affine = read_dicom_series(series)
    assert np.allclose(affine, ref_affine) and volume.shape == reference.shape
    nifti = nib.load(out_nifti)
    assert np.allclose(nifti.affine, ref_affine)
    assert np.abs(volume - nifti.get_fdata()).max() <= 0.5 + 1e-3  # stored as integers through the rescale
    import pydicom

    first = pydicom.dcmread(sorted(out_dicom.iterdir())[0])
    assert first.SeriesInstanceUID != "1.2.3" and "medsr denoise" in first.SeriesDescription


def test_denoise_errors_are_one_line_and_write_nothing(trained, tmp_path, monkeypatch, capsys):
    mr = _nifti(tmp_path / "mr.nii.gz", np.random.default_rng(1).random((20, 20, 2)) * 800, np.eye(4))
    out = tmp_path / "o.nii.gz"
    assert "do not look like CT" in _fail(capsys, ["denoise", str(mr), str(out), "--weights", str(trained)], out)
    bare = _dicom_ct(tmp_path / "bare", np.rint(_ct_volume()), monkeypatch, rescale=False)
    assert "lacks RescaleSlope" in _fail(capsys, ["denoise", str(bare), str(out), "--weights", str(trained)], out)
    ct = _nifti(tmp_path / "ct.nii.gz", _ct_volume(), np.eye(4))
    assert "DICOM series input" in _fail(capsys, ["denoise", str(ct), str(tmp_path / "dir"), "--weights",
                                                  str(trained)], tmp_path / "dir")
    import medsr.infer.denoise as infer_denoise

    monkeypatch.setattr(infer_denoise, "SHIPPED_CT_WEIGHTS", "missing.pth")
    assert "missing.pth is not installed" in _fail(capsys, ["denoise", str(ct), str(out)], out)
    sr = tmp_path / "sr.pth"
    save_weights(sr, {"type": "bicubic"}, {}, meta={"task": "sr"})
    assert "needs denoise weights" in _fail(capsys, ["denoise", str(ct), str(out), "--weights", str(sr)], out)


def _ldct_root(root: Path, monkeypatch, patients=("L067", "L506"), shift: float = 0.0) -> Path:
    volume = np.rint(_ct_volume())
    for p in patients:
        _dicom_ct(root / p / "full_1mm", volume, monkeypatch)
        _dicom_ct(root / p / "quarter_1mm", volume + 7, monkeypatch, offset=shift if p == patients[-1] else 0.0)
    return root


def test_prepare_ldct_pairs_by_position_with_the_redcnn_split(tmp_path, monkeypatch, capsys):
    root = _ldct_root(tmp_path / "mayo", monkeypatch)
    out = tmp_path / "store"
    assert main(["prepare", "ldct", str(root), str(out), "--no-progress"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert split == {"train": ["L067"], "val": ["L506"], "test": ["L506"]}
    ld, fd = CTPairStore(out).volume_pair("L506")
    assert ld.shape == fd.shape == (3, 36, 40) and np.allclose(ld - fd, 7)
    item = CTPairDataset(out, "train", patch_size=16)[ItemSpec(0, 3)]
    assert item["ld"].shape == (1, 16, 16)


def test_prepare_ldct_refuses_a_mismatched_pair(tmp_path, monkeypatch, capsys):
    root = _ldct_root(tmp_path / "mayo", monkeypatch, shift=1.0)
    out = tmp_path / "store"
    line = _fail(capsys, ["prepare", "ldct", str(root), str(out), "--no-progress"], out)
    assert "mismatched LD/FD pair" in line and "L506" in line


def test_ct_demo_trains_and_reports_against_the_low_dose_input(tmp_path, capsys):
    data = embedded_ct.prepare_ct(tmp_path / "ct64", size=64, progress=False)
    out = tmp_path / "runs" / "demo_ct"
    assert main(["demo", "--task", "ct", "--minutes", "0.02", "--data", str(data), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| abdomen | low dose |" in report and "| abdomen | cncl_lite (" in report and "PSNR redcnn" in report
    assert (out / "comparison.png").stat().st_size > 1000


def test_embedded_store_exports_nifti_volumes_the_commands_read(store, tmp_path):
    """``nifti/<sid>_{fd,ld}.nii.gz`` hold the store's HU volumes with slices on the last axis, and ``medsr degrade
    --dose`` / ``medsr evaluate --ct-preset`` run on them as the README shows."""
    s = CTPairStore(store)
    for sid in ("head", "neck", "abdomen"):
        ld, fd = s.volume_pair(sid)
        for name, volume in (("fd", fd), ("ld", ld)):
            image = nib.load(store / "nifti" / f"{sid}_{name}.nii.gz")
            assert np.array_equal(image.get_fdata(dtype=np.float32), np.moveaxis(volume, 0, 2))
            assert np.allclose(image.header.get_zooms()[:2], s.record(sid)["pixel_mm"])
    fd_path = store / "nifti" / "abdomen_fd.nii.gz"
    low = tmp_path / "ld.nii.gz"
    assert main(["degrade", str(fd_path), str(low), "--dose", "0.25", "--seed", "3"]) == 0
    assert nib.load(low).shape == nib.load(fd_path).shape
    assert main(["evaluate", str(low), str(fd_path), "--ct-preset", "redcnn"]) == 0
