"""The classical restorers (medsr.classical): the transforms and coefficient variances of the BM3D-style filter, the
PSD of known correlated noise, the flat-region noise estimator on simulated FBP noise, and ``medsr denoise --method
nlm|bm3d`` on a small simulated low-dose CT (PSNR in the RED-CNN window, geometry, one-line errors)."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medsr.classical.bm3d import Bm3dParams, bm3d, coefficient_variances, dct_matrix, haar_matrix
from medsr.classical.noise import estimate_noise, psd_of_noise, tissue_mask
from medsr.cli import main
from medsr.ct.dose import simulate_low_dose
from medsr.ct.geometry import default_geometry
from medsr.ct.phantom import body_phantom, ellipse_image
from medsr.ct.units import mu_to_hu
from medsr.data import embedded_ct

WINDOW = (-160.0, 240.0)  # the RED-CNN window, HU


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    lo, hi = WINDOW
    err = np.clip(x, lo, hi) - np.clip(ref, lo, hi)
    return 10 * math.log10((hi - lo) ** 2 / float(np.mean(err**2)))


def _colored_noise(shape: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """White noise circularly filtered by a 3x3 kernel, and its exact PSD on a 32x32 grid."""
    kernel = torch.tensor([[0.1, 0.3, 0.1], [0.3, 1.0, -0.2], [0.0, 0.2, 0.1]], dtype=torch.float64)
    white = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    spectrum = torch.fft.fft2(kernel, s=shape)
    noise = torch.fft.ifft2(torch.fft.fft2(white) * spectrum).real
    return noise, torch.fft.fft2(kernel, s=(32, 32)).abs() ** 2


def _white(sigma: float) -> torch.Tensor:
    return torch.full((16, 16), sigma**2, dtype=torch.float64)


def test_transforms_are_orthonormal():
    for matrix in (dct_matrix(8), haar_matrix(16), haar_matrix(1)):
        assert torch.allclose(matrix @ matrix.T, torch.eye(matrix.shape[0], dtype=matrix.dtype), atol=1e-12)
    assert torch.allclose(haar_matrix(4)[0], torch.full((4,), 0.5, dtype=torch.float64))


def test_coefficient_variances_match_filtered_noise():
    """The DCT coefficient variances predicted from the PSD equal those of 16384 disjoint 8x8 blocks of the noise
    (sampling error of a variance from n blocks: sqrt(2 / n) = 1.1 %; tolerance 6 %)."""
    noise, psd = _colored_noise((1024, 1024), 0)
    blocks = noise.reshape(128, 8, 128, 8).permute(0, 2, 1, 3).reshape(-1, 64)
    measured = (blocks @ torch.kron(dct_matrix(8), dct_matrix(8)).T).var(dim=0)
    predicted = coefficient_variances(psd, 8)
    assert torch.allclose(measured, predicted, rtol=0.06)
    assert predicted.max() / predicted.min() > 4  # colored: a white PSD would give one value
    assert torch.allclose(coefficient_variances(_white(3.0), 8), torch.full((64,), 9.0, dtype=torch.float64))
    small = torch.fft.fft2(torch.fft.ifft2(psd).real[[*range(8), *range(24, 32)]][:, [*range(8), *range(24, 32)]])
    assert torch.allclose(coefficient_variances(small.real, 12), coefficient_variances(psd, 12), rtol=1e-9)


def test_psd_of_noise_recovers_a_known_psd():
    noise, psd = _colored_noise((512, 512), 1)
    got = psd_of_noise(noise)
    assert abs(got.mean() / psd.mean() - 1) < 0.05  # the variance
    lag = torch.fft.ifft2(got).real, torch.fft.ifft2(psd).real  # autocovariances at lags (0, 1) and (1, 0)
    for index in ((0, 1), (1, 0), (1, 1)):
        assert abs(float(lag[0][index] - lag[1][index])) < 0.05 * float(psd.mean())


@pytest.fixture(scope="module")
def phantom() -> tuple[torch.Tensor, torch.Tensor]:
    """(full dose, quarter dose) HU of the body phantom at 128x128, medsr's projection-domain simulation."""
    geometry = default_geometry(embedded_ct.GEOMETRY, (128, 128), 2.6)
    fd = mu_to_hu(ellipse_image(body_phantom(), geometry)).float()
    ld = simulate_low_dose(fd, geometry, embedded_ct.DOSE, embedded_ct.I0, embedded_ct.ELECTRONIC_NOISE,
                           embedded_ct.FILTER, torch.Generator().manual_seed(0))
    return fd, ld


def test_noise_estimate_on_simulated_fbp_noise(phantom):
    """The flat-patch estimate of the noise std is within 15 % of the true simulated noise in the soft tissue; the
    finest-band wavelet MAD is far below it (the FBP noise is correlated)."""
    fd, ld = phantom
    true = float((ld - fd)[tissue_mask(fd)].std())
    estimate = estimate_noise(ld, valid=tissue_mask(ld))
    assert abs(estimate.std / true - 1) < 0.15, (estimate.std, true)
    diagonal = (ld[0::2, 0::2] - ld[0::2, 1::2] - ld[1::2, 0::2] + ld[1::2, 1::2]) / 2  # Haar HH band
    mad = float(diagonal[tissue_mask(fd)[0::2, 0::2]].abs().median()) / 0.6745
    assert mad < 0.75 * true
    with pytest.raises(ValueError, match="patches"):
        estimate_noise(ld, valid=torch.zeros_like(ld, dtype=torch.bool))


