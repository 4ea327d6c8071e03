"""CT windows in ``medsr evaluate`` (against scikit-image on clipped images), LDCT-bench's protocol against an
independent implementation of its formulas on real CT, ROI noise and the NPS."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from test_evaluate_cli import _wang

from medsr.cli import main
from medsr.data import embedded_ct
from medsr.metrics.ct import CT_PRESETS, hu_noise, noise_power_spectrum, radial_nps, scores_in_windows


@pytest.fixture()
def hu_pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = rng.uniform(-1000, 1000, (40, 44))
    pred = gt + 80 * rng.standard_normal(gt.shape)
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "pred.npy", pred)
    return tmp_path / "pred.npy", tmp_path / "gt.npy", pred, gt


@pytest.mark.parametrize("flags, low, high", [(["--ct-preset", "redcnn"], -160, 240),
                                              (["--ct-window", "0,600"], -300, 300)])
def test_window_clips_and_sets_the_data_range(hu_pair, tmp_path: Path, capsys, flags, low, high) -> None:
    pred_path, gt_path, pred, gt = hu_pair
    report = tmp_path / "report.json"
    assert main(["evaluate", str(pred_path), str(gt_path), *flags, "--json", str(report)]) == 0
    assert f"[{low:g}, {high:g}]" in capsys.readouterr().out
    content = json.loads(report.read_text())
    row = content["items"][0]
    p, g = np.clip(pred, low, high), np.clip(gt, low, high)
    assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=high - low), rel=1e-9)
    assert row["ssim"] == pytest.approx(_wang(g, p, high - low), abs=1e-6)
    assert row["range"] == high - low


@pytest.mark.parametrize("flags, message", [
    (["--ct-preset", "redcnn", "--ct-window", "40,400"], "exclude each other"),
    (["--ct-window", "40"], "CENTER,WIDTH"),
    (["--ct-window", "40,-5"], "width must be positive"),
    (["--ct-preset", "liver"], "must be one of"),
    (["--ct-preset", "dugan", "--data-range", "255"], "does not combine with a CT window"),
    (["--ct-preset", "ldctbench-neuro", "--ssim-preset", "wang"], "scores with SSIM preset skimage"),
])
def test_bad_window_flags_are_one_line_errors(hu_pair, capsys, flags, message) -> None:
    pred_path, gt_path, _, _ = hu_pair
    assert main(["evaluate", str(pred_path), str(gt_path), *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_presets_have_the_published_windows() -> None:
    assert (CT_PRESETS["redcnn"].low, CT_PRESETS["redcnn"].high) == (-160, 240)
    assert (CT_PRESETS["corediff"].low, CT_PRESETS["corediff"].high) == (-1000, 1000)
    assert (CT_PRESETS["ldctbench-abdomen"].center, CT_PRESETS["ldctbench-abdomen"].width) == (50, 400)
    assert (CT_PRESETS["ldctbench-neuro"].center, CT_PRESETS["ldctbench-neuro"].width) == (40, 80)
    assert (CT_PRESETS["ldctbench-chest"].center, CT_PRESETS["ldctbench-chest"].width) == (-600, 1500)


# LDCT-bench (eeulig/ldct-benchmark, ldctbench/utils/test_utils.py and metrics.py), written here from its formulas
# as an independent reference: images in HU + 1024 with the centre shifted alike, apply_center_width to [0, 1]
# (linear between C - 0.5 -+ (W - 1) / 2), PSNR 10 log10(1 / MSE) and scikit-image's default SSIM, data range 1,
# per slice; the table averages the slices.
LDCTBENCH_CW = {"ldctbench-chest": (-600, 1500), "ldctbench-abdomen": (50, 400), "ldctbench-neuro": (40, 80)}


def _ldctbench_window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    x, c = hu.astype(np.float64) + 1024.0, center + 1024.0
    lower, upper = c - 0.5 - (width - 1) / 2, c - 0.5 + (width - 1) / 2
    linear = (x - (c - 0.5)) / (width - 1) + 0.5
    return np.where(x <= lower, 0.0, np.where(x > upper, 1.0, linear))


def _ldctbench_slice(pred: np.ndarray, ref: np.ndarray, preset: str) -> tuple[float, float]:
    t, p = (_ldctbench_window(a, *LDCTBENCH_CW[preset]) for a in (ref, pred))
    return peak_signal_noise_ratio(t, p, data_range=1.0), structural_similarity(t, p, data_range=1.0)


@pytest.fixture(scope="module")
def real_ct() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{subject: (pred, ref)}``: a real CT slice (the embedded data's pydicom files, full size, HU) as a
    3-slice reference volume and a prediction whose noise differs slice by slice (20, 60, 150 HU, plus a 15 HU
    bias), so that the mean of per-slice PSNRs and the PSNR of the pooled error differ."""
    rng = np.random.default_rng(5)
    out = {}
    for subject, package, distribution, relative, _, sha in embedded_ct.SOURCES:
        if subject == "neck":
            continue
        hu, _ = embedded_ct.read_ct_slice(embedded_ct.source_path(package, distribution, relative, sha))
        ref = np.stack([hu] * 3).astype(np.float64)
        noise = np.array([20.0, 60.0, 150.0])[:, None, None] * rng.standard_normal(ref.shape)
        out[subject] = (ref + noise + 15.0, ref)
    return out


