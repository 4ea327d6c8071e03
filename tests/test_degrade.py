"""``medsr degrade`` and its library (medsr.data.degrade) on small files built here."""

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from medsr import kspace
from medsr.cli import main
from medsr.data.degrade import Degradation, degrade_stack, parse_degradation
from medsr.data.masks import MaskSpec
from medsr.errors import InputError
from _nifti_files import centre, save_nifti


def _smooth(shape, rng):
    """Positive smooth-ish test data."""
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    return (1.5 + np.sin(3 * sum(grids)) + 0.1 * rng.uniform(size=shape)).astype(np.float32)


def _nifti(path, data, zooms=(0.9, 1.1, 3.0)):
    return save_nifti(path, data, zooms, [-20.0, 15.0, 4.0])


def _fail(capsys, argv, *absent):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsr: error: "), err
    for path in absent:
        assert not path.exists()
        assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
    return err[0]


def test_nifti_default_axis_degrades_planes_and_rescales_affine(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = _smooth((20, 16, 5), rng)
    src = _nifti(tmp_path / "vol.nii.gz", data)
    out = tmp_path / "out" / "lr.nii.gz"
    assert main(["degrade", str(tmp_path / "vol.nii.gz"), str(out), "--scale", "2"]) == 0
    assert "20x16x5 -> 10x8x5" in capsys.readouterr().out
    img = nib.load(str(out))
    lr = np.asarray(img.dataobj)
    assert lr.shape == (10, 8, 5) and img.get_data_dtype() == np.float32
    for z in range(5):
        np.testing.assert_allclose(lr[:, :, z], kspace.downsample(data[:, :, z].astype(np.float64), 2), atol=1e-4)
    np.testing.assert_allclose(img.header.get_zooms()[:3], (1.8, 2.2, 3.0), rtol=1e-6)
    np.testing.assert_allclose(centre(img.affine, lr.shape), centre(src.affine, data.shape), atol=1e-5)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 2
    assert img.header.get_xyzt_units() == ("mm", "sec")


def test_nifti_axis_and_asymmetric_scale(tmp_path):
    rng = np.random.default_rng(1)
    data = _smooth((6, 24, 18), rng)
    src = _nifti(tmp_path / "vol.nii", data)
    out = tmp_path / "lr.nii"
    argv = ["degrade", str(tmp_path / "vol.nii"), str(out), "--scale", "3", "--scale-y", "1.5", "--axis", "0"]
    assert main(argv) == 0
    img = nib.load(str(out))
    lr = np.asarray(img.dataobj)
    assert lr.shape == (6, 16, 6)
    np.testing.assert_allclose(lr[2], kspace.downsample(data[2].astype(np.float64), (1.5, 3.0)), atol=1e-4)
    np.testing.assert_allclose(img.header.get_zooms()[:3], (0.9, 1.1 * 24 / 16, 3.0 * 3), rtol=1e-6)
    np.testing.assert_allclose(centre(img.affine, lr.shape), centre(src.affine, data.shape), atol=1e-5)


def test_same_mask_for_every_slice_seeded_by_file_name(tmp_path):
    rng = np.random.default_rng(2)
    data = _smooth((16, 32, 3), rng)
    _nifti(tmp_path / "sub-01.nii.gz", data)
    args = ["--mask", "random", "--acceleration", "4", "--center-fraction", "0.125"]
    for name in ("a.nii.gz", "b.nii.gz"):
        assert main(["degrade", str(tmp_path / "sub-01.nii.gz"), str(tmp_path / name), *args]) == 0
    a = np.asarray(nib.load(str(tmp_path / "a.nii.gz")).dataobj)
    np.testing.assert_array_equal(a, np.asarray(nib.load(str(tmp_path / "b.nii.gz")).dataobj))
    mask = kspace.RandomMask(4, 0.125)(32, seed=kspace.seed_from_name("sub-01.nii.gz"))
    stack = np.moveaxis(data, -1, 0).astype(np.float64)
    want = np.moveaxis(kspace.degrade(stack, 1.0, mask=mask), 0, -1)
    np.testing.assert_allclose(a, want, atol=1e-4)
    assert main(["degrade", str(tmp_path / "sub-01.nii.gz"), str(tmp_path / "c.nii.gz"), *args, "--seed", "5"]) == 0
    assert not np.allclose(a, np.asarray(nib.load(str(tmp_path / "c.nii.gz")).dataobj))


def test_png_grey_and_rgb_keep_dtype_per_channel(tmp_path):
    rng = np.random.default_rng(3)
    grey = (rng.uniform(size=(24, 20)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert main(["degrade", str(tmp_path / "g.png"), str(tmp_path / "g_lr.png"), "--scale", "2"]) == 0
    with Image.open(tmp_path / "g_lr.png") as im:
        out = np.asarray(im)
    assert out.dtype == np.uint8 and out.shape == (12, 10)
    want = np.clip(np.rint(kspace.downsample(grey.astype(np.float64), 2)), 0, 255)
    assert np.abs(out.astype(float) - want).max() <= 1
    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 40)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert main(["degrade", str(tmp_path / "c.png"), str(tmp_path / "c_lr.png"), "--scale", "4"]) == 0
    with Image.open(tmp_path / "c_lr.png") as im:
        out = np.asarray(im)
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8
    for c in range(3):
        want = np.clip(np.rint(kspace.downsample(rgb[..., c].astype(np.float64), 4)), 0, 255)
        assert np.abs(out[..., c].astype(float) - want).max() <= 1
    assert np.all(out[..., 2] == 40)


def test_tiff_uint16_clipped_and_float_kept(tmp_path):
    img = np.zeros((32, 32), dtype=np.uint16)
    img[8:24, 8:24] = 65535  # a sharp edge rings above the dtype's maximum
    tifffile.imwrite(str(tmp_path / "a.tif"), img)
    assert main(["degrade", str(tmp_path / "a.tif"), str(tmp_path / "b.tiff"), "--scale", "2.5"]) == 0
    out = tifffile.imread(str(tmp_path / "b.tiff"))
    assert out.dtype == np.uint16 and out.shape == (13, 13) and out.max() == 65535
    ringing = np.abs(kspace.downsample(img.astype(np.float64), 2.5))
    assert ringing.max() > 65535
    flt = np.random.default_rng(4).uniform(size=(30, 30)).astype(np.float32)
    tifffile.imwrite(str(tmp_path / "f.tif"), flt)
    assert main(["degrade", str(tmp_path / "f.tif"), str(tmp_path / "g.tif"), "--scale", "3"]) == 0
    out = tifffile.imread(str(tmp_path / "g.tif"))
    assert out.dtype == np.float32 and out.shape == (10, 10)
    np.testing.assert_allclose(out, kspace.downsample(flt.astype(np.float64), 3), atol=1e-5)


def test_npy_2d_3d_complex_and_signed(tmp_path):
    rng = np.random.default_rng(5)
    vol = rng.uniform(size=(12, 4, 10))
    np.save(tmp_path / "v.npy", vol)
    assert main(["degrade", str(tmp_path / "v.npy"), str(tmp_path / "w.npy"), "--scale", "2", "--axis", "1"]) == 0
    out = np.load(tmp_path / "w.npy")
    assert out.shape == (6, 4, 5) and out.dtype == np.float64
    np.testing.assert_allclose(out[:, 1], kspace.downsample(vol[:, 1], 2), atol=1e-5)
    z = (rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))).astype(np.complex64)
    np.save(tmp_path / "z.npy", z)
    assert main(["degrade", str(tmp_path / "z.npy"), str(tmp_path / "zz.npy"), "--scale", "2"]) == 0
    out = np.load(tmp_path / "zz.npy")
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out, kspace.downsample(z, 2, magnitude=False), atol=1e-5)
    hu = np.full((16, 16), -1000.0)
    hu[4:12, 4:12] = 40.0
    np.save(tmp_path / "ct.npy", hu)
    assert main(["degrade", str(tmp_path / "ct.npy"), str(tmp_path / "ct2.npy"), "--scale", "2"]) == 0
    out = np.load(tmp_path / "ct2.npy")
    assert out.min() < -900 and out.mean() == pytest.approx(hu.mean(), rel=1e-6)


