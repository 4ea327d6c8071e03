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
from medsr.data.masks import MaskSpec, mirror_acceleration, mirrored, parse_mask, published_mask
from medsr.data.store import StoreWriter
from medsr.errors import InputError
from medsr.tasks.sr import SRTask

GOLDEN = Path(__file__).parent / "data" / "degrade_hr_grid"
LINE = re.compile(r"mask: (\d+)/(\d+) (columns|k-space samples) sampled on the LR grid \(effective R ([\d.]+)")
# The column indices of T2Net's two mask files (chunmeifeng/T2Net at 5a4f8fc: 1D-Cartesian_6X_128128.mat and
# 1D-Cartesian_6x_6464.mat, every row identical), read from the files, written here independently of the shipped copy.
T2NET_128 = [5, 10, 27, 30, 35, 39, *range(54, 74), 84, 89, 95, 96, 101, 104, 107, 109, 111, 118, 120, 121]
T2NET_64 = [6, 15, 19, *range(22, 42), 50, 53, 54, 60, 61]


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
    assert x4.sum() == 28 and x4[32 - 10 : 32 + 10].all()  # the published x4 file's 20 + 8
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
    want = published_mask("t2net", 128)
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
    want = published_mask("t2net", 128)
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
    want = published_mask("t2net", 128)
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
    ("t2net-width", lambda p: ["--scale", "3", "--mask", "t2net"], ["--mask", "published masks exist for 64 and 128 columns", "this LR grid has 85"]),
    ("both", lambda p: ["--mask", "random", "--acceleration", "4", *_bad_mask(p, np.ones(128))], ["--mask-file"]),
])
def test_bad_masks_one_line_exit_2_nothing_written(tmp_path, capsys, case, flags, words):
    np.save(tmp_path / "in.npy", np.ones((16, 256), dtype=np.float32))
    out = tmp_path / "out.npy"
    argv = [tmp_path / "in.npy", out, *(["--scale", "2"] if case != "t2net-width" else []), *flags(tmp_path)]
    line = _fail(capsys, argv, out)
    for word in words:
        assert word in line, line


def test_t2net_masks_are_the_published_files_and_fixed_for_every_slice(tmp_path):
    for width, indices in ((128, T2NET_128), (64, T2NET_64)):
        shipped = published_mask("t2net", width)
        assert shipped.dtype == bool and np.flatnonzero(shipped).tolist() == indices
        for seed in (0, 1, 12345):  # one fixed mask, whatever the subject
            np.testing.assert_array_equal(MaskSpec("t2net").draw((2 * width,) * 2, (width, width), seed), shipped)
    assert (len(T2NET_128), len(T2NET_64)) == (38, 28)
    with pytest.raises(InputError, match="64 and 128"):
        MaskSpec("t2net").draw((170, 170), (85, 85), 0)
    drawn = [MaskSpec("t2net-random").draw((128, 128), (64, 64), seed) for seed in range(20)]
    assert all(m.sum() == 28 and m[22:42].all() for m in drawn) and len({m.tobytes() for m in drawn}) == 20


def test_t2net_ixi_x4_samples_exactly_the_published_64_column_mask(mni_store):
    from medsr.registry import TASKS

    cfg = load_config("t2net_ixi_x4", [f"data.root={mni_store}", "data.fov=[256,256]"])
    dataset = TASKS.get(cfg.task)(cfg).dataset("val", training=False)
    for index in (0, len(dataset) - 1):  # two subjects, one mask
        item = dataset[SampleSpec(index=index, scale=(4.0, 4.0))]
        assert np.flatnonzero(item["mask"].numpy()).tolist() == T2NET_64
        assert item["acceleration"] == pytest.approx(64 / 28)


def test_t2net_slice_subset_keeps_its_21_slices(tmp_path):
    writer = StoreWriter(tmp_path / "store", ["T2"], {})
    writer.add_subject("long", {"T2": np.ones((130, 8, 8), np.float32)})
    writer.add_subject("short", {"T2": np.ones((60, 8, 8), np.float32)})
    writer.finish("synthetic", {"train": ["long", "short"], "val": ["long"], "test": []}, {})
    subset = SRSliceDataset(tmp_path / "store", "train", "T2", slices="t2net")
    assert [z for sid, z in subset.items if sid == "long"] == [*range(20, 116, 5), 119]
    assert [z for sid, z in subset.items if sid == "short"] == list(range(20, 60, 5))
    assert len(SRSliceDataset(tmp_path / "store", "train", "T2").items) == 190
    with pytest.raises(InputError, match="data.slices"):
        SRSliceDataset(tmp_path / "store", "train", "T2", slices="odd")


