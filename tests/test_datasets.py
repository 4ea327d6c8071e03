"""Training datasets: item contract, exact patch alignment, augmentation, sampler determinism, resume, shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr.data.datasets import (
    SampleSpec,
    ScaleBatchSampler,
    SRSliceDataset,
    eval_specs,
    worker_init_fn,
)
from medsr.data.labelled import LabelledSliceDataset
from medsr.data.mixture import PairMixture
from medsr.data.store import StoreWriter
from medsr.errors import InputError
from medsr.kspace import downsample, lr_length
from medsr.scales import Curriculum

H, W, DEPTH = 40, 50, 5
# (cycles per field of view along y, along x, amplitude, phase): all well inside a 16 x 20 band
WAVES = [(1, 0, 1.0, 0.3), (0, 2, 0.6, 1.1), (2, 3, 0.4, -0.7), (3, -1, 0.3, 2.0)]


def band_limited(y: np.ndarray, x: np.ndarray, z: int) -> np.ndarray:
    """A positive periodic image made of low-frequency waves, evaluated at (fractional) HR pixel positions."""
    out = np.full(np.broadcast(y, x).shape, 3.0 + 0.1 * z)
    for ky, kx, amp, phase in WAVES:
        out = out + amp * np.cos(2 * np.pi * (ky * y / H + kx * x / W) + phase + 0.2 * z)
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Two subjects: T2 band-limited, PD = 2 * T2 (identical once normalised), integer labels."""
    root = tmp_path_factory.mktemp("synthetic")
    writer = StoreWriter(root, ["T2", "PD"], {0: "background", 1: "a", 2: "b", 3: "c"})
    y, x = np.mgrid[0:H, 0:W]
    for n, sid in enumerate(["s0", "s1"]):
        t2 = np.stack([band_limited(y, x, z + 10 * n) for z in range(DEPTH)]).astype(np.float32)
        label = (np.arange(H * W).reshape(H, W) * 7 % 4).astype(np.uint8)
        writer.add_subject(sid, {"T2": t2, "PD": 2 * t2}, labels=np.stack([label] * DEPTH))
    writer.finish("synthetic", {"train": ["s0", "s1"], "val": [], "test": []}, {})
    return root


def test_whole_slice_items_at_asymmetric_non_integer_scale(synthetic):
    ds = SRSliceDataset(synthetic, "train", "T2", ref="PD", n_adjacent=1)
    assert len(ds) == 2 * DEPTH
    item = ds[SampleSpec(index=DEPTH + 2, scale=(2.3, 3.7), ref_scale=(1.6, 2.5), use_ref=True, seed=1)]
    h, w = lr_length(H, 2.3), lr_length(W, 3.7)
    assert item["lr"].shape == (3, h, w) and item["lr"].dtype == torch.float32
    assert item["hr"].shape == (1, H, W)
    assert item["ref"].shape == (1, lr_length(H, 1.6), lr_length(W, 2.5))
    assert item["label"].shape == (H, W) and item["label"].dtype == torch.int64
    assert torch.allclose(item["scale"], torch.tensor([H / h, W / w]))
    assert torch.allclose(item["ref_scale"], torch.tensor([H / lr_length(H, 1.6), W / lr_length(W, 2.5)]))
    assert item["key"] == "s1:2" and item["norm"] == pytest.approx(ds.store.norm("s1", "T2"))
    expected = downsample(ds.store.slices("s1", "T2", slice(1, 4)), size=(h, w))
    assert np.allclose(item["lr"].numpy(), expected, atol=1e-5)


def test_edges_replicate_and_reference_modes(synthetic):
    ds = SRSliceDataset(synthetic, "train", "T2", ref="PD", n_adjacent=2)
    item = ds[SampleSpec(index=0, scale=(2, 2), use_ref=True)]
    assert torch.equal(item["lr"][0], item["lr"][2]) and torch.equal(item["lr"][1], item["lr"][2])
    assert not torch.equal(item["lr"][2], item["lr"][3])
    assert torch.allclose(item["ref"], item["hr"], atol=1e-6)  # HR reference, PD = 2 * T2 after normalisation
    assert item["ref_scale"].tolist() == [1.0, 1.0]
    plain = ds[SampleSpec(index=0, scale=(2, 2), use_ref=False)]
    assert "ref" not in plain and plain["ref_scale"].tolist() == [0.0, 0.0]
    no_labels = SRSliceDataset(synthetic, "train", "T2", use_labels=False)
    assert "label" not in no_labels[SampleSpec(index=0, scale=(2, 2))]


