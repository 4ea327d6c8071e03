"""The intensity rules of :mod:`medsr.intensity`: what training records in ``meta.norm`` and every inference path
applies and inverts."""

from __future__ import annotations

import numpy as np
import pytest

from medsr.data.store import robust_scale
from medsr.intensity import HURule, PercentileRule, rule_from_meta
from medsr.registry import TASKS


def test_percentile_rule_normalises_like_the_store_and_inverts():
    volume = np.random.default_rng(0).normal(100.0, 40.0, (8, 8, 3)).astype(np.float32) - 60.0  # some negative
    x, restore = PercentileRule(99.0).normalise(volume)
    shifted = volume - volume.min()
    np.testing.assert_allclose(x, shifted / robust_scale(shifted, 99.0), rtol=1e-6)
    assert x.min() == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(restore(x), volume, rtol=1e-5, atol=1e-4)
    positive = np.abs(volume) + 1
    x, _ = PercentileRule().normalise(positive)  # no shift when nothing is negative
    np.testing.assert_allclose(x, positive / robust_scale(positive), rtol=1e-6)


def test_hu_rule_is_fixed_and_keeps_padding():
    hu = np.array([[-3024.0, -1024.0, 0.0, 1000.0]], np.float32)
    x, restore = HURule().normalise(hu)
    np.testing.assert_allclose(x, [[-0.024, -0.024, 1.0, 2.0]], atol=1e-6)  # padding clamped to air
    np.testing.assert_allclose(restore(x), hu, atol=1e-3)  # and given back its own value
    np.testing.assert_allclose(restore(x + 0.01), [[-3024.0, -1014.0, 10.0, 1010.0]], atol=1e-3)


@pytest.mark.parametrize("rule", [PercentileRule(), PercentileRule(95.0), HURule()])
def test_a_rule_is_read_back_from_the_meta_it_writes(rule):
    assert rule_from_meta({"norm": rule.meta()}) == rule


@pytest.mark.parametrize("norm", ["x", {"method": "zscore"}, {"percentile": 0}, {"percentile": 101},
                                  {"percentile": True}])
def test_a_record_that_is_no_rule_is_refused(norm):
    with pytest.raises(ValueError, match="meta.norm"):
        rule_from_meta({"norm": norm})


def test_each_task_records_its_own_rule():
    assert TASKS.get("denoise").intensity == HURule()
    assert {TASKS.get(t).intensity for t in ("sr", "joint", "reconstruction", "segmentation")} == {PercentileRule()}
    assert rule_from_meta({}) == PercentileRule()  # weights written before meta.norm existed
