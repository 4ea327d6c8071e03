"""``medsr sr`` end to end: headers and affines of oblique volumes, units, references through two affines, and bad
input (one error line, exit status 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.affines import voxel_sizes
from _registered import registered

from medsr.checkpoint import save_weights
from medsr.cli import main
from medsr.data.store import robust_scale
from medsr.models.base import SRModel, bicubic_upsample
from medsr.registry import MODELS


class RefEcho(SRModel):
    """Returns the reference it is given (bicubic upsampling without one): shows what the reference became."""

    uses_ref = True

    def forward(self, lr, out_size, ref=None):
        return bicubic_upsample(self.centre_slice(lr), out_size) if ref is None else ref


@pytest.fixture(autouse=True, scope="module")
def _test_models():
    with registered(MODELS, {"_test_ref_echo": RefEcho}):
        yield


def oblique_affine(zooms=(0.9, 1.1, 4.0), angles=(0.3, -0.2), shift=(12.0, -30.0, 45.0)) -> np.ndarray:
    """Rotation about z then x, voxel sizes ``zooms``, translation ``shift``: no shear."""
    a, b = angles
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(zooms)
    affine[:3, 3] = shift
    return affine


def field(points: np.ndarray) -> np.ndarray:
    """A smooth positive function of world coordinates ``[..., 3]`` (mm)."""
    return 2.0 + np.sin(points @ [0.05, 0.03, 0.0]) + 0.5 * np.cos(points @ [0.0, 0.04, 0.02])


def world_grid(shape, affine) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return idx @ affine[:3, :3].T + affine[:3, 3]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in ("bicubic", "_test_ref_echo"):
        files[name] = str(folder / f"{name}.pth")
        save_weights(files[name], {"type": name}, {}, meta={"norm": {"method": "percentile", "percentile": 99.5},
                                                             "scales": [1.5, 4.0]})
    return files


def write_input(path: Path, shape=(20, 16, 6), affine=None, dtype=np.int16) -> tuple[np.ndarray, np.ndarray]:
    affine = oblique_affine() if affine is None else affine
    raw = (100 * field(world_grid(shape, affine))).astype(dtype)
    image = nib.Nifti1Image(raw, affine)
    image.header.set_slope_inter(2.0, 10.0)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=4)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, path)
    return raw * 2.0 + 10.0, affine


def corners(shape) -> np.ndarray:
    return np.array([[c[0], c[1], c[2], 1.0] for c in np.ndindex(2, 2, 2)]) * [*(np.array(shape) - 0.0), 1] - [
        0.5, 0.5, 0.5, 0]


@pytest.mark.parametrize("flags, out_shape", [
    (["--scale", "2,2,1"], (40, 32, 6)),
    (["--scale", "1,1,2.5"], (20, 16, 15)),
    (["--scale", "1.5,2,3"], (30, 32, 18)),
    (["--voxel-size", "0.45,1.1,1"], (40, 16, 24)),
])
def test_oblique_header_corners_voxels_and_units(tmp_path, weights, flags, out_shape):
    values, affine = write_input(tmp_path / "in.nii.gz")
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(tmp_path / "in.nii.gz"), str(out), "--weights", weights["bicubic"], *flags]) == 0
    image = nib.load(out)
    assert image.shape == out_shape and image.get_data_dtype() == np.float32
    expected_zooms = voxel_sizes(affine) * np.array(values.shape) / np.array(out_shape)
    np.testing.assert_allclose(voxel_sizes(image.affine), expected_zooms, rtol=1e-5)
    in_corners = (affine @ corners(values.shape).T)[:3]
    out_corners = (image.affine @ corners(out_shape).T)[:3]
    in_out_voxels = np.linalg.solve(image.affine[:3, :3], in_corners - out_corners)
    assert np.abs(in_out_voxels).max() <= 0.5
    assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == (1, 4)
    assert image.header.get_xyzt_units() == ("mm", "sec")
    assert np.isnan(image.header["scl_slope"]) or float(image.header["scl_slope"]) in (0.0, 1.0)
    data = np.asarray(image.dataobj)
    assert abs(data.mean() / values.mean() - 1) < 0.02  # back in the input's units


def test_reference_with_a_known_shift_is_resampled_through_both_affines(tmp_path, weights, capsys):
    target_affine = oblique_affine(zooms=(1.0, 1.0, 3.0))
    write_input(tmp_path / "in.nii.gz", shape=(24, 24, 8), affine=target_affine)
    shift = np.array([7.0, -5.0, 4.0])
    ref_shape = (40, 40, 40)  # 60 mm around the target's centre moved by ``shift``, in another orientation
    ref_affine = oblique_affine(zooms=(1.5, 1.5, 1.5), angles=(-0.4, 0.5), shift=(0.0, 0.0, 0.0))
    ref_affine[:3, 3] = (target_affine @ [11.5, 11.5, 3.5, 1])[:3] + shift - ref_affine[:3, :3] @ [19.5, 19.5, 19.5]
    ref = field(world_grid(ref_shape, ref_affine)).astype(np.float32)
    nib.save(nib.Nifti1Image(ref, ref_affine), tmp_path / "ref.nii.gz")
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(tmp_path / "in.nii.gz"), str(out), "--scale", "2,2,1.5", "--ref",
                 str(tmp_path / "ref.nii.gz"), "--weights", weights["_test_ref_echo"]]) == 0
    assert "resampled" in capsys.readouterr().out
    image = nib.load(out)
    in_values = nib.load(tmp_path / "in.nii.gz").get_fdata(dtype=np.float32)
    got = np.asarray(image.dataobj) / robust_scale(in_values) * robust_scale(ref)
    points = world_grid(image.shape, image.affine)
    inner = (slice(8, -8), slice(8, -8), slice(3, -3))
    right = np.abs(got - field(points))[inner].max()
    wrong = np.abs(got - field(points - shift))[inner].max()  # had the shift been ignored
    assert right < 0.02 < wrong


@pytest.mark.parametrize("shape,shift,words", [
    ((8, 8, 8), (5000.0, 0.0, 0.0), "does not overlap"),  # another field of view
    ((8, 6, 6), None, "covers only 15% of the input's field of view (at least 50% needed)"),  # another subject size
])
def test_reference_that_misses_most_of_the_field_of_view_is_an_error(tmp_path, weights, capsys, shape, shift, words):
    write_input(tmp_path / "in.nii.gz")
    affine = oblique_affine() if shift is None else oblique_affine(shift=shift)
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), affine), tmp_path / "ref.nii.gz")
    code = main(["sr", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz"), "--scale", "2",
                 "--ref", str(tmp_path / "ref.nii.gz"), "--weights", weights["_test_ref_echo"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0] and "ref.nii.gz" in err[0]
    assert not (tmp_path / "out.nii.gz").exists()


def test_tiled_volume_equals_untiled(tmp_path, weights):
    write_input(tmp_path / "in.nii.gz", shape=(48, 40, 3))
    for name, extra in (("whole", []), ("tiled", ["--tile", "16"])):
        assert main(["sr", str(tmp_path / "in.nii.gz"), str(tmp_path / f"{name}.nii.gz"), "--scale", "2.5,2,1",
                     "--weights", weights["bicubic"], "--batch-size", "2", *extra]) == 0
    whole, tiled = (np.asarray(nib.load(tmp_path / f"{n}.nii.gz").dataobj) for n in ("whole", "tiled"))
    scale = robust_scale(whole)
    np.testing.assert_allclose(tiled / scale, whole / scale, atol=1e-5)


def _bad_inputs(folder: Path) -> dict[str, Path]:
    files = {"text": folder / "notes.nii.gz", "png": folder / "image.png", "4d": folder / "fmri.nii.gz",
             "nan": folder / "nan.nii.gz", "good": folder / "good.nii.gz"}
    files["text"].write_text("not a NIfTI file")
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), files["4d"])
    nan = np.ones((4, 4, 4), np.float32)
    nan[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), files["nan"])
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)), files["good"])
    return files


@pytest.mark.parametrize("input_name, flags, message", [
    ("text", ["--scale", "2"], "not a readable NIfTI"),
    ("png", ["--scale", "2"], "not a readable NIfTI"),
    ("4d", ["--scale", "2"], "expected a 3-D volume"),
    ("nan", ["--scale", "2"], "non-finite"),
    ("good", ["--scale", "0.01"], "empty volume"),
    ("good", ["--scale", "17,1,1"], "maximum x16"),
    ("good", ["--scale", "two"], "expected a number"),
    ("good", ["--scale", "-2"], "positive"),
    ("good", ["--scale", "2", "--voxel-size", "1"], "exactly one"),
    ("good", [], "exactly one"),
    ("good", ["--scale", "2", "--device", "cuda:7"], "not available"),
    ("good", ["--scale", "2", "--batch-size", "0"], "at least 1"),
    ("good", ["--scale", "2", "--weights", "missing.pth"], "no such weights file"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, weights, capsys, input_name, flags, message):
    files = _bad_inputs(tmp_path)
    out = tmp_path / "out" / "sr.nii.gz"
    args = ["sr", str(files[input_name]), str(out), *flags]
    args += [] if "--weights" in flags else ["--weights", weights["bicubic"]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medsr: error:") and "\n" not in err and message in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_output_must_be_nifti_and_missing_default_weights_say_how_to_get_them(tmp_path, capsys, monkeypatch):
    files = _bad_inputs(tmp_path)
    assert main(["sr", str(files["good"]), str(tmp_path / "out.png"), "--scale", "2"]) == 2
    assert "NIfTI" in capsys.readouterr().err
    monkeypatch.setattr("medsr.checkpoint.SHIPPED_WEIGHTS", "not_shipped.pth")
    assert main(["sr", str(files["good"]), str(tmp_path / "out.nii.gz"), "--scale", "2"]) == 2
    err = capsys.readouterr().err
    assert "medsr train" in err and "--weights" in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_fixed_scale_model_refuses_a_through_plane_scale(tmp_path, capsys):
    from medsr.models.edsr import EDSR

    model = EDSR(scales=(2,), n_feats=4, n_blocks=1)
    save_weights(tmp_path / "edsr.pth", {"type": "edsr", "scales": [2], "n_feats": 4, "n_blocks": 1},
                 model.state_dict())
    files = _bad_inputs(tmp_path)
    assert main(["sr", str(files["good"]), str(tmp_path / "o.nii.gz"), "--scale", "1,1,2", "--weights",
                 str(tmp_path / "edsr.pth")]) == 2
    assert "supports only" in capsys.readouterr().err
    assert torch.is_tensor(next(model.parameters()))
