"""Scale-by-scale evaluation, `medsr test` and `medsr demo`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _engine_data import TINY_MODEL, write_config, write_store

from medsr.cli import main
from medsr.data.datasets import SRSliceDataset
from medsr.data.store import SliceStore
from medsr.evaluation import testing as evaluation
from medsr.demo import run_demo, verdict
from medsr.evaluation.testing import BASELINES, TestSetup, run_test
from medsr.evaluation import scores as volume_eval
from medsr.kspace import downsample


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrun")
    store = write_store(root / "store", shape=(4, 24, 24), seed=1)
    cfg = write_config(root / "tiny.yaml", store, root / "runs", val={"every": 0}, train={"steps": 2})
    assert main(["train", str(cfg)]) == 0
    return store, root / "runs" / "tiny"


def _scores(values):
    return [volume_eval.VolumeScore(f"s{i}", p, q, 1.0) for i, (p, q) in enumerate(values)]


def test_moments_reduce_exactly_across_shards():
    rng = np.random.default_rng(0)
    values = list(zip(rng.uniform(20, 40, 7), rng.uniform(0.5, 1, 7)))
    shards = volume_eval.moments(_scores(values[:3])) + volume_eval.moments(_scores(values[3:]))
    s = volume_eval.summarise(shards)
    p, q = np.array(values).T
    assert s.n_volumes == 7
    assert s.psnr == pytest.approx(p.mean()) and s.psnr_std == pytest.approx(p.std(ddof=1))
    assert s.ssim == pytest.approx(q.mean()) and s.ssim_std == pytest.approx(q.std(ddof=1))
    assert math.isnan(volume_eval.summarise(volume_eval.moments([])).psnr)
    one = volume_eval.summarise(volume_eval.moments(_scores(values[:1])))
    assert one.psnr == pytest.approx(p[0]) and math.isnan(one.psnr_std)


def test_volume_score_follows_the_protocol():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    hr = rng.uniform(0, 1.3, (3, 20, 20))
    sr = hr + rng.normal(0, 0.05, hr.shape)
    score = volume_eval.volume_score("x", torch.from_numpy(sr), torch.from_numpy(hr))
    rng_ = hr.max() - hr.min()
    assert score.data_range == pytest.approx(rng_)
    assert score.psnr == pytest.approx(10 * np.log10(rng_**2 / ((sr - hr) ** 2).mean()))
    ref = np.mean([structural_similarity(s, h, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=rng_) for s, h in zip(sr, hr)])
    assert score.ssim == pytest.approx(ref, abs=1e-6)


def test_evaluate_scale_matches_an_independent_bicubic_computation(trained):
    from medsr.registry import MODELS

    store, _ = trained
    dataset = SRSliceDataset(store, "test", "T2", use_labels=False)
    scores, sample = volume_eval.evaluate_scale(MODELS.build({"type": "bicubic"}), dataset, 2.5, "none",
                                               batch_size=3)
    vol = SliceStore(store).volume("s4", "T2")
    lr = torch.from_numpy(downsample(vol, 2.5))[:, None]
    sr = F.interpolate(lr, size=vol.shape[-2:], mode="bicubic", align_corners=False)[:, 0].numpy()
    expected = 10 * np.log10((vol.max() - vol.min()) ** 2 / ((sr - vol) ** 2).mean())
    assert [s.subject for s in scores] == ["s4"]
    assert scores[0].psnr == pytest.approx(expected, abs=1e-3)
    assert sample["hr"].shape == (24, 24) and sample["lr"].shape == (10, 10)
    assert evaluation.is_ood(3.0, [1.5, 2.5]) and not evaluation.is_ood(2.5, [1.5, 2.5])
    assert evaluation.is_ood((2.0, 1.2), [1.5, 2.5]) and not evaluation.is_ood(9.0, None)


def test_medsr_test_table_and_json(trained, tmp_path, capsys):
    store, run = trained
    out = tmp_path / "res.json"
    assert main(["test", str(run), "--data", str(store), "--scales", "2,3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "protocol" in text and "data_range" in text and "OOD" in text
    report = json.loads(out.read_text())
    rows = {(r["method"], r["scale"]): r for r in report["results"]}
    assert set(rows) == {(m, s) for m in ("liif", "bicubic", "zerofill") for s in (2.0, 3.0)}
    assert rows[("liif", 3.0)]["ood"] and not rows[("liif", 2.0)]["ood"] and not rows[("bicubic", 3.0)]["ood"]
    keys = {"method", "scale", "ref", "psnr", "psnr_std", "psnr_ci", "ssim", "ssim_std", "ssim_ci", "n_volumes", "ood",
            "note"}
    assert all(r["psnr_ci"] == [None, None] for r in report["results"])  # one volume: no interval, written as null
    assert "95% CI" in text
    assert all(set(r) == keys and r["n_volumes"] == 1 and r["note"] is None for r in report["results"])
    assert report["protocol"]["split"] == "test" and report["protocol"]["scales_trained"] == "1.5-2.5"
    assert main(["test", str(run), "--data", str(store), "--scales", "2", "--no-baselines", "--split", "val"]) == 0
    assert "bicubic" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scales", "0.5"], "--scales"),
        (["--scales", "2,x"], "--scales"),
        (["--split", "nope"], "nope"),
        (["--ref-scale", "40"], "--ref-scale"),
    ],
)
def test_medsr_test_bad_input(trained, capsys, args, needle):
    store, run = trained
    assert main(["test", str(run), "--data", str(store), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medsr: error:") and needle in err and "Traceback" not in err


def test_fixed_scale_model_rows_are_na_where_it_cannot_run(trained, tmp_path, capsys):
    from medsr.checkpoint import save_weights
    from medsr.registry import MODELS

    store, _ = trained
    spec = {"type": "edsr", "scales": [2, 3], "n_feats": 4, "n_blocks": 1}
    path = tmp_path / "edsr.pth"
    save_weights(path, spec, MODELS.build(spec).state_dict(),
                 meta={"scales": [2, 3], "contrasts": {"target": "T2", "ref": None}})
    out = tmp_path / "edsr.json"
    assert main(["test", str(path), "--data", str(store), "--scales", "2,2.5,5", "--ref", "none", "--no-baselines",
                 "--json", str(out)]) == 0
    assert "n/a: fixed scales x2, x3 only" in capsys.readouterr().out  # the reason, not a bare n/a (D27)
    rows = {r["scale"]: r for r in json.loads(out.read_text())["results"]}
    assert rows[2.5]["note"] == "n/a: fixed scales x2, x3 only" and rows[2.0]["note"] is None
    assert rows[2.0]["n_volumes"] == 1 and rows[2.0]["psnr"] is not None
    assert rows[2.5]["n_volumes"] == 0 and rows[2.5]["psnr"] is None and rows[5.0]["n_volumes"] == 0
    assert main(["test", str(path), "--data", str(store), "--scales", "2"]) == 2
    assert "--ref" in capsys.readouterr().err


def test_medsr_test_missing_weights(tmp_path, capsys):
    assert main(["test", str(tmp_path / "none.pth"), "--data", str(tmp_path)]) == 2
    assert "no such weights file" in capsys.readouterr().err


def test_verdict_is_computed_from_the_numbers():
    rows = [{"method": m, "scale": s, "psnr": p, "ssim": q} for m, s, p, q in [
        ("net", 2.0, 30.0, 0.9), ("bicubic", 2.0, 29.0, 0.8), ("zerofill", 2.0, 29.5, 0.85),
        ("net", 4.0, 25.0, 0.7), ("bicubic", 4.0, 24.0, 0.6), ("zerofill", 4.0, 25.5, 0.65)]]
    assert verdict(rows[:3], "net", ["bicubic", "zerofill"]).startswith("**net beats bicubic and zerofill")
    text = verdict(rows, "net", ["bicubic", "zerofill"])
    assert "does not beat" in text and "x4 PSNR vs zerofill" in text and "x2" not in text


def test_demo_trains_tests_and_reports(mni_store, tmp_path, capsys):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(json.dumps({
        "data": {"target": "T2", "ref": "T1", "patch_size": 8, "batch_size": 2},
        "model": TINY_MODEL, "train": {"steps": 2, "accelerator": "cpu", "devices": 1},
        "val": {"every": 0, "scales": [2.0], "max_subjects": 1},
    }))
    out = tmp_path / "runs" / "demo"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text("name: demo\n")  # an earlier demo's run folder: replaced
    (out / "command.txt").write_text("medsr demo\n")
    (out / "old.txt").write_text("from an earlier demo")
    report = run_demo(0.5, mni_store, out, config=cfg, scales=(1.5, 4.0))
    assert "replacing" in capsys.readouterr().out and not (out / "old.txt").exists()
    text = report.read_text()
    assert report == out / "report.md" and (out / "comparison.png").stat().st_size > 1000
    assert "| x1.5 | liif |" in text and "| x4 | zerofill |" in text and "data_range" in text
    again, _ = run_test(TestSetup(out / "weights.pth", mni_store, (1.5, 4.0), "hr"))  # deterministic: same numbers
    assert verdict(again["results"], "liif", BASELINES) in text.splitlines()
    assert (out / "weights.pth").is_file()
