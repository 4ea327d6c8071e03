"""The fair benchmark and the GPU protocol's entry points, run end to end with tiny settings on a tiny store (the
smoke path of ``benchmarks/gpu.sh``), and the pure statistics behind the verdicts."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _engine_data import write_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fair  # noqa: E402
import gpu  # noqa: E402


def test_t_interval_matches_scipy_and_the_verdict_rule() -> None:
    from scipy import stats

    values = [1.0, 2.0, 4.0]
    mean, half = fair.t_interval(values)
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and half == pytest.approx((high - low) / 2)
    assert math.isnan(fair.t_interval([3.0])[1])
    assert fair.verdict([(1.0, 0.5), (0.8, 0.2), (0.1, 0.5)]) == "helps"
    assert fair.verdict([(1.0, 0.5), (0.8, 0.2), (-1.0, 0.5)]) == "not shown"  # significantly negative once
    assert fair.verdict([(0.3, 0.5), (0.8, 0.2), (0.1, 0.5)]) == "not shown"  # positive in a minority only
    assert fair.verdict([(-1.0, 0.5), (-0.8, 0.2), (0.1, 0.5)]) == "hurts"


def test_leak_fits_are_bin_and_label_means_of_the_training_slabs(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store", shape=(3, 24, 24))
    train = fair.dataset({"data": str(store)}, "train", "multi", None)
    lut, means = fair.fit_leaks(train)
    t1, t2, lab = (np.concatenate([train.store.volume(sid, c).ravel() for sid in ("s0", "s1", "s2")])
                   for c in ("T1", "T2", "label"))
    bins = np.clip(np.round(t1 / 1.5 * 255), 0, 255).astype(int)
    for b in np.unique(bins):
        assert lut[b] == pytest.approx(t2[bins == b].mean(), rel=1e-5)
    for label in (0, 1):
        assert means[label] == pytest.approx(t2[lab == label].mean(), rel=1e-5)
    empty = next(b for b in range(256) if b not in set(bins.tolist()) and 0 < b < bins.max())
    below, above = max(b for b in bins if b < empty), min(b for b in bins if b > empty)
    assert min(lut[below], lut[above]) - 1e-6 <= lut[empty] <= max(lut[below], lut[above]) + 1e-6


def test_fair_benchmark_end_to_end(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store", shape=(3, 32, 32))
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--only", "liif,liif+k,sakg,sakg-no-semantic", "--steps", "2", "--seeds", "2", "--lrs", "1e-3,2e-3",
            "--scales", "2", "--patch", "8", "--batch", "2", "--test-slices", "1", "--synth-items", "1",
            "--curve-points", "2", "--val-slices", "1", "--workers", "1", "--data", str(store), "--out", str(out),
            "--work", str(work)]
    assert fair.main(args) == 0
    text = (out / "fair.md").read_text()
    for needle in ("leak: ref LUT", "leak: zero-fill + LUT out-of-band", "leak: label mean", "brain mask",
                   "liif+k - liif", "semantic: sakg - sakg-no-semantic", "ground-truth prior", "wrong scale",
                   "val PSNR at equal steps", "## Learning-rate sweep"):
        assert needle in text, needle
    assert any(line.rstrip().endswith(("helps |", "not shown |", "hurts |")) for line in text.splitlines())
    assert (out / "curves.png").stat().st_size > 0
    record = json.loads((out / "fair.json").read_text())
    finals = [t for t in record["train"] if t.get("final")]
    assert sorted((t["variant"], t["seed"]) for t in finals) == sorted(
        (v, s) for v in ("liif", "liif+k", "sakg", "sakg-no-semantic") for s in (0, 1))
    ablation = {t["lr"] for t in finals if t["variant"] == "sakg-no-semantic"}
    assert ablation == {record["sweep"]["sakg"]["chosen"]}  # ablations train at the full model's lr
    lines = (work / "progress.jsonl").read_text().splitlines()
    assert len(lines) == len(record["train"]) + len(record["eval"])  # every run reported as it ended
    cell = record["eval"][0]["cells"]["test|none|x2"]
    assert set(cell) == {"psnr", "ssim", "psnr_mask", "ssim_mask"} and all(math.isfinite(v) for v in cell.values())


def test_component_study_end_to_end(tmp_path: Path) -> None:
    """``--components``: the prior stage runs first and its weights reach sakg2; the ablations, the noisy-input
    fusion pairs, the scale cells and the probes of the redesign are reported."""
    store = write_store(tmp_path / "store", shape=(3, 32, 32))
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--components", "--only", "sakg2,sakg2-no-semantic,sakg2@noisy,sakg2-no-attention@noisy",
            "--steps", "1", "--seeds", "2", "--lrs", "1e-3", "--scales", "2", "--patch", "8", "--batch", "2",
            "--test-slices", "1", "--synth-items", "1", "--curve-points", "2", "--val-slices", "1",
            "--prior-steps", "2", "--workers", "1", "--data", str(store), "--out", str(out), "--work", str(work)]
    assert fair.main(args) == 0
    record = json.loads((out / "components.json").read_text())
    assert Path(record["prior"]["weights"]).is_file() and set(record["prior"]["accuracy"]) == {
        f"val|{r}|x{s}" for r in ("lr", "none") for s in (2, 4)}
    text = (out / "components.md").read_text()
    (out / "components.md").unlink()
    assert fair.main(["--report", str(out / "components.json")]) == 0
    assert (out / "components.md").read_text() == text  # the JSON alone re-renders the report
    assert (out / "components_curves.png").stat().st_size > 0
    for needle in ("external prior (vs none): sakg2 - sakg2-no-semantic", "noisy input",
                   "residual attention (vs centre only)", "test none x6", "Probes of sakg2", "ground-truth prior"):
        assert needle in text, needle
    cells = {e["variant"]: e["cells"] for e in record["eval"] if e["seed"] == 0}
    assert set(fair.SCALE_CELLS) <= set(cells["sakg2"]) and "test|none|x2|prior=truth" in cells["sakg2"]
    clean, noisy = cells["sakg2"]["test|none|x2"]["psnr"], cells["sakg2@noisy"]["test|none|x2"]["psnr"]
    assert clean != noisy  # the @noisy variants are trained and scored on noisy inputs
    weights = torch.load(next(t["weights"] for t in record["train"] if t["variant"] == "sakg2"), weights_only=True)
    prior = torch.load(record["prior"]["weights"], weights_only=True)["params"]
    assert all(torch.equal(weights[f"prior.net.{k}"], v) for k, v in prior.items())  # frozen through training

    import twostage  # the second stage starts from these runs

    assert twostage.main(["--source", str(out / "components.json"), "--steps", "1", "--seg-steps", "2",
                          "--workers", "1", "--out", str(out), "--work", str(work / "two")]) == 0
    second = json.loads((out / "twostage.json").read_text())
    assert sorted((t["tag"], t["seed"]) for t in second["train"]) == sorted(
        (arm, s) for arm in twostage.ARMS for s in (0, 1))
    assert all(0 <= f["accuracy"] <= 1 for f in second["fidelity"])
    assert "seg_perceptual stage vs L1 stage" in (out / "twostage.md").read_text()


def test_noisy_view_is_paired_and_leaves_the_target(tmp_path: Path) -> None:
    store = write_store(tmp_path / "store", shape=(3, 24, 24))
    data = fair.dataset({"data": str(store)}, "test", "multi", None)
    from medsr.data.datasets import eval_specs

    spec = eval_specs(data, 2.0, "none")[0]
    a, b, clean = fair.Noisy(data, 0.1)[spec], fair.Noisy(data, 0.1)[spec], data[spec]
    assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], clean["hr"])
    assert 0.05 < float((a["lr"] - clean["lr"]).std()) < 0.15
    assert len(fair.Noisy(data, 0.1)) == len(data) and fair.with_noise(data, 0.0) is data


def test_paired_runs_share_batches_and_initialisation(tmp_path: Path) -> None:
    """Same seed: the ablated model's kept modules start from the full model's weights."""
    full, ablated = fair.build_model("sakg", 3).state_dict(), fair.build_model("sakg-no-attention", 3).state_dict()
    assert all(torch.equal(full[k], v) for k, v in ablated.items())
    other = fair.build_model("sakg", 4).state_dict()
    assert not torch.equal(other["code.weight"], full["code.weight"])


def test_gpu_entry_points_on_cpu(tmp_path: Path) -> None:
    spec = {"type": "sakg", "encoder": {"type": "rdn", "n_feats": 8, "n_blocks": 1, "growth": 4, "n_layers": 2},
            "ref_encoder": {"type": "edsr", "n_feats": 8, "n_blocks": 1}, "sem_width": 8, "hidden": 16}
    row = gpu.train_speed(spec, "cpu", batch=2, patch=8, steps=1, peak=None)
    assert row["steps_per_s"] > 0 and row["gflops_per_step"] > 0 and row["mfu"] is None
    timing = gpu.sr_wall_time("cpu", (16, 16, 2), None)
    assert timing["output"] == [32, 32, 2] and timing["seconds"] > 0
