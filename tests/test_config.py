"""Typed config: YAML over the schema, dotlist overrides, errors that name the key."""

from __future__ import annotations

import re

import pytest
import yaml

from medsr.checkpoint import save_weights
from medsr.cli import main
from medsr.config import CONFIG_DIR, LossTerm, builtin_configs, config_hash, load_config, loss_terms, to_dict, to_yaml
from medsr.errors import InputError
from medsr.registry import MODELS, TASKS


def _yaml(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_overrides_are_merged_with_types(tmp_path):
    path = _yaml(tmp_path, "model: {type: edsr, n_feats: 8}\ntrain: {steps: 10, lr: 1.0e-3}\n")
    cfg = load_config(path, ["train.lr=2e-4", "val.scales=[2,3]", "train.precision=bf16-mixed", "data.ref=T1"])
    assert cfg.name == "exp" and cfg.train.steps == 10
    assert cfg.train.lr == pytest.approx(2e-4) and isinstance(cfg.train.lr, float)
    assert cfg.val.scales == [2.0, 3.0] and cfg.train.precision == "bf16-mixed" and cfg.data.ref == "T1"
    assert dict(cfg.model) == {"type": "edsr", "n_feats": 8}
    assert cfg.train.scheduler.type == "cosine" and cfg.train.gan.enabled is False
    assert "steps: 10" in to_yaml(cfg)


@pytest.mark.parametrize(
    ("text", "overrides", "needle"),
    [
        ("train: {stepz: 3}\n", [], "train.stepz"),
        ("", ["train.lrr=3"], "train.lrr"),
        ("", ["train.steps=many"], "train.steps"),
        ("", ["train.optimizer=sgd"], "train.optimizer"),
        ("", ["val.ref=maybe"], "val.ref"),
        ("", ["train.steps=0"], "train.steps"),
        ("", ["train.ema=1.5"], "train.ema"),
        ("", ["notakey"], "notakey"),
        ("loss: [{weight: 1}]\n", [], "loss[0]"),
        ("- 1\n- 2\n", [], "mapping"),
    ],
)
def test_bad_keys_and_values_name_the_key(tmp_path, text, overrides, needle):
    with pytest.raises(InputError) as err:
        load_config(_yaml(tmp_path, text), overrides)
    assert needle in str(err.value)


def test_cli_reports_unknown_key_in_one_line(tmp_path, capsys):
    path = _yaml(tmp_path, "train:\n  stepz: 3\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medsr: error:") and "stepz" in err and str(path) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_config_hash_ignores_name_and_tracks_content(tmp_path):
    a = load_config(_yaml(tmp_path, "seed: 1\nmodel: {type: liif}\n", "a.yaml"))
    b = load_config(_yaml(tmp_path, "seed: 1\nmodel: {type: liif}\n", "b.yaml"))
    assert a.name != b.name and config_hash(a) == config_hash(b)
    assert config_hash(load_config(None, ["seed=2"])) != config_hash(a)


def test_every_shipped_config_builds_whole(tmp_path, monkeypatch):
    """Each built-in config's task: model, loss terms (a fake UNet weights file for seg_perceptual, where the
    config points) and, for SR, the curriculum checked against the model."""
    unet = MODELS.build({"type": "unet", "base": 4, "depth": 2})
    save_weights(tmp_path / "runs" / "unet" / "weights.pth", {"type": "unet", "base": 4, "depth": 2},
                 unet.state_dict(), meta={"task": "segmentation"})
    monkeypatch.chdir(tmp_path)
    names = builtin_configs()
    assert {"demo", "bicubic", "zerofill", "edsr", "rdn", "liif", "metasr", "dualarb", "sakg", "unet"} <= set(names)
    for name in names:
        cfg = load_config(name)
        task = TASKS.get(cfg.task)(cfg)
        spec = to_dict(cfg)
        assert type(task.model) is MODELS.get(spec["model"]["type"]), name
        assert [n.split("_")[0] for n in task.criterion.names] == [t["type"].split("_")[0] for t in spec["loss"]]
        assert task.criterion.weights == [float(t.get("weight", 1.0)) for t in spec["loss"]], name
        if cfg.task == "sr":
            assert len(task.curriculum.stages) == len(spec["data"]["curriculum"]), name


@pytest.mark.parametrize(
    ("stage", "needle"),
    [
        ({"scale": {"type": "fixed", "value": 2}, "refs": "hr"}, "data.curriculum: stages[0].refs: unknown key"),
        ({"scale": {"type": "uniform", "low": 1.5, "hihg": 4}}, "stages[0].scale.hihg: unknown key"),
        ({"scale": {"type": "uniform", "low": 3, "high": 2}}, "stages[0].scale.high: 2 is below low 3"),
        ({"ref": "hr"}, "stages[0].scale: required"),
    ],
)
def test_a_bad_curriculum_stage_fails_when_the_config_loads(tmp_path, stage, needle):
    with pytest.raises(InputError, match=re.escape(needle)):
        load_config(_yaml(tmp_path, yaml.safe_dump({"model": {"type": "liif"}, "data": {"curriculum": [stage]}})))


@pytest.mark.parametrize(
    ("term", "needle"),
    [
        ({"type": "charbonnier", "beta": 2}, "loss[0]: charbonnier: got an unexpected keyword argument 'beta'"),
        ({"type": "l2"}, "loss[0]: unknown loss 'l2'"),
        ({"type": "l1", "weight": "heavy"}, "loss[0].weight: must be a finite number"),
    ],
)
def test_a_bad_loss_term_fails_when_the_config_loads(tmp_path, term, needle):
    with pytest.raises(InputError, match=re.escape(needle)):
        load_config(_yaml(tmp_path, yaml.safe_dump({"model": {"type": "liif"}, "loss": [term]})))
    typed = loss_terms(load_config(None, ["loss=[{type: charbonnier, weight: 0.5, eps: 0.01}]"]))
    assert typed == [LossTerm("charbonnier", 0.5, {"eps": 0.01})]


def test_builtin_config_loads_by_name_and_equals_its_file():
    by_name = load_config("liif")
    by_path = load_config(CONFIG_DIR / "liif.yaml")
    assert by_name.name == "liif" and config_hash(by_name) == config_hash(by_path)
    with pytest.raises(InputError, match="built-in: .*sakg"):
        load_config("no_such_config")


def test_base_inheritance_merges_dicts_and_replaces_lists(tmp_path):
    _yaml(tmp_path, "model: {type: edsr, n_feats: 8, n_blocks: 2}\ntrain: {steps: 10, lr: 1.0e-3}\n"
          "val: {scales: [2, 3, 4]}\n", "parent.yaml")
    child = _yaml(tmp_path, "base: parent\nmodel: {n_feats: 16}\nval: {scales: [2]}\n", "child.yaml")
    cfg = load_config(child)
    assert cfg.name == "child"
    assert dict(cfg.model) == {"type": "edsr", "n_feats": 16, "n_blocks": 2}
    assert cfg.train.steps == 10 and cfg.val.scales == [2.0]
    # a built-in base by name, with the child's own value winning
    cfg = load_config(_yaml(tmp_path, "base: liif\ntrain: {steps: 7}\n", "mine.yaml"))
    assert cfg.model.type == "liif" and cfg.train.steps == 7 and cfg.train.lr == load_config("liif").train.lr


def test_base_cycle_and_missing_base_are_user_errors(tmp_path):
    _yaml(tmp_path, "base: b\nmodel: {type: edsr}\n", "a.yaml")
    _yaml(tmp_path, "base: a\n", "b.yaml")
    with pytest.raises(InputError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(InputError, match="no such config"):
        load_config(_yaml(tmp_path, "base: nowhere\n", "c.yaml"))


def test_relative_input_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    path = _yaml(folder, "model: {type: edsr}\ndata: {root: ../data/store, mask: {type: file, file: m.npy}}\n"
                 "loss: [{type: l1, weight: 1.0}, {type: seg_perceptual, weight: 1.0, weights: w.pth}]\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path)
    assert cfg.data.root == str(folder / "../data/store")
    assert cfg.data.mask.file == str(folder / "m.npy") and cfg.loss[1]["weights"] == str(folder / "w.pth")
    # a built-in config's data belong to the working directory, and a saved resolved config reloads unchanged
    builtin = load_config("liif")
    assert builtin.data.root == str(tmp_path / "data/mni")
    saved = _yaml(tmp_path / "project", to_yaml(builtin), "saved.yaml")
    assert config_hash(load_config(saved)) == config_hash(builtin)


@pytest.mark.parametrize("config, override, key", [
    ("ct_dncnn", "data.mask.type=random", "data.mask"),       # an undersampling mask in a denoise config
    ("ct_dncnn", "data.target=T1", "data.target"),
    ("edsr", "data.noise_scale=[0.5,1.0]", "data.noise_scale"),  # a CT dose factor in an SR config
    ("edsr", "data.fov=[64,64]", "data.fov"),                 # a joint/reconstruction key in an SR config
    ("unet", "data.mask.type=random", "data.mask"),
])
def test_a_data_key_the_task_does_not_read_is_refused(config, override, key):
    cfg = load_config(config, [override])
    with pytest.raises(InputError, match=f"task {cfg.task} does not read it") as err:
        TASKS.get(cfg.task)(cfg)
    assert err.value.source == key
    assert TASKS.get(cfg.task)(load_config(config)).cfg.task == cfg.task  # without the key it builds