@pytest.mark.parametrize("scale", [(8 / 3, 10 / 3), (5 / 3, 5 / 3)])
def test_patch_alignment_is_exact(synthetic, scale):
    """The LR cell equals the band-limited image sampled on the LR pixel centres of the HR cell's field of view.

    The HR cells (8 x 10 and 5 x 5) tile the periodic 40 x 50 slice, so the k-space downsampling is exact.
    """
    p = 3
    ds = SRSliceDataset(synthetic, "train", "T2", ref="PD", patch_size=p)
    norm = ds.store.norm("s0", "T2")
    cell_hr = (round(p * scale[0]), round(p * scale[1]))
    hr_slice = ds.store.slices("s0", "T2", 2)
    seen = set()
    for seed in range(6):
        item = ds[SampleSpec(index=2, scale=scale, ref_scale=(2.0, 2.0), use_ref=True, seed=seed)]
        hr = item["hr"][0].numpy()
        assert hr.shape == cell_hr and item["lr"].shape == (1, p, p)
        assert torch.allclose(item["scale"], torch.tensor([cell_hr[0] / p, cell_hr[1] / p]))
        oy, ox = next((a, b) for a in range(H - cell_hr[0] + 1) for b in range(W - cell_hr[1] + 1)
                      if np.array_equal(hr_slice[a : a + cell_hr[0], b : b + cell_hr[1]], hr))
        seen.add((oy, ox))
        j = np.arange(p) + 0.5
        y = oy + j[:, None] * cell_hr[0] / p - 0.5
        x = ox + j[None, :] * cell_hr[1] / p - 0.5
        assert np.allclose(item["lr"][0].numpy(), band_limited(y, x, 2) / norm, atol=1e-4)
        q = (lr_length(cell_hr[0], 2.0), lr_length(cell_hr[1], 2.0))
        ry = oy + (np.arange(q[0]) + 0.5)[:, None] * cell_hr[0] / q[0] - 0.5
        rx = ox + (np.arange(q[1]) + 0.5)[None, :] * cell_hr[1] / q[1] - 0.5
        assert item["ref"].shape == (1, *q)
        assert np.allclose(item["ref"][0].numpy(), band_limited(ry, rx, 2) / norm, atol=1e-4)
    assert len(seen) > 1


def test_patch_larger_than_slice_is_an_input_error(synthetic):
    ds = SRSliceDataset(synthetic, "train", "T2", patch_size=30)
    with pytest.raises(InputError, match="patch_size"):
        ds[SampleSpec(index=0, scale=(2, 2))]


def _dihedral(a: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(b, k) for b in (a, a[::-1]) for k in range(4)]


def test_augmentation_identical_for_target_reference_labels(synthetic):
    ds = SRSliceDataset(synthetic, "train", "T2", ref="PD", n_adjacent=1, augment=True)
    plain_hr = ds.store.slices("s0", "T2", 3)
    plain_label = ds.store.slices("s0", "label", 3)
    used = set()
    for seed in range(12):
        spec = SampleSpec(index=3, scale=(2.0, 2.5), use_ref=True, seed=seed)
        item = ds[spec]
        hr, label = item["hr"][0].numpy(), item["label"].numpy()
        matches = [k for k, t in enumerate(_dihedral(plain_hr)) if t.shape == hr.shape and np.array_equal(t, hr)]
        assert len(matches) == 1
        used.add(matches[0])
        assert np.array_equal(_dihedral(plain_label)[matches[0]], label)
        assert torch.allclose(item["ref"], item["hr"], atol=1e-6)
        expected = downsample(np.ascontiguousarray(hr), size=item["lr"].shape[-2:])
        assert np.allclose(item["lr"][1].numpy(), expected, atol=1e-5)
        again = ds[spec]
        assert all(torch.equal(item[k], again[k]) for k in ("lr", "hr", "ref", "label"))
    assert len(used) >= 4


