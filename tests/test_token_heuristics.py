"""The token-count heuristics: ``temperature`` (p ~ n^(1/T)) and ``unimax`` (Chung et al. 2023,
Algorithm 1), against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from ado_ray.policies import complete_options, make_policy, policy_class
from ado_ray.policies.unimax import unimax_allocation

# -- temperature ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts", [[4, 3, 2, 1], [1e9, 3.3e7, 12345, 7], [0.1, 0.2, 0.3, 0.4], [5, 0, 5, 1]]
)
def test_temperature_one_is_natural_bitwise(counts):
    natural = make_policy("natural", 4, token_counts=counts).weights()
    temp = make_policy("temperature", 4, token_counts=counts, temperature=1.0).weights()
    assert temp.tobytes() == natural.tobytes()
    prior = natural.tolist()
    assert (
        make_policy("temperature", 4, prior=prior).weights().tobytes()
        == make_policy("natural", 4, prior=prior).weights().tobytes()
    )


def test_temperature_known_values():
    # n = [1, 4, 16]: T = 2 takes square roots, [1, 2, 4] / 7; T = 1/2 squares, [1, 16, 256] / 273.
    w = make_policy("temperature", 3, token_counts=[1, 4, 16], temperature=2.0).weights()
    np.testing.assert_allclose(w, np.array([1, 2, 4]) / 7, rtol=0, atol=1e-15)
    w = make_policy("temperature", 3, token_counts=[1, 4, 16], temperature=0.5).weights()
    np.testing.assert_allclose(w, np.array([1, 16, 256]) / 273, rtol=0, atol=1e-15)
    # XLM-R's alpha = 0.3 is T = 1/0.3: q ~ n^0.3.
    n = np.array([1e6, 1e4, 1e2])
    w = make_policy("temperature", 3, token_counts=n.tolist(), temperature=1 / 0.3).weights()
    expect = n**0.3 / (n**0.3).sum()
    np.testing.assert_allclose(w, expect, rtol=1e-13)
    # 1e6**0.3 = 10**1.8 = 63.09573, 1e4**0.3 = 10**1.2 = 15.84893, 1e2**0.3 = 10**0.6 = 3.98107;
    # their sum is 82.92574.
    np.testing.assert_allclose(w, [0.7608703, 0.1911220, 0.0480077], atol=5e-8)


def test_temperature_tends_to_uniform_as_t_grows():
    counts = [1e9, 1e6, 1e3, 1.0]
    spreads = []
    for t in (1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 1e3, 1e6):
        w = make_policy("temperature", 4, token_counts=counts, temperature=t).weights()
        assert abs(w.sum() - 1.0) < 1e-12 and (np.diff(w) < 0).all()  # order kept
        spreads.append(w.max() - w.min())
    assert all(a > b for a, b in zip(spreads, spreads[1:]))  # strictly flatter as T grows
    np.testing.assert_allclose(w, 0.25, atol=1e-5)  # T = 1e6


def test_temperature_small_t_and_empty_domains():
    # T = 0.01 raises counts to the 100th power: computed in log space, no overflow or 0/0.
    w = make_policy("temperature", 3, token_counts=[1.0, 1e6, 2e6], temperature=0.01).weights()
    assert np.isfinite(w).all()
    np.testing.assert_allclose(w, [0.0, 2.0**-100 / (1 + 2.0**-100), 1 / (1 + 2.0**-100)])
    w = make_policy("temperature", 3, token_counts=[0, 1, 3], temperature=2.0).weights()
    assert w[0] == 0.0
    np.testing.assert_allclose(w[1:], np.array([1, 3**0.5]) / (1 + 3**0.5), rtol=1e-15)


def test_temperature_floor():
    # [0.01, 0.99] floored at 0.1: the rest keeps its ratios (one entry), so [0.1, 0.9].
    w = make_policy("temperature", 2, token_counts=[1, 99], delta_min=0.1).weights()
    np.testing.assert_allclose(w, [0.1, 0.9], rtol=0, atol=1e-15)
    w = make_policy("temperature", 3, token_counts=[1, 1, 98], delta_min=0.05).weights()
    assert w.min() >= 0.05 and abs(w.sum() - 1) < 1e-15
    np.testing.assert_allclose(w, [0.05, 0.05, 0.9], atol=1e-15)
    # A floor of 1/K or more can only be uniform.
    w = make_policy("temperature", 4, token_counts=[1, 2, 3, 4], delta_min=0.5).weights()
    assert w.tolist() == [0.25] * 4


def test_temperature_is_constant_and_round_trips():
    p = make_policy("temperature", 3, token_counts=[3, 2, 1], temperature=3.0)
    w0 = p.weights()
    p.observe(0, [1, 1, 1], [2.0, np.nan, np.inf])
    assert p.weights().tobytes() == w0.tobytes() and p.steps_observed == 1
    q = policy_class("temperature")(3, **p.options)
    assert q.weights().tobytes() == w0.tobytes()


def test_temperature_errors_name_the_option():
    with pytest.raises(ValueError, match="prior=.*token_counts="):
        make_policy("temperature", 3)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"temperature=.* is out of range"):
            make_policy("temperature", 3, token_counts=[1, 2, 3], temperature=bad)
    with pytest.raises(ValueError, match="delta_min="):
        make_policy("temperature", 3, token_counts=[1, 2, 3], delta_min=-0.1)
    with pytest.raises(ValueError, match="token_counts="):
        make_policy("temperature", 3, token_counts=[1, 2])


# -- unimax -----------------------------------------------------------------------------------


def unimax(sizes, budget, max_epochs=1.0):
    return make_policy(
        "unimax", len(sizes), total_tokens=budget, domain_tokens=sizes, max_epochs=max_epochs
    )


def test_unimax_hand_computed():
    # Sizes [10, 100, 1000], budget 600, at most 1 epoch. Smallest first:
    #   10:   600 / 3 = 200 > cap 10   -> 10,  budget 590
    #   100:  590 / 2 = 295 > cap 100  -> 100, budget 490
    #   1000: 490 / 1 = 490 <= 1000    -> 490
    w = unimax([10, 100, 1000], 600).weights()
    np.testing.assert_allclose(w, np.array([10, 100, 490]) / 600, rtol=0, atol=1e-15)
    # Three epochs allowed: caps [30, 300, 3000]:
    #   30: 200 > 30 -> 30, budget 570;  300: 285 <= 300 -> 285;  3000: 285 -> 285
    w = unimax([10, 100, 1000], 600, max_epochs=3).weights()
    np.testing.assert_allclose(w, np.array([30, 285, 285]) / 600, rtol=0, atol=1e-15)
    # The input order does not matter.
    w = unimax([1000, 10, 100], 600).weights()
    np.testing.assert_allclose(w, np.array([490, 10, 100]) / 600, rtol=0, atol=1e-15)
    # Plenty of data everywhere: uniform.
    assert unimax([1000, 2000, 5000], 600).weights().tolist() == [1 / 3] * 3


def test_unimax_budget_beyond_capacity_is_proportional_to_caps():
    # Capacity at 1 epoch is 1110 < 5000: every domain capped, weights ~ caps ~ sizes.
    p = unimax([10, 100, 1000], 5000)
    np.testing.assert_allclose(p.weights(), np.array([10, 100, 1000]) / 1110, rtol=1e-15)
    d = p.diagnostics()
    np.testing.assert_allclose(d["unimax_epochs"], 5000 / 1110, rtol=1e-14)
    np.testing.assert_allclose(d["unimax_tokens"], np.array([10, 100, 1000]) * 5000 / 1110)
    # Exactly at capacity: every domain takes exactly max_epochs passes.
    p = unimax([10, 100, 1000], 2220, max_epochs=2.0)
    np.testing.assert_allclose(p.diagnostics()["unimax_epochs"], 2.0, rtol=1e-14)


@pytest.mark.parametrize("seed", range(20))
def test_unimax_respects_max_epochs_and_is_max_min_fair(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    sizes = np.floor(10 ** rng.uniform(0, 6, size=k))
    max_epochs = float(rng.choice([0.5, 1.0, 2.0, 4.0]))
    budget = int(rng.uniform(0.05, 1.0) * max_epochs * sizes.sum()) + 1
    u = unimax_allocation(sizes, budget, max_epochs)
    assert abs(u.sum() - budget) <= 1e-9 * budget  # the whole budget is used
    assert (u <= max_epochs * sizes * (1 + 1e-12)).all()  # no domain beyond max_epochs
    capped = u >= max_epochs * sizes * (1 - 1e-12)
    free = ~capped
    if free.any():  # uncapped domains share equally, and at least as much as any capped one
        assert np.ptp(u[free]) <= 1e-9 * budget
        assert (u[capped] <= u[free].min() * (1 + 1e-12)).all()
        # ... and they are the largest domains
        assert sizes[free].min() >= sizes[capped].max(initial=0)
    w = unimax(sizes.tolist(), budget, max_epochs).weights()
    np.testing.assert_allclose(w, u / budget, rtol=1e-12)
    assert (w * budget <= max_epochs * sizes * (1 + 1e-9)).all()


def test_unimax_empty_domain_gets_nothing():
    w = unimax([0, 100, 1000], 600).weights()
    np.testing.assert_allclose(w, np.array([0, 100, 500]) / 600, rtol=0, atol=1e-15)
    assert unimax([0, 100, 1000], 600).diagnostics()["unimax_epochs"][0] == 0.0


def test_unimax_from_the_runner_and_its_declarations():
    cls = policy_class("unimax")
    assert set(cls.user_options()) == {"max_epochs"}  # the budget is the runner's business
    opts = complete_options(
        "unimax", {"max_epochs": 3.0}, token_counts=[10, 100, 1000], seq_len=8, total_tokens=600
    )
    assert opts["total_tokens"] == 600 and opts["domain_tokens"] == [10.0, 100.0, 1000.0]
    p = make_policy("unimax", 3, **opts)
    np.testing.assert_allclose(p.weights(), np.array([30, 285, 285]) / 600, atol=1e-15)
    q = make_policy("unimax", 3, **p.options)  # options rebuild the same policy
    assert q.weights().tobytes() == p.weights().tobytes()
    p.observe(0, [1, 2, 3], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(p.weights(), np.array([30, 285, 285]) / 600, atol=1e-15)


def test_unimax_errors():
    with pytest.raises(ValueError, match="needs total_tokens= and domain_tokens="):
        make_policy("unimax", 3)
    with pytest.raises(ValueError, match="needs total_tokens="):
        make_policy("unimax", 3, domain_tokens=[1, 2, 3])
    with pytest.raises(ValueError, match="needs domain_tokens="):
        make_policy("unimax", 3, total_tokens=100)
    with pytest.raises(ValueError, match="domain_tokens has 2 entries: expected 3"):
        make_policy("unimax", 3, total_tokens=100, domain_tokens=[1, 2])
    with pytest.raises(ValueError, match="domain_tokens=.*not all zero"):
        make_policy("unimax", 3, total_tokens=100, domain_tokens=[0, 0, 0])
    with pytest.raises(ValueError, match="domain_tokens="):
        make_policy("unimax", 3, total_tokens=100, domain_tokens=[1, -2, 3])
    with pytest.raises(ValueError, match="total_tokens="):
        make_policy("unimax", 3, total_tokens=0, domain_tokens=[1, 2, 3])
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="max_epochs="):
            unimax([1, 2, 3], 100, max_epochs=bad)
    # A bad max_epochs is named even when the budget is missing.
    with pytest.raises(ValueError, match="max_epochs="):
        make_policy("unimax", 3, max_epochs=-1.0)
