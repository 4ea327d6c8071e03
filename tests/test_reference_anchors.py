"""The training-free reference-guided anchors (guided filter, directional TV): the measured k-space band is kept,
the reference's edges are used, the solver's operators are adjoint, and ``medsr sr --method`` end to end."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medsr import kspace
from medsr.cli import main
from medsr.models.dtv import divergence, gradient
from medsr.registry import MODELS


def phantom(n: int = 64, seed: int = 0) -> np.ndarray:
    """Piecewise-constant discs and a bar on a positive background: sharp edges a reference can carry."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] / n
    image = np.full((n, n), 0.5)
    for _ in range(6):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0.8, 2.0)
    image[(np.abs(y - 0.5) < 0.03) & (x > 0.1) & (x < 0.9)] = 1.5
    return image.astype(np.float32)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(b.max() ** 2 / ((a - b) ** 2).mean()))


def case(scale: int, seed: int = 0):
    """HR phantom, its k-space LR (17 pixels: an odd band holds no unpaired Nyquist column, so the real part of
    the zero-filled band is exactly the band) and an inverted contrast of it."""
    hr = torch.from_numpy(phantom(17 * scale, seed=seed))[None, None]
    lr = kspace.downsample(hr, scale)
    contrast = 3.0 - hr  # another contrast: the same edges, inverted intensities
    return hr, lr, contrast


@pytest.mark.parametrize("method", ["guided", "dtv"])
def test_the_measured_band_is_kept_and_the_reference_helps(method):
    hr, lr, contrast = case(4)
    model = MODELS.build({"type": method})
    zero = MODELS.build({"type": "zerofill"})(lr, hr.shape[-2:])
    with torch.no_grad():
        out = model(lr, hr.shape[-2:], contrast)
    base = kspace.zero_fill_upsample(lr, hr.shape[-2:], magnitude=False).real
    assert (out > 0).all()  # no clamping happened, so the band is exactly the input's
    assert kspace.downsample(out - base, size=lr.shape[-2:], magnitude=False).abs().max() < 1e-4
    gain = psnr(out, hr) - psnr(zero, hr)
    assert gain > 2.0, gain  # an inverted contrast with the same edges
    noise = torch.from_numpy(np.random.default_rng(5).uniform(0.5, 2.5, size=hr.shape).astype(np.float32))
    with torch.no_grad():
        unrelated = model(lr, hr.shape[-2:], noise)
    assert psnr(unrelated, hr) < psnr(out, hr) - 1.0  # the gain comes from the reference's structure
    with pytest.raises(ValueError, match="reference"):
        model(lr, hr.shape[-2:])


def test_dtv_operators_are_adjoint_and_gamma_zero_is_plain_tv():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 1, 9, 7, generator=g), torch.randn(1, 2, 9, 7, generator=g)
    assert float((gradient(x) * y).sum()) == pytest.approx(-float((x * divergence(y)).sum()), rel=1e-5)
    hr, lr, contrast = case(2, seed=1)
    tv = MODELS.build({"type": "dtv", "gamma": 0.0})  # no direction: the reference cannot matter
    with torch.no_grad():
        a, b = tv(lr, hr.shape[-2:], contrast), tv(lr, hr.shape[-2:], torch.rand(hr.shape, generator=g))
    torch.testing.assert_close(a, b)
    for bad in ({"eta": 0}, {"gamma": 1.0}, {"iterations": 0}):
        with pytest.raises(ValueError):
            MODELS.build({"type": "dtv", **bad})
    with pytest.raises(ValueError):
        MODELS.build({"type": "guided", "radius": 0})


def _volumes(tmp_path):
    hr = np.stack([phantom(48, seed) for seed in range(3)], axis=-1)
    lr = np.stack([kspace.downsample(hr[..., z], 2) for z in range(3)], axis=-1)
    nib.save(nib.Nifti1Image(lr.astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), str(tmp_path / "lr.nii.gz"))
    nib.save(nib.Nifti1Image((3.0 - hr).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0])),
             str(tmp_path / "ref.nii.gz"))
    return hr


@pytest.mark.parametrize("method", ["guided", "dtv"])
def test_sr_method_end_to_end(tmp_path, capsys, method):
    hr = _volumes(tmp_path)
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(tmp_path / "lr.nii.gz"), str(out), "--scale", "2,2,1", "--ref", str(tmp_path / "ref.nii.gz"),
                 "--method", method, "--no-self-test"]) == 0
    img = nib.load(str(out))
    assert img.shape == hr.shape and np.allclose(np.diag(img.affine)[:3], [1.0, 1.0, 3.0])
    zero = np.stack([kspace.zero_fill_upsample(kspace.downsample(hr[..., z], 2), hr.shape[:2]) for z in range(3)], -1)
    result = img.get_fdata()
    assert np.mean((result - hr) ** 2) < 0.9 * np.mean((zero - hr) ** 2)  # the reference helps through the CLI too


@pytest.mark.parametrize("flags,words", [
    (["--method", "guided"], "--method: guided is reference-guided: give the reference volume with --ref"),
    (["--method", "bm4d", "--ref", "REF"], "--method: must be one of guided, dtv"),
    (["--method", "dtv", "--ref", "REF", "--weights", "W.pth"], "--method: cannot be combined with --weights"),
])
def test_sr_method_bad_use_one_line_exit_2_nothing_written(tmp_path, capsys, flags, words):
    _volumes(tmp_path)
    flags = [str(tmp_path / "ref.nii.gz") if f == "REF" else str(tmp_path / f) if f == "W.pth" else f for f in flags]
    (tmp_path / "W.pth").write_bytes(b"")
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(tmp_path / "lr.nii.gz"), str(out), "--scale", "2,2,1", "--no-self-test", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsr: error: ") and words in err[0], err
    assert not out.exists()
