"""Resume continues to the new ``train.steps`` (a finished run, a time-limited run), overrides may follow flags,
and Ctrl-C saves ``last.ckpt`` (issue 14: D2, D23, D25)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from _engine_data import write_config, write_store

from medsr.cli import main
from medsr.engine.runs import train


def _steps(run):
    return int(torch.load(run / "weights.pth", weights_only=True)["meta"]["steps"])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("store") / "s")


def test_resume_of_a_finished_run_continues_to_the_new_budget(store, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", train={"steps": 2})
    assert main(["train", str(cfg)]) == 0
    assert _steps(tmp_path / "runs" / "c") == 2
    assert main(["train", str(cfg), "--resume", "train.steps=4"]) == 0  # override after a flag (D25)
    assert _steps(tmp_path / "runs" / "c") == 4


def test_resume_of_a_time_limited_run_gets_a_fresh_budget(store, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", train={"steps": 40})
    run = train(cfg, ["train.max_minutes=0.0001"])
    assert _steps(run) < 40
    train(cfg, ["train.max_minutes=null"], resume=True)
    assert _steps(run) == 40


class _Interrupt(pl.Callback):
    def on_train_batch_end(self, trainer, module, *args):
        if module.step == 3:
            raise KeyboardInterrupt


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(store, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", store, tmp_path / "runs", train={"steps": 5, "checkpoint_every": 100})
    with pytest.raises(KeyboardInterrupt, match="step 3"):
        train(cfg, callbacks=[_Interrupt()])
    ckpt = torch.load(tmp_path / "runs" / "c" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["medsr"]["step"] == 3
    assert _steps(train(cfg, resume=True)) == 5
