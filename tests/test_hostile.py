"""Hostile inputs (issue 14): every reproduction through the CLI; the contract is exit status 2, one stderr line
naming the file or flag, no traceback, nothing written or deleted. Exceptions (a command that must now succeed
and give the right answer) say so."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from _engine_data import TINY_MODEL, write_config, write_store
from PIL import Image

import medsr.models  # noqa: F401  (registers the architectures)
from medsr.checkpoint import save_weights
from medsr.cli import main
from medsr.registry import MODELS


def refused(capsys, argv, *words) -> str:
    """Run ``medsr argv`` and check the error contract; return the error line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if "%|" not in line]  # progress bars aside
    assert len(lines) == 1 and lines[0].startswith("medsr: error:") and "Traceback" not in err, err
    for word in words:
        assert str(word) in lines[0], (word, lines[0])
    return lines[0]


def nifti(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


def volume(shape=(16, 16, 4), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 1.0, shape).astype(np.float32)


def weights(path: Path, spec=None, task="sr", params=None, **meta) -> Path:
    spec = spec if spec is not None else {"type": "bicubic"}
    if params is None:
        params = MODELS.build(spec).state_dict() if isinstance(spec, dict) and "type" in spec else {}
    contrasts = {"target": "T2", "ref": None, "pairs": []}
    save_weights(path, {"type": "bicubic"}, params,
                 meta={"task": task, "scales": [1.5, 4.0], "contrasts": contrasts, **meta})
    payload = torch.load(path, weights_only=True)
    payload["meta"]["model"] = spec
    torch.save(payload, path)
    return path


@pytest.fixture
def vol(tmp_path):
    return nifti(tmp_path / "in.nii.gz", volume())


# ---- data loss -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "a/b", "ABS"])
def test_d1_run_name_outside_the_runs_folder_is_refused(tmp_path, capsys, name):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "f").write_text("mine")
    (tmp_path / "runs" / "other").mkdir(parents=True)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "nostore", tmp_path / "runs")
    name = str(keep) if name == "ABS" else name
    refused(capsys, ["train", cfg, "train.steps=1", "--name", name, "--overwrite"], "--name", "plain name")
    assert (keep / "f").read_text() == "mine" and (tmp_path / "runs" / "other").is_dir()


@pytest.mark.parametrize("minutes", ["nan", "inf", "-1"])
def test_d3_demo_minutes_checked_before_anything_is_replaced(tmp_path, capsys, minutes):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("x")
    refused(capsys, ["demo", "--minutes", minutes, "--out", out, "--data", tmp_path / "d"], "--minutes")
    assert (out / "config.yaml").read_text() == "x" and not (tmp_path / "d").exists()


def test_d3_demo_never_replaces_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    refused(capsys, ["demo", "--minutes", "1", "--out", out, "--data", tmp_path / "d"], "--out", "not a medsr run")
    assert (out / "thesis.tex").is_file()


def test_d24_output_equal_to_an_input_is_refused_everywhere(tmp_path, capsys, vol):
    before = vol.read_bytes()
    png = tmp_path / "a.png"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(png)
    w = weights(tmp_path / "w.pth")
    cases = [
        ["degrade", vol, vol, "--scale", "2"],
        ["sr", vol, vol, "--scale", "2", "--weights", w],
        ["sr", vol, tmp_path / "w.pth", "--scale", "2", "--weights", w],
        ["evaluate", vol, vol, "--json", vol],
        ["evaluate", png, png, "--csv", png],
        ["segeval", png, png, "--json", png],
        ["viz", "compare", "--hr", png, "--method", f"m={png}", "--out", png],
        ["viz", "features", "--weights", w, "--image", png, "--layer", "x", "--out", png],
        ["prepare", "ixi", tmp_path, tmp_path],
    ]
    for argv in cases:
        refused(capsys, argv, "output is the input")
    assert vol.read_bytes() == before and png.is_file() and (tmp_path / "w.pth").stat().st_size > 0


# ---- tracebacks ------------------------------------------------------------------------------------------------

