"""The flagship ``sakg`` model: shapes at asymmetric non-integer scales, reference modes, component switches,
the zero-filling start, data consistency, the semantic auxiliary loss, export/import and the MAC budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from medsr.checkpoint import build_from_weights, save_weights
from medsr.config import CONFIG_DIR
from medsr.errors import InputError
from medsr.kspace import downsample, zero_fill_upsample
from medsr.registry import LOSSES, MODELS

TINY = {
    "encoder": {"type": "rdn", "n_feats": 8, "n_blocks": 1, "growth": 4, "n_layers": 2},
    "ref_encoder": {"type": "edsr", "n_feats": 8, "n_blocks": 1},
    "sem_width": 8,
    "n_fuse": 1,
    "hidden": 16,
}
LR_SIZE, OUT_SIZE = (13, 17), (31, 29)  # scales 2.38 x 1.71


def build(**flags: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build({"type": "sakg", **TINY, **flags})


def activate(model: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised output layer weights, so every input can move the output."""
    torch.manual_seed(1)
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    return model


def inputs(batch: int = 2, slices: int = 3) -> torch.Tensor:
    torch.manual_seed(2)
    return torch.rand(batch, slices, *LR_SIZE)


COMPONENTS = ("semantic", "slice_attention", "scale_conditioning")
FLAGS = [{}] + [{name: False} for name in COMPONENTS] + [dict.fromkeys(COMPONENTS, False)]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f"no_{k}" for k in f) or "full")
@pytest.mark.parametrize("ref_size", [None, OUT_SIZE, (20, 50)], ids=["no-ref", "hr-ref", "other-res-ref"])
def test_forward_backward_shapes(flags: dict, ref_size: tuple[int, int] | None) -> None:
    model = activate(build(**flags)).train()
    lr = inputs().requires_grad_(True)
    ref = None if ref_size is None else torch.rand(2, 1, *ref_size)
    out = model(lr, OUT_SIZE, ref).image
    assert out.shape == (2, 1, *OUT_SIZE)
    out.square().mean().backward()
    assert torch.isfinite(lr.grad).all() and lr.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_starts_at_zero_filling() -> None:
    model = build().eval()
    lr = inputs()
    with torch.no_grad():
        out = model(lr, OUT_SIZE, torch.rand(2, 1, *OUT_SIZE))
    expected = zero_fill_upsample(lr[:, 1:2], OUT_SIZE, magnitude=False).real.clamp_min(0)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_reference_changes_output_and_absent_reference_works() -> None:
    model = activate(build()).eval()
    lr = inputs()
    with torch.no_grad():
        a = model(lr, OUT_SIZE, torch.rand(2, 1, 40, 33))
        b = model(lr, OUT_SIZE, torch.rand(2, 1, 40, 33))
        none = model(lr, OUT_SIZE, None)
    assert (a - b).abs().max() > 1e-4 and (a - none).abs().max() > 1e-4


@pytest.mark.parametrize("attention", [True, False])
def test_adjacent_slices_used_only_with_attention(attention: bool) -> None:
    model = activate(build(slice_attention=attention)).eval()
    lr = inputs()
    moved = lr.clone()
    moved[:, 0] = torch.rand(2, *LR_SIZE)
    with torch.no_grad():
        diff = (model(lr, OUT_SIZE, None) - model(moved, OUT_SIZE, None)).abs().max()
    assert (diff > 1e-5) == attention


def test_single_slice_input_with_attention() -> None:
    model = activate(build()).eval()
    with torch.no_grad():
        out = model(inputs(slices=1), OUT_SIZE, None)
    assert out.shape == (2, 1, *OUT_SIZE) and torch.isfinite(out).all()