def test_mirror_counted_acceleration_of_magnitude_kspace():
    t2net = published_mask("t2net", 128)
    assert round(128 / 38, 2) == 3.37 and round(mirror_acceleration(t2net), 2) == 2.51
    assert (mirrored(t2net) & ~t2net).sum() == 13  # 13 of the 90 unsampled columns have a sampled mirror
    assert round(mirror_acceleration(published_mask("t2net", 64)), 2) == 1.73
    odd = np.zeros(7, bool)
    odd[[3, 1]] = True  # centre 3: column 1 mirrors 5
    np.testing.assert_array_equal(np.flatnonzero(mirrored(odd)), [1, 3, 5])
    even = np.zeros(8, bool)
    even[[4, 0, 1]] = True  # centre 4: 0 mirrors itself (the Nyquist column), 1 mirrors 7
    np.testing.assert_array_equal(np.flatnonzero(mirrored(even)), [0, 1, 4, 7])
    square = np.zeros((4, 4), bool)
    square[2, 2] = square[1, 3] = True  # (1, 3) mirrors (3, 1)
    assert mirrored(square).sum() == 3 and mirrored(square)[3, 1]
    fastmri = np.mean([mirror_acceleration(kspace.RandomMask(4, 0.08)(320, seed=s)) for s in range(50)])
    assert 2.4 < fastmri < 2.8  # fastMRI's "R 4" on magnitude images


def test_degrade_prints_nominal_and_mirror_counted_r(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).uniform(0.5, 1, size=(256, 256)).astype(np.float32))
    _, _, _, r, out = _run(capsys, [tmp_path / "s.npy", tmp_path / "o.npy", "--scale", "2", "--mask", "t2net"])
    assert r == 3.37 and "R 3.37" in out and "R 2.51 counting the conjugate mirrors" in out
    _, _, _, r, out = _run(capsys, [tmp_path / "s.npy", tmp_path / "p.npy", "--scale", "2", "--mask", "t2net",
                                    "--phase", "smooth-random"])
    assert r == 3.37 and "smooth-random phase: no Hermitian symmetry" in out and "2.51" not in out
    assert not np.allclose(np.load(tmp_path / "o.npy"), np.load(tmp_path / "p.npy"), atol=1e-3)
    np.save(tmp_path / "c.npy", _complex((16, 32), 1))
    _fail(capsys, [tmp_path / "c.npy", tmp_path / "q.npy", "--scale", "2", "--phase", "smooth-random"],
          tmp_path / "q.npy")


def test_with_the_smooth_phase_a_mirrored_column_is_no_longer_recoverable():
    image = np.random.default_rng(3).uniform(0.2, 1.0, size=(64, 64))
    phase = kspace.smooth_random_phase(image.shape, seed=7)
    np.testing.assert_array_equal(phase, kspace.smooth_random_phase(image.shape, seed=7))  # a function of the seed
    assert np.abs(phase).max() == pytest.approx(np.pi, rel=1e-5) and np.abs(np.diff(phase, axis=1)).max() < 0.5
    mirror = (2 * 32 - np.arange(64)) % 64

    def recovery_error(x):  # column 40 predicted from the conjugate of its mirror, column 24
        k = kspace.fft2c(x)
        guess = np.conj(k[mirror, 24])
        return np.linalg.norm(guess - k[:, 40]) / np.linalg.norm(k[:, 40])

    assert recovery_error(image.astype(np.complex128)) < 1e-10  # magnitude: known from the mirror
    assert recovery_error(image * np.exp(1j * phase)) > 0.5  # phased: not


def test_sr_items_with_the_smooth_phase(tmp_path):
    rng = np.random.default_rng(4)
    writer = StoreWriter(tmp_path / "store", ["T2"], {})
    writer.add_subject("s0", {"T2": rng.uniform(0.5, 1.5, size=(2, 32, 32)).astype(np.float32)})
    writer.finish("synthetic", {"train": ["s0"], "val": ["s0"], "test": []}, {})
    spec = SampleSpec(index=0, scale=(1.0, 2.0))
    plain, phased = (SRSliceDataset(tmp_path / "store", "val", "T2", mask=MaskSpec("random", 2, 0.25), phase=p)[spec]
                     for p in ("none", "smooth-random"))
    assert torch.equal(plain["hr"], phased["hr"])  # the target stays the magnitude image
    assert not torch.allclose(plain["lr"], phased["lr"], atol=1e-3)
    assert phased["kspace"].dtype == torch.complex64 and (phased["kspace"].imag.abs() > 1e-3).any()
    cfg = load_config(None, ["model.type=bicubic", f"data.root={tmp_path / 'store'}", "data.phase=smooth-random"])
    assert SRTask(cfg).dataset("val", training=False).phase == "smooth-random"
    with pytest.raises(InputError, match="data.phase"):
        SRSliceDataset(tmp_path / "store", "val", "T2", phase="random")
