"""The output-head option of every learned SR model (k-space vs bicubic), non-negative outputs, per-module seeded
initialisation and the SwinIR-light encoder."""

from __future__ import annotations

import pytest
import torch

import medsr.models  # noqa: F401  (registers the models)
from medsr.errors import InputError
from medsr.kspace import downsample, zero_fill_upsample
from medsr.models.base import SIGN_GATE, bicubic_upsample, seeded_init
from medsr.models.guidance import default_radius, guided_upsample
from medsr.registry import MODELS

TINY = {
    "liif": {"encoder": {"type": "edsr", "n_feats": 8, "n_blocks": 1}, "hidden": [16]},
    "liif_swinir": {"type": "liif", "encoder": {"type": "swinir_light", "dim": 8, "depths": [2], "heads": 2,
                                               "window": 4}, "hidden": [16]},
    "metasr": {"encoder": {"type": "rdn", "n_feats": 8, "n_blocks": 1, "growth": 4, "n_layers": 2}, "hidden": [16]},
    "dualarb": {"encoder": {"type": "rdn", "n_feats": 8, "n_blocks": 1, "growth": 4, "n_layers": 2},
                "hidden": [8, 8]},
    "sakg": {"encoder": {"type": "rdn", "n_feats": 8, "n_blocks": 1, "growth": 4, "n_layers": 2},
             "ref_encoder": {"type": "edsr", "n_feats": 8, "n_blocks": 1}, "sem_width": 8, "n_fuse": 1, "hidden": 16},
}
LR_SIZE, OUT_SIZE = (11, 13), (25, 23)


