"""Domain-randomised training data: purity, item contract, k-space LR, independent contrasts, train-split reads,
mixing, config, data module, figure and a three-step training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.cli import main
from medsr.config import CONFIG_DIR, SynthConfig, load_config, to_yaml
from medsr.data.datasets import SampleSpec, SRSliceDataset
from medsr.data.store import SliceStore
from medsr.data.synth import SynthMixture, SynthSliceDataset
from medsr.engine.datamodule import TaskDataModule
from medsr.tasks.sr import SRTask
from medsr.errors import InputError
from medsr.kspace import downsample

ROOT = Path(__file__).resolve().parents[1]
DEMO = CONFIG_DIR / "synth_demo.yaml"


@pytest.fixture(scope="module")
def synth(mni_store):
    return SynthSliceDataset(mni_store, SynthConfig(), n_adjacent=1, patch_size=8)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("procedural", [0.0, 1.0])
def test_items_are_a_pure_function_of_the_spec(mni_store, procedural):
    ds = SynthSliceDataset(mni_store, SynthConfig(procedural_fraction=procedural), n_adjacent=1, patch_size=8)
    spec = SampleSpec(index=5, scale=(2.5, 1.7), ref_scale=(1.5, 2.0), use_ref=True, seed=11)
    first, again = ds[spec], ds[spec]
    assert _equal(first, again)
    other = ds[SampleSpec(index=5, scale=(2.5, 1.7), ref_scale=(1.5, 2.0), use_ref=True, seed=12)]
    assert not torch.equal(first["hr"], other["hr"]) and not torch.equal(first["ref"], other["ref"])
    assert first["key"].startswith("synth-procedural" if procedural else "synth-store")


@pytest.mark.parametrize("ref_scale", [None, (1.7, 2.2)])
def test_item_contract_is_the_store_datasets(mni_store, synth, ref_scale):
    spec = SampleSpec(index=3, scale=(2.3, 3.1), ref_scale=ref_scale, use_ref=True, seed=4)
    real = SRSliceDataset(mni_store, "train", "T2", ref="T1", n_adjacent=1, patch_size=8, use_labels=True)[spec]
    fake = synth[spec]
    assert fake.keys() == real.keys()
    for key, value in real.items():
        if isinstance(value, torch.Tensor):
            assert fake[key].shape == value.shape and fake[key].dtype == value.dtype, key
        else:
            assert type(fake[key]) is type(value), key
    assert torch.equal(fake["scale"], real["scale"])
    assert fake["scale"].tolist() == pytest.approx([round(8 * 2.3) / 8, round(8 * 3.1) / 8])
    assert torch.equal(fake["ref_scale"], real["ref_scale"])
    assert fake["label"].min() >= 0 and fake["label"].max() <= 3
    assert (fake["hr"] >= 0).all() and fake["norm"] > 0
    plain = synth[SampleSpec(index=3, scale=(2.3, 3.1), use_ref=False, seed=4)]
    assert "ref" not in plain and plain["ref_scale"].tolist() == [0.0, 0.0]


def test_lr_is_the_kspace_downsampling_of_the_hr(mni_store):
    """Whole generated fields of view: the LR input is exactly ``kspace.downsample`` of the HR target."""
    ds = SynthSliceDataset(mni_store, SynthConfig(region=40), n_adjacent=0, patch_size=None)
    for seed in range(3):
        item = ds[SampleSpec(index=seed, scale=(2.6, 1.9), seed=seed)]
        assert item["hr"].shape == (1, 40, 40)
        expected = downsample(item["hr"][0].numpy(), size=item["lr"].shape[-2:])
        assert np.allclose(item["lr"][0].numpy(), expected, atol=1e-5)


def test_target_and_reference_intensities_are_drawn_independently(mni_store):
    """No fixed formula maps the target to the reference: per-tissue ratios vary and tissue order flips."""
    ds = SynthSliceDataset(mni_store, SynthConfig(procedural_fraction=0.0, region=96, zero_background=0.0),
                           n_adjacent=0, patch_size=None)
    ratios, gm_brighter = [], []
    for seed in range(16):
        item = ds[SampleSpec(index=20 + seed, scale=(2, 2), use_ref=True, seed=seed)]
        label = item["label"]
        if (label == 2).sum() < 30 or (label == 3).sum() < 30:
            continue
        target, ref = item["hr"][0], item["ref"][0]
        ratios.append(float(target[label == 3].mean() / ref[label == 3].mean()))
        gm_brighter.append(bool(target[label == 2].mean() > target[label == 3].mean()))
    assert len(ratios) >= 6
    assert np.std(np.log(ratios)) > 0.3
    assert any(gm_brighter) and not all(gm_brighter)


def test_only_the_train_split_is_read(mni_store, monkeypatch):
    read = []
    original = SliceStore.slices

    def spy(self, sid, contrast, z):
        read.append(sid)
        return original(self, sid, contrast, z)

    monkeypatch.setattr(SliceStore, "slices", spy)
    ds = SynthSliceDataset(mni_store, SynthConfig(procedural_fraction=0.0), n_adjacent=1, patch_size=8)
    for i in range(len(ds)):
        ds[SampleSpec(index=i, scale=(2, 2), use_ref=True, seed=i)]
    split = SliceStore(mni_store).split
    assert set(read) == set(split["train"])
    assert not set(read) & set(split["val"] + split["test"])


class _Tagged(torch.utils.data.Dataset):
    def __init__(self, tag: str):
        self.tag = tag

    def __len__(self) -> int:
        return 10

    def __getitem__(self, spec: SampleSpec) -> dict:
        return {"key": self.tag}


def test_mixture_takes_the_real_fraction_from_the_seed():
    mix = SynthMixture(_Tagged("real"), _Tagged("synth"), real_fraction=0.3)
    specs = [SampleSpec(index=i % 10, scale=(2, 2), seed=1000 + i) for i in range(4000)]
    keys = [mix[s]["key"] for s in specs]
    assert keys == [mix[s]["key"] for s in specs] and len(mix) == 10
    assert abs(keys.count("real") / len(keys) - 0.3) < 0.03
    assert {mix[s]["key"] for s in specs[:50]} == {"real", "synth"}
    assert {SynthMixture(_Tagged("real"), _Tagged("synth"), 0.0)[s]["key"] for s in specs[:50]} == {"synth"}


def test_config_round_trip_and_errors(tmp_path):
    cfg = load_config(DEMO, ["data.synth.snr_db=[5,10]"])
    assert cfg.data.dataset == "synth" and cfg.data.synth.real_fraction == pytest.approx(0.2)
    assert list(cfg.data.synth.snr_db) == [5.0, 10.0]
    saved = tmp_path / "resolved.yaml"
    saved.write_text(to_yaml(cfg))
    assert to_yaml(load_config(saved)) == to_yaml(cfg)
    assert load_config(None).data.dataset == "store"
    for bad in ("data.synth.no_such_key=1", "data.dataset=other", "data.synth.zoom=fast"):
        with pytest.raises(InputError):
            load_config(DEMO, [bad])


def test_datamodule_builds_the_mixture_and_validates_on_the_store(mni_store, tmp_path):
    cfg = load_config(DEMO, [f"data.root={mni_store}", "data.patch_size=8"])
    data = TaskDataModule(cfg, SRTask(cfg))
    train = data.train_dataset
    assert isinstance(train, SynthMixture) and len(train.synth) == len(train.real) == len(train)
    assert isinstance(data.val_dataset, SRSliceDataset) and data.val_dataset.split == "val"
    item = train[SampleSpec(index=0, scale=(2, 2), use_ref=True, seed=0)]
    assert item["lr"].shape == (3, 8, 8)
    with pytest.raises(InputError, match="real_fraction"):  # refused when the config is read, before any data
        load_config(DEMO, [f"data.root={mni_store}", "data.synth.real_fraction=1.5"])


def _tiny_config(tmp_path: Path, store: Path) -> Path:
    text = DEMO.read_text().replace("root: data/mni", f"root: {store}").replace("embedded: mni", "embedded: null")
    path = tmp_path / "synth_tiny.yaml"
    path.write_text(text.replace("patch_size: 24", "patch_size: 8").replace("batch_size: 8", "batch_size: 2"))
    return path


def test_viz_samples_writes_a_png(mni_store, tmp_path, capsys):
    out = tmp_path / "samples.png"
    assert main(["viz", "samples", str(_tiny_config(tmp_path, mni_store)), "--n", "3", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["viz", "samples", str(DEMO), "--n", "0", "--out", str(out)]) == 2
    assert "--n" in capsys.readouterr().err


def test_training_on_synthetic_data_runs(mni_store, tmp_path):
    cfg = _tiny_config(tmp_path, mni_store)
    overrides = ["train.steps=3", "train.checkpoint_every=3", "val.every=3", "val.scales=[2]", "val.ref=none",
                 f"logging.runs_dir={tmp_path / 'runs'}", "logging.image_every=100",
                 "model.encoder={type: rdn, n_feats: 8, n_blocks: 1, growth: 4, n_layers: 1}",
                 "model.ref_encoder={type: edsr, n_feats: 4, n_blocks: 1}", "model.hidden=8", "model.sem_width=4"]
    assert main(["train", str(cfg), *overrides]) == 0
    assert any((tmp_path / "runs").rglob("*.pth"))
