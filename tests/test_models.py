"""Every registered architecture: forward/backward at asymmetric non-integer scales, fixed scales enforced,
references at their own resolution, weights export and rebuild, UNet shapes."""

from __future__ import annotations

import pytest
import torch

from medsr.checkpoint import build_from_weights, save_weights
from medsr.models.base import SRModel, sr_model
from medsr.registry import MODELS

RDN_SMALL = {"type": "rdn", "n_feats": 8, "n_blocks": 2, "growth": 4, "n_layers": 2}
SR_SPECS = {
    "bicubic": {"type": "bicubic"},
    "zerofill": {"type": "zerofill"},
    "rdn": {"type": "rdn", "n_feats": 8, "n_blocks": 2, "growth": 4, "n_layers": 2},
    "liif": {"type": "liif", "encoder": {"type": "edsr", "n_feats": 8, "n_blocks": 2}, "hidden": [16, 16]},
    "liif_rdn": {
        "type": "liif", "encoder": RDN_SMALL, "hidden": [16], "local_ensemble": False, "feat_unfold": False
    },
    "metasr": {"type": "metasr", "encoder": RDN_SMALL, "hidden": [16]},
    "dualarb": {"type": "dualarb", "encoder": RDN_SMALL, "hidden": [16, 16]},
}
EDSR_SPEC = {"type": "edsr", "scales": [2, 3], "n_feats": 8, "n_blocks": 2}
UNET_SPEC = {"type": "unet", "num_classes": 3, "base": 4, "depth": 3}
TRAINABLE = ["rdn", "liif", "liif_rdn", "metasr", "dualarb"]


def lr_stack(b: int = 2, s: int = 3, h: int = 13, w: int = 17) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(b, s, h, w)


def test_all_models_registered():
    assert {"bicubic", "zerofill", "edsr", "rdn", "liif", "metasr", "dualarb", "unet"} <= set(MODELS.names())


@pytest.mark.parametrize("name", TRAINABLE)
def test_forward_backward_at_asymmetric_non_integer_scale(name):
    torch.manual_seed(0)
    model = MODELS.build(SR_SPECS[name])
    lr = lr_stack().requires_grad_(True)
    ref = torch.rand(2, 1, 40, 22) if model.uses_ref else None
    out = model(lr, (31, 29), ref)
    assert out.shape == (2, 1, 31, 29) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert lr.grad[:, 1].abs().sum() > 0 and lr.grad[:, 0].abs().sum() == 0  # only the centre slice is used


@pytest.mark.parametrize("name", ["bicubic", "zerofill"])
def test_parameter_free_baselines_at_asymmetric_scale(name):
    model = MODELS.build(SR_SPECS[name])
    assert sum(p.numel() for p in model.parameters()) == 0
    out = model(lr_stack(), (31, 29))
    assert out.shape == (2, 1, 31, 29) and torch.isfinite(out).all()


def test_global_residual_is_bicubic_plus_the_decoder_output():
    model = MODELS.build(SR_SPECS["liif"])
    lr = lr_stack()
    bic = MODELS.build({"type": "bicubic"})(lr, (31, 29))
    assert not torch.equal(model(lr, (31, 29)), bic)
    last = model.imnet.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.25)  # a constant decoder: the ensemble weights sum to one, so exactly bicubic + 0.25
        torch.testing.assert_close(model(lr, (31, 29)), bic + 0.25, rtol=0, atol=1e-5)


def test_dualarb_reference_at_other_resolution_matters_and_none_works():
    torch.manual_seed(0)
    model = MODELS.build(SR_SPECS["dualarb"])
    lr = lr_stack()
    with_ref = model(lr, (31, 29), torch.rand(2, 1, 40, 22))
    other_ref = model(lr, (31, 29), torch.rand(2, 1, 17, 50))
    without = model(lr, (31, 29), None)
    assert without.shape == with_ref.shape == other_ref.shape == (2, 1, 31, 29)
    assert not torch.allclose(with_ref, without) and not torch.allclose(with_ref, other_ref)
    without.mean().backward()
    assert all(p.grad is not None for p in model.target_encoder.parameters())
    assert all(p.grad is None for p in model.ref_encoder.parameters())
    with pytest.raises(ValueError, match="ref"):
        model(lr, (31, 29), torch.rand(3, 1, 10, 10))


def test_edsr_enforces_its_fixed_scales():
    model = MODELS.build(EDSR_SPEC)
    assert model.fixed_scales == (2, 3)
    lr = lr_stack()
    for s in (2, 3):
        out = model(lr, (13 * s, 17 * s))
        assert out.shape == (2, 1, 13 * s, 17 * s)
    out.mean().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    for size in [(31, 29), (52, 68), (26, 51)]:
        with pytest.raises(ValueError, match="scales"):
            model(lr, size)
    with pytest.raises(ValueError):
        MODELS.build({"type": "edsr", "scales": [1.5]})


@pytest.mark.parametrize("spec", [*SR_SPECS.values(), EDSR_SPEC, UNET_SPEC], ids=[*SR_SPECS, "edsr", "unet"])
def test_exported_weights_rebuild_identical_model(spec, tmp_path):
    torch.manual_seed(1)
    model = MODELS.build(spec)
    state = model.state_dict()
    noisy = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(noisy)
    model.eval()
    path = tmp_path / "w.pth"
    save_weights(path, spec, model.state_dict(), meta={"scales": [1.5, 4]})
    rebuilt, meta = build_from_weights(path)
    assert meta["model"] == spec and type(rebuilt) is type(model)
    with torch.no_grad():
        if spec["type"] == "unet":
            x = torch.rand(2, 1, 21, 19)
            a, b = model(x), rebuilt(x)
        else:
            size = (26, 34) if spec["type"] == "edsr" else (31, 29)
            ref = torch.rand(2, 1, 40, 22)
            a, b = model(lr_stack(), size, ref), rebuilt(lr_stack(), size, ref)
    assert torch.equal(a, b)


def test_unet_handles_odd_sizes_and_lists_features():
    torch.manual_seed(0)
    unet = MODELS.build(UNET_SPEC)
    x = torch.rand(2, 1, 37, 23, requires_grad=True)
    logits = unet(x)
    assert logits.shape == (2, 3, 37, 23)
    logits.mean().backward()
    assert x.grad.abs().sum() > 0
    feats = unet.features(x)
    levels = [0, 1, 2, 3, 2, 1, 0]
    widths = [4, 8, 16, 32, 16, 8, 4]
    assert [f.shape for f in feats] == [
        (2, c, -(-37 // 2**lv), -(-23 // 2**lv)) for c, lv in zip(widths, levels)
    ]
    with torch.no_grad():
        top = unet(x[:, :, :30])
    assert torch.isfinite(top).all() and top.shape == (2, 3, 30, 23)


@pytest.mark.parametrize("declared", [{"fixed_scales": [2]}, {"fixed_scales": (0,)}, {"uses_ref": 1}, {"uses_kspace": None},
                                      {"n_slices": 2}, {"aux_outputs": "semantic"}])
def test_malformed_capabilities_are_refused_once_at_build(declared):
    model = type("Declared", (SRModel,), declared)()
    with pytest.raises(TypeError, match="Declared." + next(iter(declared))):
        sr_model(model, "model")
    assert sr_model(MODELS.build({"type": "bicubic"}), "model").fixed_scales is None
