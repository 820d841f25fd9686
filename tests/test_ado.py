"""ADO's behaviour: warmup, refits, credit, forecasts, state round trips."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from ado_ray.policies import AdoPolicy, load_policy, make_policy
from ado_ray.policies import ado as ado_module

# Small-run options: short warmup, fit on every step's loss.
FAST = {
    "warmup_steps": 50,
    "ignore_steps": 20,
    "subsample": 1,
    "update_interval": 100,
    "min_fit_points": 20,
}


def _laws_loss(laws: np.ndarray, n: float, rng=None, noise: float = 0.0) -> np.ndarray:
    loss = laws[:, 0] + laws[:, 1] * n ** -laws[:, 2]
    if rng is not None and noise:
        loss = loss * np.exp(rng.normal(0.0, noise, loss.size))
    return loss


def _run(policy, laws, steps, *, batch=32, seed=0, noise=0.0, constant=None):
    """Closed loop: sample the batch from the policy's weights, losses from laws
    in n = total sequences so far (domains in ``constant`` are flat noise)."""
    rng = np.random.default_rng(seed)
    for t in range(policy.steps_observed, steps):
        w = policy.weights()
        counts = rng.multinomial(batch, w).astype(float)
        loss = _laws_loss(laws, (t + 1) * batch, rng, noise)
        for j, level in (constant or {}).items():
            loss[j] = level * np.exp(rng.normal(0.0, 0.02))
        policy.observe(t, counts, np.where(counts > 0, loss, np.nan))
    assert policy.steps_observed == steps
    return policy.weights()


def _observations(k, steps, seed=1, batch=16):
    """Open-loop observations (independent of any policy), with missing domains."""
    rng = np.random.default_rng(seed)
    laws = np.column_stack(
        [rng.uniform(1.7, 3.0, k), rng.uniform(5, 40, k), rng.uniform(0.15, 0.6, k)]
    )
    probs = rng.dirichlet(np.ones(k))
    counts = rng.multinomial(batch, probs, size=steps).astype(float)
    loss = np.array([_laws_loss(laws, (t + 1) * batch, rng, 0.02) for t in range(steps)])
    return counts, np.where(counts > 0, loss, np.nan)


# -- warmup and schedule -----------------------------------------------------------


def test_warmup_weights_are_the_prior_bitwise():
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    p = make_policy("ado", 4, prior=prior, warmup_steps=30)
    counts, losses = _observations(4, 30)
    for t in range(30):
        w = p.weights()
        assert w.tobytes() == prior.tobytes()
        p.observe(t, counts[t], losses[t])
    assert p.weights().tobytes() == prior.tobytes()  # no fit yet: the (floored) prior
    # token_counts: the normalised counts, exactly.
    q = make_policy("ado", 3, token_counts=[3, 1, 6], warmup_steps=5)
    assert q.weights().tobytes() == (np.array([3.0, 1.0, 6.0]) / 10.0).tobytes()


def test_default_prior_is_uniform_and_defaults_are_the_authors():
    p = make_policy("ado", 4)
    assert np.array_equal(p.weights(), np.full(4, 0.25))
    o = p.options
    assert (o["gamma1"], o["gamma2"], o["s"], o["delta_min"]) == (0.1, 0.1, 0.5, 0.01)
    assert (o["update_interval"], o["ignore_steps"], o["subsample"]) == (1000, 1000, 10)
    assert (o["warmup_steps"], o["seq_len"], o["min_fit_points"]) == (500, 1024, 20)
    assert (o["count_mode"], o["count_unit"], o["clip"], o["credit"]) == (
        "same_step_size",
        "tokens_1024",
        "rho",
        "sampled",
    )
    assert (o["alpha_max"], o["alpha_min"], o["log_beta_max"], o["log_eps_min"]) == (
        0.8,
        0.001,
        6.5,
        0.5,
    )
    assert (o["alpha_floor"], o["pibar_clock"], o["smoothing"]) == (0.05, "global_step", True)


def test_refit_schedule_and_last_fit_step():
    # Fit window from step 20 needs 20 points: 40 rows, i.e. observe(step=39), but
    # warmup ends at 50 so the first fit is at observe(49), then every 100 steps.
    p = make_policy("ado", 3, **FAST)
    counts, losses = _observations(3, 400)
    fits = []
    for t in range(400):
        p.observe(t, counts[t], losses[t])
        if p.last_fit_step == t:
            fits.append(t)
    assert fits == [49, 149, 249, 349]
    assert p.num_fits == 4
    assert p.fitted_laws().shape == (3, 3)

    # The minimum number of points delays the first fit past warmup.
    q = make_policy("ado", 3, **{**FAST, "warmup_steps": 0, "min_fit_points": 30})
    for t in range(60):
        q.observe(t, counts[t], losses[t])
        if t < 49:
            assert q.last_fit_step is None and q.fitted_laws() is None
    assert q.last_fit_step == 49


def test_defaults_first_fit_at_step_1190():
    p = make_policy("ado", 2)
    counts, losses = _observations(2, 1200, batch=8)
    for t in range(1200):
        p.observe(t, counts[t], losses[t])
        if t < 1190:
            assert p.last_fit_step is None
    assert p.last_fit_step == 1190  # 20 points: steps 1000, 1010, ..., 1190


def test_fitted_laws_recover_noiseless_traces():
    laws = np.array([[1.0, 8.0, 0.3], [0.6, 3.0, 0.4]])
    p = make_policy(
        "ado",
        2,
        **{**FAST, "update_interval": 10**6, "warmup_steps": 400},
        smoothing=False,
        log_eps_min=-3.0,
    )
    _run(p, laws, 401)
    got = p.fitted_laws()
    assert np.allclose(got[:, 0], laws[:, 0], rtol=0.01)
    assert np.allclose(got[:, 2], laws[:, 2], atol=0.02)


def test_count_unit_and_seq_len():
    """n in 1024-token units: seq_len 2048 doubles n, which scales beta by 2**alpha."""
    laws = np.array([[2.0, 20.0, 0.3], [2.5, 10.0, 0.4]])
    common = {**FAST, "smoothing": False, "update_interval": 10**6, "warmup_steps": 300}
    fits = {}
    for unit, seq_len in [("tokens_1024", 1024), ("tokens_1024", 2048), ("sequences", 2048)]:
        p = make_policy("ado", 2, **common, count_unit=unit, seq_len=seq_len)
        _run(p, laws, 301)
        fits[unit, seq_len] = p.fitted_laws()
    base = fits["tokens_1024", 1024]
    double = fits["tokens_1024", 2048]
    assert np.allclose(double[:, [0, 2]], base[:, [0, 2]], rtol=1e-4)
    assert np.allclose(double[:, 1], base[:, 1] * 2 ** base[:, 2], rtol=1e-3)
    assert np.allclose(fits["sequences", 2048], base, rtol=1e-6)


def test_own_count_mode_fits_each_domain_on_its_own_count():
    rng = np.random.default_rng(0)
    probs = np.array([0.7, 0.3])
    laws = np.array([[2.0, 10.0, 0.35], [2.2, 6.0, 0.25]])
    options = {**FAST, "update_interval": 10**6, "warmup_steps": 500}
    p = make_policy("ado", 2, **options, count_mode="own", smoothing=False)
    own = np.zeros(2)
    for t in range(501):
        c = rng.multinomial(64, probs).astype(float)
        own += c
        loss = laws[:, 0] + laws[:, 1] * np.maximum(own, 1) ** -laws[:, 2]
        p.observe(t, c, np.where(c > 0, loss, np.nan))
    got = p.fitted_laws()
    assert np.allclose(got[:, 0], laws[:, 0], rtol=0.01)
    assert np.allclose(got[:, 2], laws[:, 2], atol=0.02)


# -- the policy's answers ----------------------------------------------------------------


def test_flattened_domain_loses_weight_to_a_steep_one():
    # 0: already at its floor (tiny reducible loss); 1: still falling steeply; 2: between.
    laws = np.array([[2.0, 0.5, 0.8], [2.0, 30.0, 0.3], [2.0, 6.0, 0.25]])
    p = make_policy("ado", 3, **FAST)
    w = _run(p, laws, 1500, noise=0.01)
    assert w[1] > 0.6 and w[1] > w[2] > w[0]
    assert w[0] < 0.05  # started at 1/3
    assert p.fitted_laws() is not None


@pytest.mark.parametrize("clock, bound", [("global_step", 0.02), ("since_first_fit", 0.0125)])
def test_constant_loss_domain_settles_near_delta_min(clock, bound):
    laws = np.array([[2.0, 30.0, 0.3], [2.2, 20.0, 0.35], [3.0, 1.0, 0.5]])
    p = make_policy("ado", 3, **FAST, pibar_clock=clock)
    w = _run(p, laws, 2000, noise=0.01, constant={2: 3.0})
    assert 0.01 <= w[2] < bound
    eps, beta, alpha = p.fitted_laws()[2]
    n_end = 2000 * 32
    assert beta * n_end**-alpha < 0.01 * eps  # no reducible loss credited


def test_since_first_fit_clock_leaves_the_prior_faster():
    laws = np.array([[2.0, 0.5, 0.8], [2.0, 30.0, 0.3]])
    out = {}
    for clock in ("global_step", "since_first_fit"):
        p = make_policy("ado", 2, **FAST, pibar_clock=clock)
        out[clock] = _run(p, laws, 300)
    assert out["since_first_fit"][1] > out["global_step"][1] > 0.5


def test_clip_pi_and_credit_policy_switches():
    laws = np.array([[2.0, 0.5, 0.8], [2.0, 30.0, 0.3], [2.0, 6.0, 0.25]])
    for clip in ("rho", "pi"):
        for credit in ("sampled", "policy"):
            p = make_policy("ado", 3, **FAST, clip=clip, credit=credit, prior=[0.98, 0.015, 0.005])
            w = _run(p, laws, 600)
            assert w.min() >= 0.01 and abs(w.sum() - 1) < 1e-12
            assert w[1] > 0.015  # the steep domain gained weight


def test_credit_tracks_sampled_shares_or_the_policy():
    p = make_policy("ado", 2, prior=[0.5, 0.5], gamma1=0.5, warmup_steps=10)
    p.observe(0, [3, 1], [2.0, 2.0])
    assert np.allclose(p._h, [0.5 * 0.5 + 0.5 * 0.75, 0.5 * 0.5 + 0.5 * 0.25])
    p.observe(1, [0, 0], [np.nan, np.nan])  # nothing sampled: h unchanged
    assert np.allclose(p._h, [0.625, 0.375])
    q = make_policy("ado", 2, prior=[0.5, 0.5], gamma1=0.5, warmup_steps=10, credit="policy")
    q.observe(0, [3, 1], [2.0, 2.0])
    assert np.allclose(q._h, [0.5, 0.5])  # pi was the prior


def test_missing_domains_take_batch_mean_then_repeat():
    p = make_policy("ado", 3, warmup_steps=5)
    p.observe(0, [1, 3, 0], [2.0, 4.0, np.nan])
    p.observe(1, [2, 0, 0], [5.0, np.nan, np.nan])
    p.observe(2, [0, 0, 1], [np.nan, np.nan, 7.0])
    p.observe(3, [1, 1, 1], [1.0, np.inf, 6.0])  # a non-finite loss counts as missing
    rows = p.state_dict()["losses"]
    assert np.array_equal(rows[0], [2.0, 4.0, 3.5])  # (1*2 + 3*4) / 4
    assert np.array_equal(rows[1], [5.0, 4.0, 3.5])
    assert np.array_equal(rows[2], [5.0, 4.0, 7.0])
    assert np.array_equal(rows[3], [1.0, 4.0, 6.0])
    # No domain present and no history yet: NaN rows, skipped by the fit.
    q = make_policy("ado", 2, **{**FAST, "min_fit_points": 3, "warmup_steps": 0})
    q.observe(0, [0, 0], [np.nan, np.nan])
    assert np.isnan(q.state_dict()["losses"][0]).all()


def test_a_failing_refit_warns_and_keeps_the_previous_laws(monkeypatch):
    p = make_policy("ado", 3, **FAST)
    counts, losses = _observations(3, 300)
    for t in range(60):
        p.observe(t, counts[t], losses[t])
    before = p.fitted_laws()
    assert before is not None

    def boom(*args, **kwargs):
        raise FloatingPointError("synthetic failure")

    monkeypatch.setattr(ado_module, "fit_scaling_laws", boom)
    with pytest.warns(RuntimeWarning, match="refit at step 149 failed"):
        for t in range(60, 160):
            p.observe(t, counts[t], losses[t])
    assert np.array_equal(p.fitted_laws(), before) and p.last_fit_step == 49
    w = p.weights()
    assert np.isfinite(w).all() and abs(w.sum() - 1) < 1e-9


def test_non_finite_law_falls_back_to_the_prior_share():
    p = make_policy("ado", 3, prior=[0.2, 0.3, 0.5], warmup_steps=0, delta_min=0.0, gamma2=1.0)
    p._log_params = np.array([[1.0, 0.7, 0.3], [np.nan, np.nan, np.nan], [1.0, 0.7, 0.3]])
    p._set_law_cache()
    p.observe(0, [4, 4, 4], [3.0, 3.0, 3.0])
    w = p.weights()
    assert w[1] == pytest.approx(0.3)  # its prior share
    h = 0.9 * np.array([0.2, 0.3, 0.5]) + 0.1 / 3  # credit after one even batch
    assert w[0] / w[2] == pytest.approx((0.2 / 0.5) * np.sqrt(h[0] / h[2]), rel=1e-9)


def test_lambda_form_authors_code():
    p = make_policy("ado", 2, lambda_form="(h(1-h))^s", s=1.0, prior=[0.5, 0.5])
    assert p.options["lambda_form"] == "(h(1-h))^s"


# -- state -------------------------------------------------------------------------------


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str, np.ndarray))


@pytest.mark.parametrize("split", [0, 49, 50, 149, 233])
def test_restored_policy_gives_bit_identical_weights(split):
    options = {**FAST, "subsample": 2, "update_interval": 50, "min_fit_points": 10}
    counts, losses = _observations(4, 360, seed=7)
    a = make_policy("ado", 4, token_counts=[5, 1, 1, 3], **options)
    for t in range(split):
        a.observe(t, counts[t], losses[t])
    state = a.state_dict()
    assert _plain(state)
    b = load_policy(pickle.loads(pickle.dumps(state)))
    c = make_policy("ado", 4, token_counts=[5, 1, 1, 3], **options)
    c.load_state_dict(state)
    assert b.weights().tobytes() == a.weights().tobytes()
    for t in range(split, 360):
        for p in (a, b, c):
            p.observe(t, counts[t], losses[t])
        wa = a.weights().tobytes()
        assert b.weights().tobytes() == wa and c.weights().tobytes() == wa
        assert a.last_fit_step == b.last_fit_step == c.last_fit_step
    assert a.num_fits >= 5
    assert a.fitted_laws().tobytes() == b.fitted_laws().tobytes()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], np.ndarray):
            assert sa[key].tobytes() == sb[key].tobytes(), key
        else:
            assert sa[key] == sb[key], key


def test_state_is_a_snapshot():
    p = make_policy("ado", 2, **FAST)
    counts, losses = _observations(2, 80)
    for t in range(60):
        p.observe(t, counts[t], losses[t])
    state = p.state_dict()
    copy = pickle.loads(pickle.dumps(state))
    for t in range(60, 80):
        p.observe(t, counts[t], losses[t])
    for key, value in copy.items():
        if isinstance(value, np.ndarray):
            assert value.tobytes() == state[key].tobytes(), key


def test_buffers_grow_past_their_first_capacity():
    p = make_policy("ado", 2, warmup_steps=2100, ignore_steps=1500)
    counts, losses = _observations(2, 2300)
    for t in range(2050):
        p.observe(t, counts[t], losses[t])
    state = p.state_dict()
    assert state["losses"].shape == (2050, 2)
    assert np.array_equal(state["counts"], counts[:2050])
    q = load_policy(state)
    for t in range(2050, 2300):
        p.observe(t, counts[t], losses[t])
        q.observe(t, counts[t], losses[t])
        assert q.weights().tobytes() == p.weights().tobytes()
    assert q.last_fit_step == p.last_fit_step == 2099


def test_no_warnings_in_a_normal_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = make_policy("ado", 3, **FAST)
        counts, losses = _observations(3, 300)
        for t in range(300):
            p.observe(t, counts[t], losses[t])
            p.weights()
    assert isinstance(p, AdoPolicy) and p.num_fits == 3


def test_step_options_scale_with_the_run_and_keep_their_declared_defaults_without_one():
    scaled = AdoPolicy.scaled_defaults(5000)  # 2% of the run, as the authors' 1,000 of 60,000
    assert scaled == {"warmup_steps": 100, "update_interval": 100, "ignore_steps": 100}
    assert AdoPolicy.scaled_defaults(None) == {}  # length unknown: 500 / 1,000 / 1,000 apply
    declared = ado_module.ADO_DEFAULTS
    assert (declared["warmup_steps"], declared["update_interval"]) == (500, 1000)
