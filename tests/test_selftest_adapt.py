"""``medsr sr`` self-test (margin sign, warning, --strict, --no-self-test, budget) and --adapt (loss goes down,
deterministic for a seed, held-out slices, aligned pairs, --save-adapted round trip, bad input)."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn
from _registered import registered

from medsr import kspace
from medsr.checkpoint import build_from_weights, save_weights
from medsr.cli import main
from medsr.infer.adapt import AdaptOptions, adapt_model, inplane_pairs, lattice, through_pairs
from medsr.infer.selftest import BUDGET, plan_self_test, run_self_test
from medsr.models.base import SRModel, bicubic_upsample
from medsr.registry import MODELS
from medsr.slice_profile import SliceProfile

NORM = {"norm": {"method": "percentile", "percentile": 99.5}, "scales": [1.5, 4.0]}


class Noise(SRModel):
    """Returns noise: a model that always loses the self-test."""

    def forward(self, lr, out_size, ref=None):
        generator = torch.Generator().manual_seed(0)
        return torch.rand(lr.shape[0], 1, int(out_size[0]), int(out_size[1]), generator=generator)


class Tiny(SRModel):
    """Bicubic upsampling plus a small learnt residual (zero at initialisation)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(self.body[2].weight)
        nn.init.zeros_(self.body[2].bias)

    def forward(self, lr, out_size, ref=None):
        up = bicubic_upsample(self.centre_slice(lr), out_size)
        return up + self.body(up)


@pytest.fixture(autouse=True, scope="module")
def _test_models():
    with registered(MODELS, {"_test_noise": Noise, "_test_tiny": Tiny}):
        yield


