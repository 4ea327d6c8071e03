"""Undersampled LR inputs: data consistency, the joint items, T2Net-style attention, composed pipelines and the
reconstruction / joint tasks end to end."""

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from _engine_data import write_config, write_store
from medsr import kspace
from medsr.checkpoint import load_weights
from medsr.cli import main
from medsr.data.datasets import SampleSpec
from medsr.data.undersampled import JointSliceDataset, t2net_lr_gain
from medsr.data.masks import MaskSpec
from medsr.engine.runs import train
from medsr.errors import InputError
from medsr.models.dc import DCCascade, DataConsistency, has_data_consistency
from medsr.models.undersampled import measurements
from medsr.models.sequential import Sequential
from medsr.models.t2net import T2Net, relevance_max
from medsr.registry import MODELS


def _measured(seed, shape=(2, 1, 12, 16)):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(shape, generator=g)
    mask = torch.rand(shape[0], shape[-1], generator=g) < 0.4
    mask[:, shape[-1] // 2] = True
    k = kspace.fft2c(image[:, 0]) * mask[:, None, :]
    return image, mask, k


def test_hard_dc_restores_the_sampled_kspace_exactly_and_soft_dc_is_the_weighted_mean():
    image, mask, k = _measured(0)
    measured = measurements(image, mask, k)
    x = torch.randn(2, 1, 12, 16, dtype=torch.complex64)
    out = kspace.fft2c(DataConsistency("hard")(x, measured))
    inside = measured[1].expand_as(out)
    np.testing.assert_allclose(out[inside].numpy(), measured[0][inside].numpy(), atol=1e-5)
    np.testing.assert_allclose(out[~inside].numpy(), kspace.fft2c(x)[~inside].numpy(), atol=1e-5)
    kx = kspace.fft2c(x)
    hard = kspace.data_consistency(kx, measured[0], measured[1])
    assert torch.equal(hard[inside], measured[0][inside]) and torch.equal(hard[~inside], kx[~inside])
    soft = kspace.data_consistency(kx, measured[0], measured[1], 3.0)
    np.testing.assert_allclose(soft[inside].numpy(), ((kx + 3 * measured[0]) / 4)[inside].numpy(), rtol=1e-5)
    assert DataConsistency("soft", 2.0)(x, None) is x
    assert measurements(image, mask, None) is None  # never derived from the magnitude image
    assert has_data_consistency(DCCascade(1, 4, 2)) and not has_data_consistency(torch.nn.Conv2d(1, 1, 1))


def test_dc_cascade_output_keeps_the_measurement():
    image, mask, k = _measured(1)
    net = DCCascade(n_cascades=2, n_feats=4, n_layers=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        x = net.reconstruct(image, mask, k)
    inside = measurements(image, mask, k)[1].expand_as(x)
    np.testing.assert_allclose(kspace.fft2c(x)[inside].numpy(), k[:, None].expand_as(x)[inside].numpy(), atol=1e-5)
    assert net(image, (12, 16), mask=mask, kspace=k).shape == (2, 1, 12, 16)
    with pytest.raises(ValueError, match="scales x1"):
        net(image, (24, 32))


def test_chunked_relevance_equals_the_dense_matrix():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 18, 37, generator=g), torch.randn(2, 18, 29, generator=g)
    dense = torch.bmm(q.transpose(1, 2), k)
    for chunk in (1, 5, 37, 100):
        values, indices = relevance_max(q, k, chunk)
        assert torch.equal(indices, dense.argmax(-1))
        np.testing.assert_allclose(values.numpy(), dense.amax(-1).numpy(), rtol=1e-6)
    net = T2Net(scale=2, n_feats=4, n_groups=1, n_blocks=1, chunk=7).eval()
    lr = torch.rand(1, 1, 8, 8, generator=g)
    dense_net = T2Net(scale=2, n_feats=4, n_groups=1, n_blocks=1, chunk=64).eval()
    dense_net.load_state_dict(net.state_dict())
    for p in net.transfer.parameters():
        assert p.requires_grad
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(std=0.2)
        dense_net.load_state_dict(net.state_dict())
        np.testing.assert_allclose(net(lr, (16, 16)).numpy(), dense_net(lr, (16, 16)).numpy(), atol=1e-6)


def test_windowed_transfer_searches_only_its_tile():
    from medsr.models.t2net import TaskTransformer, from_tiles, to_tiles

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 8 * 12, generator=g)
    tiles = to_tiles(x, (8, 12), 4)
    assert tiles.shape == (12, 5, 16) and torch.equal(from_tiles(tiles, 2, (8, 12), 4), x)
    torch.testing.assert_close(tiles[1], x[0].view(5, 8, 12)[:, :4, 4:8].reshape(5, 16))
    whole, tiled, local = (TaskTransformer(4, window=w).eval() for w in (None, 8, 4))
    tiled.load_state_dict(whole.state_dict())
    local.load_state_dict(whole.state_dict())
    sr, rec = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(tiled(sr, rec), whole(sr, rec))
        rec_far = rec.clone()
        rec_far[..., 6:, :] = torch.randn(1, 4, 2, 8, generator=g)
        # Output rows 0-1 read (fuse 3x3, fold 3x3) picks of rows <= 3, the top tiles, whose keys (conv 3x3,
        # unfold 3x3) and values read rec rows <= 5: far rows cannot reach them with a 4-pixel window.
        top = (slice(None), slice(None), slice(0, 2))
        torch.testing.assert_close(local(sr, rec_far)[top], local(sr, rec)[top])
    with pytest.raises(ValueError, match="does not divide"):
        TaskTransformer(4, window=3)(sr, rec)