def test_d6_read_only_output_is_one_line_naming_it(tmp_path, capsys, vol, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    out = tmp_path / "out.nii.gz"
    refused(capsys, ["degrade", vol, out, "--scale", "2"], str(out), "Read-only file system")
    assert not out.exists()


def test_d7_output_parent_that_is_a_file(tmp_path, capsys, vol):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub" / "out.nii.gz"
    refused(capsys, ["degrade", vol, out, "--scale", "2"], "is a file, not a folder")
    refused(capsys, ["evaluate", vol, vol, "--json", tmp_path], "is a directory")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("override, words", [
    ("val.scales=[]", "val.scales"), ("val.scales=[0.5]", "val.scales[0]"), ("train.lr=-1", "train.lr"),
    ("seed=-1", "seed"), ("train.max_minutes=-1", "train.max_minutes"), ("train.max_minutes=nan", "max_minutes"),
    ("model.encoder.n_blocks=-1", "model.encoder.n_blocks"), ("train.strategy=bogus", "train"),
    ("train.accelerator=bogus", "train"), ("data.n_adjacent=-1", "data.n_adjacent"),
])
def test_d8_config_checked_before_the_run_folder_exists(tmp_path, capsys, override, words):
    store = write_store(tmp_path / "store")
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs")
    refused(capsys, ["train", cfg, override], words)
    assert not (tmp_path / "runs").exists()


def test_d8_fixed_scale_model_against_a_uniform_curriculum(tmp_path, capsys):
    store = write_store(tmp_path / "store")
    model = {"type": "edsr", "n_feats": 4, "n_blocks": 1, "scales": [2]}
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", model=model)
    refused(capsys, ["train", cfg], "data.curriculum", "fixed scales")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text", ["", "train: {steps: 2}\n"])
def test_d8_config_without_a_model_is_refused(tmp_path, capsys, text):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    refused(capsys, ["train", cfg], str(cfg), "model")
    assert not Path("runs/c").exists()


def test_d9_test_device_is_checked(tmp_path, capsys):
    for device in ("foo", "cuda:5", "mps"):
        refused(capsys, ["test", tmp_path / "w.pth", "--data", tmp_path, "--device", device], "--device")


def test_d10_truncated_store(tmp_path, capsys):
    store = write_store(tmp_path / "store")
    h5 = store / "slices.h5"
    h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 3])
    refused(capsys, ["test", weights(tmp_path / "w.pth"), "--data", store, "--scales", "2", "--ref", "none"],
            "slices.h5")


BAD_META = [
    ({"type": "from_the_future"}, {}, "unknown model type"),
    ({"type": "bicubic", "extra": 1}, {}, "cannot build"),
    ("bicubic", {}, "meta.model"),
    ({"n_feats": 4}, {}, "meta.model"),
    (None, {"n_adjacent": -1}, "meta.n_adjacent"),
    (None, {"n_adjacent": "x"}, "meta.n_adjacent"),
    (None, {"norm": "x"}, "meta.norm"),
    (None, {"scales": ["a", "b"]}, "meta.scales"),
    (None, {"task": "segmentation"}, "segmentation weights"),
    (None, {"task": "from_the_future"}, "holds from_the_future weights"),
    (None, {"task": 3}, "meta.task must be a task name"),
]


@pytest.mark.parametrize("spec, meta, words", BAD_META)
def test_d4_d5_weights_meta_checked_when_loaded(tmp_path, capsys, vol, spec, meta, words):
    w = weights(tmp_path / "w.pth", spec, params={}, **{"task": "sr", **meta})
    out = tmp_path / "out.nii.gz"
    refused(capsys, ["sr", vol, out, "--scale", "2", "--weights", w], str(w), words)
    png = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(png)
    refused(capsys, ["viz", "features", "--weights", w, "--image", png, "--layer", "x", "--out", tmp_path / "f.png"],
            str(w), words)
    assert not out.exists() and not (tmp_path / "f.png").exists()


def test_sr_refuses_weights_that_normalise_by_hu(tmp_path, capsys, vol):
    w = weights(tmp_path / "w.pth", norm={"method": "hu"})
    refused(capsys, ["sr", vol, tmp_path / "out.nii.gz", "--scale", "2", "--weights", w], str(w),
            "needs weights trained with the percentile rule")
    assert not (tmp_path / "out.nii.gz").exists()


