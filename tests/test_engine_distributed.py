"""Engine across processes: 2-process DDP on CPU (gloo), and SIGKILL + resume equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from _engine_data import write_config, write_store

from medsr.checkpoint import load_weights
from medsr.cli import main

KILLER = """
import os, signal, sys
import lightning.pytorch as pl
from medsr.engine.runs import train

class KillAt(pl.Callback):
    def on_train_batch_end(self, trainer, module, *args):
        if module.step == {step}:
            os.kill(os.getpid(), signal.SIGKILL)

train(sys.argv[1], callbacks=[KillAt()])
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_two_process_ddp_ends_with_identical_weights(tmp_path):
    store = write_store(tmp_path / "store")
    cfg = write_config(tmp_path / "ddp.yaml", store, tmp_path / "runs", train={"steps": 4, "checkpoint_every": 2})
    cmd = [sys.executable, "-m", "medsr", "train", str(cfg), "train.devices=2", "train.strategy=ddp"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads((tmp_path / "runs" / "ddp" / "ranks.json").read_text())
    assert ranks["world_size"] == 2
    assert ranks["fingerprints"][0] == ranks["fingerprints"][1] and ranks["identical"]
    assert load_weights(tmp_path / "runs" / "ddp" / "weights.pth")["meta"]["steps"] == 4


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed child runs on one thread; CPU reductions depend on the thread count
    try:
        _kill_and_resume(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(tmp_path):
    store = write_store(tmp_path / "store")
    full = write_config(tmp_path / "full.yaml", store, tmp_path / "runs", train={"steps": 8, "checkpoint_every": 2})
    cut = write_config(tmp_path / "cut.yaml", store, tmp_path / "runs", train={"steps": 8, "checkpoint_every": 2})
    assert main(["train", str(full)]) == 0

    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(step=5))
    killed = subprocess.run([sys.executable, str(script), str(cut)], env=_env(), capture_output=True, text=True,
                            timeout=240, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-3000:]
    run = tmp_path / "runs" / "cut"
    assert not (run / "weights.pth").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["medsr"]["step"] == 4

    assert main(["train", str(cut), "--resume"]) == 0
    a = load_weights(tmp_path / "runs" / "full" / "weights.pth")
    b = load_weights(run / "weights.pth")
    assert b["meta"]["steps"] == 8
    for key in ("params", "params_ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name}"
