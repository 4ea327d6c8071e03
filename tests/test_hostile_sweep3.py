"""Hostile inputs, third sweep (issue 23, "Defects": N1 to N7, the lower-impact items, the tracebacks and the
slow refusal of non-finite weights and the dose progress bar). Every reproduction goes through the CLI where it is
user-facing; the contract is exit status 2, one stderr line ``medsr: error: ...`` naming the file or flag, no
traceback, nothing written or deleted. Tests that check a now-correct answer say so."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from _engine_data import write_config, write_store
from test_hostile import nifti, refused, volume, weights

import medsr.models  # noqa: F401  (registers the architectures)
from medsr.cli import main
from medsr.registry import MODELS

EDSR_X2 = {"type": "edsr", "n_feats": 4, "n_blocks": 1, "scales": [2]}
X2_ONLY = {"curriculum": [{"until_step": None, "scale": {"type": "choice", "values": [2]}, "ref": "none"}]}
QUICK = {"steps": 1}
QUICK_VAL = {"every": 0, "scales": [2.0], "ref": "none", "batch_size": 4}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes (to assert that nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def vol(tmp_path):
    return nifti(tmp_path / "in.nii.gz", volume())


# ---- N2: the embedded MNI store is built only in a missing, empty or MNI folder ---------------------------------

def not_mni_folders(tmp_path: Path) -> list[Path]:
    """A folder whose manifest has no name (with a nifti/ of the user's), a CT pair store, a user's own folder."""
    folders = []
    for name, files in (("noname", {"manifest.json": json.dumps({"subjects": {}}), "split.json": "{}",
                                    "nifti/mine.nii.gz": "scan"}),
                        ("ctstore", {"manifest.json": json.dumps({"kind": "ct_pairs", "units": "HU"}),
                                     "nifti/head_fd.nii.gz": "ct"}),
                        ("thesis", {"thesis.tex": "chapter 1"})):
        for rel, text in files.items():
            (tmp_path / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / rel).write_text(text)
        folders.append(tmp_path / name)
    return folders


def test_n2_mni_store_never_replaces_another_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    for folder in not_mni_folders(tmp_path):
        before = tree(folder)
        cfg = write_config(tmp_path / f"{folder.name}.yaml", folder, runs, data={"embedded": "mni"}, train=QUICK)
        for argv in (["prepare", "mni", folder, "--no-progress"],
                     ["train", cfg],
                     ["demo", "--minutes", "1", "--data", folder, "--out", tmp_path / "demo"],
                     ["viz", "samples", cfg, "--out", tmp_path / "s.png"]):
            refused(capsys, argv, str(folder), "another dataset", "never replaced")
        assert tree(folder) == before
    assert not runs.exists() and not (tmp_path / "demo").exists() and not (tmp_path / "s.png").exists()


def test_n2_an_empty_folder_becomes_the_store_in_one_step(tmp_path, capsys):
    from medsr.data.embedded import is_finished

    out = tmp_path / "empty"
    out.mkdir()
    assert main(["prepare", "mni", str(out), "--no-progress"]) == 0
    assert is_finished(out) and (out / "nifti" / "T2.nii.gz").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no temporary folder left beside it


# ---- N3 and the train tracebacks: only a run is replaced; the runs folder is checked before any work ------------

def test_n3_overwrite_replaces_only_a_run(tmp_path, capsys):
    store = write_store(tmp_path / "store")
    runs = tmp_path / "runs"
    victim = runs / "c"
    write_store(victim)  # a prepared store where the run would go
    before = tree(victim)
    cfg = write_config(tmp_path / "c.yaml", store, runs, train=QUICK, val=QUICK_VAL)
    refused(capsys, ["train", cfg, "--overwrite"], "--overwrite", str(victim), "not a medsr run folder")
    assert tree(victim) == before
    other = write_config(tmp_path / "d.yaml", store, runs, train=QUICK, val=QUICK_VAL)
    assert main(["train", str(other)]) == 0
    (runs / "d" / "stale.txt").write_text("from the first run")
    assert main(["train", str(other), "--overwrite"]) == 0  # a run is replaced
    assert (runs / "d" / "weights.pth").is_file() and not (runs / "d" / "stale.txt").exists()
    capsys.readouterr()
    # a run's saved config.yaml is a config: reused under another name it trains; under its own it says how
    saved = runs / "d" / "config.yaml"
    assert main(["train", str(saved), "--name", "again"]) == 0
    assert yaml.safe_load((runs / "again" / "config.yaml").read_text())["model"] == yaml.safe_load(
        saved.read_text())["model"]
    capsys.readouterr()
    refused(capsys, ["train", saved], str(runs / "d"), "--name")


def test_train_runs_folder_that_is_a_file_or_under_one(tmp_path, capsys):
    store = write_store(tmp_path / "store")
    (tmp_path / "file").write_text("x")
    for runs in (tmp_path / "file", tmp_path / "file" / "runs"):
        cfg = write_config(tmp_path / "c.yaml", store, runs, train=QUICK)
        refused(capsys, ["train", cfg], "is a file, not a folder")
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", train=QUICK)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "c").write_text("not a folder")
    refused(capsys, ["train", cfg], str(tmp_path / "runs" / "c"), "is a file")
    assert (tmp_path / "file").read_text() == "x"


def test_train_read_only_runs_folder_is_one_line(tmp_path, capsys, monkeypatch):
    store = write_store(tmp_path / "store")
    runs = tmp_path / "runs"
    runs.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(runs) and real_access(path, mode))
    cfg = write_config(tmp_path / "c.yaml", store, runs, train=QUICK)
    refused(capsys, ["train", cfg], str(runs / "c"), "not writable")
    assert list(runs.iterdir()) == []


def test_run_folder_os_errors_name_the_folder(tmp_path, monkeypatch):
    """A file system that refuses the run folder (read-only, full) is an InputError naming it, not a traceback."""
    from medsr.config import load_config
    from medsr.engine.runs import prepare_run_dir
    from medsr.errors import InputError

    run_dir = tmp_path / "runs" / "c"
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "runs")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(InputError, match="Read-only file system") as err:
        prepare_run_dir(run_dir, load_config("edsr"), ["medsr"], resume=False, overwrite=False)
    assert err.value.source == str(run_dir) and not run_dir.exists()


def test_demo_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for task in ("sr", "ct"):
        refused(capsys, ["demo", "--task", task, "--minutes", "1", "--data", tmp_path / "d", "--out",
                         tmp_path / "file"], str(tmp_path / "file"), "is a file")
    assert (tmp_path / "file").read_text() == "x" and not (tmp_path / "d").exists()


# ---- N4: an output is never an input (image, reference, mask, weights, config, split file) ----------------------

def test_n4_output_is_never_any_input(tmp_path, capsys, vol):
    mask = tmp_path / "mask.npy"
    np.save(mask, np.ones(16, bool))
    ref = nifti(tmp_path / "ref.nii.gz", volume(seed=1))
    w = weights(tmp_path / "w.pth")
    store = write_store(tmp_path / "store")
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", train=QUICK)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a"], "val": [], "test": ["b"]}))
    (tmp_path / "report.json").write_text("{}")
    inputs = [vol, mask, ref, w, cfg, split, tmp_path / "report.json"]
    before = {p: p.read_bytes() for p in inputs}
    cases = [
        ["degrade", vol, mask, "--scale", "2", "--mask-file", mask],
        ["sr", vol, mask, "--scale", "2", "--weights", w, "--mask-file", mask],
        ["sr", vol, tmp_path / "o.nii.gz", "--scale", "2", "--weights", w, "--adapt", "--save-adapted", mask,
         "--mask-file", mask],
        ["sr", vol, tmp_path / "o.nii.gz", "--scale", "2", "--weights", w, "--ref", ref, "--adapt",
         "--save-adapted", ref],
        ["evaluate", vol, vol, "--json", tmp_path / "report.json", "--csv", tmp_path / "report.json"],
        ["evaluate", vol, vol, "--json", w, "--lpips-weights", w],
        ["viz", "samples", cfg, "--out", cfg],
        ["prepare", "ldct", tmp_path / "src", split, "--split", split],
        ["train", cfg, f"logging.runs_dir={tmp_path}", "--name", "store"],
    ]
    for argv in cases:
        refused(capsys, argv, "output is the input")
    assert all(p.read_bytes() == data for p, data in before.items())
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "runs").exists()


# ---- N1, N5, N6 and the CT items: low-dose simulation and CT windows ---------------------------------------------

def ct_volume(path: Path, affine=None, slices: int = 2, pixel_mm: float = 4.0) -> Path:
    """A water disc (40 HU) in air (-1000 HU), 64 x 64 pixels (the dose path is slow on big slices)."""
    y, x = np.mgrid[:64, :64] - 31.5
    plane = np.where(x**2 + y**2 < 25.6**2, 40.0, -1000.0).astype(np.float32)
    return nifti(path, np.repeat(plane[..., None], slices, -1),
                 np.diag([pixel_mm, pixel_mm, 2.0, 1.0]) if affine is None else affine)


def test_n1_dose_output_is_never_the_input(tmp_path, capsys):
    ct = ct_volume(tmp_path / "CT.nii.gz")
    before = ct.read_bytes()
    for out in (ct, tmp_path / "." / "CT.nii.gz"):
        refused(capsys, ["degrade", ct, out, "--dose", "0.25"], "output is the input")
    assert ct.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["CT.nii.gz"]


def test_n1_dose_writer_refuses_its_input_and_writes_atomically(tmp_path, monkeypatch):
    """The library writer applies the output rule itself, and a failed save leaves nothing behind."""
    from medsr.infer.dose import degrade_file, parse_dose
    from medsr.errors import InputError

    ct = ct_volume(tmp_path / "CT.nii.gz", slices=1)
    with pytest.raises(InputError, match="output is the input"):
        degrade_file(ct, tmp_path / "." / "CT.nii.gz", parse_dose(0.25))

    def full_disk(image, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", full_disk)
    with pytest.raises(InputError, match="No space left"):
        degrade_file(ct, tmp_path / "low.nii.gz", parse_dose(0.25), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["CT.nii.gz"]


def test_n5_ct_window_on_non_hu_data_is_refused(tmp_path, capsys):
    mr = volume((16, 16, 4)) * 500  # MR magnitudes: nothing below -200
    pred = nifti(tmp_path / "pred.nii.gz", mr + np.random.default_rng(1).normal(0, 20, mr.shape).astype(np.float32))
    ref = nifti(tmp_path / "ref.nii.gz", mr)
    for flags in (["--ct-preset", "redcnn"], ["--ct-window", "40,400"]):
        refused(capsys, ["evaluate", pred, ref, *flags, "--json", tmp_path / "r.json"], str(ref),
                "do not look like CT in HU")
    assert not (tmp_path / "r.json").exists()
    assert main(["evaluate", str(pred), str(ref)]) == 0  # without a window it is a plain evaluation


@pytest.mark.parametrize("window, words", [("400,40", ("swapped", "[380, 420]")), ("40,6000", ("wider than 5000",)),
                                           ("-2000,400", ("outside [-1500, 3000]",)), ("40,0", ("positive",))])
def test_n5_implausible_ct_window_is_refused(tmp_path, capsys, window, words):
    ct = ct_volume(tmp_path / "ct.nii.gz")
    refused(capsys, ["evaluate", ct, ct, f"--ct-window={window}"], "--ct-window", *words)
    for plausible in ("40,400", "-600,1500", "400,1800", "40,80", "0,2000"):
        assert main(["evaluate", str(ct), str(ct), f"--ct-window={plausible}"]) == 0


@pytest.mark.parametrize("flags, words", [
    (["--dose", "1e-9"], ("--dose", "[0.01, 1]")),
    (["--dose", "0.25", "--i0", "1e20"], ("--i0", "[1000, 1e+09]")),
    (["--dose", "0.25", "--i0", "10"], ("--i0", "[1000, 1e+09]")),
    (["--dose", "0.01", "--i0", "1e4"], ("--i0", "dose x I0 = 100")),
    (["--dose", "0.25", "--calibrate-hu-noise", "1e-6"], ("--calibrate-hu-noise", "[0.1, 500]")),
    (["--dose", "0.25", "--calibrate-hu-noise", "1e9"], ("--calibrate-hu-noise", "[0.1, 500]")),
])
def test_n6_dose_and_i0_out_of_the_accurate_range_are_refused(tmp_path, capsys, flags, words):
    ct = ct_volume(tmp_path / "ct.nii.gz")
    refused(capsys, ["degrade", ct, tmp_path / "low.nii.gz", *flags], *words)
    assert [p.name for p in tmp_path.iterdir()] == ["ct.nii.gz"]


def test_n6_calibrated_i0_out_of_range_is_refused(tmp_path):
    """A target inside [0.1, 500] HU whose I0 falls outside the range names --calibrate-hu-noise."""
    from medsr.infer.dose import degrade_file, parse_dose
    from medsr.errors import InputError

    ct = ct_volume(tmp_path / "ct.nii.gz", slices=1)
    with pytest.raises(InputError, match="I0 must be in") as err:
        degrade_file(ct, tmp_path / "low.nii.gz", parse_dose(0.25, calibrate_hu_noise=0.1), progress=False)
    assert err.value.source == "--calibrate-hu-noise" and not (tmp_path / "low.nii.gz").exists()


def test_dose_on_tiny_pixels_is_one_line(tmp_path, capsys):
    ct = ct_volume(tmp_path / "ct.nii.gz", pixel_mm=0.001)
    refused(capsys, ["degrade", ct, tmp_path / "low.nii.gz", "--dose", "0.25"], str(ct), "0.001 mm", "0.1 mm")
    assert not (tmp_path / "low.nii.gz").exists()


def test_unrescaled_stored_values_with_padding_fail_the_ct_check(tmp_path, capsys):
    stored = np.random.default_rng(0).uniform(0, 4095, (64, 64, 2)).astype(np.float32)
    stored[:4] = -3024  # padding outside the field of view
    raw = nifti(tmp_path / "raw.nii.gz", stored)
    refused(capsys, ["degrade", raw, tmp_path / "low.nii.gz", "--dose", "0.25"], str(raw), "do not look like CT")
    refused(capsys, ["denoise", raw, tmp_path / "dn.nii.gz"], str(raw), "do not look like CT")
    pad = nifti(tmp_path / "pad.nii.gz", np.full((64, 64, 2), -3024, np.float32))
    refused(capsys, ["degrade", pad, tmp_path / "low.nii.gz", "--dose", "0.25"], str(pad), "only padding")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pad.nii.gz", "raw.nii.gz"]


def test_dose_reports_progress_and_notes_non_axial_slices(tmp_path, capsys):
    from medsr.infer.dose import plane_note

    sagittal = np.array([[0, 0, 2.0, 0], [4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 0, 1]])  # voxel axes 0, 1: y, z
    ct = ct_volume(tmp_path / "ct.nii.gz", affine=sagittal)
    out = tmp_path / "low.nii.gz"
    assert main(["degrade", str(ct), str(out), "--dose", "0.25"]) == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "slice" in captured.err  # the tqdm bar over slices
    notes = [line for line in captured.out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "sagittal, 90 degrees from axial" in notes[0], captured.out
    assert plane_note(np.diag([0.7, 0.7, 1.0, 1.0])) is None
    tilted = np.eye(4)
    tilted[1:3, 1:3] = [[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]]  # a 29 degree gantry tilt
    assert plane_note(tilted) is None
    assert "coronal" in plane_note(np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]))
    assert main(["denoise", str(ct), str(tmp_path / "dn.nii.gz"), "--no-self-test"]) == 0  # denoise says it too
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "sagittal, 90 degrees from axial" in notes[0], notes


def test_ldct_split_file_with_a_patient_in_train_and_test(tmp_path, capsys, monkeypatch):
    from test_ct_denoise import _ldct_root

    root = _ldct_root(tmp_path / "mayo", monkeypatch, patients=("L067", "L096", "L506"))
    split = tmp_path / "split.json"
    for lists, held_out in (({"train": ["L067", "L096"], "val": [], "test": ["L096"]}, "test"),
                            ({"train": ["L067"], "val": ["L067"], "test": ["L506"]}, "val")):
        split.write_text(json.dumps(lists))
        refused(capsys, ["prepare", "ldct", root, tmp_path / "store", "--split", split, "--no-progress"], str(split),
                f"in both train and {held_out}", "L096" if held_out == "test" else "L067")
    assert not (tmp_path / "store").exists()


# ---- N7: prepare ct writes axial slices as axial, in mm -----------------------------------------------------------

def test_n7_ct_store_nifti_files_are_axial_in_mm(tmp_path):
    from medsr.data.embedded_ct import prepare_ct

    store = prepare_ct(tmp_path / "ct", size=32, progress=False)
    files = sorted((store / "nifti").glob("*.nii.gz"))
    assert files
    for path in files:
        image = nib.load(str(path))
        assert image.header.get_xyzt_units()[0] == "mm"
        assert nib.aff2axcodes(image.affine)[2] in ("S", "I"), (path.name, nib.aff2axcodes(image.affine))
        normal = image.affine[:3, 2] / np.linalg.norm(image.affine[:3, 2])
        assert abs(normal[2]) == pytest.approx(1.0)  # the slice axis is the body's long axis: axial slices


# ---- lower impact, silently wrong ---------------------------------------------------------------------------------

@pytest.mark.parametrize("slope", [0.0, "nan"])
def test_dicom_rescale_slope_zero_is_an_error(tmp_path, capsys, slope):
    import pydicom
    from test_volume_dicom import write_series

    folder = tmp_path / "series"
    write_series(folder)
    victim = sorted(folder.glob("*.dcm"))[2]
    ds = pydicom.dcmread(victim)
    ds.RescaleSlope = slope
    ds.save_as(victim)
    out = tmp_path / "o.nii.gz"
    refused(capsys, ["sr", folder, out, "--scale", "2,2,1", "--weights", weights(tmp_path / "w.pth")],
            victim.name, "RescaleSlope")
    refused(capsys, ["denoise", folder, out], victim.name, "RescaleSlope")
    assert not out.exists()


def test_sr_force_does_not_take_a_mask_file_of_another_size(tmp_path, capsys, vol):
    mask = tmp_path / "mask.npy"
    np.save(mask, np.ones(64, bool))  # the input's planes have 16 columns
    out = tmp_path / "o.nii.gz"
    refused(capsys, ["sr", vol, out, "--scale", "2,2,1", "--weights", weights(tmp_path / "w.pth"), "--mask", "file",
                     "--mask-file", mask, "--force"], str(mask), "64 columns", "16 columns")
    assert not out.exists()


def test_test_scales_include_the_fixed_scale_of_the_weights():
    """Correct answer: `medsr test` without --scales tests a reconstruction model (fixed x1) at x1, and an SR
    model at the default scales plus its own."""
    from medsr.commands.test import DEFAULT_SCALES
    from medsr.evaluation.testing import default_scales, parse_scales

    defaults = parse_scales(DEFAULT_SCALES)
    recon = MODELS.build({"type": "dc_cascade", "n_cascades": 1, "n_feats": 4, "n_layers": 2})
    assert recon.fixed_scales == (1,) and default_scales(recon, defaults) == (1.0, *defaults)
    assert default_scales(MODELS.build({**EDSR_X2, "scales": [5]}), defaults) == tuple(sorted((*defaults, 5.0)))
    assert default_scales(MODELS.build({"type": "bicubic"}), defaults) == defaults


# ---- tracebacks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, override, words", [
    (EDSR_X2, "val.scales=[3]", ("val.scales[0]", "fixed scales x2")),
    ({"type": "t2net", "n_feats": 4, "window": 4}, "model.window=0", ("model", "window")),
    (EDSR_X2, "model.n_feats=0", ("model", "no elements")),
    ({"type": "liif", "encoder": {"type": "edsr", "n_feats": 4, "n_blocks": 1}, "hidden": [8]}, "model.hidden=[0]",
     ("model", "no elements")),
])
def test_bad_model_or_validation_scale_refused_before_the_run(tmp_path, capsys, model, override, words):
    store = write_store(tmp_path / "store")
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", model=model, data=X2_ONLY, train=QUICK)
    refused(capsys, ["train", cfg, override], *words)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override", ["a.b.c=[1,", "train.lr=[", "model={type: edsr", "train.lr=="])
def test_malformed_override_names_it(tmp_path, capsys, override):
    cfg = write_config(tmp_path / "c.yaml", write_store(tmp_path / "store"), tmp_path / "runs", train=QUICK)
    refused(capsys, ["train", cfg, override], override)
    assert not (tmp_path / "runs").exists()


# ---- slow: non-finite weights refused when read; non-positive values of positive fields -------------------------

@pytest.mark.parametrize("group, value", [("params", float("nan")), ("params_ema", float("inf"))])
def test_non_finite_weights_refused_on_load(tmp_path, capsys, vol, monkeypatch, group, value):
    from medsr.infer import super_resolve as files

    params = MODELS.build(EDSR_X2).state_dict()
    w = weights(tmp_path / "w.pth", EDSR_X2, params=params)
    payload = torch.load(w, weights_only=True)
    name = sorted(payload[group])[1]
    payload[group][name] = torch.full_like(payload[group][name], value)
    torch.save(payload, w)

    def never(*args, **kwargs):
        raise AssertionError("the volume ran before the weights were checked")

    monkeypatch.setattr(files, "super_resolve", never)
    out = tmp_path / "o.nii.gz"
    refused(capsys, ["sr", vol, out, "--scale", "2,2,1", "--weights", w, "--no-self-test"], str(w), f"{group}.{name}",
            "non-finite")
    refused(capsys, ["test", w, "--data", write_store(tmp_path / "store"), "--scales", "2"], str(w), "non-finite")
    assert not out.exists()


@pytest.mark.parametrize("override, key", [
    ("train.grad_clip=-1", "train.grad_clip"), ("train.weight_decay=-0.01", "train.weight_decay"),
    ("train.scheduler.warmup_steps=-3", "warmup_steps"), ("train.scheduler.gamma=0", "train.scheduler.gamma"),
    ("train.scheduler.min_factor=2", "min_factor"), ("train.betas=[0.9,1.0]", "train.betas"),
    ("train.gan.weight=nan", "train.gan.weight"), ("train.num_nodes=0", "train.num_nodes"),
    ("val.every=-1", "val.every"), ("val.max_subjects=0", "val.max_subjects"), ("data.patch_size=0", "patch_size"),
    ("data.num_workers=-1", "data.num_workers"), ("logging.log_every=0", "logging.log_every"),
    ("data.synth.zoom=[0,1]", "data.synth.zoom"), ("data.synth.real_fraction=1.5", "real_fraction"),
])
def test_non_positive_values_of_positive_fields_are_refused(tmp_path, capsys, override, key):
    cfg = write_config(tmp_path / "c.yaml", write_store(tmp_path / "store"), tmp_path / "runs", train=QUICK)
    refused(capsys, ["train", cfg, override], str(cfg), key)
    assert not (tmp_path / "runs").exists()


def test_test_on_reconstruction_weights_reports_x1_by_default(tmp_path, capsys):
    """Correct answer: `medsr test RUN` of a reconstruction run (trained at x1) has x1 rows without --scales."""
    from medsr.engine.runs import train

    store = write_store(tmp_path / "store", shape=(2, 16, 16))
    model = {"type": "dc_cascade", "n_cascades": 1, "n_feats": 4, "n_layers": 2, "dc": "soft"}
    x1 = [{"until_step": None, "scale": {"type": "choice", "values": [1]}, "ref": "none"}]
    mask = {"type": "random", "acceleration": 2, "center_fraction": 0.25}
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", model=model, train={"steps": 1, "ema": 0.0},
                       data={"patch_size": None, "ref": None, "fov": [16, 16], "mask": mask, "curriculum": x1},
                       val={"scales": [1], "every": 0})
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "task": "reconstruction"}))
    run = train(cfg)
    capsys.readouterr()
    assert main(["test", str(run), "--data", str(store)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("x1 ")]
    assert {(r[2], r[3]) for r in rows} == {("recon", "dc_cascade"), ("recon", "zero-filling")}