def phantom(shape=(24, 24, 6)) -> np.ndarray:
    """Positive test volume with edges and texture (so that degrading it loses something)."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    disc = (grids[0] ** 2 + grids[1] ** 2 < 0.6).astype(np.float64)
    texture = np.sin(9 * grids[0]) * np.cos(7 * grids[1] + 2 * grids[2])
    return (0.2 + disc * (0.6 + 0.2 * texture)).astype(np.float32)


def write(path, data, zooms=(1.0, 1.0, 1.0)):
    image = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    files = {}
    for name, params in (("zerofill", {}), ("bicubic", {}), ("_test_noise", {}),
                         ("_test_tiny", Tiny().state_dict())):
        files[name] = str(folder / f"{name}.pth")
        save_weights(files[name], {"type": name}, params, meta=NORM)
    return files


def test_zerofill_model_margin_is_zero_in_plane(tmp_path, weights, capsys):
    src = write(tmp_path / "in.nii.gz", phantom())
    assert main(["sr", str(src), str(tmp_path / "out.nii.gz"), "--scale", "2,2,1", "--weights",
                 weights["zerofill"]]) == 0
    captured = capsys.readouterr()
    line = next(line for line in captured.out.splitlines() if "self-test: model" in line)
    assert "vs zero-filling" in line and "(+0.0 dB; in-plane x2," in line, line
    assert "warning" not in captured.err
    assert any("self-test took" in line for line in captured.out.splitlines())


def test_bicubic_model_margin_is_zero_through_plane():
    volume = phantom((12, 10, 8))
    model = build_model("bicubic")
    plan = plan_self_test(volume.shape, (12, 10, 16))
    (result,) = run_self_test(volume, (12, 10, 16), model, plan)
    assert result.direction == "through-plane" and result.baseline == "cubic interpolation"
    assert abs(result.margin) < 1e-4 and not result.loses


def build_model(name):
    return MODELS.build({"type": name}).eval()


def test_noise_model_loses_warns_and_strict_refuses(tmp_path, weights, capsys):
    src = write(tmp_path / "in.nii.gz", phantom())
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(src), str(out), "--scale", "2,2,1", "--weights", weights["_test_noise"]]) == 0
    captured = capsys.readouterr()
    line = next(line for line in captured.out.splitlines() if "self-test: model" in line)
    assert "(-" in line, line
    warnings = [w for w in captured.err.splitlines() if w.startswith("medsr: warning: self-test")]
    assert len(warnings) == 1 and "worse than zero-filling" in warnings[0]
    assert out.exists()
    strict = tmp_path / "strict.nii.gz"
    argv = ["sr", str(src), str(strict), "--scale", "2,2,1", "--weights", weights["_test_noise"], "--strict"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsr: error: --strict: self-test: model"), err
    assert not strict.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".strict")]


def test_no_self_test_skips_it(tmp_path, weights, capsys):
    src = write(tmp_path / "in.nii.gz", phantom())
    argv = ["sr", str(src), str(tmp_path / "out.nii.gz"), "--scale", "2,2,1", "--weights", weights["_test_noise"],
            "--no-self-test"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "self-test" not in captured.out and "warning" not in captured.err


@pytest.mark.parametrize("shape,out_shape", [((64, 64, 30), (128, 128, 30)), ((64, 64, 30), (96, 96, 30)),
                                             ((40, 30, 10), (40, 30, 25)), ((20, 20, 5), (40, 40, 15))])
def test_plan_stays_within_budget(shape, out_shape):
    X, Y, Z = shape
    Xo, Yo, Zo = out_shape
    plan = plan_self_test(shape, out_shape)
    if plan.slices is not None:
        assert len(plan.slices) * X * Y <= BUDGET * Z * Xo * Yo or len(plan.slices) == 1
        assert len(set(plan.slices.tolist())) == len(plan.slices)
    if plan.x_planes is not None:
        work = len(plan.x_planes) * Y * Z + len(plan.y_planes) * X * Z
        assert work <= 2 * BUDGET * Xo * Yo * Zo
    held = plan_self_test(shape, out_shape, hold_out=True)
    if held.slices is not None:
        assert 1 <= len(held.slices) <= max(1, Z // 4)


def _options(**kw) -> AdaptOptions:
    return AdaptOptions(**{"minutes": 10.0, "steps": 100, "batch_size": 2, "patch": 24, "lr": 3e-3,
                           "progress": False, **kw})


@pytest.mark.parametrize("out_shape", [(48, 48, 6), (24, 24, 12)])
def test_adaptation_lowers_the_loss_and_is_deterministic(out_shape):
    torch.manual_seed(0)
    model = Tiny().eval()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    volume = phantom()
    _, report = adapt_model(volume, out_shape, model, options=_options())
    assert report.steps == 100 and report.stopped_by == "step limit"
    assert report.loss_after < 0.95 * report.loss_before, report
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())  # the model given is untouched
    runs = [adapt_model(volume, out_shape, model, options=_options(steps=5, seed=seed))[0].state_dict()
            for seed in (0, 0, 1)]
    assert all(torch.equal(v, runs[1][k]) for k, v in runs[0].items())
    assert any(not torch.equal(v, runs[2][k]) for k, v in runs[0].items())


def test_held_out_slices_are_never_targets():
    volume = phantom((24, 24, 8))
    pairs = inplane_pairs(volume, (2.0, 2.0), [0, 1, 3, 4, 6, 7], 3, None, 16)
    rng = np.random.default_rng(0)
    assert {pairs._crop(rng)[0] for _ in range(300)} <= {0, 1, 3, 4, 6, 7}
    _, report = adapt_model(volume, (48, 48, 8), Tiny(), held_out=[2, 5], options=_options(steps=2))
    assert report.trained_slices == 6 and report.held_out == [2, 5]


@pytest.mark.parametrize("scale", [2.0, 1.5])
def test_inplane_pairs_are_aligned(scale):
    """A patch's LR upsampled (zero-filling is exact for this band-limited volume) matches its HR patch, which a
    one-pixel shift of the HR window would not."""
    n = 48
    grid = np.arange(n)
    plane = np.cos(2 * np.pi * 3 * grid / n)[:, None] * np.sin(2 * np.pi * 5 * grid / n)[None, :] + 2
    volume = np.repeat(plane[:, :, None], 3, axis=2).astype(np.float32)
    pairs = inplane_pairs(volume, (scale, scale), [1], 1, None, 24)
    assert lattice(scale) == ({2.0: (2, 1), 1.5: (3, 2)}[scale])
    up = kspace.zero_fill_upsample(pairs.lr, pairs.hr.shape[1:])
    rng = np.random.default_rng(0)
    for _ in range(5):
        z, lo, hi = pairs._crop(rng)
        aligned = np.abs(up[z][hi] - pairs.hr[z][hi]).max()
        low = kspace.zero_fill_upsample(pairs.lr[z][lo], (hi[0].stop - hi[0].start, hi[1].stop - hi[1].start))
        assert aligned < 1e-4
        assert np.abs(low - pairs.hr[z][hi]).mean() < np.abs(low - np.roll(pairs.hr[z], 1, axis=0)[hi]).mean()


def test_through_pairs_coarsen_the_last_axis_with_the_profile():
    volume = phantom((20, 16, 4))
    profile = SliceProfile(0.8, "rect")
    zero, ninety = through_pairs(volume, 2.0, profile, [0, 1, 2, 3], 3, None, 8)
    np.testing.assert_allclose(zero.lr, profile.coarsen(np.transpose(volume, (2, 0, 1)), 2, 2.0), rtol=1e-5)
    np.testing.assert_allclose(ninety.lr, profile.coarsen(np.transpose(volume, (2, 1, 0)), 2, 2.0), rtol=1e-5)
    lr, hr, ref = zero.batch(np.random.default_rng(0), 3)
    assert lr.shape == (3, 3, 8, 4) and hr.shape == (3, 1, 8, 8) and ref is None
    assert torch.equal(lr[:, 0], lr[:, 1]) and torch.equal(lr[:, 1], lr[:, 2])  # the centre plane repeated


def test_save_adapted_round_trips(tmp_path, weights, capsys):
    src = write(tmp_path / "in.nii.gz", phantom())
    saved = tmp_path / "adapted.pth"
    argv = ["sr", str(src), str(tmp_path / "out.nii.gz"), "--scale", "2,2,1", "--weights", weights["_test_tiny"],
            "--adapt", "--adapt-minutes", "0.02", "--save-adapted", str(saved)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "adapted to this volume (in-plane)" in out and "held out for the self-test" in out
    model, meta = build_from_weights(saved)
    original, original_meta = build_from_weights(weights["_test_tiny"])
    assert type(model) is Tiny and meta["norm"] == original_meta["norm"]
    info = meta["adapted_on"]
    assert info["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest() and info["input"] == "in.nii.gz"
    assert info["steps"] >= 1 and info["out_shape"] == [48, 48, 6] and info["held_out_slices"]
    assert any(not torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("flags,flag", [
    (["--adapt", "--adapt-minutes", "0"], "--adapt-minutes"),
    (["--adapt", "--adapt-minutes", "-1"], "--adapt-minutes"),
    (["--adapt", "--adapt-minutes", "nan"], "--adapt-minutes"),
    (["--adapt", "--adapt-minutes", "inf"], "--adapt-minutes"),
    (["--adapt", "--adapt-minutes", "soon"], "--adapt-minutes"),
    (["--adapt-minutes", "1"], "--adapt-minutes"),
    (["--save-adapted", "SAVED"], "--save-adapted"),
    (["--strict", "--no-self-test"], "--strict"),
    (["--slice-thickness", "0"], "--slice-thickness"),
    (["--slice-thickness", "3", "--scale", "1,1,2"], "--slice-thickness"),  # thicker than the 2 mm spacing
    (["--profile", "sinc"], "--profile"),
    (["--adapt", "--weights", "ZEROFILL"], "--adapt"),  # nothing to train
])
def test_bad_options_one_line_exit_2(tmp_path, weights, capsys, flags, flag):
    src = write(tmp_path / "in.nii.gz", phantom((16, 16, 4)), zooms=(1.0, 1.0, 2.0))
    out, saved = tmp_path / "out.nii.gz", tmp_path / "saved.pth"
    flags = [{"SAVED": str(saved), "ZEROFILL": weights["zerofill"]}.get(f, f) for f in flags]
    scale = [] if "--scale" in flags else ["--scale", "2,2,1"]
    default = [] if "--weights" in flags else ["--weights", weights["_test_tiny"]]
    assert main(["sr", str(src), str(out), *scale, *default, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"medsr: error: {flag}: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


@pytest.mark.parametrize("scale", ["2,2,1", "1,1,2"])
def test_adapt_needs_three_slices(tmp_path, weights, capsys, scale):
    src = write(tmp_path / "in.nii.gz", phantom((16, 16, 2)))
    out = tmp_path / "out.nii.gz"
    assert main(["sr", str(src), str(out), "--scale", scale, "--weights", weights["_test_tiny"], "--adapt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 3 slices along Z" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("direction", ["in-plane", "through-plane"])
def test_reference_patches_follow_the_target_patches(direction):
    """A reference equal to the volume gives reference patches equal to the targets (same crop, flips, turns)."""
    volume = phantom((16, 16, 4))
    if direction == "in-plane":
        pairs = [inplane_pairs(volume, (2.0, 2.0), range(4), 3, volume, 8)]
    else:
        pairs = through_pairs(volume, 2.0, SliceProfile(), range(4), 3, volume, 8)
    for source in pairs:
        lr, hr, ref = source.batch(np.random.default_rng(0), 6)
        assert ref is not None and torch.equal(ref, hr)
