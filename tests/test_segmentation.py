"""The segmentation task (UNet prior), its losses, and the frozen UNet of the seg-guided perceptual loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _engine_data import write_store

from medsr.checkpoint import build_from_weights, save_weights
from medsr.cli import main
from medsr.config import CONFIG_DIR, load_config
from medsr.data.labelled import LabelledSliceDataset
from medsr.errors import InputError
from medsr.inference.segment import segment
from medsr.metrics.seg import dice_per_class
from medsr.registry import LOSSES, MODELS

UNET = {"type": "unet", "base": 4, "depth": 2}
CONFIGS = CONFIG_DIR


@pytest.fixture()
def unet_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = MODELS.build(UNET)
    path = tmp_path / "unet.pth"
    save_weights(path, UNET, net.state_dict())
    return path


def test_dice_per_class_by_hand() -> None:
    gt = torch.tensor([[0, 1, 1, 2], [0, 1, 2, 2]])
    pred = torch.tensor([[0, 1, 2, 2], [0, 0, 2, 2]])
    # class 1: |P| = 1, |G| = 3, overlap 1 -> 2/4; class 2: |P| = 4, |G| = 3, overlap 3 -> 6/7; class 3 absent -> 1
    torch.testing.assert_close(dice_per_class(pred, gt, [1, 2, 3]), torch.tensor([0.5, 6 / 7, 1.0], dtype=torch.float64))


def test_segmentation_losses() -> None:
    label = torch.randint(0, 4, (2, 9, 11))
    perfect = 50.0 * torch.nn.functional.one_hot(label, 4).permute(0, 3, 1, 2).float()
    batch = {"label": label}
    dice, ce = LOSSES.build({"type": "dice"}), LOSSES.build({"type": "cross_entropy"})
    assert dice(perfect, label, batch).item() < 1e-3 and ce(perfect, label, batch).item() < 1e-3
    wrong = perfect.roll(1, dims=1)
    assert dice(wrong, label, batch).item() > 0.9 and ce(wrong, label, batch).item() > 10
    for loss in (dice, ce):
        with pytest.raises(ValueError, match="labels"):
            loss(perfect, None, batch)


def test_seg_perceptual_layers_and_type_check(unet_weights: Path, tmp_path: Path) -> None:
    enc = LOSSES.build({"type": "seg_perceptual", "weights": str(unet_weights), "layers": "encoder"})
    assert enc.layer_weights == [1.0, 1.0, 1.0, 0.0, 0.0]
    dec = LOSSES.build({"type": "seg_perceptual", "weights": str(unet_weights), "layers": "decoder"})
    assert dec.layer_weights == [0.0, 0.0, 0.0, 1.0, 1.0]
    hr = torch.rand(2, 1, 20, 18)
    assert enc(hr, hr, {}).item() == 0.0 and enc(hr + 0.3 * torch.rand_like(hr), hr, {}).item() > 0
    other = tmp_path / "bicubic.pth"
    save_weights(other, {"type": "liif", "encoder": {"type": "edsr", "n_feats": 4, "n_blocks": 1}, "hidden": [8]},
                 MODELS.build({"type": "liif", "encoder": {"type": "edsr", "n_feats": 4, "n_blocks": 1},
                               "hidden": [8]}).state_dict())
    with pytest.raises(InputError, match="features"):
        LOSSES.build({"type": "seg_perceptual", "weights": str(other)})


def test_frozen_unet_stays_frozen(unet_weights: Path, tmp_path: Path) -> None:
    from medsr.tasks.sr import SRTask

    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {type: liif, encoder: {type: edsr, n_feats: 4, n_blocks: 1}, hidden: [8]}\n"
        f"loss: [{{type: l1}}, {{type: seg_perceptual, weight: 10, weights: '{unet_weights}'}}]\n"
    )
    cfg = load_config(config)
    module = SRTask(cfg)
    unet = module.criterion.terms[1].net
    frozen = {k: v.clone() for k, v in unet.state_dict().items()}
    assert not any(p.requires_grad for p in unet.parameters())
    optimizer = module.configure_optimizers()[0][0]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in unet.parameters()}
    assert not any(k.startswith("criterion") for k in module.state_dict())
    trainee = [p.clone() for p in module.model.parameters()]

    lr, hr = torch.rand(2, 1, 10, 9), torch.rand(2, 1, 23, 17)
    sr = module.model(lr, hr.shape[-2:], None)
    loss, terms = module.criterion(sr, hr, {})
    assert terms["seg_perceptual"].item() > 0
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in unet.parameters())
    for k, v in unet.state_dict().items():
        torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(trainee, module.model.parameters()))


def test_train_segmentation_task(mni_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["train", str(CONFIGS / "unet.yaml"), f"data.root={mni_store}", f"logging.runs_dir={tmp_path}",
                   "train.steps=4", "val.every=2", "val.max_subjects=1", "data.batch_size=2", "data.patch_size=32",
                   "model.base=4", "model.depth=2", "--name", "seg"])
    assert status == 0, capsys.readouterr().err
    net, meta = build_from_weights(tmp_path / "seg" / "weights.pth")
    assert meta["task"] == "segmentation" and net(torch.rand(1, 1, 30, 26)).shape == (1, 4, 30, 26)
    assert (tmp_path / "seg" / "checkpoints" / "best.ckpt").is_file()
    log = (tmp_path / "seg" / "train.log").read_text()
    assert "dice_GM" in log and "dice_WM" in log
    # medsr test on the weights: Dice per class over test volumes, equal to scoring the label maps directly
    out = tmp_path / "seg.json"
    capsys.readouterr()
    assert main(["test", str(tmp_path / "seg"), "--data", str(mni_store), "--json", str(out)]) == 0
    assert "mean over classes" in capsys.readouterr().out
    rows = {r["class"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"CSF", "GM", "WM", "mean over classes"}
    dataset = LabelledSliceDataset(mni_store, "test", meta["contrasts"]["target"])
    direct = [dice_per_class(segment(net, image), label, [1, 2, 3]) for _, image, label in dataset.volumes()]
    assert rows["GM"]["n_volumes"] == len(direct) >= 1
    assert rows["GM"]["dice"] == pytest.approx(float(sum(d[1] for d in direct)) / len(direct), abs=1e-9)
    assert main(["test", str(tmp_path / "seg"), "--data", str(mni_store), "--scales", "2"]) == 2


def test_segmentation_task_needs_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = write_store(tmp_path / "nolabels_store", labels=False)
    status = main(["train", str(CONFIGS / "unet.yaml"), f"data.root={store}", f"logging.runs_dir={tmp_path}",
                   "data.embedded=null", "--name", "nolabels"])
    err = capsys.readouterr().err
    assert status == 2 and "has no labels" in err and str(store) in err and "Traceback" not in err
    assert not (tmp_path / "nolabels").exists(), "a data error must leave no run directory"


def test_segmentation_items_are_images_and_labels_without_degradation(mni_store: Path) -> None:
    """Items are the stored slice and its labels, cropped at a seeded position and flipped alike: no k-space."""
    from medsr.data.datasets import ItemSpec
    from medsr.data.labelled import LabelledSliceDataset

    whole = LabelledSliceDataset(mni_store, "train", "T2")
    sid, z = whole.items[5]
    item = whole[ItemSpec(5, seed=0)]
    assert set(item) == {"image", "label", "norm", "key"} and item["key"] == f"{sid}:{z}"
    assert torch.equal(item["image"][0], torch.from_numpy(whole.store.slices(sid, "T2", z)))
    assert torch.equal(item["label"], torch.from_numpy(whole.store.slices(sid, "label", z)).long())
    patches = LabelledSliceDataset(mni_store, "train", "T2", patch_size=16, augment=True)
    a, b = patches[ItemSpec(5, seed=3)], patches[ItemSpec(5, seed=3)]
    assert a["image"].shape == (1, 16, 16) and a["label"].shape == (16, 16)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    image, label = item["image"][0].numpy(), item["label"].numpy()
    found = [(y, x) for y in range(image.shape[0] - 15) for x in range(image.shape[1] - 15)
             if any(np.array_equal(np.rot90(f(image[y:y + 16, x:x + 16]), k), a["image"][0].numpy())
                    and np.array_equal(np.rot90(f(label[y:y + 16, x:x + 16]), k), a["label"].numpy())
                    for k in range(4) for f in (lambda m: m, np.fliplr, np.flipud, lambda m: m[::-1, ::-1]))]
    assert found, "the patch is not a flipped/rotated crop of the stored slice"
