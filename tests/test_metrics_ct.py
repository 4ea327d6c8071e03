"""CT windows in ``medsr evaluate`` (against scikit-image on clipped images), ROI noise and the NPS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from test_evaluate_cli import _wang

from medsr.cli import main
from medsr.metrics.ct import CT_PRESETS, hu_noise, noise_power_spectrum, radial_nps


@pytest.fixture()
def hu_pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = rng.uniform(-1000, 1000, (40, 44))
    pred = gt + 80 * rng.standard_normal(gt.shape)
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "pred.npy", pred)
    return tmp_path / "pred.npy", tmp_path / "gt.npy", pred, gt


@pytest.mark.parametrize("flags, low, high", [(["--ct-preset", "redcnn"], -160, 240),
                                              (["--ct-window", "0,600"], -300, 300),
                                              (["--ct-preset", "ldctbench-chest"], -1350, 150)])
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
