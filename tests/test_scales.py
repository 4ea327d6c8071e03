"""Scale samplers and curriculum stages built from plain dicts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medsr.scales import Curriculum, Stage, sampler_from_config


def draws(spec, n=400, seed=0):
    sampler = sampler_from_config(spec)
    rng = np.random.default_rng(seed)
    return np.array([sampler.sample(rng) for _ in range(n)])


def test_fixed_choice_uniform_ranges_and_symmetry():
    assert (draws({"type": "fixed", "value": 2.5}) == 2.5).all()
    assert (draws({"type": "fixed", "value": [2, 3], "asymmetric": True}) == [2, 3]).all()
    choice = draws({"type": "choice", "values": [2, 3, 4]})
    assert set(choice.ravel()) == {2, 3, 4} and (choice[:, 0] == choice[:, 1]).all()
    uniform = draws({"type": "uniform", "low": 1.5, "high": 4})
    assert uniform.min() >= 1.5 and uniform.max() <= 4 and (uniform[:, 0] == uniform[:, 1]).all()
    assert uniform[:, 0].std() > 0.5


def test_asymmetric_axes_are_independent():
    uniform = draws({"type": "uniform", "low": 1, "high": 4, "asymmetric": True}, n=2000)
    assert (uniform[:, 0] != uniform[:, 1]).mean() > 0.99
    assert abs(np.corrcoef(uniform.T)[0, 1]) < 0.1
    choice = draws({"type": "choice", "values": [2, 3], "asymmetric": True}, n=2000)
    assert 0.4 < (choice[:, 0] != choice[:, 1]).mean() < 0.6


def test_sampling_is_a_function_of_the_generator():
    spec = {"type": "uniform", "low": 1.2, "high": 8, "asymmetric": True}
    assert (draws(spec, seed=3) == draws(spec, seed=3)).all()
    assert (draws(spec, seed=3) != draws(spec, seed=4)).any()


def test_sampler_range():
    assert sampler_from_config({"type": "choice", "values": [4, 2, 3]}).range() == (2, 4)
    assert sampler_from_config({"type": "uniform", "low": 1.5, "high": 4}).range() == (1.5, 4)
    assert sampler_from_config({"type": "fixed", "value": [3, 2], "asymmetric": True}).range() == (2, 3)


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"type": "fixed", "value": 0.5}, "scale.value"),
        ({"type": "fixed", "value": 17}, "scale.value"),
        ({"type": "fixed", "value": "two"}, "scale.value"),
        ({"type": "fixed", "value": [2, 3]}, "scale.value"),
        ({"type": "choice", "values": []}, "scale.values"),
        ({"type": "choice", "values": [2, float("nan")]}, "scale.values[1]"),
        ({"type": "uniform", "low": 3, "high": 2}, "scale.high"),
        ({"type": "uniform", "low": 2}, "scale.high"),
        ({"type": "uniform", "low": 2, "high": 3, "asymmetric": "yes"}, "scale.asymmetric"),
        ({"type": "gaussian"}, "scale.type"),
        ({"type": "choice", "values": [2], "value": 2}, "scale.value"),
    ],
)
def test_invalid_samplers_name_the_key(spec, key):
    with pytest.raises(ValueError, match="^" + re.escape(key)):
        sampler_from_config(spec)


STAGES = [
    {"until_step": 100, "scale": {"type": "choice", "values": [2, 3, 4]}},
    {"until_step": 300, "scale": {"type": "uniform", "low": 1.5, "high": 4}, "ref": "hr", "ref_dropout": 0.2},
    {"scale": {"type": "uniform", "low": 1, "high": 6, "asymmetric": True}, "ref": "lr",
     "ref_scale": {"type": "choice", "values": [1, 2]}},
]


def test_curriculum_stage_at_and_scale_range():
    cur = Curriculum.from_config(STAGES)
    assert cur.stage_at(0) is cur.stages[0] and cur.stage_at(99) is cur.stages[0]
    assert cur.stage_at(100) is cur.stages[1] and cur.stage_at(299) is cur.stages[1]
    assert cur.stage_at(10**6) is cur.stages[2]
    assert cur.stages[1].ref == "hr" and cur.stages[1].ref_dropout == 0.2 and cur.stages[1].ref_scale is None
    assert cur.stages[2].ref_scale.range() == (1, 2)
    assert cur.scale_range() == (1, 6)


def test_last_bounded_stage_extends():
    cur = Curriculum.from_config(STAGES[:2])
    assert cur.stage_at(5000) is cur.stages[1]


@pytest.mark.parametrize(
    "stages, key",
    [
        ([], "stages"),
        ({"scale": {"type": "fixed", "value": 2}}, "stages"),
        ([STAGES[1], STAGES[0]], "until_step"),
        ([STAGES[2], STAGES[0]], "until_step"),
        ([{"until_step": 0, "scale": STAGES[0]["scale"]}], r"stages\[0\].until_step"),
        ([{"scale": STAGES[0]["scale"], "ref": "lr"}], r"stages\[0\].ref_scale"),
        ([{"scale": STAGES[0]["scale"], "ref": "hr", "ref_scale": {"type": "fixed", "value": 2}}],
         r"stages\[0\].ref_scale"),
        ([{"scale": STAGES[0]["scale"], "ref": "t1"}], r"stages\[0\].ref"),
        ([{"scale": STAGES[0]["scale"], "ref": "hr", "ref_dropout": 1.5}], r"stages\[0\].ref_dropout"),
        ([{"scale": STAGES[0]["scale"], "ref_dropout": 0.5}], r"stages\[0\].ref_dropout"),
        ([{"scale": STAGES[0]["scale"], "until": 3}], r"stages\[0\].until"),
        ([{"until_step": 5}], r"stages\[0\].scale"),
        ([{"scale": {"type": "fixed", "value": 20}}], r"stages\[0\].scale.value"),
    ],
)
def test_invalid_curricula_name_the_key(stages, key):
    with pytest.raises(ValueError, match=f"^{key}"):
        Curriculum.from_config(stages)


def test_stage_validates_when_built_directly():
    fixed = sampler_from_config({"type": "fixed", "value": 2})
    assert Stage(None, fixed, "lr", fixed).ref_scale == fixed
    with pytest.raises(ValueError, match="^ref_scale"):
        Stage(None, fixed, "lr")