def test_bm3d_removes_white_noise_and_keeps_a_flat_image():
    g = torch.Generator().manual_seed(0)
    clean = torch.zeros(48, 48)
    clean[10:30, 12:40] = 100.0
    noisy = clean + 10 * torch.randn(clean.shape, generator=g)
    out = bm3d(noisy, _white(10.0))
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    assert float((out - clean).pow(2).mean()) < 0.25 * float((noisy - clean).pow(2).mean())
    assert torch.allclose(bm3d(torch.full((40, 40), 7.0), _white(1.0)), torch.full((40, 40), 7.0), atol=1e-4)
    with pytest.raises(ValueError, match="at least"):
        bm3d(noisy[:20, :20], _white(10.0))
    with pytest.raises(ValueError, match="power of two"):
        bm3d(noisy, _white(10.0), Bm3dParams(group_ht=12))


@pytest.fixture(scope="module")
def ct_nifti(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A real CT slice (the embedded head, 128x128) at a simulated quarter dose as a one-slice NIfTI, and the full
    dose."""
    source = next(s for s in embedded_ct.SOURCES if s[0] == "head")
    fd, pixel_mm = embedded_ct.resize(*embedded_ct.read_ct_slice(embedded_ct.source_path(*source[1:4], source[5])),
                                      128)
    ld = embedded_ct.simulate(fd, pixel_mm, 1, "test/classical")[0]
    path = tmp_path_factory.mktemp("classical") / "ld.nii.gz"
    affine = np.diag([pixel_mm, pixel_mm, 5.0, 1.0])
    affine[:3, 3] = (-60.0, 10.0, 3.0)
    nib.save(nib.Nifti1Image(ld[:, :, None].astype(np.float32), affine), path)
    return path, ld, fd


def test_denoise_methods_on_simulated_low_dose_ct(ct_nifti, tmp_path, capsys):
    """BM3D-style (PSD estimated from the input) beats the input and the NLM method in the RED-CNN window; both keep
    the input's grid and print their parameters."""
    path, ld, fd = ct_nifti
    scores = {}
    for method in ("nlm", "bm3d"):
        out = tmp_path / f"{method}.nii.gz"
        assert main(["denoise", str(path), str(out), "--method", method]) == 0
        printed = capsys.readouterr().out
        assert f"{method}:" in printed and "noise" in printed and "HU std" in printed
        image = nib.load(out)
        assert image.shape == (128, 128, 1) and np.allclose(image.affine, nib.load(path).affine)
        scores[method] = _psnr(np.asarray(image.dataobj)[:, :, 0], fd)
    baseline = _psnr(ld, fd)
    assert scores["bm3d"] > scores["nlm"] > baseline, (baseline, scores)
    assert scores["bm3d"] > baseline + 2.0


def test_denoise_with_a_given_psd_and_bad_input(ct_nifti, tmp_path, capsys):
    path, ld, fd = ct_nifti
    psd = tmp_path / "psd.npy"
    np.save(psd, psd_of_noise(torch.from_numpy(ld - fd), valid=tissue_mask(torch.from_numpy(fd))).numpy())
    out = tmp_path / "given.nii.gz"
    assert main(["denoise", str(path), str(out), "--method", "bm3d", "--psd", str(psd)]) == 0
    assert "given PSD" in capsys.readouterr().out
    assert _psnr(np.asarray(nib.load(out).dataobj)[:, :, 0], fd) > _psnr(ld, fd) + 2.0

    def fails(argv: list[str], output: Path, words: str) -> None:
        capsys.readouterr()
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("medsr: error: ") and words in lines[0], lines
        assert not output.exists()

    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((4, 9)))
    fails(["denoise", str(path), str(tmp_path / "a.nii.gz"), "--method", "bm3d", "--psd", str(bad)],
          tmp_path / "a.nii.gz", "square")
    fails(["denoise", str(path), str(tmp_path / "b.nii.gz"), "--psd", str(psd)], tmp_path / "b.nii.gz", "classical")
    fails(["denoise", str(path), str(tmp_path / "d.nii.gz"), "--method", "nlm", "--tile", "64"],
          tmp_path / "d.nii.gz", "tiles")
    flat = tmp_path / "flat.nii.gz"  # CT-like values but no soft tissue anywhere: no noise estimate
    nib.save(nib.Nifti1Image(np.full((64, 64, 1), -900.0, np.float32), np.eye(4)), flat)
    fails(["denoise", str(flat), str(tmp_path / "c.nii.gz"), "--method", "nlm"], tmp_path / "c.nii.gz", "patches")
