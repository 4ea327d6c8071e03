"""``medsr evaluate`` end to end on small fake files in every supported format."""

import csv
import json

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medsr.cli import main


def _wang(gt, pred, data_range, **kw):
    return structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range, **kw)


def _noisy(rng, gt, scale):
    return gt + scale * rng.standard_normal(gt.shape)


@pytest.fixture()
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    (pred / "sub").mkdir(parents=True)
    (gt / "sub").mkdir(parents=True)
    truth = {}
    g8 = rng.integers(0, 256, (36, 40), dtype=np.uint8)
    p8 = np.clip(_noisy(rng, g8.astype(float), 8), 0, 255).astype(np.uint8)
    Image.fromarray(g8).save(gt / "a.png")
    Image.fromarray(p8).save(pred / "a.png")
    truth["a"] = (p8.astype(float), g8.astype(float), 255.0)
    gf = rng.random((30, 33)).astype(np.float32)
    pf = _noisy(rng, gf, 0.05).astype(np.float32)
    tifffile.imwrite(gt / "b.tif", gf)
    np.save(pred / "b.npy", pf)
    truth["b"] = (pf.astype(float), gf.astype(float), float(gf.max()) - float(gf.min()))
    gm = rng.random((24, 26))
    pm = _noisy(rng, gm, 0.1)
    scipy.io.savemat(gt / "sub" / "c.mat", {"img": gm})
    with h5py.File(pred / "sub" / "c.h5", "w") as f:
        f["img"] = pm
    truth["sub/c"] = (pm, gm, float(gm.max() - gm.min()))
    return pred, gt, truth


def test_mixed_formats_match_skimage_and_write_reports(dataset, tmp_path, capsys):
    pred, gt, truth = dataset
    js, cs = tmp_path / "out" / "r.json", tmp_path / "out" / "r.csv"
    assert main(["evaluate", str(pred), str(gt), "--json", str(js), "--csv", str(cs)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("protocol")
    assert "dtype, gt-range (default" in text and "mask:" in text and "crop border:" in text and "11x11" in text
    report = json.loads(js.read_text())
    items = {i["file"]: i for i in report["items"]}
    assert sorted(items) == sorted(truth)
    for key, (p, g, r) in truth.items():
        assert items[key]["range"] == pytest.approx(r)
        assert items[key]["psnr"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=r), abs=1e-9)
        assert items[key]["ssim"] == pytest.approx(_wang(g, p, r), abs=1e-6)
        assert items[key]["nrmse"] == pytest.approx(np.linalg.norm(p - g) / np.linalg.norm(g), abs=1e-9)
    psnrs = [items[k]["psnr"] for k in truth]
    assert report["summary"]["psnr"]["mean"] == pytest.approx(np.mean(psnrs))
    assert report["summary"]["psnr"]["std"] == pytest.approx(np.std(psnrs, ddof=1))
    rows = list(csv.DictReader(cs.open()))
    assert [r["file"] for r in rows] == sorted(truth) and float(rows[0]["psnr"]) == pytest.approx(items["a"]["psnr"])


def test_volumes_per_volume_and_per_slice(tmp_path, capsys):
    rng = np.random.default_rng(1)
    gt = rng.random((20, 22, 4)).astype(np.float32) * 3
    pred = _noisy(rng, gt, 0.1).astype(np.float32)
    for d, data in (("gt", gt), ("pred", pred)):
        (tmp_path / d).mkdir()
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / d / "v.nii.gz")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--ssim-preset", "fastmri",
                 "--json", str(out)]) == 0
    item = json.loads(out.read_text())["items"][0]
    g, p = gt.astype(float), pred.astype(float)
    peak = g.max()
    assert item["psnr"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=peak), abs=1e-9)
    slices = [structural_similarity(g[..., z], p[..., z], data_range=peak) for z in range(4)]
    assert item["ssim"] == pytest.approx(np.mean(slices), abs=1e-6)
    assert "gt-max (the fastmri preset's rule)" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--per-slice", "--json", str(out)]) == 0
    items = json.loads(out.read_text())["items"]
    assert [i["slice"] for i in items] == [0, 1, 2, 3]
    r = g.max() - g.min()
    for z, it in enumerate(items):
        assert it["ssim"] == pytest.approx(_wang(g[..., z], p[..., z], r), abs=1e-6)
    assert "unit:              slice" in capsys.readouterr().out


