"""The mixture-policy interface: factory, baselines, validation, state, invariants."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ado_ray.policies import (
    ADO_DEFAULTS,
    MixturePolicy,
    floor_clip,
    load_policy,
    make_policy,
    policy_names,
)

# -- factory and baselines ----------------------------------------------------------


def test_policy_names():
    # The built-ins are found by scanning the package; plugins may add more after them.
    assert {"uniform", "natural", "fixed", "ado"} <= set(policy_names())


@pytest.mark.parametrize(
    "name, options",
    [
        ("uniform", {}),
        ("natural", {"token_counts": [1, 2, 3, 4]}),
        ("fixed", {"weights": [0.1, 0.2, 0.3, 0.4]}),
        ("ado", {}),
    ],
)
def test_every_policy_has_the_interface(name, options):
    p = make_policy(name, 4, **options)
    assert isinstance(p, MixturePolicy)
    assert p.name == name and p.num_domains == 4 and p.steps_observed == 0
    w = p.weights()
    assert w.dtype == np.float64 and w.shape == (4,)
    assert abs(w.sum() - 1.0) < 1e-12
    p.observe(0, [1, 2, 0, 5], [3.0, 2.0, np.nan, 4.0])
    assert p.steps_observed == 1
    assert p.diagnostics() == {}  # nothing fitted yet
    json.dumps(p.options)  # JSON-able
    # The resolved options rebuild an equivalent policy.
    q = make_policy(name, 4, **p.options)
    assert q.options == p.options
    assert np.array_equal(q.weights(), make_policy(name, 4, **options).weights())


def test_uniform():
    p = make_policy("uniform", 5)
    for t in range(3):
        assert np.array_equal(p.weights(), np.full(5, 0.2))
        p.observe(t, [5, 0, 0, 0, 0], [1.0, np.nan, np.nan, np.nan, np.nan])
    assert p.options == {}


def test_natural_from_token_counts_or_prior():
    p = make_policy("natural", 3, token_counts=[100, 300, 600])
    assert np.allclose(p.weights(), [0.1, 0.3, 0.6])
    assert p.options == {"prior": p.weights().tolist()}
    q = make_policy("natural", 3, prior=[0.5, 0.25, 0.25])
    assert np.array_equal(q.weights(), [0.5, 0.25, 0.25])
    q.observe(0, [0, 0, 8], [np.nan, np.nan, 2.0])
    assert np.array_equal(q.weights(), [0.5, 0.25, 0.25])


def test_fixed():
    p = make_policy("fixed", 3, weights=np.array([0.7, 0.2, 0.1]))
    assert np.array_equal(p.weights(), [0.7, 0.2, 0.1])
    assert p.options == {"weights": [0.7, 0.2, 0.1]}


def test_weights_returns_a_copy():
    for name, opts in [("uniform", {}), ("ado", {"warmup_steps": 3})]:
        p = make_policy(name, 3, **opts)
        w = p.weights()
        w[:] = 0
        assert abs(p.weights().sum() - 1) < 1e-12


@pytest.mark.parametrize(
    "name, options",
    [
        ("uniform", {}),
        ("natural", {"prior": [0.2, 0.8]}),
        ("fixed", {"weights": [0.2, 0.8]}),
    ],
)
def test_baseline_state_round_trip(name, options):
    p = make_policy(name, 2, **options)
    for t in range(4):
        p.observe(t, [1, 1], [1.0, 2.0])
    state = pickle.loads(pickle.dumps(p.state_dict()))
    q = load_policy(state)
    assert q.steps_observed == 4 and np.array_equal(q.weights(), p.weights())
    r = make_policy(name, 2, **options)
    r.load_state_dict(state)
    assert r.steps_observed == 4


# -- validation ------------------------------------------------------------------------

ERRORS = [
    # (name, K, options, message regex)
    ("ado", 3, {"gamma1": 1.5}, r"gamma1=1\.5 is out of range: allowed a number in \(0, 1\]"),
    ("ado", 3, {"gamma1": 0}, r"gamma1=0 is out of range: allowed a number in \(0, 1\]"),
    ("ado", 3, {"gamma2": 1.01}, r"gamma2=1\.01 is out of range: allowed a number in \(0, 1\]"),
    ("ado", 3, {"gamma2": -0.1}, r"gamma2=-0\.1 is out of range: allowed a number in \(0, 1\]"),
    ("ado", 3, {"s": -0.5}, r"s=-0\.5 is out of range: allowed a number >= 0"),
    ("ado", 3, {"delta_min": -0.01}, r"delta_min=-0\.01 is out of range: allowed a number in \[0, 1\)"),
    ("ado", 4, {"delta_min": 0.25}, r"delta_min=0\.25 is out of range: allowed \[0, 0\.25\)"),
    ("ado", 3, {"warmup_steps": -1}, r"warmup_steps=-1 is out of range: allowed an integer >= 0"),
    ("ado", 3, {"warmup_steps": 2.5}, r"warmup_steps=2\.5 is not an integer"),
    ("ado", 3, {"ignore_steps": -3}, r"ignore_steps=-3 is out of range: allowed an integer >= 0"),
    ("ado", 3, {"update_interval": 0}, r"update_interval=0 is out of range: allowed an integer >= 1"),
    ("ado", 3, {"subsample": 0}, r"subsample=0 is out of range: allowed an integer >= 1"),
    ("ado", 3, {"min_fit_points": 2}, r"min_fit_points=2 is out of range: allowed an integer >= 3"),
    ("ado", 3, {"seq_len": 0}, r"seq_len=0 is out of range"),
    ("ado", 3, {"gamma1": "0.1"}, r"gamma1='0\.1' is not a number"),
    ("ado", 3, {"gamma1": True}, r"gamma1=True is not a number"),
    ("ado", 3, {"smoothing": 1}, r"smoothing=1 is not allowed: allowed true or false"),
    ("ado", 3, {"smoothing_window": 100}, r"smoothing_window=100 is not allowed"),
    ("ado", 3, {"count_mode": "tokens"}, r"count_mode='tokens' is not allowed: allowed one of 'same_step_size', 'own'"),
    ("ado", 3, {"count_unit": "x"}, r"count_unit='x' is not allowed: allowed one of 'tokens_1024', 'sequences'"),
    ("ado", 3, {"clip": "both"}, r"clip='both' is not allowed: allowed one of 'rho', 'pi'"),
    ("ado", 3, {"credit": "x"}, r"credit='x' is not allowed: allowed one of 'sampled', 'policy'"),
    ("ado", 3, {"pibar_clock": "x"}, r"pibar_clock='x' is not allowed"),
    ("ado", 3, {"lambda_form": "x"}, r"lambda_form='x' is not allowed"),
    ("ado", 3, {"alpha_min": 0.9}, r"alpha_min=0\.9 is out of range: allowed \(-inf, 0\.8\)"),
    ("ado", 3, {"huber_delta": 0}, r"huber_delta=0 is out of range: allowed a number > 0"),
    ("ado", 3, {"prior": [0.5, 0.5]}, r"prior=\[0\.5, 0\.5\] is not allowed: allowed 3 non-negative numbers summing to 1"),
    ("ado", 3, {"prior": [0.5, 0.6, -0.1]}, r"prior=\[0\.5, 0\.6, -0\.1\] is not allowed"),
    ("ado", 3, {"prior": [0.5, 0.5, 0.1]}, r"prior=\[0\.5, 0\.5, 0\.1\] is not allowed: .* sums to 1\.1"),
    ("ado", 3, {"prior": [0.5, 0.5, np.nan]}, r"prior=\[0\.5, 0\.5, nan\] is not allowed"),
    ("ado", 3, {"prior": "abc"}, r"prior='abc' is not allowed"),
    ("ado", 3, {"token_counts": [0, 0, 0]}, r"token_counts=\[0, 0, 0\] is not allowed: allowed 3 non-negative numbers, not all zero"),
    ("ado", 3, {"token_counts": [1, -1, 3]}, r"token_counts=\[1, -1, 3\] is not allowed"),
    ("ado", 3, {"prior": [0.2, 0.3, 0.5], "token_counts": [1, 1, 1]}, r"not both"),
    ("ado", 3, {"gama1": 0.1}, r"unknown option 'gama1' for policy 'ado': allowed .*gamma1"),
    ("natural", 3, {}, r"policy 'natural' needs prior= .* or token_counts="),
    ("natural", 3, {"weights": [0.2, 0.3, 0.5]}, r"unknown option 'weights' for policy 'natural': allowed prior, token_counts"),
    ("fixed", 3, {}, r"policy 'fixed' needs weights="),
    ("fixed", 3, {"weights": [0.2, 0.3, 0.6]}, r"weights=\[0\.2, 0\.3, 0\.6\] is not allowed"),
    ("fixed", 3, {"weights": [0.2, 0.8]}, r"weights=\[0\.2, 0\.8\] is not allowed: allowed 3 non-negative"),
    ("uniform", 3, {"prior": [0.2, 0.3, 0.5]}, r"unknown option 'prior' for policy 'uniform': allowed none"),
    ("uniform", 1, {}, r"num_domains=1 is out of range: allowed \[2, inf\)"),
    ("ado", 1, {}, r"num_domains=1 is out of range: allowed \[2, inf\)"),
    ("bandit", 3, {}, r"unknown policy .bandit.: allowed ado, .*fixed, .*uniform"),
]  # fmt: skip


@pytest.mark.parametrize("name, k, options, message", ERRORS)
def test_invalid_options_raise_with_a_clear_message(name, k, options, message):
    with pytest.raises(ValueError, match=message):
        make_policy(name, k, **options)


def test_sum_tolerance_is_1e_6():
    make_policy("fixed", 2, weights=[0.5, 0.5 + 9e-7])
    with pytest.raises(ValueError):
        make_policy("fixed", 2, weights=[0.5, 0.5 + 2e-6])


@pytest.mark.parametrize("name", ["uniform", "natural", "fixed", "ado"])
def test_bad_observations_raise(name):
    opts = {"natural": {"prior": [0.5, 0.5, 0.0]}, "fixed": {"weights": [0.2, 0.3, 0.5]}}
    p = make_policy(name, 3, **opts.get(name, {}))
    with pytest.raises(ValueError, match=r"counts has shape \(2,\): expected \(3,\)"):
        p.observe(0, [1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"losses has shape \(3, 1\): expected \(3,\)"):
        p.observe(0, [1, 2, 3], [[1.0], [2.0], [3.0]])
    with pytest.raises(
        ValueError,
        match=r"counts=\[1\.0, -2\.0, 3\.0\] is not allowed: allowed finite numbers >= 0",
    ):
        p.observe(0, [1, -2, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"counts=.* is not allowed"):
        p.observe(0, [1, np.nan, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"step=1 is out of order: expected step 0"):
        p.observe(1, [1, 2, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"step=-1 is out of range"):
        p.observe(-1, [1, 2, 3], [1.0, 2.0, 3.0])
    assert p.steps_observed == 0  # nothing was recorded
    p.observe(0, [1, 2, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"step=0 is out of order: expected step 1"):
        p.observe(0, [1, 2, 3], [1.0, 2.0, 3.0])


def test_load_state_checks_policy_k_and_options():
    a = make_policy("ado", 3, gamma1=0.2)
    with pytest.raises(ValueError, match="state is for policy 'ado', not 'uniform'"):
        make_policy("uniform", 3).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="num_domains=3"):
        make_policy("ado", 4).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match=r"different options: gamma1=0\.2 \(this policy: 0\.1\)"):
        make_policy("ado", 3).load_state_dict(a.state_dict())
    assert load_policy(a.state_dict()).options["gamma1"] == 0.2


# -- floor_clip ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1e3, allow_subnormal=False), min_size=2, max_size=30),
    st.floats(0, 0.999),
)
def test_floor_clip_floors_exactly_and_keeps_ratios(raw, frac):
    p = np.asarray(raw, dtype=np.float64)
    if not p.sum() > 0:
        p = np.ones_like(p)
    p = p / p.sum()
    floor = frac / p.size
    q = floor_clip(p, floor)
    assert abs(q.sum() - 1.0) < 1e-12
    assert q.min() >= floor
    above = q > floor
    if above.sum() >= 2:  # untouched entries keep their ratios
        r = q[above] / p[above]
        assert np.allclose(r, r[0], rtol=1e-9)
    if p.min() >= floor:
        assert q is p


# -- invariants on random traces -----------------------------------------------------


@st.composite
def traces(draw):
    k = draw(st.integers(2, 5))
    steps = draw(st.integers(1, 90))
    counts = draw(
        st.lists(
            st.lists(st.integers(0, 6), min_size=k, max_size=k), min_size=steps, max_size=steps
        )
    )
    loss_value = st.one_of(
        st.floats(1e-3, 20.0),
        st.just(np.nan),
        st.just(np.inf),
        st.floats(1e-12, 1e12),
    )
    losses = draw(
        st.lists(st.lists(loss_value, min_size=k, max_size=k), min_size=steps, max_size=steps)
    )
    options = {
        "warmup_steps": draw(st.integers(0, 30)),
        "ignore_steps": draw(st.integers(0, 20)),
        "subsample": draw(st.integers(1, 3)),
        "update_interval": draw(st.integers(15, 60)),
        "min_fit_points": draw(st.integers(3, 12)),
        "delta_min": draw(st.sampled_from([0.0, 0.01, 0.9 / k])),
        "gamma1": draw(st.sampled_from([0.1, 1.0])),
        "gamma2": draw(st.sampled_from([0.1, 1.0])),
        "s": draw(st.sampled_from([0.0, 0.5, 2.0])),
        "clip": draw(st.sampled_from(["rho", "pi"])),
        "credit": draw(st.sampled_from(["sampled", "policy"])),
        "count_mode": draw(st.sampled_from(["same_step_size", "own"])),
        "pibar_clock": draw(st.sampled_from(["global_step", "since_first_fit"])),
        "lambda_form": draw(st.sampled_from(["h^s", "(h(1-h))^s"])),
        "alpha_floor": draw(st.sampled_from([0.0, 0.05])),
    }
    prior = draw(st.one_of(st.none(), st.lists(st.floats(0, 10), min_size=k, max_size=k)))
    if prior is not None and sum(prior) > 0:
        options["token_counts"] = prior
    return k, np.array(counts, dtype=float), np.array(losses, dtype=float), options


#: Found by Hypothesis in a fresh CI run (issue 13, item 7): domain 2 holds all the prior mass
#: and its law is NaN; the others' speeds are subnormal, so the fallback's free / vsum overflowed
#: and the weights became [inf, 0, nan] for good.
NAN_FALLBACK_TRACE = (
    3,
    np.array([[0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=float),
    np.array(
        [
            [np.nan, 1, 7],
            [np.nan, np.nan, 1],
            [np.nan, 1, np.nan],
            [np.nan, np.nan, 1],
            [1, np.nan, np.nan],
            [np.nan, 1, 1],
        ],
        dtype=float,
    ),
    {
        "token_counts": [2.2e-311, 0, 1],
        "delta_min": 0.0,
        "warmup_steps": 0,
        "ignore_steps": 0,
        "subsample": 1,
        "update_interval": 15,
        "min_fit_points": 5,
        "s": 0.5,
        "gamma1": 1.0,
        "gamma2": 0.1,
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces())
@example(NAN_FALLBACK_TRACE)
def test_weights_are_a_distribution_with_the_floor_after_warmup(trace):
    k, counts, losses, options = trace
    p = make_policy("ado", k, **options)
    warmup, d = options["warmup_steps"], options["delta_min"]
    for t in range(counts.shape[0]):
        w = p.weights()
        assert w.shape == (k,) and np.isfinite(w).all()
        assert abs(w.sum() - 1.0) <= 1e-9
        assert (w >= 0).all()
        if t >= warmup:
            assert w.min() >= d
        else:
            assert np.array_equal(w, np.asarray(p.options["prior"]))
        p.observe(t, counts[t], np.where(counts[t] > 0, losses[t], np.nan))
    laws = p.fitted_laws()
    if laws is not None:
        assert laws.shape == (k, 3)
        assert p.last_fit_step is not None


def test_prior_below_delta_min_is_floored_after_warmup():
    p = make_policy("ado", 3, prior=[0.995, 0.004, 0.001], warmup_steps=2, delta_min=0.05)
    assert np.array_equal(p.weights(), [0.995, 0.004, 0.001])
    for t in range(4):
        p.observe(t, [8, 0, 0], [3.0, np.nan, np.nan])
    w = p.weights()
    assert w.min() >= 0.05 and abs(w.sum() - 1) < 1e-12


def test_options_hold_every_ado_default():
    p = make_policy("ado", 3)
    assert set(p.options) == {"prior", *ADO_DEFAULTS}
    for key, value in ADO_DEFAULTS.items():
        assert p.options[key] == value
    assert p.options["prior"] == [1 / 3] * 3
    assert re.search(r"\bh\^s\b", p.options["lambda_form"])


def test_fallback_with_subnormal_speeds_stays_finite():
    # Regression (found by Hypothesis): domains with usable but subnormal speeds made
    # free / vsum overflow to inf, and the weights became [inf, nan, ...] for good.
    p = make_policy("ado", 3, token_counts=[2.2e-311, 0, 1], delta_min=0)
    rho = p._fallback(np.array([1e-320, np.nan, 1e-321]))
    assert np.isfinite(rho).all() and abs(rho.sum() - 1.0) < 1e-12
    assert rho[0] > rho[2] > 0 and rho[1] == 0.0  # domain 1 keeps its prior share, 0
