"""Everything derived from the policies' declarations: every declared option is reachable from a
study file, from ``--set`` and from Python; bad values are refused the same way on each path; the
README's options tables match the declarations; every built-in policy passes the generic checks.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from ado_ray.policies import (
    Option,
    complete_options,
    load_policy,
    make_policy,
    options_markdown,
    policy_class,
    policy_names,
    register_policy,
)
from ado_ray.policies.base import MixturePolicy
from ado_ray.study import StudyError, load_study

README = Path(__file__).resolve().parents[1] / "README.md"
K = 4
BUILTINS = [n for n in policy_names() if policy_class(n).__module__.startswith("ado_ray.")]


def other_value(policy: str, opt: Option) -> object:
    """A valid value of ``opt`` that differs from its default (and that the policy accepts with
    its other options at their defaults)."""
    if opt.type == "choice":
        return next(c for c in opt.choices if c != opt.default)
    if opt.type == "bool":
        return not opt.default
    if opt.is_vector:
        return [0.1, 0.2, 0.3, 0.4]
    base = opt.default if isinstance(opt.default, (int, float)) else 1
    for candidate in (base + 2, base * 2 + 1, base / 2, 0.5, 3):
        value = int(candidate) if opt.type == "int" else float(candidate)
        if value != opt.default and opt.contains(value):
            try:
                build(policy, **{opt.name: value})
            except ValueError:
                continue
            return value
    raise AssertionError(f"no alternative value for {opt.name}")


def invalid_value(opt: Option) -> object | None:
    """A value ``opt`` refuses, or None when every value of its type is allowed."""
    if opt.type == "choice":
        return "__not_a_choice__"
    if opt.type == "bool":
        return "yes"
    if opt.is_vector:
        return [0.5, -0.5, 0.5, 0.5]
    if opt.low is not None:
        return opt.low - 1
    if opt.high is not None:
        return opt.high + 1
    return None


def options_of(name: str) -> list[tuple[str, Option]]:
    return [(name, o) for o in policy_class(name).user_options().values()]


ALL_OPTIONS = [pair for name in BUILTINS for pair in options_of(name)]
IDS = [f"{n}.{o.name}" for n, o in ALL_OPTIONS]


def study_with(policy: str, options: dict) -> dict:
    return {
        "name": "decl",
        "arms": {"arm_x": {"policy": policy, "options": options}},
        "training": {"budget": {"steps": 10}},
    }


@pytest.mark.parametrize("policy, opt", ALL_OPTIONS, ids=IDS)
def test_every_declared_option_is_reachable_three_ways(policy, opt, tmp_path):
    value = other_value(policy, opt)
    extra = {"weights": [0.25] * 4} if policy == "fixed" else {}
    # 1. a study file
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_with(policy, {**extra, opt.name: value})))
    from_yaml = load_study(path).arms["arm_x"].options[opt.name]
    # 2. --set on a study that does not set it
    base = load_study(study_with(policy, extra))
    from_set = base.with_overrides([f"arms.arm_x.options.{opt.name}={json.dumps(value)}"])
    from_set = from_set.arms["arm_x"].options[opt.name]
    assert from_yaml == from_set
    # 3. Python: the policy takes it and reports it back
    kwargs = {**extra, opt.name: value}
    if opt.name == "weights":
        kwargs[opt.name] = [0.1, 0.2, 0.3, 0.4]
    p = build(policy, **kwargs)
    got = p.options[opt.name]
    if opt.name == "prior":
        assert np.allclose(got, np.asarray(value) / np.sum(value))
    else:
        assert got == from_yaml == value


@pytest.mark.parametrize("policy, opt", ALL_OPTIONS, ids=IDS)
def test_a_bad_value_is_refused_naming_the_option_on_every_path(policy, opt):
    bad = invalid_value(opt)
    if bad is None:
        pytest.skip(f"{opt.name} allows every value of its type")
    extra = {"weights": [0.25] * 4} if policy == "fixed" else {}
    with pytest.raises(StudyError) as yaml_error:
        load_study(study_with(policy, {**extra, opt.name: bad}))
    assert f"arms.arm_x.options.{opt.name}" in str(yaml_error.value)
    with pytest.raises(ValueError) as py_error:
        build(policy, **{**extra, opt.name: bad})
    assert opt.name in str(py_error.value)
    base = load_study(study_with(policy, extra))
    with pytest.raises(StudyError) as set_error:
        base.with_overrides([f"arms.arm_x.options.{opt.name}={json.dumps(bad)}"])
    assert str(set_error.value) == str(yaml_error.value)


def test_searchable_options_take_a_search_space_and_vectors_do_not():
    for name in BUILTINS:
        for opt in policy_class(name).user_options().values():
            if opt.type in ("float", "int") and opt.low is not None:
                if opt.type == "int":
                    spec = {"type": "int", "low": int(opt.low) + 1, "high": int(opt.low) + 3}
                else:
                    high = opt.high if opt.high is not None else opt.low + 4.0
                    width = high - opt.low
                    spec = {
                        "type": "uniform",
                        "low": opt.low + width / 4,
                        "high": opt.low + 3 * width / 4,
                    }
                study = {"name": "s", "arms": {"a": {"policy": name, "search": {opt.name: spec}}}}
                assert opt.name in load_study(study).search_space("a")
                out = dict(spec, high=spec["high"] + (opt.high or 1e9) * 10)
                if opt.high is not None:  # a bound outside the option's range is refused
                    study["arms"]["a"]["search"][opt.name] = out
                    assert f"{opt.name}.high" in str(
                        pytest.raises(StudyError, load_study, study).value
                    )
            if opt.is_vector:
                study = {
                    "name": "s",
                    "arms": {"a": {"policy": name, "search": {opt.name: {"type": "uniform"}}}},
                }
                assert "arms.a.search" in str(pytest.raises(StudyError, load_study, study).value)


def test_declared_default_search_spaces_load():
    for name in BUILTINS:
        cls = policy_class(name)
        if not cls.search_space:
            continue
        s = load_study({"name": "s", "arms": {"a": {"policy": name, "search": "default"}}})
        assert set(s.search_space("a")) == set(cls.search_space)


def test_readme_options_tables_match_the_declarations():
    text = README.read_text(encoding="utf-8")
    for name in BUILTINS:
        m = re.search(rf"<!-- options:{name} -->\n(.*?)\n<!-- /options -->", text, re.S)
        assert m, f"README has no options table for {name} (`ado-ray policies --markdown`)"
        assert m.group(1).strip() == options_markdown(name).strip(), (
            f"README's {name} table is out of date: run scripts/update_readme_tables.py"
        )


# -- the generic checks every policy gets ---------------------------------------------------


def build(name: str, **extra) -> MixturePolicy:
    """Policy ``name`` with what a run would supply (prior, seq_len, budget) and ``extra``."""
    opts = {"weights": [0.1, 0.2, 0.3, 0.4]} if name == "fixed" else {}
    run = complete_options(
        name,
        {**opts, **extra},
        token_counts=[4000, 3000, 2000, 1000],
        seq_len=64,
        total_tokens=50_000,
    )
    return make_policy(name, K, **run)


def feed(p: MixturePolicy, steps: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    start = p.steps_observed
    for t in range(start, start + steps):
        w = p.weights()
        out.append(w)
        counts = rng.multinomial(16, w).astype(float)
        losses = np.where(counts > 0, 3.0 / np.sqrt(t + 1) + rng.random(K), np.nan)
        if t % 7 == 3:
            losses[0] = np.inf  # a non-finite loss is "missing"
        p.observe(t, counts, losses)
        if p.wants_eval_feedback and t % 5 == 4:
            p.observe_eval(t + 1, rng.random(K) + 2)
    return out


@pytest.mark.parametrize("name", BUILTINS)
def test_generic_policy_checks(name):
    fast = {"warmup_steps": 5, "update_interval": 5, "ignore_steps": 0, "subsample": 1,
            "min_fit_points": 4, "log_eps_min": -5.0} if name == "ado" else {}
    p = build(name, **fast)
    floor = p.options.get("delta_min", 0.0)
    for w in feed(p, 40):
        assert w.shape == (K,) and np.isfinite(w).all() and abs(w.sum() - 1) < 1e-9
        assert (w >= 0).all()
    assert (p.weights() >= floor - 1e-15).all()
    # bit-identical state round trip, then the same future
    q = load_policy(copy.deepcopy(p.state_dict()))
    a, b = feed(p, 15, seed=1), feed(q, 15, seed=1)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
    # diagnostics: named length-K arrays
    for key, arr in p.diagnostics().items():
        assert isinstance(key, str) and np.asarray(arr).shape == (K,)
    with pytest.raises(ValueError, match="unknown option 'no_such_option'"):
        build(name, no_such_option=1)


def test_register_policy_in_process():
    class Echo(MixturePolicy):
        """Weights proportional to 1 + the last loss."""

        name = "echo_test"
        options_spec = (Option("scale", 1.0, "float", "multiplier", low=0.0, low_open=True),)

        def __init__(self, num_domains, **options):
            super().__init__(num_domains)
            self._resolve_options(options)
            self._w = np.full(self._k, 1.0 / self._k)

        def weights(self):
            return self._w.copy()

        def _observe(self, step, counts, losses, c_min, total):
            v = np.nan_to_num(losses, nan=0.0) * self._resolved["scale"] + 1.0
            self._w = v / v.sum()

    register_policy("echo_test", Echo)
    assert "echo_test" in policy_names()
    s = load_study({"name": "s", "arms": {"e": {"policy": "echo_test", "options": {"scale": 2}}}})
    assert s.arms["e"].options == {"scale": 2.0}
    with pytest.raises(ValueError, match="already exists"):
        register_policy("ado", type("Ado2", (Echo,), {"name": "ado"}))
    with pytest.raises(ValueError, match="must be 'other'"):
        register_policy("other", Echo)


@pytest.mark.parametrize("k", [2, 8, 22])  # 22: the Pile, ADO's paper setting
def test_every_corner_of_a_default_search_space_builds_its_policy(k):
    for name in BUILTINS:
        if not policy_class(name).search_space:
            continue
        s = load_study({"name": "s", "arms": {"a": {"policy": name, "search": "default"}}})
        for key, spec in s.search_space("a").items():
            ends = spec.choices if spec.type == "categorical" else (spec.low, spec.high)
            for value in ends:  # raises if the corner is refused
                run = dict(token_counts=[1e6] * k, seq_len=128, total_tokens=10**6)
                make_policy(name, k, **complete_options(name, {key: value}, **run))