def test_rgb_all_channels_or_gray(tmp_path):
    rng = np.random.default_rng(2)
    g = rng.integers(0, 256, (32, 34, 3), dtype=np.uint8)
    p = np.clip(_noisy(rng, g.astype(float), 10), 0, 255).astype(np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    Image.fromarray(p).save(tmp_path / "p.png")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tmp_path / "p.png"), str(tmp_path / "g.png"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["items"][0]["ssim"] == pytest.approx(
        _wang(g, p, 255, channel_axis=-1), abs=1e-6)
    assert main(["evaluate", str(tmp_path / "p.png"), str(tmp_path / "g.png"), "--gray", "--json", str(out)]) == 0
    luma = np.array([0.299, 0.587, 0.114])
    assert json.loads(out.read_text())["items"][0]["ssim"] == pytest.approx(
        _wang(g.astype(float) @ luma, p.astype(float) @ luma, 255), abs=1e-6)


def test_mask_and_crop(tmp_path):
    rng = np.random.default_rng(3)
    g = rng.random((30, 30))
    p = _noisy(rng, g, 0.1)
    mask = np.zeros((30, 30), np.uint8)
    mask[8:25, 3:20] = 255
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "g.npy", g)
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "g.npy"), "--mask", str(tmp_path / "m.png"),
                 "--crop-border", "4", "--data-range", "1", "--metrics", "psnr", "--json", str(out)]) == 0
    inside = mask[4:-4, 4:-4] > 0
    mse = np.mean((p[4:-4, 4:-4][inside] - g[4:-4, 4:-4][inside]) ** 2)
    report = json.loads(out.read_text())
    assert report["items"][0]["psnr"] == pytest.approx(10 * np.log10(1 / mse))
    assert "m.png" in report["protocol"]["mask"] and report["protocol"]["crop border"].startswith("4")


def test_small_and_constant_images_are_reported_not_fatal(tmp_path, capsys):
    rng = np.random.default_rng(4)
    for name, shape in (("small", (8, 9)), ("tiny", (2, 6))):
        np.save(tmp_path / f"{name}_g.npy", rng.random(shape))
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    for name in ("small", "tiny"):
        g = np.load(tmp_path / f"{name}_g.npy")
        np.save(tmp_path / "g" / f"{name}.npy", g)
        np.save(tmp_path / "p" / f"{name}.npy", g + 0.01)
    np.save(tmp_path / "g" / "flat.npy", np.ones((16, 16)))
    np.save(tmp_path / "p" / "flat.npy", np.ones((16, 16)) * 1.1)
    out = tmp_path / "r.json"
    assert main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "--json", str(out)]) == 0
    items = {i["file"]: i for i in json.loads(out.read_text())["items"]}
    assert items["small"]["note"] == "ssim window 7x7" and 0 < items["small"]["ssim"] <= 1
    assert items["tiny"]["ssim"] is None and "smaller than 3x3" in items["tiny"]["note"]
    assert items["flat"]["psnr"] is None and "data range is 0" in items["flat"]["note"]
    assert "n/a" in capsys.readouterr().out


@pytest.mark.parametrize("case,message", [
    ("unmatched", "without a match: extra"),
    ("shape", "differs from the reference"),
    ("nan", "non-finite"),
    ("empty", "no files found"),
    ("dtype-float", "rule 'dtype' needs integer images"),
    ("bad-range", "--data-range"),
    ("lpips", "nothing is downloaded"),
    ("crop", "--crop-border"),
    ("mask", "no mask for"),
])
def test_bad_input_is_one_line_exit_2(dataset, tmp_path, capsys, case, message):
    pred, gt, _ = dataset
    args = []
    if case == "unmatched":
        np.save(pred / "extra.npy", np.zeros((3, 3)))
    elif case == "shape":
        np.save(pred / "b.npy", np.zeros((30, 32), np.float32))
    elif case == "nan":
        np.save(pred / "b.npy", np.full((30, 33), np.nan, np.float32))
    elif case == "empty":
        pred = tmp_path / "empty"
        pred.mkdir()
    elif case == "dtype-float":
        args = ["--data-range", "dtype"]
    elif case == "bad-range":
        args = ["--data-range", "wide"]
    elif case == "lpips":
        args = ["--metrics", "psnr,lpips"]
    elif case == "crop":
        args = ["--crop-border", "20"]
    elif case == "mask":
        (tmp_path / "masks").mkdir()
        Image.fromarray(np.ones((36, 40), np.uint8)).save(tmp_path / "masks" / "a.png")
        args = ["--mask", str(tmp_path / "masks")]
    assert main(["evaluate", str(pred), str(gt), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medsr: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_allow_missing_evaluates_matched_pairs(dataset, capsys):
    pred, gt, truth = dataset
    np.save(pred / "extra.npy", np.zeros((3, 3)))
    assert main(["evaluate", str(pred), str(gt), "--allow-missing"]) == 0
    out = capsys.readouterr().out
    assert "not matched: 1 in" in out and "extra" in out and f"n={len(truth)}" in out


def test_an_integer_image_far_from_its_dtype_range_is_noted(tmp_path, capsys):
    """int16 MR data spanning 0..199: the dtype rule (scikit-image's default) gives 65535 and inflated scores; the
    item says so, and gt-range scores the data."""
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 200, size=(32, 32, 3)).astype(np.int16)
    pred = np.clip(gt + rng.integers(-5, 6, size=gt.shape), 0, 199).astype(np.int16)
    for name, data in (("gt.nii.gz", gt), ("pred.nii.gz", pred)):
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / name))
    assert main(["evaluate", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"), "--json",
                 str(tmp_path / "d.json")]) == 0
    (item,) = json.loads((tmp_path / "d.json").read_text())["items"]
    assert item["range"] == 65535 and "spans 199 of the dtype range 65535" in item["note"] and item["psnr"] > 60
    assert main(["evaluate", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"), "--data-range", "gt-range",
                 "--json", str(tmp_path / "g.json")]) == 0
    (item,) = json.loads((tmp_path / "g.json").read_text())["items"]
    assert item["range"] == 199 and "inflated" not in item["note"] and item["psnr"] < 40