def test_d5_unet_weights_refused_by_test(tmp_path, capsys):
    spec = {"type": "unet", "in_channels": 1, "num_classes": 2, "base": 4, "depth": 1}
    w = weights(tmp_path / "w.pth", spec, task="segmentation")
    refused(capsys, ["test", w, "--data", write_store(tmp_path / "store"), "--scales", "2"], "segmentation weights")


def test_d11_bad_dicom_tags_name_the_file(tmp_path, capsys):
    from test_volume_dicom import write_series

    import pydicom

    for tag, value, words in (("PixelSpacing", [0.9], "PixelSpacing"),
                              ("ImageOrientationPatient", [1, 0, 0, 0, 1], "ImageOrientationPatient"),
                              ("ImagePositionPatient", [float("nan"), 0, 0], "ImagePositionPatient")):
        folder = tmp_path / tag
        write_series(folder)
        victim = sorted(folder.glob("*.dcm"))[0]
        ds = pydicom.dcmread(victim)
        setattr(ds, tag, value)
        ds.save_as(victim)
        refused(capsys, ["sr", folder, tmp_path / "o.nii", "--scale", "2"], victim.name, words)
    folder = tmp_path / "truncated"
    write_series(folder)
    victim = sorted(folder.glob("*.dcm"))[1]
    victim.write_bytes(victim.read_bytes()[:-20])
    refused(capsys, ["sr", folder, tmp_path / "o.nii", "--scale", "2", "--weights", weights(tmp_path / "w.pth")],
            victim.name)
    assert not (tmp_path / "o.nii").exists()


@pytest.mark.parametrize("bad", [0.0, np.nan])
def test_d12_zero_or_nan_sform_refused_when_read(tmp_path, capsys, bad):
    path = nifti(tmp_path / "bad.nii", volume(), np.eye(4))
    raw = bytearray(path.read_bytes())
    raw[280:328] = np.full(12, bad, np.float32).tobytes()  # srow_x, srow_y, srow_z of the NIfTI-1 header
    path.write_bytes(bytes(raw))
    refused(capsys, ["degrade", path, tmp_path / "o.nii", "--scale", "2"], str(path), "affine")
    assert not (tmp_path / "o.nii").exists()


