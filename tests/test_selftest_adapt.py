"""``medsr sr`` self-test (margin sign and paired interval, warning, --strict, --no-self-test, budget, the
through-plane width rule, interpolated inputs) and --adapt (loss goes down, deterministic for a seed, held-out
blocks never targets nor inputs, worse adapted weights not kept, aligned pairs, --save-adapted, bad input)."""

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
from medsr.infer import guard
from medsr.infer.adapt import AdaptOptions, adapt_model, inplane_pairs, lattice, through_pairs, training_slices
from medsr.infer.band import EMPTY_BAND_RATIO, inplane_ratio, through_ratio
from medsr.infer.guard import Safeguards, guard_model
from medsr.infer.selftest import BUDGET, paired_margin, plan_self_test, redegrade_width, run_self_test
from medsr.inference.planes import InferenceOptions
from medsr.models.base import SRModel, bicubic_upsample
from medsr.registry import MODELS
from medsr.slice_profile import SliceProfile, profile_weights, thick_slices

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
    assert "vs zero-filling" in line and "(+0.00 dB, per-slice paired 95 % interval +0.00 to +0.00 dB;" in line, line
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
    assert "(-" in line and "per-slice paired 95 % interval -" in line, line
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
    assert 1 <= len(held.held_out) <= max(1, Z // 4)
    if held.slices is not None:
        assert np.array_equal(held.slices, held.held_out)


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
    assert report.trained_slices == 2 and report.held_out == [2, 5]  # slices 0 and 7: a gap of one around each


@pytest.mark.parametrize("n_slices", [1, 3, 5, 4])
@pytest.mark.parametrize("out_shape", [(64, 64, 32), (32, 32, 64)])
def test_held_out_blocks_are_never_targets_nor_neighbour_inputs(n_slices, out_shape):
    """Blocks from the plan; every adaptation target and every plane of its model input avoids them, and with
    the held-out slices set to NaN, adaptation (whose every batch would turn NaN on touching one) stays finite."""
    volume = phantom((32, 32, 32))
    plan = plan_self_test(volume.shape, out_shape, hold_out=True)
    held = set(plan.held_out.tolist())
    assert len(held) == 8 and np.all(np.diff(plan.held_out)[np.diff(plan.held_out) > 1] > 2 * max(1, n_slices // 2))
    centres = training_slices(32, plan.held_out, n_slices)
    gap = max(1, n_slices // 2)
    assert all(min(abs(z - h) for h in held) > gap for z in centres) and len(centres) > 0
    sources = ([inplane_pairs(volume, (2.0, 2.0), centres, n_slices, None, 16)] if out_shape[0] > 32 else
               through_pairs(volume, 2.0, SliceProfile(), centres, n_slices, None, 16))
    for pairs in sources:
        rng = np.random.default_rng(0)
        used = {z for _ in range(200) for z in [pairs._crop(rng)[0]]}
        assert not used & held
        assert not {p for z in pairs.centres for p in pairs.input_planes(int(z))} & held
    poisoned = volume.copy()
    poisoned[:, :, plan.held_out] = np.nan
    model = Tiny()
    model.n_slices = n_slices
    adapted, report = adapt_model(poisoned, out_shape, model, n_slices=n_slices, held_out=plan.held_out,
                                  options=_options(steps=6))
    assert np.isfinite([report.loss_before, report.loss_after]).all()
    assert all(torch.isfinite(v).all() for v in adapted.state_dict().values())


def _guarded(volume, out_shape, model, adapt, **kw):
    guards = Safeguards(adapt=adapt, **kw)
    return guard_model(volume, out_shape, model, {"model": {"type": "_test_tiny"}}, n_slices=1, ref_on_grid=None,
                       options=InferenceOptions(progress=False), guards=guards, voxel_z=1.0, source="in.nii.gz")


def test_adapted_weights_worse_than_the_original_are_not_kept(tmp_path):
    """A destructive learning rate wrecks the copy: the original weights stay, the note says so, and
    --save-adapted writes nothing but a warning."""
    volume, model = phantom((32, 32, 16)), Tiny().eval()
    saved = tmp_path / "adapted.pth"
    guarded = _guarded(volume, (64, 64, 16), model, _options(steps=5, lr=50.0), save_adapted=saved)
    assert guarded.model is model
    choice = next(n for n in guarded.notes if n.startswith("kept the"))
    assert choice.startswith("kept the original weights: on the held-out slices in-plane adapted"), choice
    assert any("not written" in w for w in guarded.warnings)
    guarded.finish(1.0)
    assert not saved.exists()


def test_adapted_weights_better_than_the_original_are_kept():
    """A model that starts off wrong (a residual adding a constant) is mended by adaptation, which is kept."""
    model = Tiny().eval()
    with torch.no_grad():
        model.body[2].bias.fill_(0.3)
    guarded = _guarded(phantom((32, 32, 16)), (64, 64, 16), model, _options(steps=60, lr=3e-3))
    assert guarded.model is not model
    assert any(n.startswith("kept the adapted weights") for n in guarded.notes), guarded.notes


def _interpolated(volume: np.ndarray, factor: int) -> np.ndarray:
    """What a scanner's zero-fill interpolation by ``factor`` gives: the complex image (``volume`` with a smooth
    phase and noise) cropped to the central 1/factor of in-plane k-space, zero-filled back, in magnitude."""
    X, Y, Z = volume.shape
    rng = np.random.default_rng(0)
    grid = np.meshgrid(np.linspace(-1, 1, X), np.linspace(-1, 1, Y), indexing="ij")
    image = volume * np.exp(1j * (1.5 * grid[0] + grid[1] ** 2))[:, :, None]
    image = image + 0.02 * (rng.standard_normal(volume.shape) + 1j * rng.standard_normal(volume.shape))
    spectrum = np.fft.fftshift(np.fft.fft2(image, axes=(0, 1)), axes=(0, 1))
    keep = np.zeros((X, Y, 1))
    kx, ky = X // (2 * factor), Y // (2 * factor)
    keep[X // 2 - kx:X // 2 + kx, Y // 2 - ky:Y // 2 + ky] = 1
    return np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum * keep, axes=(0, 1)), axes=(0, 1))).astype(np.float32)


def test_band_ratio_separates_acquired_from_interpolated():
    acquired = phantom((64, 64, 8)) + 0.02 * np.random.default_rng(1).standard_normal((64, 64, 8)).astype(np.float32)
    for factor in (2, 3):
        assert inplane_ratio(acquired, (factor, factor)) > 2 * EMPTY_BAND_RATIO
        assert inplane_ratio(_interpolated(acquired, factor), (factor, factor)) < EMPTY_BAND_RATIO
    thick = thick_slices(np.transpose(acquired, (0, 2, 1)), 2, 2.0, 2.0)  # an acquisition along Z: 32 slices
    assert through_ratio(thick, 2.0) > 2 * EMPTY_BAND_RATIO
    coarse = thick_slices(np.transpose(acquired, (0, 2, 1)), 2, 4.0, 4.0)  # 16 slices, sinc-interpolated to 32
    zero_filled = np.transpose(kspace.zero_fill_upsample(np.transpose(coarse, (1, 0, 2)), (64, 32)), (1, 0, 2))
    assert through_ratio(zero_filled, 2.0) < EMPTY_BAND_RATIO


def test_interpolated_input_is_detected_adaptation_skipped_strict_refuses(tmp_path, weights, capsys):
    src = write(tmp_path / "in.nii.gz", _interpolated(phantom((48, 48, 8)), 2))
    out, saved = tmp_path / "out.nii.gz", tmp_path / "adapted.pth"
    argv = ["sr", str(src), str(out), "--scale", "2,2,1", "--weights", weights["_test_tiny"], "--adapt",
            "--save-adapted", str(saved)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warnings = [w for w in captured.err.splitlines() if "looks interpolated" in w]
    assert len(warnings) == 1 and warnings[0].startswith("medsr: warning: the input looks interpolated in-plane")
    assert "--adapt skipped: the input looks interpolated, --save-adapted not written" in captured.out
    assert "self-test: model" not in captured.out and "adapted to this volume" not in captured.out
    assert out.exists() and not saved.exists()
    strict = tmp_path / "strict.nii.gz"
    assert main(["sr", str(src), str(strict), "--scale", "2,2,1", "--weights", weights["_test_tiny"],
                 "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsr: error: --strict: the input looks interpolated"), err
    assert not strict.exists()


def test_through_plane_width_rule():
    """Re-blurring an acquisition (FWHM t input slices) by ``redegrade_width`` gives slices whose profile has the
    width of the acquisition at f times the spacing and thickness (compared by the standard deviation of the
    composed profile, in input slices, up to the voxel box that re-sampling adds: 1/12 slice^2 of variance);
    re-blurring by the target width itself (the old rule) gives the FWHM sqrt(1 + f^2) t."""
    assert redegrade_width(2.0, 1.0) == pytest.approx(3**0.5) and redegrade_width(3.0, 0.5) == pytest.approx(2**0.5)
    fine, n = 16, 48  # fine samples per input slice, input slices

    def width(weights):  # standard deviation of the middle row's profile, in input slices
        row = weights[len(weights) // 2]
        x = (np.arange(len(row)) + 0.5) / fine
        mean = (row * x).sum()
        return np.sqrt((row * (x - mean) ** 2).sum())

    for f, t in ((2.0, 1.0), (3.0, 0.8), (1.5, 1.0)):
        acquire = profile_weights(n * fine, n, t * fine)
        m = round(n / f)
        target = width(profile_weights(n * fine, m, f * t * fine))
        new = width(profile_weights(n, m, redegrade_width(f, t)) @ acquire)
        old = width(profile_weights(n, m, f * t) @ acquire)
        assert np.sqrt(new**2 - 1 / 12) == pytest.approx(target, rel=0.02), (new, target)
        assert np.sqrt(old**2 - 1 / 12) == pytest.approx(target * np.sqrt(1 + f**2) / f, rel=0.02)


def test_paired_margin_is_centred_on_the_pooled_margin_and_covers_it():
    """Its mean is the pooled margin; a constant per-plane ratio gives a zero-width interval; on simulated planes
    the 95 % interval covers the expected margin in about 95 % of the draws (t-interval of the linearisation)."""
    rng = np.random.default_rng(0)
    A = rng.gamma(2.0, 1.0, 20)
    exact = paired_margin(A, 2.0 * A)
    assert exact.mean == pytest.approx(10 * np.log10(2.0)) and exact.ci95_high - exact.ci95_low < 1e-9
    B = A * rng.lognormal(0.5, 0.3, 20)
    assert paired_margin(A, B).mean == pytest.approx(10 * np.log10(B.sum() / A.sum()), abs=1e-9)
    truth = 10 * np.log10(np.exp(0.5 + 0.3**2 / 2))  # E[B_i] / E[A_i] for independent lognormal factors
    covered = []
    for _ in range(400):
        A = rng.gamma(2.0, 1.0, 30)
        summary = paired_margin(A, A * rng.lognormal(0.5, 0.3, 30))
        covered.append(summary.ci95_low <= truth <= summary.ci95_high)
    assert 0.88 <= np.mean(covered) <= 0.99, np.mean(covered)
    assert np.isnan(paired_margin(np.array([1.0, np.nan]), np.array([1.0, 1.0])).mean)