@pytest.mark.parametrize("subject, preset", [("head", "ldctbench-neuro"), ("abdomen", "ldctbench-abdomen"),
                                             ("abdomen", "ldctbench-chest")])
def test_ldctbench_presets_equal_its_formulas_on_real_ct(real_ct, subject, preset) -> None:
    pred, ref = real_ct[subject]
    reference = np.array([_ldctbench_slice(pred[z], ref[z], preset) for z in range(len(ref))])
    values = scores_in_windows(pred, ref, (preset,))
    assert values[f"psnr_{preset}"] == pytest.approx(reference[:, 0].mean(), abs=1e-6)
    assert values[f"ssim_{preset}"] == pytest.approx(reference[:, 1].mean(), abs=1e-6)
    for z in range(len(ref)):  # a 2-D slice is scored alone
        single = scores_in_windows(pred[z], ref[z], (preset,))
        assert (single[f"psnr_{preset}"], single[f"ssim_{preset}"]) == pytest.approx(tuple(reference[z]), abs=1e-6)
    pooled = scores_in_windows(pred, ref, (preset,), reduction="volume")[f"psnr_{preset}"]
    assert abs(pooled - values[f"psnr_{preset}"]) > 0.1  # the reduction is a real choice on this volume
    c, w = LDCTBENCH_CW[preset]  # the former protocol (clipped HU, data range W, Wang SSIM) is 1e-3 away or more
    old = np.mean([_wang(np.clip(ref[z], c - w / 2, c + w / 2), np.clip(pred[z], c - w / 2, c + w / 2), w)
                   for z in range(len(ref))])
    assert abs(old - values[f"ssim_{preset}"]) > 1e-3


def test_ldctbench_window_is_apply_center_width() -> None:
    window = CT_PRESETS["ldctbench-abdomen"]
    hu = np.array([-1000.0, -150.0, -149.9, 49.5, 50.0, 248.9, 249.0, 249.1, 3000.0])
    np.testing.assert_allclose(window.apply(torch.from_numpy(hu)).numpy(), _ldctbench_window(hu, 50, 400),
                               atol=1e-12)
    assert (window.low, window.high, window.data_range, window.floor) == (-150.0, 249.0, 1.0, 0.0)
    assert window.apply(torch.tensor([49.5])).item() == 0.5  # C - 0.5 maps to the middle


def test_evaluate_ldctbench_preset_on_a_real_ct_volume(real_ct, tmp_path: Path, capsys) -> None:
    pred, ref = real_ct["head"]
    for name, volume in (("pred", pred), ("gt", ref)):
        nib.save(nib.Nifti1Image(np.moveaxis(volume, 0, -1).astype(np.float32), np.eye(4)), tmp_path / f"{name}.nii")
    reference = np.array([_ldctbench_slice(pred[z].astype(np.float32), ref[z].astype(np.float32), "ldctbench-neuro")
                          for z in range(3)])
    report = tmp_path / "r.json"
    args = ["evaluate", str(tmp_path / "pred.nii"), str(tmp_path / "gt.nii"), "--ct-preset", "ldctbench-neuro"]
    assert main([*args, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "ct reduction:      per slice, then the mean over slices" in out
    assert "skimage: uniform 7x7 window, sample covariance" in out and "data range 1" in out
    item = json.loads(report.read_text())["items"][0]
    assert (item["psnr"], item["ssim"], item["range"]) == pytest.approx((*reference.mean(0), 1.0), abs=1e-6)
    assert main([*args, "--ct-reduction", "volume", "--json", str(report)]) == 0
    assert "PSNR of the whole volume's squared error" in capsys.readouterr().out
    item = json.loads(report.read_text())["items"][0]
    t, p = (_ldctbench_window(a.astype(np.float32), 40, 80) for a in (ref, pred))
    assert item["psnr"] == pytest.approx(peak_signal_noise_ratio(t, p, data_range=1.0), abs=1e-6)
    assert item["ssim"] == pytest.approx(reference[:, 1].mean(), abs=1e-6)


def test_hu_noise_of_a_uniform_region() -> None:
    rng = np.random.default_rng(1)
    image = 40 + 12 * rng.standard_normal((128, 128))
    roi = np.zeros_like(image, dtype=bool)
    roi[20:100, 30:110] = True
    image[~roi] = 1000  # outside the ROI: ignored
    assert hu_noise(image, roi) == pytest.approx(12, rel=0.03)
    with pytest.raises(ValueError):
        hu_noise(image, np.zeros_like(roi))


def test_nps_of_white_noise_is_flat_and_integrates_to_the_variance() -> None:
    rng = np.random.default_rng(2)
    sigma, dx, n = 7.0, 0.5, 32
    rois = 100 + sigma * rng.standard_normal((400, n, n))
    nps, freqs = noise_power_spectrum(rois, dx)
    df = freqs[1] - freqs[0]
    centred = rois - rois.mean(axis=(1, 2), keepdims=True)
    assert nps.sum() * df * df == pytest.approx(np.mean(centred**2), rel=1e-9)  # Parseval
    rings, profile = radial_nps(rois, dx)
    assert rings[1] == pytest.approx(1 / (n * dx)) and rings[-1] == pytest.approx(1 / (2 * dx))
    np.testing.assert_allclose(profile[1:], sigma**2 * dx**2, rtol=0.1)
    assert profile[0] == pytest.approx(0, abs=1e-9)  # the ROI means were removed