def build(name: str, **args: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build({"type": name, **TINY[name], **args})


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    return torch.rand(2, 3, *LR_SIZE) - 0.2, torch.rand(2, 1, *OUT_SIZE)


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter drawn at random (zero-initialised layers included), as after some training."""
    torch.manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


@pytest.mark.parametrize("name", list(TINY))
def test_kspace_head_starts_exactly_at_zero_filling(name: str) -> None:
    model = build(name, head="kspace", nonnegative=False).eval()
    lr, ref = inputs()
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
    expected = zero_fill_upsample(lr[:, 1:2], OUT_SIZE, magnitude=False).real
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(TINY))
def test_kspace_band_is_the_inputs_without_in_band_correction(name: str) -> None:
    model = randomise(build(name, head="kspace", in_band_correction=False, nonnegative=False)).eval()
    assert model.lr_correction is None
    lr, ref = inputs()
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
    base = zero_fill_upsample(lr[:, 1:2], OUT_SIZE, magnitude=False).real
    assert (out - base).abs().max() > 1e-3  # the model does change the image ...
    assert downsample(out - base, size=LR_SIZE, magnitude=False).abs().max() < 1e-4  # ... outside the band only


@pytest.mark.parametrize("name", list(TINY))
def test_in_band_correction_moves_the_band(name: str) -> None:
    model = randomise(build(name, head="kspace", nonnegative=False)).eval()
    lr, ref = inputs()
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
    base = zero_fill_upsample(lr[:, 1:2], OUT_SIZE, magnitude=False).real
    assert downsample(out - base, size=LR_SIZE, magnitude=False).abs().max() > 1e-3


def disc_stack() -> tuple[torch.Tensor, torch.Tensor]:
    """An HR disc with a sharp edge on a zero background ``[1, 1, 25, 23]`` and its band-limited LR image
    ``x_lr`` (real: the LR size is odd on both axes), which rings below zero around the edge."""
    yy, xx = torch.meshgrid(torch.arange(OUT_SIZE[0]), torch.arange(OUT_SIZE[1]), indexing="ij")
    hr = (((yy - 12.0) ** 2 + (xx - 11.0) ** 2) < 36).double()[None, None]
    x_lr = downsample(hr, size=LR_SIZE, magnitude=False)
    assert x_lr.imag.abs().max() < 1e-12 and x_lr.real.min() < -0.05  # real, with negative ringing ...
    assert x_lr.real.min() > -SIGN_GATE  # ... under the gate (Gibbs: about 9 % of the edge)
    return hr, x_lr.real


@pytest.mark.parametrize("name", list(TINY))
def test_sign_correction_starts_bit_for_bit_as_no_correction(name: str) -> None:
    plain = randomise(build(name, head="kspace", in_band_correction=False, nonnegative=False)).eval()
    sign = build(name, head="kspace", in_band_correction="sign", nonnegative=False).eval()
    assert sign.lr_correction is None and not sign.lr_sign.weight.any()
    missing, unexpected = sign.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["lr_sign.bias", "lr_sign.weight"] and not unexpected
    lr, ref = inputs()
    lr = lr.abs()  # a magnitude input
    with torch.no_grad():
        assert torch.equal(sign(lr, OUT_SIZE, ref), plain(lr, OUT_SIZE, ref))


@pytest.mark.parametrize("name", ["sakg", "metasr"])
def test_sign_correction_reaches_the_hr_band_with_the_oracle_sign(name: str) -> None:
    """With p = [x_lr < 0] the output's band is the HR's (the ceiling is the truth), whatever the residual;
    without it (today's head) the band of |x_lr| misses it."""
    hr, x_lr = disc_stack()
    model = randomise(build(name, head="kspace", in_band_correction="sign", nonnegative=False)).double().eval()
    lr = x_lr.abs().expand(1, 3, *LR_SIZE).contiguous()
    ref = torch.rand(1, 1, *OUT_SIZE, dtype=torch.float64)
    oracle = (x_lr < 0).double()
    model.lr_sign.forward = lambda feats: oracle  # the oracle sign map in place of the prediction
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
    band = downsample(out, size=LR_SIZE, magnitude=False)
    tol = 100 * torch.finfo(torch.float32).eps * float(out.abs().max())  # band_projection runs in float32
    torch.testing.assert_close(band.real, x_lr, rtol=0, atol=tol)
    assert (downsample(zero_fill_upsample(x_lr.abs(), OUT_SIZE, magnitude=False).real, size=LR_SIZE,
                       magnitude=False).real - x_lr).abs().max() > 0.05


@pytest.mark.parametrize("name", ["sakg", "dualarb"])
def test_sign_correction_only_changes_signs_and_gets_gradients(name: str) -> None:
    """Trained weights (random here) can only shrink or flip the LR band pixel by pixel, never exceed |LR|, and
    only below the gate; at
    initialisation the loss's gradient reaches the zero-initialised negative map."""
    lr, ref = inputs()
    lr = lr.abs()
    model = randomise(build(name, head="kspace", in_band_correction="sign", nonnegative=False)).eval()
    with torch.no_grad():
        model.lr_sign.bias.fill_(8.0)  # p > 0 on many pixels despite the large random features
        out = model(lr, OUT_SIZE, ref)
    band, centre = downsample(out, size=LR_SIZE, magnitude=False).real, lr[:, 1:2]
    assert (band.abs() - centre).max() < 1e-5  # |band| <= LR
    assert (band - centre)[centre < SIGN_GATE].abs().max() > 1e-2  # ... the band did change below the gate
    assert (band - centre)[centre >= SIGN_GATE].abs().max() < 1e-5  # ... and nowhere above it
    model = build(name, head="kspace", in_band_correction="sign").train()
    out = model(lr, OUT_SIZE, ref)
    out = out.image if hasattr(out, "image") else out
    (out - torch.rand_like(out)).abs().mean().backward()
    assert model.lr_sign.weight.grad.abs().max() > 0


def test_unknown_in_band_correction_is_an_input_error() -> None:
    with pytest.raises(InputError, match="model.in_band_correction"):
        build("sakg", in_band_correction="phase")


@pytest.mark.parametrize("name", ["liif", "metasr", "dualarb"])
def test_bicubic_head_is_as_published(name: str) -> None:
    """The baselines' default head adds the decoder output to bicubic, and its last layer is not zeroed."""
    model = build(name, nonnegative=False).eval()
    assert model.output_head == "bicubic" and model.lr_correction is None
    lr, ref = inputs()
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
    assert (out - bicubic_upsample(lr[:, 1:2], OUT_SIZE)).abs().max() > 1e-4


def test_sakg_bicubic_head_starts_at_bicubic() -> None:
    model = build("sakg", head="bicubic", nonnegative=False).eval()
    lr, ref = inputs()
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
    torch.testing.assert_close(out, bicubic_upsample(lr[:, 1:2], OUT_SIZE), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("head", ["kspace", "bicubic"])
def test_outputs_are_non_negative_in_evaluation_only(name: str, head: str) -> None:
    model = randomise(build(name, head=head))
    lr, ref = inputs()
    lr = lr - 3.0  # a strongly negative input, so the unclamped image has negative pixels whatever the weights
    with torch.no_grad():
        raw = model.train()(lr, OUT_SIZE, ref)
        raw = raw.image if hasattr(raw, "image") else raw
        out = model.eval()(lr, OUT_SIZE, ref)
    assert raw.min() < 0  # the unclamped image has negative pixels ...
    assert out.min() >= 0  # ... the evaluation output clamps them
    torch.testing.assert_close(out, raw.clamp_min(0))


def test_unknown_head_is_an_input_error() -> None:
    with pytest.raises(InputError, match="model.head"):
        build("liif", head="fourier")


def test_seeded_init_keeps_the_other_components_weights() -> None:
    """Removing one SAKG component leaves every other module's initial weights exactly unchanged; only the
    slice attention's first layer, whose input width (hence its initial distribution) depends on the semantic
    prior, differs."""
    full = seeded_init(build("sakg"), seed=7).state_dict()
    for flag, reshaped in (("scale_conditioning", ""), ("slice_attention", ""), ("semantic", "attention.score.0.")):
        torch.manual_seed(123)  # another global RNG state: the seeded weights do not depend on it
        ablated = seeded_init(build("sakg", **{flag: False}), seed=7).state_dict()
        shared = [k for k in ablated if k in full]
        assert len(shared) > 20
        assert {k for k in shared if ablated[k].shape != full[k].shape} == ({reshaped + "weight"} if reshaped else set())
        for key in shared:
            if not (reshaped and key.startswith(reshaped)):
                assert torch.equal(ablated[key], full[key]), key
    other = seeded_init(build("sakg"), seed=8).state_dict()
    assert not torch.equal(other["encoder.sfe1.weight"], full["encoder.sfe1.weight"])


def test_seeded_init_keeps_zero_layers_and_sine_initialisation() -> None:
    model = seeded_init(build("dualarb", head="kspace"), seed=1)
    assert not model.decoder.readout.weight.any() and not model.lr_correction.weight.any()
    first = model.decoder.target_coord[0]
    assert first.linear.weight.abs().max() <= 1.0 / first.linear.in_features
    assert first.linear.weight.abs().max() > 0


def test_seeded_init_leaves_the_global_rng_alone() -> None:
    model = build("liif")
    state = torch.random.get_rng_state()
    seeded_init(model, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)


def swinir_light_parameters(in_channels: int, dim: int, depths: list[int], heads: int, window: int,
                            mlp_ratio: float) -> int:
    """SwinIR-light's parameter count from the paper's layer list (no upsampler)."""
    conv3 = 9 * dim * dim + dim
    hidden = int(dim * mlp_ratio)
    layer = (2 * 2 * dim  # two LayerNorms
             + 3 * dim * dim + 3 * dim + dim * dim + dim  # qkv and projection
             + (2 * window - 1) ** 2 * heads  # relative position bias table
             + dim * hidden + hidden + hidden * dim + dim)  # MLP
    blocks = sum(d * layer + conv3 for d in depths)
    return (9 * in_channels * dim + dim) + 2 * dim + blocks + 2 * dim + conv3


def test_swinir_light_parameter_count_at_paper_size() -> None:
    encoder = MODELS.build({"type": "encoder/swinir_light"})
    n = sum(p.numel() for p in encoder.parameters())
    assert n == swinir_light_parameters(1, 60, [6, 6, 6, 6], 6, 8, 2.0)
    assert 0.85e6 < n < 0.95e6  # the paper's "about 0.9 M" (878 K with its x2 upsampler and RGB input)


def test_swinir_shifted_windows_mix_across_window_borders() -> None:
    """A pixel's feature depends on pixels in the neighbouring window only through the shifted layer."""
    torch.manual_seed(0)
    spec = {"type": "encoder/swinir_light", "dim": 8, "depths": [1], "heads": 2, "window": 4}
    plain, shifted = MODELS.build(spec), MODELS.build({**spec, "depths": [2]})
    for encoder, crosses in ((plain, False), (shifted, True)):
        x = torch.rand(1, 1, 8, 8, requires_grad=True)
        feat = encoder.blocks[0].layers[-1](encoder.embed_norm(encoder.head(x).permute(0, 2, 3, 1)))
        feat[0, 3, 3].sum().backward()
        # pixel (3, 3): its window covers rows/cols 0-3 (shifted by 2: 2-5); the head convolution reaches one more
        outside = x.grad[0, 0, 5:, 5:].abs().sum()
        assert (outside > 0) == crosses


def test_swinir_encoder_pads_odd_sizes_and_crops_back() -> None:
    torch.manual_seed(0)
    encoder = MODELS.build({"type": "encoder/swinir_light", "dim": 8, "depths": [2], "heads": 2, "window": 4})
    out = encoder(torch.rand(2, 1, 9, 14))
    assert out.shape == (2, 8, 9, 14) and torch.isfinite(out).all()


def test_fine_tuning_starts_from_a_weights_file_without_the_sign_map(tmp_path) -> None:
    """``train.init``: weights of today's head load into a sign head (its new negative map is zero-initialised),
    so fine-tuning starts from the file's function; parameters that do not fit are one error naming the file."""
    from medsr.checkpoint import save_weights, start_from_weights

    plain = randomise(build("sakg", head="kspace", in_band_correction=False, nonnegative=False)).eval()
    path = tmp_path / "plain.pth"
    save_weights(path, {"type": "sakg", **TINY["sakg"], "in_band_correction": False}, plain.state_dict())
    sign = build("sakg", head="kspace", in_band_correction="sign", nonnegative=False).eval()
    start_from_weights(sign, path)
    lr, ref = inputs()
    with torch.no_grad():
        assert torch.equal(sign(lr.abs(), OUT_SIZE, ref), plain(lr.abs(), OUT_SIZE, ref))
    wider = build("sakg", head="kspace", in_band_correction="sign", hidden=8)
    with pytest.raises(InputError, match="plain.pth.*shapes differ"):
        start_from_weights(wider, path)
    with pytest.raises(InputError, match="holds sakg weights"):
        start_from_weights(build("liif"), path)
    free = randomise(build("sakg", head="kspace"))  # its trained in-band correction is not in the file
    with pytest.raises(InputError, match="non-zero-initialised parameters: lr_correction"):
        start_from_weights(free, path)


def test_reference_base_starts_at_the_guided_anchor_with_a_reference_and_at_zero_filling_without() -> None:
    model = build("sakg", head="kspace", reference_base=True, nonnegative=False).eval()
    lr, ref = inputs()
    lr = lr.abs()  # magnitudes, as the guided anchor sees them
    with torch.no_grad():
        guided, plain = model(lr, OUT_SIZE, ref), model(lr, OUT_SIZE, None)
    scale = (OUT_SIZE[0] / LR_SIZE[0], OUT_SIZE[1] / LR_SIZE[1])
    anchor = guided_upsample(lr[:, 1:2], OUT_SIZE, ref, default_radius(scale))
    torch.testing.assert_close(guided, anchor, rtol=0, atol=1e-6)
    torch.testing.assert_close(plain, zero_fill_upsample(lr[:, 1:2], OUT_SIZE, magnitude=False).real, rtol=0,
                               atol=1e-6)
    assert (guided - plain).abs().max() > 1e-3  # the reference moved the start
    with pytest.raises(InputError, match="reference_base"):
        build("sakg", head="bicubic", reference_base=True)