def test_augmented_patches_keep_label_alignment(synthetic):
    ds = SRSliceDataset(synthetic, "train", "T2", ref="PD", patch_size=4, augment=True)
    for seed in range(5):
        item = ds[SampleSpec(index=1, scale=(2.5, 3.0), use_ref=True, seed=seed)]
        assert item["hr"].shape == (1, 10, 12) and item["label"].shape == (10, 12)
        assert torch.allclose(item["ref"], item["hr"], atol=1e-6)


CURRICULUM = Curriculum.from_config([
    {"until_step": 4, "scale": {"type": "choice", "values": [2, 3]}, "ref": "hr", "ref_dropout": 0.5},
    {"scale": {"type": "uniform", "low": 1.5, "high": 4, "asymmetric": True}, "ref": "lr",
     "ref_scale": {"type": "uniform", "low": 1, "high": 2}},
])


def test_sampler_is_deterministic_and_resumes_exactly():
    full = list(ScaleBatchSampler(23, 4, CURRICULUM, seed=7, num_steps=15))
    assert len(full) == 15 == len(ScaleBatchSampler(23, 4, CURRICULUM, seed=7, num_steps=15))
    assert full == list(ScaleBatchSampler(23, 4, CURRICULUM, seed=7, num_steps=15))
    resumed = list(ScaleBatchSampler(23, 4, CURRICULUM, seed=7, start_step=9, num_steps=6))
    assert resumed == full[9:]
    assert full != list(ScaleBatchSampler(23, 4, CURRICULUM, seed=8, num_steps=15))
    for step, batch in enumerate(full):
        assert len({spec.scale for spec in batch}) == 1 and len({spec.use_ref for spec in batch}) == 1
        if step < 4:
            assert batch[0].scale[0] == batch[0].scale[1] in (2, 3) and batch[0].ref_scale is None
        else:
            assert batch[0].use_ref and 1 <= batch[0].ref_scale[0] <= 2 and batch[0].scale[0] != batch[0].scale[1]
    assert len({spec.seed for batch in full for spec in batch}) == 60


def test_sampler_epochs_are_permutations_and_dropout_applies():
    sampler = ScaleBatchSampler(12, 3, CURRICULUM, seed=1, num_steps=8)
    indices = [spec.index for batch in sampler for spec in batch]
    assert sorted(indices[:12]) == list(range(12)) and sorted(indices[12:]) == list(range(12))
    assert indices[:12] != indices[12:]
    early = [ScaleBatchSampler(12, 1, CURRICULUM, seed=s).batch_at(0)[0].use_ref for s in range(200)]
    assert 0.35 < np.mean(early) < 0.65


def test_rank_shards_are_disjoint_and_form_the_global_batch():
    world = [list(ScaleBatchSampler(30, 2, CURRICULUM, seed=3, num_steps=6, rank=r, world_size=3)) for r in range(3)]
    single = list(ScaleBatchSampler(30, 6, CURRICULUM, seed=3, num_steps=6))
    for step in range(6):
        shards = [world[r][step] for r in range(3)]
        indices = [spec.index for shard in shards for spec in shard]
        assert len(set(indices)) == 6
        assert [spec for shard in shards for spec in shard] == single[step]


def test_endless_sampler_has_no_length():
    sampler = ScaleBatchSampler(5, 2, CURRICULUM, seed=0)
    with pytest.raises(TypeError):
        len(sampler)
    assert len(next(iter(sampler))) == 2