def test_noise_is_seeded_and_at_the_level_asked():
    rng = np.random.default_rng(6)
    stack = _smooth((4, 32, 32), rng)
    deg = parse_degradation(scale="2", noise_snr="20", seed="3")
    a = degrade_stack(stack, deg, 3)
    np.testing.assert_array_equal(a, degrade_stack(stack, deg, 3))
    assert not np.array_equal(a, degrade_stack(stack, deg, 4))
    clean = degrade_stack(stack, parse_degradation(scale="2"), 3)
    rms = np.sqrt(np.mean(clean.astype(np.float64) ** 2))
    assert np.std(a - clean) == pytest.approx(rms / 10, rel=0.15)


def test_parse_degradation_values():
    deg = parse_degradation(scale="2.5", scale_y="4", mask="random", acceleration="6")
    assert deg == Degradation((4.0, 2.5), MaskSpec("random", 6.0, 0.08, "lr"), None, None)
    assert parse_degradation(scale_y="3").scale == (3.0, 1.0)
    assert parse_degradation(noise_snr="15").scale == (1.0, 1.0)
    for kwargs in ({"scale": "1"}, {}, {"mask": "random"}, {"acceleration": "4"}, {"scale": "2", "seed": "-1"},
                   {"mask": "radial", "acceleration": "4"}, {"scale": "inf"}, {"noise_snr": "nan"}):
        with pytest.raises(InputError):
            parse_degradation(**kwargs)