def test_d13_scales_plot_skips_null_psnr(tmp_path, capsys):
    rows = [{"method": "m", "scale": s, "psnr": p, "ssim": 0.9} for s, p in ((2, 30.0), (3, None), (4, 25.0))]
    (tmp_path / "r.json").write_text(json.dumps({"results": rows}))
    assert main(["viz", "scales", str(tmp_path / "r.json"), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0


def test_d14_tiny_image_and_huge_multiple(tmp_path, capsys):
    np.save(tmp_path / "hr.npy", np.ones((1, 40), np.float32))
    refused(capsys, ["viz", "compare", "--hr", tmp_path / "hr.npy", "--method", f"m={tmp_path / 'hr.npy'}",
                     "--out", tmp_path / "c.png"], "too small")
    refused(capsys, ["prepare", "ixi", tmp_path, tmp_path / "o", "--multiple", "1000000"], "--multiple")
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "o").exists()


# ---- silently wrong results ------------------------------------------------------------------------------------

def test_d15_geometry_compared_in_world_space(tmp_path, capsys):
    data = volume()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    gt = nifti(tmp_path / "gt.nii", data, affine)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = data.shape[0] - 1
    flipped = nifti(tmp_path / "flipped.nii", data[::-1].copy(), affine @ flip)
    json_out = tmp_path / "r.json"
    assert main(["evaluate", str(flipped), str(gt), "--json", str(json_out)]) == 0
    capsys.readouterr()
    psnr = json.loads(json_out.read_text())["items"][0]["psnr"]
    assert psnr is None or math.isinf(float(psnr)) or float(psnr) > 100, psnr
    moved = affine.copy()
    moved[0, 3] = 500.0
    for name, aff in (("moved", moved), ("coarse", np.diag([2.0, 2.0, 2.0, 1.0]))):
        refused(capsys, ["evaluate", nifti(tmp_path / f"{name}.nii", data, aff), gt], f"{name}.nii", "voxel grid")
    labels = (data > 0.6).astype(np.uint8)
    lab = nifti(tmp_path / "lab.nii", labels, affine)
    lab_flipped = nifti(tmp_path / "labf.nii", labels[::-1].copy(), affine @ flip)
    assert main(["segeval", str(lab_flipped), str(lab), "--json", str(json_out)]) == 0
    capsys.readouterr()
    assert json.loads(json_out.read_text())["items"][0]["dice"] == pytest.approx(1.0)


def test_d16_d17_integer_and_binary_ranges_do_not_depend_on_the_format(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt = rng.integers(1000, 3000, (16, 16)).astype(np.uint16)
    pred = (gt + rng.integers(0, 50, gt.shape)).astype(np.uint16)
    Image.fromarray(gt).save(tmp_path / "gt.png")
    Image.fromarray(pred).save(tmp_path / "pred.png")
    nifti(tmp_path / "gt.nii", gt[..., None])
    nifti(tmp_path / "pred.nii", pred[..., None])
    values = []
    for suffix in ("png", "nii"):
        out = tmp_path / f"{suffix}.json"
        assert main(["evaluate", str(tmp_path / f"pred.{suffix}"), str(tmp_path / f"gt.{suffix}"), "--json", str(out),
                     "--data-range", "dtype", "--metrics", "psnr"]) == 0
        values.append(json.loads(out.read_text())["items"][0]["psnr"])
        assert main(["evaluate", str(tmp_path / f"pred.{suffix}"), str(tmp_path / f"gt.{suffix}"), "--json", str(out),
                     "--metrics", "psnr"]) == 0
        assert json.loads(out.read_text())["items"][0]["psnr"] == pytest.approx(values[-1])
    assert values[0] == pytest.approx(values[1])
    gt_b = rng.random((16, 16)) > 0.5
    pred_b = gt_b.copy()
    pred_b[:2] = ~pred_b[:2]
    np.save(tmp_path / "gtb.npy", gt_b)
    np.save(tmp_path / "predb.npy", pred_b)
    out = tmp_path / "b.json"
    assert main(["evaluate", str(tmp_path / "predb.npy"), str(tmp_path / "gtb.npy"), "--json", str(out),
                 "--metrics", "psnr"]) == 0
    mse = np.mean(gt_b != pred_b)
    assert json.loads(out.read_text())["items"][0]["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)


def test_d18_complex_nifti_refused_everywhere(tmp_path, capsys):
    path = nifti(tmp_path / "c.nii", (volume() + 1j * volume(seed=1)).astype(np.complex64))
    refused(capsys, ["degrade", path, tmp_path / "o.nii", "--scale", "2"], "complex")
    refused(capsys, ["evaluate", path, path], "complex")
    refused(capsys, ["sr", path, tmp_path / "o.nii", "--scale", "2", "--weights", weights(tmp_path / "w.pth")],
            "complex")


def test_d19_negative_data_keeps_its_sign(tmp_path, capsys):
    data = -volume(seed=2) * 10
    src = nifti(tmp_path / "neg.nii", data)
    out = tmp_path / "o.nii"
    assert main(["sr", str(src), str(out), "--scale", "2,2,1", "--weights", str(weights(tmp_path / "w.pth"))]) == 0
    assert "negative values" in capsys.readouterr().out
    result = np.asarray(nib.load(str(out)).dataobj)
    assert result.mean() == pytest.approx(data.mean(), rel=0.05)


def test_d20_non_finite_output_is_refused_before_writing(tmp_path, capsys, vol):
    spec = {"type": "edsr", "n_feats": 4, "n_blocks": 1, "scales": [2]}
    params = {k: torch.full_like(v, float("nan")) for k, v in MODELS.build(spec).state_dict().items()}
    w = weights(tmp_path / "nan.pth", spec, params=params)
    out = tmp_path / "o.nii"
    refused(capsys, ["sr", vol, out, "--scale", "2,2,1", "--weights", w], "non-finite")
    assert not out.exists()


def test_d21_clip_reads_16_bit_png_by_its_range(tmp_path):
    from medsr.evaluation.clip import _read_image

    ramp = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "r.png")
    grey = np.asarray(_read_image(tmp_path / "r.png"))[..., 0]
    assert (grey == 255).mean() < 0.01 and np.abs(grey.astype(float) - ramp / 257).max() <= 0.5


def test_d22_viz_method_of_another_shape(tmp_path, capsys):
    np.save(tmp_path / "hr.npy", np.ones((32, 32), np.float32))
    np.save(tmp_path / "m.npy", np.ones((16, 32), np.float32))
    refused(capsys, ["viz", "compare", "--hr", tmp_path / "hr.npy", "--method", f"m={tmp_path / 'm.npy'}",
                     "--out", tmp_path / "c.png"], "m.npy", "differs from the HR")
    assert not (tmp_path / "c.png").exists()


def test_d28_empty_score_range(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros((8, 8), np.uint8))
    refused(capsys, ["segeval", tmp_path / "a.npy", tmp_path / "a.npy", "--empty-score", "2"], "--empty-score")


# ---- messages --------------------------------------------------------------------------------------------------

def test_d26_argparse_errors_are_one_line_and_scale_one_is_allowed(tmp_path, capsys, vol):
    refused(capsys, ["test", "w", "--data", "d", "--batch-size", "x"], "--batch-size")
    refused(capsys, ["train", "c.yaml", "--bogus"], "unrecognized")
    out = tmp_path / "o.nii"
    assert main(["degrade", str(vol), str(out), "--scale", "1", "--scale-y", "2"]) == 0
    assert nib.load(str(out)).shape == (8, 16, 4)
    refused(capsys, ["degrade", vol, out, "--scale", "2", "--seed", "1" * 20], "--seed", "2^63")


def test_truncated_nifti_whose_library_message_spans_lines_is_one_line(tmp_path, capsys):
    good = tmp_path / "good.nii"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4), dtype=np.float32), np.eye(4)), str(good))
    broken = tmp_path / "broken.nii"
    broken.write_bytes(good.read_bytes()[:1000])  # nibabel's message for this has a line break
    capsys.readouterr()
    assert main(["sr", str(broken), str(tmp_path / "out.nii.gz"), "--scale", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.nii" in err and "Traceback" not in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_d27_sr_takes_a_run_folder_as_test_does(tmp_path, capsys, vol):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    weights(run / "weights.pth")
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(vol), str(out), "--scale", "2,2,1", "--weights", str(run), "--no-self-test"]) == 0
    assert nib.load(str(out)).shape == (32, 32, 4)
    empty = tmp_path / "runs" / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert main(["sr", str(vol), str(tmp_path / "o2.nii.gz"), "--scale", "2", "--weights", str(empty)]) == 2
    assert "weights.pth" in capsys.readouterr().err