def test_t2net_parameter_count_follows_its_layers():
    C, G, B, s = 8, 2, 3, 4
    net = T2Net(scale=s, n_feats=C, n_groups=G, n_blocks=B)

    def conv(cin, cout, k=3):
        return cin * cout * k * k + cout

    branch = conv(1, C) + G * B * 2 * conv(C, C)
    transfer = 2 * conv(C, C) + conv(2 * C, C)
    tails = conv(C, 1) + conv(C, C * s * s) + conv(C, 1)
    assert sum(p.numel() for p in net.parameters()) == 2 * branch + G * transfer + tails
    assert net.fixed_scales == (4,) and net.aux_outputs == ("recon",)
    lr = torch.rand(2, 1, 8, 8)
    out = net.train()(lr, (32, 32))
    torch.testing.assert_close(out.aux["recon"], lr)
    torch.testing.assert_close(out.image, kspace.zero_fill_upsample(lr, (32, 32), magnitude=False).real)


def test_sequential_composes_its_specs_and_detaches_the_stages():
    image, mask, k = _measured(3, (2, 3, 12, 16))
    model = MODELS.build({"type": "sequential", "recon": {"type": "dc_cascade", "n_cascades": 1, "n_feats": 4,
                                                          "n_layers": 2},
                          "sr": {"type": "edsr", "n_feats": 4, "n_blocks": 1, "scales": [2]}})
    assert isinstance(model, Sequential) and model.fixed_scales == model.sr.fixed_scales
    for p in model.recon.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model.train()
    out = model(image, (24, 32), mask=mask, kspace=k)
    recon = model.recon(image, (12, 16), mask=mask, kspace=k)
    torch.testing.assert_close(out.aux["recon"], recon)
    stack = torch.cat([image[:, :1], recon, image[:, 2:]], dim=1)
    torch.testing.assert_close(out.image, model.sr(stack, (24, 32)))
    out.image.sum().backward()
    assert all(p.grad is None for p in model.recon.parameters())
    joint = MODELS.build({"type": "sakg_joint", "recon": {"type": "dc_cascade", "n_cascades": 1, "n_feats": 4,
                                                          "n_layers": 2},
                          "sakg": {"encoder": {"type": "edsr", "n_feats": 4, "n_blocks": 1},
                                   "ref_encoder": {"type": "edsr", "n_feats": 4, "n_blocks": 1}, "hidden": 8}})
    joint.train()
    for ref in (None, torch.rand(2, 1, 24, 32)):
        out = joint(image[:, 1:2], (24, 32), ref, mask=mask, kspace=k)
        out.image.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in joint.recon.parameters())
    tiny = {"type": "edsr", "n_feats": 4, "n_blocks": 1}
    with pytest.raises(ValueError, match="not a reconstruction model"):
        MODELS.build({"type": "sequential", "sr": tiny, "recon": tiny})


