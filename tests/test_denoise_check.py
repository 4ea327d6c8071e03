"""The method-noise check of ``medsr denoise`` (:mod:`medsr.infer.denoise_check`) on a real CT slice (the embedded
head, native 0.479 mm pixels, a simulated quarter dose, a central crop to keep it quick): BM3D-style and NLM pass, a
blur fails; the command prints the verdict, warns, refuses with --strict (one line, nothing written), and skips
with --no-self-test."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

import medsr.infer.denoise as infer_denoise
from medsr.classical.noise import estimate_noise, tissue_mask
from medsr.classical.restore import slice_denoiser
from medsr.cli import main
from medsr.data import embedded_ct
from medsr.infer.denoise_check import EDGE_EXCESS_LIMIT, edge_excess, low_band_ratio, measure

CROP = 192


@pytest.fixture(scope="module")
def head() -> tuple[torch.Tensor, float]:
    """A quarter-dose ``[1, CROP, CROP]`` crop (HU, float64) of the embedded head, and its pixel size."""
    source = next(s for s in embedded_ct.SOURCES if s[0] == "head")
    fd, pixel_mm = embedded_ct.read_ct_slice(embedded_ct.source_path(*source[1:4], source[5]))
    ld = embedded_ct.simulate(fd, pixel_mm, 1, "test/denoise_check")[0]
    top, left = (ld.shape[0] - CROP) // 2, (ld.shape[1] - CROP) // 2
    return torch.from_numpy(ld[top:top + CROP, left:left + CROP]).double()[None], pixel_mm


def _blur(x: torch.Tensor, pixel_mm: float, mm: float = 1.5) -> torch.Tensor:
    return torch.from_numpy(gaussian_filter(x.numpy(), (0, mm / pixel_mm, mm / pixel_mm), mode="reflect"))


def test_good_denoisers_pass_and_a_blur_fails(head):
    ld, pixel_mm = head
    psd = estimate_noise(ld, valid=tissue_mask(ld)).psd
    for method in ("bm3d", "nlm"):
        result = measure(ld, slice_denoiser(method, psd)[0](ld[0])[None], pixel_mm)
        assert not result.fails, (method, result)
        assert 0.3 * result.noise < result.removed < result.noise, (method, result)  # removes most of the noise
    blurred = measure(ld, _blur(ld, pixel_mm), pixel_mm)
    assert blurred.fails and blurred.structured and blurred.edge_excess > 2 * EDGE_EXCESS_LIMIT, blurred
    assert "removes anatomy" in blurred.line() and "edges" in blurred.warning()
    nothing = measure(ld, ld.clone(), pixel_mm)  # removes nothing: no harm, and the numbers say so
    assert not nothing.fails and nothing.removed == 0 and nothing.edge_excess == 0 and nothing.low_band == 0


def test_edge_excess_and_low_band_ratio_on_known_maps():
    edges = torch.arange(100, dtype=torch.float64)
    energy = torch.where(edges >= 90, 3.0, 1.0).double()  # the strongest tenth holds 2 more than the rest
    assert edge_excess(energy, edges, 4.0) == pytest.approx(0.5)
    assert edge_excess(torch.ones(100, dtype=torch.float64), edges, 4.0) == 0
    psd = torch.ones(32, 32, dtype=torch.float64)
    assert low_band_ratio(2 * psd, psd) == pytest.approx(2.0)
    high_only = psd.clone()
    high_only[0, 0] = 0  # the low band holds the DC and its neighbours; zero one of them
    assert 0 < low_band_ratio(high_only, psd) < 1


@pytest.fixture
def nifti(head, tmp_path) -> Path:
    ld, pixel_mm = head
    path = tmp_path / "ld.nii.gz"
    volume = ld[0].numpy()[:, :, None].astype(np.float32)
    volume[:3] = -1024  # a little air: the crop holds none, and medsr denoise wants to see some to accept CT
    nib.save(nib.Nifti1Image(volume, np.diag([pixel_mm, pixel_mm, 2.0, 1.0])),
             path)
    return path


def _blurring_method(monkeypatch, pixel_mm: float) -> None:
    """``--method nlm`` becomes a strong blur (a destructive "denoiser")."""
    real = slice_denoiser

    def fake(method, psd):
        run, words = real(method, psd)
        return (lambda x: _blur(x[None].double(), pixel_mm)[0].to(x.dtype)), words

    monkeypatch.setattr(infer_denoise, "slice_denoiser", fake)


def test_command_prints_the_verdict_and_warns_on_a_blur(head, nifti, tmp_path, capsys, monkeypatch):
    out = tmp_path / "nlm.nii.gz"
    assert main(["denoise", str(nifti), str(out), "--method", "nlm"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "method-noise check" in line]
    assert len(lines) == 1 and lines[0].startswith("note: method-noise check: removed ")
    assert "looks like noise" in lines[0]
    assert "warning" not in captured.err and out.exists()
    _blurring_method(monkeypatch, head[1])
    blurred = tmp_path / "blur.nii.gz"
    assert main(["denoise", str(nifti), str(blurred), "--method", "nlm"]) == 0
    captured = capsys.readouterr()
    assert "removes anatomy" in captured.out and blurred.exists()
    warnings = [line for line in captured.err.splitlines() if line.startswith("medsr:")]  # not the progress bar
    assert len(warnings) == 1 and warnings[0].startswith("medsr: warning: ") and "method-noise" in warnings[0]


def _refused(capsys, argv: list[str], output: Path, words: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "slice/s" not in line]
    assert len(lines) == 1 and lines[0].startswith("medsr: error: ") and words in lines[0], lines
    assert not output.exists()


def test_strict_refuses_a_blur_and_writes_nothing(head, nifti, tmp_path, capsys, monkeypatch):
    out = tmp_path / "strict.nii.gz"
    assert main(["denoise", str(nifti), str(out), "--method", "bm3d", "--strict"]) == 0  # a pass is written
    assert out.exists()
    _blurring_method(monkeypatch, head[1])
    refused = tmp_path / "refused.nii.gz"
    _refused(capsys, ["denoise", str(nifti), str(refused), "--method", "nlm", "--strict"], refused, "removes anatomy")
    assert not list(tmp_path.glob("refused*"))  # no temporary file left either
    skipped = tmp_path / "skipped.nii.gz"
    capsys.readouterr()
    assert main(["denoise", str(nifti), str(skipped), "--method", "nlm", "--no-self-test"]) == 0
    captured = capsys.readouterr()
    assert "method-noise" not in captured.out + captured.err and skipped.exists()
    both = tmp_path / "both.nii.gz"
    _refused(capsys, ["denoise", str(nifti), str(both), "--method", "nlm", "--strict", "--no-self-test"], both,
             "--no-self-test")


def test_a_volume_too_small_to_measure_is_a_note_or_a_strict_error(tmp_path, capsys):
    volume = np.full((24, 24, 2), -1000.0, np.float32)
    volume[4:20, 4:20] = 40 + 10 * np.random.default_rng(0).standard_normal((16, 16, 2))
    path = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    out = tmp_path / "out.nii.gz"
    assert main(["denoise", str(path), str(out), "--method", "nlm", "--psd", str(_white_psd(tmp_path))]) == 0
    assert "note: method-noise check skipped: " in capsys.readouterr().out
    refused = tmp_path / "refused.nii.gz"
    _refused(capsys, ["denoise", str(path), str(refused), "--method", "nlm", "--psd", str(_white_psd(tmp_path)),
                      "--strict"], refused, "could not run")


def _white_psd(tmp_path: Path) -> Path:
    path = tmp_path / "white.npy"
    np.save(path, np.full((16, 16), 100.0))
    return path


def test_measure_subsamples_slices(head):
    ld, pixel_mm = head
    volume = ld.repeat(9, 1, 1)
    result = measure(volume, F.avg_pool2d(volume[:, None], 5, 1, 2, count_include_pad=False)[:, 0], pixel_mm)
    assert (result.slices, result.total) == (4, 9) and result.fails