def test_band_split_learns_the_band_only_at_lr_resolution() -> None:
    """The decoder's residual lies outside the LR band: the output's band is the input's plus the LR correction
    (zero at initialisation); without the split the residual also changes the band."""
    lr, ref = inputs(), torch.rand(2, 1, *OUT_SIZE)
    model = activate(build(nonnegative=False)).eval()
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
        base = zero_fill_upsample(lr[:, 1:2], OUT_SIZE, magnitude=False).real
        assert (out - base).abs().max() > 1e-3
        assert downsample(out - base, size=LR_SIZE, magnitude=False).abs().max() < 1e-4
        torch.nn.init.normal_(model.lr_correction.weight, std=0.1)
        moved = model(lr, OUT_SIZE, ref)
        assert downsample(moved - base, size=LR_SIZE, magnitude=False).abs().max() > 1e-3
        plain = activate(build(band_split=False, nonnegative=False)).eval()
        assert downsample(plain(lr, OUT_SIZE, ref) - base, size=LR_SIZE, magnitude=False).abs().max() > 1e-3


def test_without_in_band_correction_the_band_is_the_input_whatever_the_weights() -> None:
    lr, ref = inputs(), torch.rand(2, 1, *OUT_SIZE)
    model = activate(build(in_band_correction=False, nonnegative=False)).eval()
    assert model.lr_correction is None
    for p in model.parameters():  # any weights at all: the band still cannot move
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        out = model(lr, OUT_SIZE, ref)
        base = zero_fill_upsample(lr[:, 1:2], OUT_SIZE, magnitude=False).real
        assert (out - base).abs().max() > 1e-3
        assert downsample(out - base, size=LR_SIZE, magnitude=False).abs().max() < 1e-4


def test_semantic_aux_logits_and_loss() -> None:
    """A training forward returns the semantic logits in its output (no state kept on the model); the loss reads
    them from that output, and an eval forward returns the image alone."""
    from medsr.losses import WeightedSum
    from medsr.models.base import ModelOutput

    model = build().train()
    loss = LOSSES.build({"type": "sakg_semantic"})
    hr = torch.rand(2, 1, *OUT_SIZE)
    label = torch.randint(0, 4, (2, *OUT_SIZE))
    out = model(inputs(), OUT_SIZE, None)
    assert isinstance(out, ModelOutput) and out.image.shape == (2, 1, *OUT_SIZE)
    assert set(out.aux) == {"semantic"} and out.aux["semantic"].shape == (2, 4, *LR_SIZE)
    assert not any(isinstance(v, torch.Tensor) and v.requires_grad for v in vars(model).values())
    value = loss(out, hr, {"label": label})
    value.backward()
    assert model.semantic.head[0].weight.grad.abs().sum() > 0
    assert value.item() > 0
    total, terms = WeightedSum([{"type": "l1"}, {"type": "sakg_semantic", "weight": 0.5}])(out, hr, {"label": label})
    assert terms["sakg_semantic"].item() == pytest.approx(value.item())
    assert total.item() == pytest.approx((out.image - hr).abs().mean().item() + 0.5 * value.item())

    with pytest.raises(ValueError, match="labels"):
        loss(model(inputs(), OUT_SIZE, None), hr, {})
    model.eval()
    with torch.no_grad():
        image = model(inputs(), OUT_SIZE, None)
    assert isinstance(image, torch.Tensor) and image.shape == (2, 1, *OUT_SIZE)
    with pytest.raises(ValueError, match="training forward"):
        loss(image, hr, {"label": label})


def test_semantic_loss_is_zero_without_semantic_component() -> None:
    from medsr.losses import WeightedSum

    model = build(semantic=False).train()
    loss = LOSSES.build({"type": "sakg_semantic"})
    out = model(inputs(), OUT_SIZE, None)
    assert out.aux == {}
    assert loss(out, out.image, {"label": torch.zeros(2, *OUT_SIZE, dtype=torch.long)}).item() == 0.0
    terms = WeightedSum([{"type": "l1"}, {"type": "sakg_semantic"}])
    terms.check(model)
    with pytest.raises(ValueError, match="semantic logits"):
        terms.check(MODELS.build({"type": "bicubic"}))


def test_scale_conditioning_reads_the_reference_resolution() -> None:
    """With scale conditioning the same reference content at two resolutions gives different outputs through the
    reference-scale input; the decoder also sees the cell (the output changes with the target scale)."""
    model = activate(build()).eval()
    torch.nn.init.normal_(model.ref_scale.weight)
    lr = inputs()
    with torch.no_grad():
        near = model(lr, OUT_SIZE, torch.ones(2, 1, 31, 29))
        far = model(lr, OUT_SIZE, torch.ones(2, 1, 16, 15))
    assert (near - far).abs().max() > 1e-4