def test_joint_items_share_one_intensity_scale(tmp_path):
    store = write_store(tmp_path / "store", shape=(2, 24, 28))
    spec = MaskSpec("random", 2.0, 0.2)
    ds = JointSliceDataset(store, "train", "T2", mask=spec, fov=(32, 32))
    item = ds[SampleSpec(index=1, scale=(2.0, 2.0))]
    assert item["hr"].shape == (1, 32, 32) and item["lr"].shape == (1, 16, 16) and item["kspace"].dtype == torch.complex64
    hr = item["hr"][0].numpy()
    np.testing.assert_allclose(item["lr_clean"][0].numpy(), kspace.downsample(hr, 2), atol=1e-5)
    np.testing.assert_allclose(item["lr"][0].numpy(), np.abs(kspace.ifft2c(item["kspace"].numpy())), atol=1e-5)
    clean_k = kspace.fft2c(kspace.downsample(hr, 2, magnitude=False))
    np.testing.assert_allclose(item["kspace"].numpy()[:, item["mask"].numpy()], clean_k[:, item["mask"].numpy()],
                               atol=1e-4)
    assert float(item["hr"].mean()) == pytest.approx(float(item["lr_clean"].mean()), rel=0.05)
    compat = JointSliceDataset(store, "train", "T2", mask=spec, fov=(32, 32), intensity="t2net-compat")
    other = compat[SampleSpec(index=1, scale=(2.0, 2.0))]
    assert t2net_lr_gain((32, 32), (16, 16)) == 4
    z = np.abs(hr - hr.mean()) / hr.std()
    np.testing.assert_allclose(other["hr"][0].numpy(), z, atol=1e-4)
    np.testing.assert_allclose(other["lr_clean"][0].numpy(), 4 * kspace.downsample(z, 2), atol=1e-4)
    with pytest.raises(InputError, match="data.mask"):
        JointSliceDataset(store, "train", "T2", mask=None)


