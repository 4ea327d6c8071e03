"""A new task is one folder plus one config: a toy denoising task, written as a package outside medsr in a
temporary directory and declared by an entry point of ``medsr.plugins``, is trained, validated and tested through
the real ``medsr train`` and ``medsr test`` commands, with nothing in medsr edited. Also: reading a config or a
weights file imports no task (and so not Lightning)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsr.config import load_config
from medsr.engine.runs import build_module
from medsr.errors import InputError

TOY = '''
"""A toy task: remove white noise from smooth random images stored as SPLIT.npy arrays [N, H, W]."""
import numpy as np
import torch

from medsr.evaluation.report import summarise
from medsr.evaluation.testing import TestProtocol
from medsr.metrics.image import psnr
from medsr.registry import PROTOCOLS, TASKS
from medsr.tasks.base import TrainingTask


class Images(torch.utils.data.Dataset):
    def __init__(self, root, split, sigma=0.1):
        self.clean = torch.from_numpy(np.load(f"{root}/{split}.npy")).float()[:, None]
        g = torch.Generator().manual_seed(1)
        self.noisy = self.clean + sigma * torch.randn(self.clean.shape, generator=g)
        self.subjects = [str(i) for i in range(len(self.clean))]

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, spec):  # spec: medsr.data.datasets.ItemSpec (index, seed), the default sampler's
        return {"x": self.noisy[spec.index], "y": self.clean[spec.index]}


def scores(model, data):
    with torch.no_grad():
        out = model(data.noisy).clamp(0, 1)
    return [float(v) for v in psnr(out, data.clean, data_range=1.0)], [float(v) for v in psnr(data.noisy.clamp(0, 1), data.clean, data_range=1.0)]


@TASKS.register("toy")
class ToyTask(TrainingTask):
    monitor = "val/psnr"

    def dataset(self, split, *, training):
        return Images(self.cfg.data.root, split)

    def compute_loss(self, batch):
        out = self.model(batch["x"])
        loss, terms = self.criterion(out, batch["y"], batch)
        return loss, terms, out

    def validation_metrics(self, trainer, dataset, subjects):
        model_scores, _ = scores(self.eval_model, dataset)
        return {"val/psnr": sum(model_scores) / len(model_scores)}


def run(setup, model, meta):
    data = Images(setup.data, setup.split)
    model_scores, input_scores = scores(model, data)
    results = []
    for method, values in (("model", model_scores), ("noisy input", input_scores)):
        results.append({"method": method, "psnr": summarise(values).mean, "n": len(values)})
    return {"protocol": {"task": "toy", "split": setup.split, "images": len(data)}, "results": results}


def table(report):
    return ["method", "PSNR", "images"], [[r["method"], f"{r['psnr']:.2f}", r["n"]] for r in report["results"]]


PROTOCOLS.register("toy")(TestProtocol(run, table, "toy", options=()))
'''

CONFIG = """task: toy
data: {root: %s, train_split: train, val_split: val, batch_size: 4}
model: {type: dncnn, depth: 3, width: 8, batch_norm: false}
loss: [{type: mse, weight: 1.0}]
train: {steps: 30, lr: 1.0e-3, checkpoint_every: 10, accelerator: cpu, devices: 1}
val: {every: 10}
logging: {runs_dir: %s}
"""


def write_plugin(site: Path) -> None:
    (site / "toytask").mkdir(parents=True)
    (site / "toytask" / "__init__.py").write_text(TOY)
    info = site / "toytask-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toytask\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[medsr.plugins]\ntoy = toytask\n")


def smooth_images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:16, 0:16] / 16.0
    return np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * x + rng.uniform() * y))
                     for _ in range(n)]).astype(np.float32)


def medsr(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "medsr", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_plugin_task_trains_validates_and_tests_through_the_commands(tmp_path):
    site, store = tmp_path / "site", tmp_path / "store"
    write_plugin(site)
    store.mkdir()
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        np.save(store / f"{split}.npy", smooth_images(12, seed))
    config = tmp_path / "toy.yaml"
    config.write_text(CONFIG % (store, tmp_path / "runs"))

    trained = medsr(["train", str(config)], site, tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_dir = tmp_path / "runs" / "toy"
    log = (run_dir / "train.log").read_text()
    assert "step 30 validation: psnr" in log
    tested = medsr(["test", str(run_dir), "--data", str(store), "--json", str(tmp_path / "r.json")], site, tmp_path)
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert "noisy input" in tested.stdout and "images" in tested.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    by_method = {r["method"]: r for r in report["results"]}
    assert report["protocol"]["images"] == 12
    assert by_method["model"]["psnr"] > by_method["noisy input"]["psnr"]  # 30 steps learn to denoise a little

    refused = medsr(["test", str(run_dir), "--data", str(store), "--scales", "2"], site, tmp_path)
    assert refused.returncode == 2 and "is toy weights: --scales does not apply" in refused.stderr
    unplugged = medsr(["test", str(run_dir), "--data", str(store)], tmp_path / "nowhere", tmp_path)
    assert unplugged.returncode == 2
    assert "task 'toy', for which no medsr test protocol is installed" in unplugged.stderr


def test_an_unknown_task_is_refused_when_the_engine_builds_it():
    cfg = load_config(None, ["task=probe"])  # reading a config does not consult the tasks
    assert cfg.task == "probe"
    with pytest.raises(InputError, match="unknown task 'probe' \\(known: denoise, joint"):
        build_module(cfg)


def test_configs_and_weights_are_read_without_importing_tasks_or_lightning(tmp_path):
    code = ("import sys\nfrom medsr.config import load_config\nfrom medsr.checkpoint import load_weights\n"
            "load_config('ct_dncnn_shared')\nload_weights(sys.argv[1])\n"
            "print(sorted(m for m in sys.modules if m.startswith(('medsr.tasks', 'lightning'))))")
    weights = Path(__file__).resolve().parents[1] / "src" / "medsr" / "weights" / "dncnn_ct.pth"
    out = subprocess.run([sys.executable, "-c", code, str(weights)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