def test_export_import_identical(tmp_path: Path) -> None:
    spec = {"type": "sakg", **TINY}
    model = activate(MODELS.build(spec)).eval()
    path = tmp_path / "sakg.pth"
    save_weights(path, spec, model.state_dict())
    loaded, meta = build_from_weights(path)
    lr, ref = inputs(), torch.rand(2, 1, 20, 50)
    with torch.no_grad():
        torch.testing.assert_close(loaded(lr, OUT_SIZE, ref), model(lr, OUT_SIZE, ref), rtol=0, atol=0)
    assert meta["model"]["type"] == "sakg"


def count_macs(model_spec: dict, lr_size: int = 128, out_size: int = 256) -> float:
    """MACs (FLOPs / 2, torch.utils.flop_counter) of one forward with 3 slices and an HR reference, on the meta
    device (no arithmetic is done; the count depends only on shapes)."""
    with torch.device("meta"):
        model = MODELS.build(model_spec).eval()
        lr = torch.empty(1, 3, lr_size, lr_size)
        ref = torch.empty(1, 1, out_size, out_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(lr, (out_size, out_size), ref)
    return counter.get_total_flops() / 2


def test_mac_budget_at_x2_with_hr_reference() -> None:
    default = count_macs({"type": "sakg"})
    assert 1e9 < default <= 150e9
    # MACs grow with the number of output pixels: a quarter of the pixels, a quarter of the MACs.
    quarter = count_macs({"type": "sakg"}, lr_size=64, out_size=128)
    assert quarter == pytest.approx(default / 4, rel=1e-3)


def test_shipped_configs_within_budget() -> None:
    from medsr.config import load_config, to_dict

    root = CONFIG_DIR
    specs = [to_dict(load_config(p))["model"] for p in sorted(root.glob("sakg*.yaml"))]
    assert specs, "no configs/sakg*.yaml"
    for spec in specs:
        assert spec["type"] == "sakg"
        assert count_macs(spec) <= 150e9


def test_pair_mixture_addresses_every_pair(mni_store: Path) -> None:
    from medsr.data.datasets import SampleSpec, SRSliceDataset
    from medsr.data.mixture import PairMixture, parse_pair

    sets = [SRSliceDataset(mni_store, "val", t, ref=r) for t, r in (parse_pair("T2:T1"), parse_pair("PD:T2"))]
    mixture = PairMixture(sets)
    n = len(sets[0])
    assert len(mixture) == 2 * n
    item = mixture[SampleSpec(n + 3, (2.0, 2.0), use_ref=True)]
    sid, z = sets[1].items[3]
    torch.testing.assert_close(item["hr"][0], torch.from_numpy(sets[1].store.slices(sid, "PD", z)))
    torch.testing.assert_close(item["ref"][0], torch.from_numpy(sets[1].store.slices(sid, "T2", z)))
    with pytest.raises(IndexError):
        mixture[SampleSpec(2 * n, (2.0, 2.0))]
    with pytest.raises(InputError, match="TARGET:REF"):
        parse_pair("T2")


def test_train_sakg_on_contrast_pairs(mni_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from medsr.cli import main

    config = CONFIG_DIR / "sakg_mni.yaml"
    tiny = [f"model.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY.items()]
    status = main(["train", str(config), f"data.root={mni_store}", f"logging.runs_dir={tmp_path}", "train.steps=3",
                   "val.every=0", "val.max_subjects=1", "val.scales=[2]", "data.batch_size=2", *tiny, "--name", "pairs"])
    assert status == 0, capsys.readouterr().err
    model, meta = build_from_weights(tmp_path / "pairs" / "weights.pth")
    assert meta["model"]["type"] == "sakg"
    assert sorted(meta["contrasts"]["pairs"]) == sorted(f"{t}:{r}" for t in ("T1", "T2", "PD") for r in ("T1", "T2", "PD") if t != r)