@pytest.mark.parametrize("task,model,extra", [
    ("joint", {"type": "t2net", "scale": 2, "n_feats": 4, "n_groups": 1, "n_blocks": 1},
     [{"type": "l1", "weight": 0.8}, {"type": "recon_l1", "weight": 0.2}]),
    ("joint", {"type": "sequential", "sr": {"type": "zerofill"},
               "recon": {"type": "dc_cascade", "n_cascades": 1, "n_feats": 4, "n_layers": 2}},
     [{"type": "l1", "weight": 0.8}, {"type": "recon_l1", "weight": 0.2}]),
    ("reconstruction", {"type": "dc_cascade", "n_cascades": 1, "n_feats": 4, "n_layers": 2, "dc": "soft"},
     [{"type": "l1", "weight": 1.0}]),
])
def test_tasks_train_end_to_end_and_record_the_degradation(tmp_path, capsys, task, model, extra):
    store = write_store(tmp_path / "store", shape=(2, 16, 16))
    scale = 1 if task == "reconstruction" else 2
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", model=model, loss=extra,
                       data={"patch_size": None, "ref": None, "fov": [16, 16],
                             "mask": {"type": "random", "acceleration": 2, "center_fraction": 0.25},
                             "curriculum": [{"until_step": None, "scale": {"type": "choice", "values": [scale]},
                                             "ref": "none"}]},
                       val={"scales": [scale], "every": 2}, train={"steps": 3, "ema": 0.0})
    data = yaml.safe_load(cfg.read_text())
    data["task"] = task
    cfg.write_text(yaml.safe_dump(data))
    run = train(cfg)
    out = capsys.readouterr().out
    assert "protocol" in out and "effective R" in out
    meta = load_weights(run / "weights.pth")["meta"]
    assert meta["task"] == task and meta["degradation"]["mask"] == "random"
    assert meta["degradation"]["effective_acceleration"][f"x{scale}"] >= 1
    assert main(["test", str(run), "--data", str(store), "--scales", str(scale)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(f"x{scale} ")]
    branches = {"joint": {"recon", "sr"}, "reconstruction": {"recon"}}[task]
    assert {(r[2], r[3]) for r in rows} == {(b, m) for b in branches for m in (model["type"], "zero-filling")}
    if task == "joint" and model["type"] == "t2net":  # t2net without DC: medsr sr runs it on magnitude images
        _sr_refuses_other_sampling(tmp_path, capsys, run)
    elif task == "joint":
        _sr_refuses_data_consistency_without_kspace(tmp_path, capsys, run)


def _sr_refuses_data_consistency_without_kspace(tmp_path, capsys, run):
    volume = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 2), np.float32), np.eye(4)), volume)
    argv = ["sr", str(volume), str(tmp_path / "out.nii.gz"), "--scale", "2,2,1", "--weights", str(run),
            "--no-self-test", "--mask", "random", "--acceleration", "2", "--center-fraction", "0.25"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data-consistency layers" in err[0] and "complex k-space" in err[0], err
    assert not (tmp_path / "out.nii.gz").exists()


def _sr_refuses_other_sampling(tmp_path, capsys, run):
    volume = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).uniform(size=(16, 16, 2)).astype(np.float32), np.eye(4)),
             volume)
    base = ["sr", str(volume), str(tmp_path / "out.nii.gz"), "--scale", "2,2,1", "--weights", str(run),
            "--no-self-test"]
    same = ["--mask", "random", "--acceleration", "2", "--center-fraction", "0.25"]
    for extra, words in (([], "trained for random mask on the LR grid; R 2, centre 0.25"),
                         (["--mask", "random", "--acceleration", "4"], "acceleration differs"),
                         (same + ["--mask-grid", "hr"], "grid differs"),
                         (["--mask", "random", "--acceleration", "0.5"], "--acceleration: must be at least 1")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("medsr: error: ") and words in err[0], err
        assert ("or --force" in err[0]) == ("differs" in words or "trained for" in words)
        assert not (tmp_path / "out.nii.gz").exists()
    assert main(base + same) == 0
    assert "input sampling matches the weights" in capsys.readouterr().out
    assert nib.load(tmp_path / "out.nii.gz").shape == (32, 32, 2)
    assert main(base + ["--force"]) == 0
    assert "--force: trained for random mask" in capsys.readouterr().out


@pytest.mark.parametrize("name,overrides,words", [
    ("t2net_ixi_x2", [], "256x256 -> 128x128, then t2net mask: 38/128 columns sampled on the LR grid (effective R 3.37; R 2.51 "
                     "counting the conjugate mirrors"),
    ("t2net_ixi_x4", [], "256x256 -> 64x64, then t2net mask: 28/64 columns sampled on the LR grid (effective R 2.29; R 1.73 "
                     "counting the conjugate mirrors"),
    ("mtrans_fastmri", ["data.target=T2", "data.ref=PD"], "320x320 -> 320x320, then random mask"),
])
def test_protocol_configs_print_their_sampling_on_the_embedded_data(mni_store, name, overrides, words):
    from medsr.config import load_config
    from medsr.registry import TASKS

    cfg = load_config(name, [f"data.root={mni_store}", *overrides])
    task = TASKS.get(cfg.task)(cfg)
    lines = task.protocol()
    assert any(words in line for line in lines.values()), lines
    assert "orthonormal" in lines["intensity"]
    compat = TASKS.get(cfg.task)(load_config(name, [f"data.root={mni_store}", "data.intensity=t2net-compat",
                                                    *overrides]))
    assert "t2net-compat" in compat.protocol()["intensity"]
    item = task.dataset("val", training=False)[SampleSpec(index=0, scale=(task.val_scales[0],) * 2)]
    assert item["hr"].shape[-2:] == tuple(cfg.data.fov)


def test_reconstruction_is_the_recon_branch_at_scale_one_without_a_curriculum(mni_store):
    """One undersampled task, two branches: reconstruction trains and validates at scale 1 by construction (its
    config sets no curriculum and no validation scales), against the clean LR; another scale is refused."""
    from medsr.config import load_config
    from medsr.registry import TASKS

    overrides = [f"data.root={mni_store}", "data.target=T2", "data.ref=PD"]
    recon = TASKS.get("reconstruction")(load_config("mtrans_fastmri", overrides))
    joint = TASKS.get("joint")(load_config("t2net_ixi_x2", [f"data.root={mni_store}"]))
    assert type(recon).__mro__[1] is type(joint).__mro__[1]  # both branches of one class
    assert (recon.branch, recon.adversarial_target, recon.val_scales) == ("recon", "lr_clean", (1.0,))
    assert recon.curriculum.scale_range() == (1, 1)
    assert (joint.branch, joint.adversarial_target) == ("sr", "hr") and joint.curriculum.scale_range() == (2, 2)
    with pytest.raises(InputError, match="val.scales"):
        TASKS.get("reconstruction")(load_config("mtrans_fastmri", [*overrides, "val.scales=[2]"]))
    staged = "data.curriculum=[{until_step: null, scale: {type: choice, values: [2]}, ref: none}]"
    with pytest.raises(InputError, match="data.curriculum"):
        TASKS.get("reconstruction")(load_config("mtrans_fastmri", [*overrides, staged]))


def test_generated_items_must_match_the_field_of_view(mni_store):
    from medsr.config import load_config
    from medsr.registry import TASKS

    root = f"data.root={mni_store}"
    with pytest.raises(InputError, match="data.synth.region"):
        TASKS.get("joint")(load_config("t2net_ixi_x2", [root, "data.dataset=synth"])).dataset("train", training=True)
    task = TASKS.get("joint")(load_config("t2net_ixi_x2", [root, "data.dataset=synth", "data.synth.region=256",
                                                           "data.synth.real_fraction=0"]))
    item = task.dataset("train", training=True)[SampleSpec(index=0, scale=(2.0, 2.0), seed=4)]
    assert item["key"].startswith("synth-") and item["lr"].shape == (1, 128, 128) and int(item["mask"].sum()) == 38
    np.testing.assert_allclose(item["lr"][0].numpy(), np.abs(kspace.ifft2c(item["kspace"].numpy())), atol=1e-5)
