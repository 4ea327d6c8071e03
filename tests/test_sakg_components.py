"""SAKG's redesigned components (issue 11, item 6): the frozen external prior (outside the SR network, in the
state dict, never trained, rebuilt without its initialisation file), prior dropout, the residual slice attention
that starts as the centre slice, fixed mean fusion, and the zero-initialised log-scale conditioning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsr.checkpoint import build_from_weights, build_model, rebuild_spec, save_weights
from medsr.errors import InputError
from medsr.models.base import seeded_init
from medsr.models.sakg import ExternalPrior, SliceAttention, log_scale
from medsr.models.unet import UNet
from medsr.registry import MODELS

from test_sakg import OUT_SIZE, TINY, activate, inputs

PRIOR_NET = {"base": 4, "depth": 1}


def build(seed: int = 0, **flags: object) -> torch.nn.Module:
    return seeded_init(build_model({"type": "sakg", **TINY, **flags}), seed)


def write_prior(path: Path) -> UNet:
    torch.manual_seed(5)
    net = UNet(in_channels=3, **PRIOR_NET)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    save_weights(path, {"type": "unet", "in_channels": 3, **PRIOR_NET}, net.state_dict(), meta={"task": "segmentation"})
    return net.eval()


def external(path: Path, seed: int = 0, **flags: object) -> torch.nn.Module:
    return build(seed, prior="external", prior_net=PRIOR_NET, prior_init=str(path), **flags)


def test_external_prior_is_loaded_frozen_and_survives_seeded_init(tmp_path: Path) -> None:
    prior = write_prior(tmp_path / "prior.pth")
    model = external(tmp_path / "prior.pth")
    for name, p in prior.state_dict().items():
        torch.testing.assert_close(model.prior.net.state_dict()[name], p, rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.prior.parameters())
    assert model.train().prior.net.training is False  # frozen batch-norm statistics
    out = activate(model).train()(inputs(), OUT_SIZE, torch.rand(2, 1, *OUT_SIZE))
    assert out.aux == {}  # no semantic logits to train: the prior is not the SR network's
    out.image.square().mean().backward()
    assert all(p.grad is None for p in model.prior.parameters())
    assert model.prior_sft[0].scale.weight.grad.abs().sum() > 0  # its probabilities reach the SR network


def test_external_prior_changes_the_output_and_reads_the_reference(tmp_path: Path) -> None:
    write_prior(tmp_path / "prior.pth")
    model = activate(external(tmp_path / "prior.pth")).eval()
    for sft in model.prior_sft:
        torch.nn.init.normal_(sft.scale.weight, std=0.5)
    lr, ref = inputs(), torch.rand(2, 1, *OUT_SIZE)
    seen = []
    model.prior.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        base = model(lr, OUT_SIZE, ref)
        model.prior.register_forward_hook(lambda m, i, o: torch.zeros_like(o))  # uniform prior
        uniform = model(lr, OUT_SIZE, ref)
    assert (base - uniform).abs().max() > 1e-4
    x = seen[0]
    assert x.shape == (2 * 3, 3, *lr.shape[-2:])  # every slice of the stack, 3 input channels
    assert torch.equal(x[:, 2], torch.ones_like(x[:, 2]))  # reference-present channel
    with torch.no_grad():
        model(lr, OUT_SIZE, None)
    assert torch.equal(seen[-1][:, 1:], torch.zeros_like(seen[-1][:, 1:]))


def test_prior_dropout_gives_uniform_priors_in_training_only(tmp_path: Path) -> None:
    write_prior(tmp_path / "prior.pth")
    model = external(tmp_path / "prior.pth", prior_dropout=0.999)
    lr = inputs()
    torch.manual_seed(0)
    prob = model.train()._external_prior(lr, None)
    assert torch.allclose(prob, torch.full_like(prob, 0.25))
    prob = model.eval()._external_prior(lr, None)
    assert not torch.allclose(prob, torch.full_like(prob, 0.25))


def test_weights_file_rebuilds_without_the_prior_file(tmp_path: Path) -> None:
    path = tmp_path / "prior.pth"
    write_prior(path)
    spec = {"type": "sakg", **TINY, "prior": "external", "prior_net": PRIOR_NET, "prior_init": str(path)}
    model = activate(build_model(spec)).eval()
    save_weights(tmp_path / "sakg.pth", spec, model.state_dict())
    path.unlink()  # the trained prior now lives in the SR model's own weights file
    assert "prior_init" not in rebuild_spec(spec) and rebuild_spec({"type": "unet", "base": 4}) == {"type": "unet",
                                                                                                     "base": 4}
    loaded, _ = build_from_weights(tmp_path / "sakg.pth")
    lr, ref = inputs(), torch.rand(2, 1, 20, 50)
    with torch.no_grad():
        torch.testing.assert_close(loaded(lr, OUT_SIZE, ref), model(lr, OUT_SIZE, ref), rtol=0, atol=0)


def test_prior_file_must_match_the_prior_spec(tmp_path: Path) -> None:
    write_prior(tmp_path / "prior.pth")
    with pytest.raises(InputError, match="does not fit the config's model"):
        build(prior="external", prior_net={"base": 8, "depth": 1}, prior_init=str(tmp_path / "prior.pth"))
    with pytest.raises(InputError, match="model.prior_init: is given, but this sakg model has no prior.net"):
        build(prior="learned", prior_init=str(tmp_path / "prior.pth"))
    with pytest.raises(InputError, match="no such weights file"):
        build(prior="external", prior_init=str(tmp_path / "missing.pth"))
    # the constructor itself reads no file: only the builder does
    assert MODELS.build({"type": "sakg", **TINY, "prior": "external", "prior_init": str(tmp_path / "missing.pth")})
    with pytest.raises(InputError, match="model.prior"):
        build(prior="oracle")


def test_residual_attention_starts_as_the_centre_slice() -> None:
    """Paired init: the residual form and the centre-only model are the same function at step 0; after its gate
    moves, the neighbours change the output."""
    lr = inputs()
    residual, centre = build(7, fusion="residual").eval(), build(7, slice_attention=False).eval()
    activate(residual), activate(centre)
    with torch.no_grad():
        torch.testing.assert_close(residual(lr, OUT_SIZE), centre(lr, OUT_SIZE), rtol=0, atol=1e-6)
        torch.nn.init.normal_(residual.attention.gate.weight, std=0.5)
        moved = residual(lr, OUT_SIZE)
        other = lr.clone()
        other[:, 0] = torch.rand_like(other[:, 0])
        assert (residual(other, OUT_SIZE) - moved).abs().max() > 1e-4
    softmax = build(7).eval()
    with torch.no_grad():
        assert (activate(softmax)(lr, OUT_SIZE) - centre(lr, OUT_SIZE)).abs().max() > 1e-4  # the old form does not


def test_mean_fusion_is_the_plain_mean() -> None:
    fusion = SliceAttention(4, 0, "mean")
    feats = torch.rand(2, 3, 4, 5, 6)
    torch.testing.assert_close(fusion(feats, feats[:, :, :0]), feats.mean(dim=1))
    assert list(fusion.parameters()) == []
    with pytest.raises(InputError, match="model.fusion"):
        SliceAttention(4, 0, "max")


def test_log_scale_conditioning_starts_as_no_op_and_then_reads_the_scales() -> None:
    lr = inputs()
    log, none = build(3, scale_embedding="log").eval(), build(3, scale_conditioning=False).eval()
    activate(log), activate(none)
    ref = torch.rand(2, 1, 16, 15)
    with torch.no_grad():
        torch.testing.assert_close(log(lr, OUT_SIZE, ref), none(lr, OUT_SIZE, ref), rtol=0, atol=1e-6)
        torch.nn.init.normal_(log.cell.weight), torch.nn.init.normal_(log.ref_scale.weight)
        near, far = log(lr, OUT_SIZE, torch.rand(2, 1, *OUT_SIZE)), log(lr, OUT_SIZE, ref)
        assert (log(lr, OUT_SIZE, ref) - none(lr, OUT_SIZE, ref)).abs().max() > 1e-4
    assert log.ref_scale.in_features == 3  # present flag + log-scale per axis
    assert (near - far).abs().max() > 1e-4
    torch.testing.assert_close(log_scale(torch.tensor([1.0, 2.0, 8.0])), torch.tensor([0.0, 1 / 3, 1.0]))
    with pytest.raises(InputError, match="model.scale_embedding"):
        build(scale_embedding="sqrt")


def test_declared_probes_change_the_output_only_inside_the_block() -> None:
    model = activate(build(0)).eval()  # learned prior, scale conditioning
    torch.nn.init.normal_(model.cell.weight, std=0.5)
    lr, ref = inputs(), torch.rand(2, 1, *OUT_SIZE)
    with torch.no_grad():
        base = model(lr, OUT_SIZE, ref)
        with model.probe(prior_logits=torch.zeros_like):
            uniform = model(lr, OUT_SIZE, ref)
        with model.probe(scale_code=lambda code: code * 2.0):
            wrong = model(lr, OUT_SIZE, ref)
        after = model(lr, OUT_SIZE, ref)
    assert (base - uniform).abs().max() > 1e-5 and (base - wrong).abs().max() > 1e-5
    assert torch.equal(after, base)  # the hooks are gone
    no_prior = activate(build(0, semantic=False, scale_conditioning=False)).eval()
    with torch.no_grad(), no_prior.probe(prior_logits=torch.zeros_like, scale_code=lambda c: c * 2):
        assert torch.equal(no_prior(lr, OUT_SIZE, ref), activate(build(0, semantic=False, scale_conditioning=False)
                                                                 ).eval()(lr, OUT_SIZE, ref))
