"""ODM (Albalak et al. 2023): a replay against the paper's equations, transcribed here step by
step; the authors' code's form against a transcription of their ``group_update``; closed-loop
behaviour on synthetic scaling laws with cross-domain transfer; the held-out reward path; the
state round trip; option errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from ado_ray.policies import load_policy, make_policy
from ado_ray.train.mixture import MixtureController

# -- independent transcriptions ----------------------------------------------------------------


def paper_odm(k, stream, smoothing, warmup=0, min_exploration=0.0, prior=None):
    """The paper's Algorithm 1, scalar by scalar (t = 1, 2, ...; eps_0 = 1/K; R = 0):

        eps_t = min(1/K, sqrt(ln K / (K t)))              [floored at min_exploration]
        pi_t  = (1 - K eps_t) exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t
        R_i  <- a R_i + (1 - a) L_i / pi_t(i)             for each domain i sampled at t

    Steps t <= warmup use ``prior`` and record no reward (the policy's warmup, docstring item 2);
    a domain with a non-finite loss is treated as not sampled (item 6). Returns the weights of
    every step and the final R."""
    r = [0.0] * k
    eps_prev = 1.0 / k
    out = []
    for t, (counts, losses) in enumerate(stream, start=1):
        eps = min(1.0 / k, max(min_exploration, math.sqrt(math.log(k) / (k * t))))
        if t <= warmup:
            pi = list(prior)
        else:
            z = sum(math.exp(eps_prev * r[j]) for j in range(k))
            pi = [(1 - k * eps) * math.exp(eps_prev * r[i]) / z + eps for i in range(k)]
        out.append(pi)
        if t > warmup:
            for i in range(k):
                if counts[i] > 0 and math.isfinite(losses[i]):
                    r[i] = smoothing * r[i] + (1 - smoothing) * losses[i] / pi[i]
        eps_prev = eps
    return np.array(out), np.array(r)


def authors_group_update(k, stream, smoothing, prior, warmup=0):
    """The authors' ``SmoothedMeanWeightUpdater.group_update`` (data_sampling_utils.py L501-528)
    as their loop drives it (training.py L1242-1267: ``iteration`` is incremented, then the
    domains in the batch are updated with their mean loss, when ``iteration > warmup``)."""
    weights = list(prior)
    est = [0.0] * k
    eps = 1.0 / k
    out = []
    iteration = 0
    for counts, losses in stream:
        total = sum(weights)
        out.append([w / total for w in weights])
        iteration += 1
        if iteration <= warmup:
            continue
        prev_eps = eps
        eps = min(1 / k, math.sqrt(math.log(k) / (k * iteration)))
        for i in range(k):
            if counts[i] > 0:
                est[i] = smoothing * est[i] + (1 - smoothing) * math.exp(losses[i])
        total_est = sum(r * prev_eps for r in est)
        scaling = (1 - k * eps) / total_est
        weights = [est[i] * prev_eps * scaling + eps for i in range(k)]
    return np.array(out)


def fixed_stream(k, steps, seed, missing=True):
    """Counts and losses not driven by any policy (a replay): some domains absent."""
    rng = np.random.default_rng(seed)
    stream = []
    for t in range(steps):
        counts = rng.multinomial(12, rng.dirichlet(np.ones(k))).astype(float)
        if not missing:
            counts += 1
        losses = np.where(counts > 0, 4.0 / (1 + 0.01 * t) + rng.uniform(0, 2, k), np.nan)
        stream.append((counts, losses))
    return stream


def replay(policy, stream):
    out = []
    for s, (counts, losses) in enumerate(stream):
        out.append(policy.weights())
        policy.observe(s, counts, losses)
    return np.array(out)


# -- replay --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k, smoothing, extra",
    [
        (5, 0.9, {}),
        (3, 0.5, {}),
        (8, 0.0, {}),
        (5, 0.9, {"min_exploration": 0.1}),
        (5, 0.9, {"warmup_steps": 25}),
    ],
)
def test_replay_matches_the_papers_equations(k, smoothing, extra):
    stream = fixed_stream(k, 400, seed=k)
    prior = np.arange(1.0, k + 1) / np.arange(1.0, k + 1).sum()
    p = make_policy("odm", k, smoothing=smoothing, prior=prior.tolist(), **extra)
    got = replay(p, stream)
    want, r = paper_odm(
        k,
        stream,
        smoothing,
        warmup=extra.get("warmup_steps", 0),
        min_exploration=extra.get("min_exploration", 0.0),
        prior=prior,
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.diagnostics()["odm_reward"], r, rtol=1e-12)
    # The exploration rate left its 1/K start (the replay covers the decaying regime).
    assert p.diagnostics()["odm_eps"][0] < 1.0 / k
    # Warmup: the prior exactly, bitwise.
    for s in range(extra.get("warmup_steps", 0)):
        assert got[s].tobytes() == prior.tobytes()


def test_replay_matches_the_authors_code_form():
    k, smoothing = 6, 0.9
    prior = np.array([0.3, 0.25, 0.2, 0.12, 0.08, 0.05])
    for warmup in (0, 7):
        stream = fixed_stream(k, 300, seed=11 + warmup)
        p = make_policy(
            "odm", k, update_form="authors_code", prior=prior.tolist(), warmup_steps=warmup
        )
        got = replay(p, stream)
        want = authors_group_update(k, stream, smoothing, prior, warmup=warmup)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_the_two_forms_differ():
    # The paper's importance-weighted exponential update and the code's exp(loss) / linear form
    # are different rules (module docstring item 1): not a rounding difference.
    stream = fixed_stream(4, 200, seed=3)
    a = replay(make_policy("odm", 4), stream)
    b = replay(make_policy("odm", 4, update_form="authors_code"), stream)
    assert np.abs(a[50:] - b[50:]).max() > 0.02


def test_missing_and_non_finite_losses():
    k = 4
    p = make_policy("odm", k)
    for s in range(30):  # leave the 1/K-exploration start
        p.observe(s, [3, 3, 3, 3], [2.0, 2.5, 3.0, 3.5])
    r0 = p.diagnostics()["odm_reward"]
    pi = p.weights()
    # Domain 0 absent, domain 1 has an infinite loss, domain 2 NaN: only domain 3 is updated.
    p.observe(30, [0, 4, 4, 4], [np.nan, np.inf, np.nan, 3.5])
    r1 = p.diagnostics()["odm_reward"]
    assert r1[:3].tobytes() == r0[:3].tobytes()
    assert r1[3] == pytest.approx(0.9 * r0[3] + 0.1 * 3.5 / pi[3], rel=1e-15)
    # A step with nothing usable keeps R; the weights still move with eps_t.
    p.observe(31, [0, 0, 0, 0], [np.nan] * 4)
    assert p.diagnostics()["odm_reward"].tobytes() == r1.tobytes()
    # An absurd loss that would overflow the estimate is dropped, never NaN.
    p.observe(32, [4, 4, 4, 4], [1e308, 2.0, 2.0, 2.0])
    w = p.weights()
    assert np.isfinite(w).all() and abs(w.sum() - 1) < 1e-12
    assert p.diagnostics()["odm_reward"].tobytes() == r1.tobytes()


# -- closed loop ---------------------------------------------------------------------------------

# L_k(n) = eps_k + beta * n_eff,k ** -alpha, with n_eff = T @ n (sequences trained so far). Domain 0
# is the hardest (highest irreducible loss); domains 1 and 2 follow the same law, but domain 1
# also learns from every sequence of domain 3 (transfer 1.0), so its loss is lower than its twin's.
EPS = np.array([3.0, 2.0, 2.0, 1.5])
BETA, ALPHA = 6.0, 0.2
TRANSFER = np.eye(4)
TRANSFER[1, 3] = 1.0


def closed_loop(policy, steps, seed, batch=32, noise=0.02):
    rng = np.random.default_rng(seed)
    n = np.zeros(4)
    weights, true_losses = [], []
    for t in range(steps):
        w = policy.weights()
        counts = rng.multinomial(batch, w).astype(float)
        n += counts
        true = EPS + BETA * (TRANSFER @ n + 1.0) ** -ALPHA
        losses = np.where(counts > 0, true + noise * rng.standard_normal(4), np.nan)
        policy.observe(t, counts, losses)
        weights.append(w)
        true_losses.append(true)
    return np.array(weights), np.array(true_losses)


@pytest.mark.parametrize("options", [{}, {"min_exploration": 0.1}], ids=["paper", "floor"])
@pytest.mark.parametrize("seed", [0, 1])
def test_closed_loop_up_weights_the_highest_loss_domain(options, seed):
    p = make_policy("odm", 4, **options)
    w, loss = closed_loop(p, 2000, seed)
    w_late, loss_late = w[-500:].mean(axis=0), loss[-500:].mean(axis=0)
    # The losses order the domains 0 > 2 > 1 > 3 (1 is below its twin 2 by transfer) ...
    assert list(np.argsort(-loss_late)) == [0, 2, 1, 3]
    assert loss_late[2] - loss_late[1] > 0.05
    # ... and ODM's weights follow that order: the hardest domain gets the most.
    assert list(np.argsort(-w_late)) == [0, 2, 1, 3]
    assert w_late[0] > 0.25 + (0.008 if not options else 0.02)
    assert w_late[2] > w_late[1]  # transfer: the twin that learns from domain 3 needs less
    # The smoothed estimates rank the domains the same way (they drive the softmax).
    r = p.diagnostics()["odm_reward"]
    assert list(np.argsort(-r)) == [0, 2, 1, 3]


# -- held-out reward -----------------------------------------------------------------------------


def test_val_loss_reward_uses_observe_eval():
    k, a = 3, 0.9
    assert make_policy("odm", k).wants_eval_feedback is False
    p = make_policy("odm", k, reward="val_loss")
    assert p.wants_eval_feedback is True
    for s in range(10):  # training losses are not rewards here
        p.observe(s, [2, 2, 2], [5.0, 1.0, 3.0])
    assert p.diagnostics()["odm_reward"].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(p.weights(), 1 / 3, rtol=1e-15)
    # Evaluation after 10 steps (between observe(9) and observe(10)): every measured domain is
    # updated, without importance weighting; domain 1 was not measured (NaN).
    p.observe_eval(10, [3.0, np.nan, 1.0])
    r = np.array([(1 - a) * 3.0, 0.0, (1 - a) * 1.0])
    np.testing.assert_allclose(p.diagnostics()["odm_reward"], r, rtol=1e-15)
    # The weights of step 10 (the paper's t = 11) from R: eps_11 and eps_10.
    e11 = math.sqrt(math.log(3) / (3 * 11))
    e10 = math.sqrt(math.log(3) / (3 * 10))
    z = np.exp(e10 * r)
    np.testing.assert_allclose(p.weights(), (1 - 3 * e11) * z / z.sum() + e11, rtol=1e-14)
    assert p.weights()[0] > p.weights()[2] > p.weights()[1]
    # A second evaluation smooths on top of the first.
    for s in range(10, 15):
        p.observe(s, [2, 2, 2], [5.0, 1.0, 3.0])
    p.observe_eval(15, [3.0, 2.0, 1.0])
    r = a * r + (1 - a) * np.array([3.0, 2.0, 1.0])
    np.testing.assert_allclose(p.diagnostics()["odm_reward"], r, rtol=1e-15)


def test_val_loss_reward_through_the_mixture_controller():
    p = make_policy("odm", 3, reward="val_loss", smoothing=0.5)
    ctl = MixtureController(p, lag=1)
    ctl.observe_eval(0, [1.0, 2.0, 3.0])  # the evaluation before training
    for s in range(20):
        ctl.weights_for(s)
        ctl.observe(s, [2, 2, 2], [1.0, 1.0, 1.0], eval_follows=(s % 5 == 4))
        if s % 5 == 4:
            ctl.observe_eval(s + 1, [1.0, 2.0, 3.0])
    w = ctl.weights_for(20)
    # R = (1 - 0.5^5) * [1, 2, 3] after five evaluations: domain 2 (highest held-out loss) leads.
    np.testing.assert_allclose(
        ctl.policy.diagnostics()["odm_reward"], (1 - 0.5**5) * np.array([1.0, 2.0, 3.0])
    )
    assert w[2] > w[1] > w[0]


# -- state and options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"warmup_steps": 5}, {"reward": "val_loss"}, {"update_form": "authors_code"}],
    ids=["train", "val", "authors_code"],
)
def test_state_round_trip_mid_run_is_bit_identical(options):
    p = make_policy("odm", 4, prior=[0.4, 0.3, 0.2, 0.1], **options)
    stream = fixed_stream(4, 120, seed=5)

    def run(policy, part):
        out = []
        for s, (counts, losses) in enumerate(stream[part], start=part.start):
            out.append(policy.weights())
            policy.observe(s, counts, losses)
            if policy.wants_eval_feedback and s % 10 == 9:
                policy.observe_eval(s + 1, 2.0 + np.sin(np.arange(4.0) + s))
        return np.array(out)

    run(p, slice(0, 60))
    q = load_policy(copy.deepcopy(p.state_dict()))
    assert q.options == p.options and q.steps_observed == 60
    assert q.weights().tobytes() == p.weights().tobytes()
    a, b = run(p, slice(60, 120)), run(q, slice(60, 120))
    assert a.tobytes() == b.tobytes()
    for key, value in p.diagnostics().items():
        assert value.tobytes() == q.diagnostics()[key].tobytes()


@pytest.mark.parametrize(
    "name, value",
    [
        ("smoothing", 1.0),
        ("smoothing", -0.1),
        ("reward_scale", 0.0),
        ("reward_scale", -1.0),
        ("min_exploration", 1.5),
        ("min_exploration", -0.01),
        ("reward", "loss"),
        ("warmup_steps", -1),
        ("warmup_steps", 2.5),
        ("update_form", "code"),
    ],
)
def test_bad_options_name_the_option(name, value):
    with pytest.raises(ValueError, match=rf"{name}="):
        make_policy("odm", 4, **{name: value})


def test_options_and_exploration_schedule():
    p = make_policy("odm", 4)
    assert p.options == {
        "prior": [0.25] * 4,
        "smoothing": 0.9,
        "reward_scale": 1.0,
        "min_exploration": 0.0,
        "reward": "train_loss",
        "warmup_steps": 0,
        "update_form": "paper",
    }
    # eps_t = min(1/K, sqrt(ln K / (K t))): 1/K until t > K ln K (5.5 for K = 4).
    assert [p.exploration(t) for t in (0, 1, 5)] == [0.25] * 3
    assert p.exploration(6) == pytest.approx(math.sqrt(math.log(4) / 24))
    q = make_policy("odm", 4, min_exploration=0.1)
    assert q.exploration(10**6) == 0.1
    assert make_policy("odm", 4, min_exploration=0.9).exploration(10**6) == 0.25
    w = make_policy("odm", 4, min_exploration=0.9).weights()
    assert w.tolist() == [0.25] * 4