@pytest.mark.parametrize("flags,flag", [
    (["--scale", "0.5"], "--scale"), (["--scale", "20"], "--scale"), (["--scale", "abc"], "--scale"),
    (["--mask", "random", "--acceleration", "0.5"], "--acceleration"),
    (["--mask", "equispaced", "--acceleration", "4", "--center-fraction", "1.5"], "--center-fraction"),
    (["--scale", "2", "--axis", "3"], "--axis"), (["--scale", "2", "--axis", "x"], "--axis"),
    (["--seed", "1"], "--scale"),
])
def test_bad_flags_one_line_exit_2(tmp_path, capsys, flags, flag):
    np.save(tmp_path / "a.npy", np.ones((8, 8, 8)))
    out = tmp_path / "b.npy"
    line = _fail(capsys, ["degrade", str(tmp_path / "a.npy"), str(out), *flags], out)
    assert f"medsr: error: {flag}: " in line


def test_bad_inputs_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "o.nii.gz"
    nan = np.ones((8, 8, 4), dtype=np.float32)
    nan[2, 3, 1] = np.nan
    _nifti(tmp_path / "nan.nii.gz", nan)
    assert "non-finite" in _fail(capsys, ["degrade", str(tmp_path / "nan.nii.gz"), str(out), "--scale", "2"], out)
    np.save(tmp_path / "nan.npy", nan)
    assert "non-finite" in _fail(capsys, ["degrade", str(tmp_path / "nan.npy"), str(tmp_path / "o.npy"),
                                          "--scale", "2"], tmp_path / "o.npy")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert "bad.nii.gz" in _fail(capsys, ["degrade", str(tmp_path / "bad.nii.gz"), str(out), "--scale", "2"], out)
    _nifti(tmp_path / "4d.nii.gz", np.ones((8, 8, 4, 3), dtype=np.float32))
    assert "3-D" in _fail(capsys, ["degrade", str(tmp_path / "4d.nii.gz"), str(out), "--scale", "2"], out)
    assert "no such file" in _fail(capsys, ["degrade", str(tmp_path / "none.nii"), str(out), "--scale", "2"], out)
    _nifti(tmp_path / "small.nii.gz", np.ones((20, 3, 4), dtype=np.float32))
    line = _fail(capsys, ["degrade", str(tmp_path / "small.nii.gz"), str(out), "--scale", "3"], out)
    assert "too small" in line and "small.nii.gz" in line
    _nifti(tmp_path / "ok.nii.gz", np.ones((8, 8, 4), dtype=np.float32))
    npy_out = tmp_path / "o.npy"
    assert "kind" in _fail(capsys, ["degrade", str(tmp_path / "ok.nii.gz"), str(npy_out), "--scale", "2"], npy_out)
    tifffile.imwrite(str(tmp_path / "f.tif"), np.ones((8, 8), dtype=np.float32))
    png = tmp_path / "f.png"
    assert "PNG" in _fail(capsys, ["degrade", str(tmp_path / "f.tif"), str(png), "--scale", "2"], png)
    Image.fromarray(np.ones((8, 8), dtype=np.uint8)).save(tmp_path / "g.png")
    line = _fail(capsys, ["degrade", str(tmp_path / "g.png"), str(tmp_path / "h.png"), "--scale", "2", "--axis", "0"],
                 tmp_path / "h.png")
    assert "--axis" in line
    np.save(tmp_path / "4d.npy", np.ones((4, 4, 4, 4)))
    assert "shape" in _fail(capsys, ["degrade", str(tmp_path / "4d.npy"), str(npy_out), "--scale", "2"], npy_out)