def test_d27_a_header_declaring_more_voxels_than_memory_names_the_size(tmp_path, capsys):
    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 4096))
    header.set_data_dtype(np.float32)
    huge = tmp_path / "huge.nii"
    huge.write_bytes(header.binaryblock + b"\0" * 1004)
    capsys.readouterr()
    assert main(["evaluate", str(huge), str(huge)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "huge.nii" in err and "4096x4096x4096" in err and "GiB" in err


def test_d27_voxel_size_reads_the_header_unit(tmp_path, capsys):
    image = nib.Nifti1Image(volume(), np.diag([1000.0, 1000.0, 2000.0, 1.0]))  # 1 x 1 x 2 mm, in microns
    image.header.set_xyzt_units("micron")
    path = tmp_path / "microns.nii.gz"
    nib.save(image, str(path))
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(path), str(out), "--voxel-size", "0.5,0.5,2", "--weights",
                 str(weights(tmp_path / "w.pth")), "--no-self-test"]) == 0
    assert nib.load(str(out)).shape == (32, 32, 4)


def test_d27_evaluate_names_shapes_in_the_files_layout(tmp_path, capsys):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, volume((48, 48, 6)))
    np.save(b, volume((48, 48, 5)))
    capsys.readouterr()
    assert main(["evaluate", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "48x48x6" in err and "48x48x5" in err and "1x6x48x48" not in err
