"""Undersampling masks: T2Net's statistics, the LR/HR grid order, mask files, effective R, bad input."""

import json
import re
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import _golden

from medsr import kspace
from medsr.cli import main
from medsr.config import load_config
from medsr.data.datasets import SampleSpec, SRSliceDataset
from medsr.data.masks import MaskSpec, parse_mask
from medsr.data.store import StoreWriter
from medsr.errors import InputError
from medsr.tasks.sr import SRTask

GOLDEN = Path(__file__).parent / "data" / "degrade_hr_grid"
LINE = re.compile(r"mask: (\d+)/(\d+) (columns|k-space samples) sampled on the LR grid \(effective R ([\d.]+)")


def _complex(shape, seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def _run(capsys, argv):
    assert main(["degrade", *map(str, argv)]) == 0
    out = capsys.readouterr().out
    match = LINE.search(out)
    assert match, out
    return int(match[1]), int(match[2]), match[3], float(match[4]), out


def _fail(capsys, argv, out):
    assert main(["degrade", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsr: error: "), err
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    return err[0]


def _sampled_columns(image):
    """Columns of the centred spectrum of ``image`` (last two axes) that hold any energy."""
    energy = np.abs(kspace.fft2c(image.astype(np.complex128))) ** 2
    energy = energy.reshape(-1, *energy.shape[-2:]).sum(axis=(0, 1))
    return energy > 1e-9 * energy.max()


def test_t2net_preset_reproduces_38_of_128_columns():
    gen = kspace.T2NetMask.preset(128)
    assert (gen.center_columns, gen.random_columns) == (20, 18)
    masks = np.stack([gen(128, seed=kspace.seed_from_name(f"IXI{n:03d}-T2.nii.gz")) for n in range(600)])
    assert masks.dtype == bool and (masks.sum(axis=1) == 38).all()
    block = np.zeros(128, dtype=bool)
    block[64 - 10 : 64 + 10] = True  # 20 contiguous columns, DC column 64 = N // 2 at index 10 of the block
    assert masks[:, block].all() and (masks[:, ~block].sum(axis=1) == 18).all()
    assert not masks[:, 53].all() and not masks[:, 74].all()  # the block does not grow
    frequency = masks[:, ~block].mean(axis=0)  # uniform over the 108 outer columns: 18 / 108 each
    assert frequency.min() > 0.1 and frequency.max() < 0.24 and frequency.mean() == pytest.approx(18 / 108)
    assert len({m.tobytes() for m in masks}) == len(masks)  # different seeds, different masks
    np.testing.assert_array_equal(gen(128, seed=7), kspace.T2NetMask(20, 18)(128, seed=7))
    x4 = kspace.T2NetMask.preset(64)(64, seed=3)
    assert x4.sum() == 28 and x4[32 - 7 : 32 + 8].all()
    a, b = kspace.T2NetMask(20, 18, seed=5), kspace.T2NetMask(20, 18, seed=5)
    first = a(128)
    np.testing.assert_array_equal(first, b(128))
    assert (a(128) != first).any()  # the object's own generator advances
    for bad in ((0, 18), (20, -1), (2.5, 3)):
        with pytest.raises(ValueError):
            kspace.T2NetMask(*bad)
    with pytest.raises(ValueError):
        kspace.T2NetMask(100, 40)(128)
    with pytest.raises(ValueError, match="100"):
        kspace.T2NetMask.preset(100)


def test_lr_grid_crops_then_masks_and_prints_the_measured_r(tmp_path, capsys):
    z = _complex((12, 256), 0)
    np.save(tmp_path / "z.npy", z)
    sampled, size, unit, r, _ = _run(capsys, [tmp_path / "z.npy", tmp_path / "t.npy", "--scale", "2", "--scale-y",
                                              "1", "--mask", "t2net"])
    out = np.load(tmp_path / "t.npy")
    assert out.shape == (12, 128)
    columns = _sampled_columns(out)  # the LR k-space is zero exactly in the unsampled columns
    want = kspace.T2NetMask.preset(128)(128, seed=kspace.seed_from_name("z.npy"))
    np.testing.assert_array_equal(columns, want)
    assert (sampled, size, unit, r) == (38, 128, "columns", round(128 / 38, 2))
    np.testing.assert_allclose(out, kspace.degrade(z, (1, 2), mask=want, magnitude=False), atol=1e-5)
    sampled, size, _, r, _ = _run(capsys, [tmp_path / "z.npy", tmp_path / "r.npy", "--scale", "2", "--mask",
                                           "random", "--acceleration", "4", "--seed", "3"])
    columns = _sampled_columns(np.load(tmp_path / "r.npy"))
    assert size == 128 and sampled == columns.sum() and r == round(128 / columns.sum(), 2)
    np.testing.assert_array_equal(columns, kspace.RandomMask(4, 0.08)(128, seed=3))


def test_nifti_output_records_the_mask(tmp_path, capsys):
    data = np.random.default_rng(1).uniform(0.5, 2.0, size=(6, 256, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "v.nii.gz"))
    _run(capsys, [tmp_path / "v.nii.gz", tmp_path / "lr.nii.gz", "--scale", "2", "--scale-y", "1", "--mask", "t2net"])
    img = nib.load(str(tmp_path / "lr.nii.gz"))
    assert "38/128" in img.header["descrip"].item().decode() and "LR grid" in img.header["descrip"].item().decode()
    (ext,) = [e for e in img.header.extensions if e.get_code() == 6]
    record = json.loads(ext.get_content())["medsr_degradation"]
    want = kspace.T2NetMask.preset(128)(128, seed=kspace.seed_from_name("v.nii.gz"))
    assert record["mask"]["indices"] == np.flatnonzero(want).tolist()
    assert record["mask"]["effective_acceleration"] == pytest.approx(128 / 38, abs=1e-4)
    assert record["mask"]["grid"] == "lr" and record["scale"] == [1.0, 2.0]


@pytest.mark.parametrize("name,flags", [
    ("vol.npy", ["--scale", "2", "--mask", "random", "--acceleration", "3", "--center-fraction", "0.1"]),
    ("z.npy", ["--scale", "1.5", "--scale-y", "2", "--mask", "equispaced", "--acceleration", "4", "--seed", "7"]),
])
def test_hr_grid_is_the_old_behaviour(tmp_path, capsys, name, flags):
    """The golden files were written by ``medsr degrade`` with these flags before --mask-grid existed."""
    if name == "vol.npy":
        data = np.random.default_rng(12).uniform(0.5, 2.0, size=(20, 32, 2)).astype(np.float32)
    else:
        rng = (np.random.default_rng(13), np.random.default_rng(14))
        data = (rng[0].normal(size=(24, 30)) + 1j * rng[1].normal(size=(24, 30))).astype(np.complex64)
    np.save(tmp_path / name, data)
    _, _, _, _, out = _run(capsys, [tmp_path / name, tmp_path / "hr.npy", *flags, "--mask-grid", "hr"])
    assert "drawn on the" in out
    golden = np.load(GOLDEN / name.replace(".npy", "_old.npy"))
    new = np.load(tmp_path / "hr.npy")
    assert _golden.matches(new, golden), np.abs(new - golden).max()  # a few ulp apart on another CPU, see _golden
    _run(capsys, [tmp_path / name, tmp_path / "lr.npy", *flags])  # the default grid is lr: another result
    assert not _golden.matches(np.load(tmp_path / "lr.npy"), golden)


@pytest.mark.parametrize("name", ["vol_old.npy", "z_old.npy"])
def test_golden_tolerance_catches_a_real_change(name):
    """The test of the test: a few ulp pass, one k-space column less fails by orders of magnitude."""
    golden = np.load(GOLDEN / name)
    tol = _golden.tolerance(golden)
    assert 0 < tol < 1e-4
    ulps = golden.copy()
    for _ in range(8):  # 8 ulp away from the golden value everywhere: what another CPU may produce
        ulps = np.nextafter(ulps.real, np.inf).astype(golden.dtype) + (1j * ulps.imag if ulps.dtype.kind == "c" else 0)
    assert np.abs(ulps - golden).max() > 0 and _golden.matches(ulps, golden)
    spectrum = kspace.fft2c(golden.astype(np.complex128).reshape(-1, *golden.shape[-2:]))
    sampled = np.flatnonzero(np.abs(spectrum).sum(axis=(0, 1)) > 1e-6)
    spectrum[..., sampled[0]] = 0  # drop one sampled column (the outermost: the smallest change a mask can make)
    changed = kspace.ifft2c(spectrum).reshape(golden.shape)
    changed = (changed if golden.dtype.kind == "c" else changed.real).astype(golden.dtype)
    assert np.abs(changed - golden).max() > 100 * tol and not _golden.matches(changed, golden)


def _write_mask(path, mask, fmt):
    if fmt == "npy":
        np.save(path, mask.astype(np.uint8))
    elif fmt == "mat5":
        scipy.io.savemat(str(path), {"mask": mask.astype(np.float64)})  # a vector is stored as 1 x W
    elif fmt == "mat73":  # as MATLAB writes it: HDF5, column-major (axes reversed), class attribute
        with h5py.File(path, "w") as f:
            f.create_dataset("mask", data=np.atleast_2d(mask).astype(np.float64).T).attrs["MATLAB_class"] = b"double"
    else:
        Image.fromarray(np.atleast_2d(mask).astype(np.uint8) * 255).save(path)


@pytest.mark.parametrize("fmt,suffix", [("npy", ".npy"), ("mat5", ".mat"), ("mat73", ".mat"), ("png", ".png")])
@pytest.mark.parametrize("dims", [1, 2])
def test_mask_files_round_trip(tmp_path, capsys, fmt, suffix, dims):
    rng = np.random.default_rng(dims)
    image = _complex((20, 36), 5)
    lr = (10, 18)
    if dims == 1:
        mask = rng.uniform(size=lr[1]) < 0.4
        mask[lr[1] // 2] = True
    else:  # a non-separable 2-D mask on a non-square grid: a transposed read would not fit
        mask = rng.uniform(size=lr) < 0.4
        mask[lr[0] // 2, lr[1] // 2] = True
    path = tmp_path / f"m{suffix}"
    _write_mask(path, mask, fmt)
    np.save(tmp_path / "z.npy", image)
    sampled, size, unit, r, _ = _run(capsys, [tmp_path / "z.npy", tmp_path / "o.npy", "--scale", "2",
                                              "--mask-file", path])
    assert (sampled, size) == (mask.sum(), mask.size) and r == round(mask.size / mask.sum(), 2)
    assert unit == ("columns" if dims == 1 else "k-space samples")
    want = kspace.degrade(image, 2, mask=mask, magnitude=False)
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), want, atol=1e-5)
    spectrum = kspace.fft2c(np.load(tmp_path / "o.npy").astype(np.complex128))
    assert np.abs(spectrum[..., ~mask]).max() < 1e-5 < np.abs(spectrum[..., mask]).min()


def test_dataset_items_carry_the_mask_and_its_r(tmp_path):
    rng = np.random.default_rng(2)
    writer = StoreWriter(tmp_path / "store", ["T2"], {})
    hr = rng.uniform(0.5, 1.5, size=(2, 16, 256)).astype(np.float32)
    writer.add_subject("s0", {"T2": hr})
    writer.finish("synthetic", {"train": ["s0"], "val": ["s0"], "test": []}, {})
    ds = SRSliceDataset(tmp_path / "store", "train", "T2", mask=MaskSpec("t2net"))
    item = ds[SampleSpec(index=1, scale=(1.0, 2.0))]
    want = kspace.T2NetMask.preset(128)(128, seed=kspace.seed_from_name("s0"))
    assert item["mask"].dtype == torch.bool
    np.testing.assert_array_equal(item["mask"].numpy(), want)
    assert item["acceleration"] == pytest.approx(128 / 38)
    stack = ds.store.slices("s0", "T2", slice(1, 2))
    np.testing.assert_allclose(item["lr"].numpy(), kspace.degrade(stack, (1, 2), mask=want), atol=1e-5)
    hr_grid = SRSliceDataset(tmp_path / "store", "train", "T2", mask=MaskSpec("random", 4, 0.08, "hr"))
    item = hr_grid[SampleSpec(index=0, scale=(1.0, 2.0))]
    drawn = kspace.RandomMask(4, 0.08)(256, seed=kspace.seed_from_name("s0"))
    np.testing.assert_array_equal(item["mask"].numpy(), kspace.crop_mask(drawn, (16, 128)))
    stack = ds.store.slices("s0", "T2", slice(0, 1))
    np.testing.assert_allclose(item["lr"].numpy(), kspace.degrade(stack, (1, 2), mask=drawn, mask_grid="hr"),
                               atol=1e-5)
    cfg = load_config(None, ["model.type=bicubic", f"data.root={tmp_path / 'store'}", "data.mask.type=random",
                             "data.mask.acceleration=4", "data.mask.grid=hr"])
    assert SRTask(cfg).dataset("val", training=False).mask == MaskSpec("random", 4.0, 0.08, "hr")
    bad = load_config(None, ["model.type=bicubic", "data.mask.type=random", "data.mask.acceleration=0.5"])
    with pytest.raises(InputError, match="data.mask.acceleration"):
        SRTask(bad).dataset("val", training=False)


def test_parse_mask_settings():
    assert parse_mask() is None
    assert parse_mask("t2net") == MaskSpec("t2net", None, 0.08, "lr")
    assert parse_mask("equispaced", "6", "0.1", "hr") == MaskSpec("equispaced", 6.0, 0.1, "hr")
    for kwargs, flag in [({"grid": "lr"}, "--mask-grid"), ({"kind": "random"}, "--acceleration"),
                         ({"kind": "t2net", "acceleration": "6"}, "--acceleration"),
                         ({"kind": "random", "acceleration": "4", "grid": "kspace"}, "--mask-grid"),
                         ({"kind": "file"}, "--mask-file"), ({"kind": "radial", "acceleration": "4"}, "--mask")]:
        with pytest.raises(InputError) as err:
            parse_mask(**kwargs)
        assert err.value.source == flag


def _bad_mask(tmp_path, values):
    np.save(tmp_path / "bad.npy", np.asarray(values))
    return ["--mask-file", tmp_path / "bad.npy"]


@pytest.mark.parametrize("case,flags,words", [
    ("size", lambda p: _bad_mask(p, np.ones(100)), ["bad.npy", "100 columns", "LR grid of 8x128", "128 columns"]),
    ("size-2d", lambda p: _bad_mask(p, np.ones((8, 64))), ["bad.npy", "8x64", "8x128"]),
    ("acceleration", lambda p: ["--mask", "random", "--acceleration", "0.5"], ["--acceleration", "at least 1"]),
    ("no-centre", lambda p: _bad_mask(p, np.r_[np.ones(64), 0, np.ones(63)]), ["bad.npy", "k-space centre", "64"]),
    ("empty", lambda p: _bad_mask(p, np.zeros(128)), ["bad.npy", "samples nothing"]),
    ("levels", lambda p: _bad_mask(p, np.linspace(0, 1, 128)), ["bad.npy", "one positive level"]),
    ("t2net-width", lambda p: ["--scale", "3", "--mask", "t2net"], ["--mask", "this grid has 85"]),
    ("both", lambda p: ["--mask", "random", "--acceleration", "4", *_bad_mask(p, np.ones(128))], ["--mask-file"]),
])
def test_bad_masks_one_line_exit_2_nothing_written(tmp_path, capsys, case, flags, words):
    np.save(tmp_path / "in.npy", np.ones((16, 256), dtype=np.float32))
    out = tmp_path / "out.npy"
    argv = [tmp_path / "in.npy", out, *(["--scale", "2"] if case != "t2net-width" else []), *flags(tmp_path)]
    line = _fail(capsys, argv, out)
    for word in words:
        assert word in line, line