def test_loader_items_do_not_depend_on_workers(synthetic):
    ds = SRSliceDataset(synthetic, "train", "T2", ref="PD", patch_size=4, augment=True)

    def run(workers):
        sampler = ScaleBatchSampler(len(ds), 3, CURRICULUM, seed=2, num_steps=6)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers,
                                             worker_init_fn=worker_init_fn)
        return list(loader)

    serial, parallel = run(0), run(2)
    for a, b in zip(serial, parallel, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
        assert a["lr"].shape[0] == 3 and ("ref" in a) == ("ref" in b)


class _Draws(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.tensor([np.random.randint(2**31), torch.randint(2**31, ()).item()])


def test_worker_init_fn_seeds_each_worker_differently_and_reproducibly():
    def run():
        generator = torch.Generator().manual_seed(11)
        loader = torch.utils.data.DataLoader(_Draws(), batch_size=1, num_workers=2, worker_init_fn=worker_init_fn,
                                             generator=generator)
        return torch.cat(list(loader))

    first = run()
    assert torch.equal(first, run())
    assert not torch.equal(first[0], first[1])  # items 0 and 1 come from different workers


def test_eval_specs_cover_every_item(synthetic):
    ds = SRSliceDataset(synthetic, "train", "T2", ref="PD")
    specs = eval_specs(ds, 2.5, "lr", ref_scale=(1.5, 2))
    assert [s.index for s in specs] == list(range(len(ds)))
    assert all(s.scale == (2.5, 2.5) and s.ref_scale == (1.5, 2.0) and s.use_ref for s in specs)
    assert specs == eval_specs(ds, 2.5, "lr", ref_scale=(1.5, 2))
    assert not any(s.use_ref for s in eval_specs(ds, (2, 3), "none"))
    with pytest.raises(ValueError, match="ref_scale"):
        eval_specs(ds, 2, "lr")
    with pytest.raises(ValueError, match="scale"):
        eval_specs(ds, 0.5, "none")


def test_bad_dataset_arguments(synthetic, tmp_path):
    with pytest.raises(InputError, match="missing"):
        SRSliceDataset(tmp_path, "train", "T2")
    with pytest.raises(InputError, match="no contrast 'T1'"):
        SRSliceDataset(synthetic, "train", "T1")
    with pytest.raises(InputError, match="no slices"):
        SRSliceDataset(synthetic, "val", "T2")
    with pytest.raises(InputError, match="patch_size"):
        SRSliceDataset(synthetic, "train", "T2", patch_size=0)


def test_mni_items_follow_the_contract(mni_store):
    ds = SRSliceDataset(mni_store, "train", "T2", ref="T1", n_adjacent=1, patch_size=24, augment=True)
    sampler = ScaleBatchSampler(len(ds), 2, CURRICULUM, seed=0, start_step=4, num_steps=1)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_sampler=sampler)))
    spec = sampler.batch_at(4)[0]
    cell = (round(24 * spec.scale[0]), round(24 * spec.scale[1]))
    assert batch["lr"].shape == (2, 3, 24, 24) and batch["hr"].shape == (2, 1, *cell)
    assert batch["label"].shape == (2, *cell) and int(batch["label"].max()) <= 3
    ref = (lr_length(cell[0], spec.ref_scale[0]), lr_length(cell[1], spec.ref_scale[1]))
    assert batch["ref"].shape == (2, 1, *ref)
    assert torch.isfinite(batch["lr"]).all() and batch["norm"].shape == (2,)


def test_the_volume_index_is_the_same_for_every_slice_dataset(synthetic):
    """SR, labelled and mixed datasets answer the same questions about their volumes."""
    sr = SRSliceDataset(synthetic, "train", "T2")
    mixed = PairMixture([sr, SRSliceDataset(synthetic, "train", "PD", ref="T2")])
    for ds in (sr, LabelledSliceDataset(synthetic, "train", "T2"), mixed):
        assert ds.subjects == ["s0", "s1"]
        assert [ds.subject_of(i) for i in (0, DEPTH - 1, DEPTH)] == ["s0", "s0", "s1"]
        assert ds.slice_shape("s1") == (H, W)
        assert ds.label_names == {"0": "background", "1": "a", "2": "b", "3": "c"}
    assert mixed.subject_of(2 * DEPTH) == "s0"
