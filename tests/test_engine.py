"""Engine: `medsr train` end to end on a tiny store, run directories, non-finite stop, schedule, freeze, EMA, GAN."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _engine_data import write_config, write_store

from medsr.checkpoint import build_from_weights, load_weights
from medsr.cli import main
from medsr.config import load_config
from medsr.models.liif import LIIF
from medsr.losses.base import Loss
from medsr.registry import LOSSES, TASKS
from medsr.optim import EMA, lr_factor
from medsr.tasks.base import freeze


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("engine") / "store")


class NanAfter(Loss):
    """L1 until ``calls`` calls have been made, then NaN (to provoke the non-finite stop)."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls, self.seen = calls, 0

    def forward(self, sr, hr, batch):
        self.seen += 1
        loss = (sr - hr).abs().mean()
        return loss * float("nan") if self.seen > self.calls else loss


def test_train_end_to_end_writes_the_run(store, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", store, tmp_path / "runs")
    assert main(["train", str(cfg), "train.lr=2e-3"]) == 0
    run = tmp_path / "runs" / "tiny"
    for name in ("config.yaml", "command.txt", "env.json", "train.log", "weights.pth", "ranks.json",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert "lr: 0.002" in (run / "config.yaml").read_text()
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and "git" in env and env["devices"]
    model, meta = build_from_weights(run / "weights.pth")
    assert meta["steps"] == 6 and meta["scales"] == [1.5, 2.5]
    assert meta["contrasts"]["target"] == "T2" and meta["contrasts"]["ref"] == "T1"
    assert meta["model"]["type"] == "liif"
    payload = load_weights(run / "weights.pth")
    assert any(not torch.equal(payload["params"][k], payload["params_ema"][k]) for k in payload["params"])
    log = (run / "train.log").read_text()
    assert "step 3 validation" in log and "step 6 validation" in log
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["medsr"]["step"] == 6 and set(ckpt["medsr"]["rng"]) >= {"python", "numpy", "torch"}
    x = torch.rand(1, 1, 10, 9)
    assert model(x, (17, 20)).shape == (1, 1, 17, 20)
    assert "weights.pth" in capsys.readouterr().out


def test_existing_run_is_not_overwritten(store, tmp_path, capsys):
    cfg = write_config(tmp_path / "again.yaml", store, tmp_path / "runs", train={"steps": 2})
    assert main(["train", str(cfg)]) == 0
    before = (tmp_path / "runs" / "again" / "weights.pth").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medsr: error:") and "--resume" in err and "Traceback" not in err
    assert (tmp_path / "runs" / "again" / "weights.pth").stat().st_mtime_ns == before
    assert main(["train", str(cfg), "--overwrite"]) == 0
    assert main(["train", str(cfg), "--name", "fresh", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_bad_model_and_loss_are_input_errors(store, tmp_path, capsys):
    cfg = write_config(tmp_path / "bad.yaml", store, tmp_path / "runs", model={"type": "nosuchnet"})
    assert main(["train", str(cfg)]) == 2
    assert "model" in capsys.readouterr().err
    cfg = write_config(tmp_path / "bad2.yaml", store, tmp_path / "runs", loss=[{"type": "nosuchloss"}])
    assert main(["train", str(cfg)]) == 2
    assert "nosuchloss" in capsys.readouterr().err
    bad_stage = [{"until_step": None, "scale": {"type": "uniform", "low": 0.5, "high": 2}, "ref": "none"}]
    cfg = write_config(tmp_path / "bad3.yaml", store, tmp_path / "runs", data={"curriculum": bad_stage})
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "data.curriculum" in err and "low" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "bad3").exists(), "a config error must leave no run directory"
    cfg = write_config(tmp_path / "bad4.yaml", store, tmp_path / "runs", data={"root": str(tmp_path / "nowhere")})
    assert main(["train", str(cfg)]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.fixture
def nan_loss(monkeypatch):
    """``test_nan_after`` registered for one test only."""
    LOSSES.names()  # fill the registry first
    monkeypatch.setitem(LOSSES._items, "test_nan_after", NanAfter)


def task_from_checkpoint(run):
    """The run's task restored from ``checkpoints/last.ckpt`` through Lightning's public loader."""
    cfg = load_config(run / "config.yaml")
    return TASKS.get(cfg.task).load_from_checkpoint(run / "checkpoints" / "last.ckpt", cfg=cfg, weights_only=False)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path, capsys, nan_loss):
    cfg = write_config(tmp_path / "nan.yaml", store, tmp_path / "runs",
                       loss=[{"type": "test_nan_after", "calls": 3}], train={"checkpoint_every": 1, "steps": 6},
                       val={"every": 0})
    assert main(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at step 3" in err and "Traceback" not in err
    run = tmp_path / "runs" / "nan"
    assert not (run / "weights.pth").exists()
    task = task_from_checkpoint(run)
    assert task.step == 3
    assert all(torch.isfinite(v).all() for v in task.state_dict().values() if v.is_floating_point())


def test_gan_mode_counts_batches_not_optimizer_steps(store, tmp_path):
    cfg = write_config(tmp_path / "gan.yaml", store, tmp_path / "runs", val={"every": 0},
                       train={"steps": 4, "gan": {"enabled": True, "loss": "hinge", "g_steps_per_d_step": 2,
                                                  "discriminator": {"type": "patch_discriminator", "n_feats": 4,
                                                                    "n_layers": 2}}})
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "runs" / "gan"
    assert load_weights(run / "weights.pth")["meta"]["steps"] == 4
    trained = task_from_checkpoint(run)
    config = load_config(run / "config.yaml")
    torch.manual_seed(config.seed)  # the run's initial weights (medsr train seeds, then builds the task)
    fresh = TASKS.get("sr")(config)
    assert len(fresh.configure_optimizers()[0]) == 2  # generator and discriminator
    changed = [not torch.equal(a, b) for a, b in zip(trained.adversary.parameters(), fresh.adversary.parameters())]
    assert trained.step == 4 and any(changed), "the discriminator was never updated"


def test_freeze_excludes_parameters_from_optimizer_and_keeps_them(store, tmp_path):
    cfg = write_config(tmp_path / "frozen.yaml", store, tmp_path / "runs", val={"every": 0},
                       train={"steps": 2, "freeze": ["encoder.*"], "ema": 0.0})
    torch.manual_seed(0)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "runs" / "frozen"
    params = load_weights(run / "weights.pth")["params"]
    task = TASKS.get("sr")(load_config(run / "config.yaml"))
    optimised = {id(p) for group in task.configure_optimizers()[0][0].param_groups for p in group["params"]}
    names = {n for n, p in task.model.named_parameters() if id(p) in optimised}
    assert names == {n for n, _ in task.model.named_parameters() if not n.startswith("encoder.")}
    torch.manual_seed(3)
    fresh = LIIF(**{k: v for k, v in load_weights(run / "weights.pth")["meta"]["model"].items() if k != "type"})
    for name, value in fresh.state_dict().items():
        if name.startswith("encoder."):
            assert torch.equal(value, params[name]), name


def test_freeze_patterns_match_names():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    assert freeze(net, ["0.*"]) == ["0.weight", "0.bias"]
    assert not net[0].weight.requires_grad and net[1].weight.requires_grad


def test_lr_schedule_warmup_cosine_step():
    cos = {"type": "cosine", "warmup_steps": 4, "milestones": [], "gamma": 0.5, "min_factor": 0.1}
    assert [lr_factor(s, 100, cos) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 100, cos) == pytest.approx(1.0)
    assert lr_factor(52, 100, cos) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, 100, cos) == pytest.approx(0.1)
    step = {"type": "step", "warmup_steps": 0, "milestones": [10, 20], "gamma": 0.5, "min_factor": 0.0}
    assert [lr_factor(s, 100, step) for s in (9, 10, 19, 20)] == [1.0, 0.5, 0.5, 0.25]
    const = {**step, "type": "constant"}
    assert lr_factor(99, 100, const) == 1.0


def test_ema_update_follows_the_formula():
    net = torch.nn.Linear(3, 1)
    ema = EMA(net, decay=0.99)
    old = ema.shadow.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, n=1000)
    assert torch.allclose(ema.shadow.weight, 0.99 * old + 0.01 * net.weight)
    assert not any(p.requires_grad for p in ema.shadow.parameters())
    ema.update(net, n=0)
    d = min(0.99, 1 / 10)
    assert torch.allclose(ema.shadow.weight, d * (0.99 * old + 0.01 * net.weight) + (1 - d) * net.weight)
    assert math.isclose(ema.decay, 0.99)


def test_parameter_free_model_exports_without_training(store, tmp_path):
    cfg = write_config(tmp_path / "bicubic.yaml", store, tmp_path / "runs", model={"type": "bicubic"})
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "runs" / "bicubic"
    model, meta = build_from_weights(run / "weights.pth")
    assert meta["steps"] == 0 and meta["model"] == {"type": "bicubic"}
    assert "nothing to train" in (run / "train.log").read_text()
    assert not (run / "checkpoints" / "last.ckpt").exists()


def test_the_shared_update_clips_steps_and_schedules():
    from medsr.optim import clip_norm, make_optimizer, make_scheduler, update

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = make_optimizer(model.parameters(), 0.1)
    scheduler = make_scheduler(optimizer, 10, {"type": "cosine", "warmup_steps": 2})
    before = [p.detach().clone() for p in model.parameters()]
    loss = (model(torch.full((8, 4), 100.0)) ** 2).mean()  # a huge gradient
    seen = []
    update(optimizer, scheduler, loss, backward=lambda l: (seen.append(float(l)), l.backward()),
           clip=clip_norm(model, 1.0))
    assert seen == [float(loss)]  # the given backward ran on the loss
    grad_norm = torch.sqrt(sum(p.grad.square().sum() for p in model.parameters()))
    assert float(grad_norm) == pytest.approx(1.0, rel=1e-4)  # clipped before the step
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert 0 < float(step.abs().max()) <= 0.1 * 0.5 + 1e-6  # Adam's first step: at most lr x warm-up factor 1/2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # the schedule moved on to step 1: 2/2
