"""Registries: filled on first use, specs checked against constructor signatures, constructor errors kept."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medsr.config import load_config
from medsr.errors import InputError
from medsr.evaluation import evaluate
from medsr.metrics import image, lpips
from medsr.registry import DATASETS, LOSSES, METRICS, MODELS, TASKS, Registry


def test_registries_fill_themselves_in_a_fresh_interpreter():
    code = ("from medsr.registry import LOSSES, MODELS, TASKS; "
            "net = MODELS.build({'type': 'liif', 'encoder': {'type': 'edsr', 'n_feats': 4, 'n_blocks': 1}}); "
            "print(type(net).__name__, type(LOSSES.build({'type': 'l1'})).__name__, TASKS.get('sr').__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["LIIF", "L1Loss", "SRTask"]


def test_encoders_and_discriminator_live_in_models_without_colliding():
    names = MODELS.names()
    assert {"encoder/edsr", "encoder/rdn", "edsr", "patch_discriminator", "unet"} <= set(names)
    assert MODELS.get("encoder/edsr") is not MODELS.get("edsr")
    assert {"sr", "segmentation", "reconstruction", "joint", "denoise"} <= set(TASKS.names())
    assert "sakg_semantic" in LOSSES


def test_build_checks_the_spec_against_the_signature():
    with pytest.raises(InputError, match="unknown model 'nosuchnet'.*liif"):
        MODELS.build({"type": "nosuchnet"})
    with pytest.raises(InputError, match="liif.*hiden"):
        MODELS.build({"type": "liif", "hiden": [8]})
    with pytest.raises(InputError, match="no 'type'"):
        LOSSES.build({"weight": 1.0})


def test_a_constructor_bug_keeps_its_type_and_traceback():
    registry = Registry("thing")

    @registry.register("buggy")
    class Buggy:
        def __init__(self, width: int = 2):
            self.size = len(width)  # a bug: TypeError raised inside the constructor

    with pytest.raises(TypeError, match="len") as info:
        registry.build({"type": "buggy", "width": 3})
    assert info.traceback[-1].name == "__init__"
    with pytest.raises(KeyError, match="twice"):
        registry.register("buggy")(Buggy)


def test_every_module_of_the_package_registers_without_a_list(tmp_path, monkeypatch):
    """A registry imports each module (and subpackage module) of its package, though ``__init__`` names none."""
    package = tmp_path / "probe_pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    registry = Registry("thing", "probe_pkg")
    monkeypatch.setattr(sys.modules[__name__], "PROBE", registry, raising=False)
    line = f"from {__name__} import PROBE\n@PROBE.register('{{}}')\nclass Thing: pass\n"
    (package / "alpha.py").write_text(line.format("alpha"))
    (package / "sub" / "beta.py").write_text(line.format("beta"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.names() == ["alpha", "beta"]
    assert registry.get("beta").__module__ == "probe_pkg.sub.beta"


def test_a_config_task_is_any_registered_task(monkeypatch):
    cfg = load_config(None, ["task=probe"])
    with pytest.raises(InputError, match="unknown task 'probe' \\(known: " + ", ".join(TASKS.names())):
        TASKS.get(cfg.task)
    monkeypatch.setitem(TASKS._items, "probe", object)  # scoped: gone after this test
    assert TASKS.get(load_config(None, ["task=probe"]).task) is object


def test_metrics_are_the_registered_pure_functions():
    assert evaluate.METRICS == tuple(METRICS.names()) == ("lpips", "nmse", "nrmse", "psnr", "ssim")
    assert [METRICS.get(n) for n in ("psnr", "ssim", "nmse", "lpips")] == [image.psnr, image.ssim, image.nmse,
                                                                           lpips.lpips]
    assert "mni" in DATASETS
