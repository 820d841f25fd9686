"""Aioli (``ado_ray.policies.aioli``): the estimate of A on simulated runs with a known transfer
matrix, replays against transcriptions of the paper's and the authors' update equations, the
evaluation schedule, both signals, the state round trip and bad inputs."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from ado_ray.policies import load_policy, make_policy
from ado_ray.policies.aioli import AioliPolicy
from ado_ray.train.mixture import MixtureController


def true_a(k: int, rng: np.random.Generator, helper: int = 0) -> np.ndarray:
    """A per-step transfer matrix: A[i, j] = drop of domain i's loss per step on domain j.
    Each domain helps itself most; ``helper`` also lowers every other domain's loss."""
    a = rng.uniform(-0.2, 0.5, (k, k)) * 1e-3
    a[np.arange(k), np.arange(k)] = rng.uniform(2.0, 4.0, k) * 1e-3
    a[:, helper] += 1.5e-3
    return a


def simulate(
    policy: AioliPolicy,
    a: np.ndarray,
    steps: int,
    rng: np.random.Generator,
    *,
    lag: int = 1,
    batch: int = 256,
    eval_noise: float = 1e-5,
    seq_noise: float = 0.5,
    drop_eval: float = 0.0,
) -> MixtureController:
    """A closed loop under the linear dynamic mixing law L(t+1) = L(t) - A q(t), q(t) the
    shares of step t's (multinomial) batch, driven through the training loop's controller
    with step lag ``lag``: evaluations where ``wants_eval_at`` asks, announced by the previous
    observation. A step's training loss of domain i is L_i + noise / sqrt(count_i)."""
    k = policy.num_domains
    ctrl = MixtureController(policy, lag=lag)
    loss = np.full(k, 5.0)

    def held_out() -> np.ndarray:
        v = loss + eval_noise * rng.standard_normal(k)
        v[rng.random(k) < drop_eval] = np.nan
        return v

    if policy.wants_eval_at(0):
        ctrl.observe_eval(0, held_out())
    for t in range(steps):
        w = ctrl.weights_for(t)
        counts = rng.multinomial(batch, w).astype(float)
        noise = seq_noise * rng.standard_normal(k) / np.sqrt(np.maximum(counts, 1.0))
        train = np.where(counts > 0, loss + noise, np.nan)
        loss = loss - a @ (counts / counts.sum())
        follows = policy.wants_eval_at(t + 1)
        ctrl.observe(t, counts, train, eval_follows=follows)
        if follows:
            ctrl.observe_eval(t + 1, held_out())
    ctrl.process()
    return ctrl


def rel_error(policy: AioliPolicy, a: np.ndarray) -> float:
    est = policy.last_A / policy.options["lp_steps"]  # per sub-phase -> per step
    return float(np.linalg.norm(est - a) / np.linalg.norm(a))


# -- recovery of a known A ------------------------------------------------------------------


@pytest.mark.parametrize("lag", [1, 2])
def test_eval_signal_recovers_the_simulated_transfer_matrix(lag):
    rng = np.random.default_rng(0)
    k = 6
    a = true_a(k, rng)
    p = make_policy("aioli", k, mix_steps=20)
    simulate(p, a, 3 * p.round_steps, rng, lag=lag)
    assert p.num_updates == 3
    # Multinomial batches and the lag are absorbed by fitting the shares actually trained;
    # what is left is the held-out noise: 0.15% (lag 1) and 0.21% (lag 2) here.
    assert rel_error(p, a) < 0.01


def test_eval_signal_recovers_a_with_missing_evaluations():
    rng = np.random.default_rng(1)
    k = 6
    a = true_a(k, rng)
    p = make_policy("aioli", k, mix_steps=20)
    simulate(p, a, 2 * p.round_steps, rng, drop_eval=0.15)
    assert rel_error(p, a) < 0.01  # an unmeasured boundary merges two intervals


@pytest.mark.parametrize("lag", [1, 2])
def test_train_signal_recovers_a_exactly_without_noise_and_roughly_with(lag):
    rng = np.random.default_rng(0)
    k = 6
    a = true_a(k, rng)
    p = make_policy("aioli", k, signal="train", mix_steps=20)
    simulate(p, a, 2 * p.round_steps, rng, lag=lag, seq_noise=0.0)
    assert rel_error(p, a) < 1e-9
    p = make_policy("aioli", k, signal="train", mix_steps=20)
    simulate(p, a, 2 * p.round_steps, np.random.default_rng(2), lag=lag, seq_noise=0.02)
    # Batch-mean training losses are noisy: 0.02 nats per sequence already gives ~30%.
    assert rel_error(p, a) < 0.6


def test_upweights_the_domain_whose_training_lowers_the_others_losses():
    rng = np.random.default_rng(3)
    k = 5
    a = true_a(k, rng, helper=2)
    p = make_policy("aioli", k, mix_steps=40, eta=1.0)
    ctrl = simulate(p, a, 4 * p.round_steps + p.lp_duration + 1, rng)
    w = ctrl.policy.weights()  # a mixing step: the learned mixture
    assert p.phase_at(p.steps_observed)[0] == "mix"
    assert int(np.argmax(w)) == 2 and w[2] > 1.0 / k + 0.02
    assert int(np.argmax(p.diagnostics()["aioli_exponent"])) == 2
    # A's column 2 (training on domain 2) has the largest total effect
    assert int(np.argmax(p.last_A.sum(axis=0))) == 2


# -- replays against the paper's and the authors' equations --------------------------------


def documented_order(seed: int, r: int, k: int, sweeps: int) -> np.ndarray:
    rng = np.random.default_rng([seed, r])
    return np.concatenate([rng.permutation(k) for _ in range(sweeps)])


def loss_stream(k: int, steps: int) -> np.ndarray:
    """Fixed held-out losses for every step (not a function of the weights)."""
    rng = np.random.default_rng(11)
    drops = rng.uniform(-0.01, 0.05, (steps + 1, k))
    return 6.0 - np.cumsum(drops, axis=0)


def replay_policy(policy: AioliPolicy, stream: np.ndarray, steps: int, counts_of) -> np.ndarray:
    out = []
    for t in range(steps):
        if policy.wants_eval_at(t):
            policy.observe_eval(t, stream[t])
        w = policy.weights()
        out.append(w)
        policy.observe(t, counts_of(t, w), np.full(policy.num_domains, 3.0))
    return np.array(out)


def paper_transcription(k, steps, stream, *, eta, sweeps, seg, mix, seed):
    """Algorithm 1 and 2 of the paper, step by step: p^0 uniform; each round, LearnParams
    trains ``seg`` steps on each one-hot mixture 1_j, in ``sweeps`` shuffled sweeps,
    accumulating beta_ij = L_i(before) - L_i(after) (held-out losses) and A^t = beta / sweeps;
    then p^t_j = p^{t-1}_j exp(eta sum_i A^t_ij) / Z, trained for ``mix`` steps."""
    p = np.full(k, 1.0 / k)
    out: list[np.ndarray] = []
    t, r = 0, 0
    while t < steps:
        beta = np.zeros((k, k))
        before = stream[t]
        for j in documented_order(seed, r, k, sweeps):
            out += [np.eye(k)[j]] * seg
            t += seg
            after = stream[t]
            beta[:, j] += before - after
            before = after
        a = beta / sweeps
        p = p * np.exp(eta * a.sum(axis=0))
        p = p / p.sum()
        out += [p] * mix
        t += mix
        r += 1
    return np.array(out[:steps])


def test_replay_matches_the_papers_update_equations():
    k, sweeps, seg, mix, seed, eta = 3, 2, 3, 5, 7, 0.7
    opts = dict(
        lp_rounds=sweeps,
        lp_steps=seg,
        mix_steps=mix,
        seed=seed,
        eta=eta,
        one_hot_factor=1.0,
        normalize_A=False,
    )
    p = make_policy("aioli", k, **opts)
    steps = 4 * p.round_steps + 3
    stream = loss_stream(k, steps + p.round_steps)
    ours = replay_policy(p, stream, steps, lambda t, w: w * 64.0)
    paper = paper_transcription(
        k, steps, stream, eta=eta, sweeps=sweeps, seg=seg, mix=mix, seed=seed
    )
    assert p.num_updates == 4
    assert np.max(np.abs(ours - paper)) < 1e-9


def authors_transcription(k, steps, stream, *, eta, sweeps, seg, mix, seed, ohf, ema):
    """The authors' round (``trainer/aioli_trainer.py``): LearnParams on smoothed one-hot
    mixtures, beta averaged over sweeps and solved row by row against the mixture matrix
    (L164-179); A shifted by its minimum if negative and divided by its sum (L324-331); the
    EMA of A, ``(1 - ema) A + ema Abar``, and weights ones * exp(eta * colsum(Abar))
    (L334-340)."""
    w_mat = np.full((k, k), (1.0 - ohf) / (k - 1))
    np.fill_diagonal(w_mat, ohf)
    abar = None
    out: list[np.ndarray] = []
    t, r = 0, 0
    while t < steps:
        beta = np.zeros((k, k))
        before = stream[t]
        for j in documented_order(seed, r, k, sweeps):
            out += [w_mat[j]] * seg
            t += seg
            after = stream[t]
            beta[:, j] += before - after
            before = after
        beta /= sweeps
        a = np.array([np.linalg.solve(w_mat, row) for row in beta])
        if a.min() < 0:
            a = a - a.min()
        a = a / a.sum()
        abar = a if abar is None else (1 - ema) * a + ema * abar
        w = np.ones(k) * np.exp(eta * abar.sum(axis=0))
        out += [w / w.sum()] * mix
        t += mix
        r += 1
    return np.array(out[:steps])


def test_replay_matches_the_authors_smoothed_normalised_ema_update():
    k, sweeps, seg, mix, seed, eta, ohf, ema = 4, 2, 2, 6, 1, 2.0, 0.625, 0.1
    opts = dict(
        lp_rounds=sweeps,
        lp_steps=seg,
        mix_steps=mix,
        seed=seed,
        eta=eta,
        one_hot_factor=ohf,
        ema=ema,
    )
    p = make_policy("aioli", k, **opts)
    steps = 5 * p.round_steps + 2
    stream = loss_stream(k, steps + p.round_steps)
    ours = replay_policy(p, stream, steps, lambda t, w: w * 64.0)
    authors = authors_transcription(
        k, steps, stream, eta=eta, sweeps=sweeps, seg=seg, mix=mix, seed=seed, ohf=ohf, ema=ema
    )
    assert np.max(np.abs(ours - authors)) < 1e-9


def test_sampled_batches_differ_from_the_authors_solve_only_by_the_shares_trained():
    """Deviation 1: with multinomial batches our A is the least squares on the shares actually
    trained; the authors' solve assumes the intended mixture. Both are checked."""
    k, sweeps, seg, mix, ohf = 3, 2, 3, 4, 0.7
    p = make_policy(
        "aioli",
        k,
        lp_rounds=sweeps,
        lp_steps=seg,
        mix_steps=mix,
        one_hot_factor=ohf,
        normalize_A=False,
    )
    steps = p.lp_duration + 1
    stream = loss_stream(k, steps)
    rng = np.random.default_rng(5)
    drawn = []

    def sample(t, w):
        c = rng.multinomial(32, w).astype(float)
        drawn.append(c / c.sum())
        return c

    replay_policy(p, stream, steps, sample)
    ours = p.last_A
    # realized shares: one equation per sub-phase, solved by least squares
    q = np.array([np.sum(drawn[m * seg : (m + 1) * seg], axis=0) for m in range(k * sweeps)])
    bounds = np.arange(0, k * sweeps + 1) * seg
    drop = stream[bounds[:-1]] - stream[bounds[1:]]
    realized = seg * np.linalg.lstsq(q, drop, rcond=None)[0].T
    assert np.max(np.abs(ours - realized)) < 1e-9
    # the authors' estimate from the intended mixtures differs, by the sampling
    w_mat = np.full((k, k), (1 - ohf) / (k - 1))
    np.fill_diagonal(w_mat, ohf)
    beta = np.zeros((k, k))
    for m, j in enumerate(documented_order(0, 0, k, sweeps)):
        beta[:, j] += drop[m] / sweeps
    intended = np.array([np.linalg.solve(w_mat, row) for row in beta])
    assert np.max(np.abs(ours - intended)) > 1e-4


# -- schedule, signals, state ---------------------------------------------------------------


def test_schedule_evaluations_and_update_timing():
    k = 3
    p = make_policy(
        "aioli", k, lp_rounds=2, lp_steps=3, mix_steps=5, warmup_steps=4, token_counts=[6, 3, 1]
    )
    d, r = p.lp_duration, p.round_steps
    assert (d, r) == (18, 23)
    evals = [s for s in range(60) if p.wants_eval_at(s)]
    first = [4 + 3 * m for m in range(7)]
    assert evals == first + [s + r for s in first] + [s + 2 * r for s in first if s + 2 * r < 60]
    assert p.phase_at(3) == ("warmup", -1, -1)
    order = p.lp_order(0)
    assert np.array_equal(order, documented_order(0, 0, k, 2))
    assert p.phase_at(4) == ("learn", 0, int(order[0]))
    assert p.phase_at(4 + 3 * 5 + 2) == ("learn", 0, int(order[5]))
    assert p.phase_at(22) == ("mix", 0, -1)
    assert p.phase_at(27) == ("learn", 1, int(p.lp_order(1)[0]))
    w0 = p.weights()
    assert np.allclose(w0, [0.6, 0.3, 0.1])  # the prior during warmup
    stream = loss_stream(k, 30)
    seen = replay_policy(p, stream, 22, lambda t, w: w * 30)
    expected = np.full(k, 0.1875)
    expected[order[0]] = 0.625  # one_hot_factor on the swept domain, the rest evenly
    assert np.array_equal(seen[4], expected) and np.array_equal(seen[6], expected)
    # the weights of step 22 (first mixing step) wait for the evaluation after 22 steps
    assert p.num_updates == 0 and np.allclose(p.weights(), 1 / 3)
    p.observe_eval(22, stream[22])
    assert p.num_updates == 1 and not np.allclose(p.weights(), 1 / 3)
    p.observe_eval(22, stream[22] + 1)  # a repeat is ignored
    assert p.num_updates == 1


def test_missing_post_learnparams_evaluation_falls_back_at_the_next_observation():
    k = 3
    p = make_policy("aioli", k, lp_rounds=1, lp_steps=2, mix_steps=3)
    stream = loss_stream(k, 20)
    for t in range(p.lp_duration):
        if p.wants_eval_at(t):
            p.observe_eval(t, stream[t])
        p.observe(t, p.weights() * 10, stream[t])
    assert p.num_updates == 0
    p.observe(p.lp_duration, p.weights() * 10, stream[0])  # no evaluation after 6 steps
    assert p.num_updates == 1
    q = make_policy("aioli", k, lp_rounds=1, lp_steps=2, mix_steps=3)
    for t in range(p.lp_duration):
        if q.wants_eval_at(t):
            q.observe_eval(t, stream[t])
        q.observe(t, q.weights() * 10, stream[t])
    q.observe_eval(p.lp_duration, np.full(k, np.nan))
    # the intervals before the last boundary still count; same estimate as the fallback
    assert np.allclose(q.last_A, p.last_A)


def test_train_signal_needs_no_evaluation_and_updates_after_learnparams():
    k = 4
    p = make_policy("aioli", k, signal="train", lp_rounds=1, lp_steps=2, mix_steps=3)
    assert not p.wants_eval_feedback
    assert not any(p.wants_eval_at(s) for s in range(100))
    assert make_policy("aioli", k).wants_eval_feedback
    rng = np.random.default_rng(0)
    for t in range(p.lp_duration):
        p.observe(t, p.weights() * 16, 5.0 - 0.01 * t + 0.001 * rng.standard_normal(k))
    assert p.num_updates == 1 and p.phase_at(p.steps_observed)[0] == "mix"
    p.observe_eval(p.steps_observed, np.ones(k))  # ignored
    assert p.num_updates == 1


@pytest.mark.parametrize("signal", ["eval", "train"])
def test_state_round_trip_in_the_middle_of_learnparams(signal):
    k = 5
    opts = dict(signal=signal, lp_rounds=2, lp_steps=3, mix_steps=7, ema=0.3, delta_min=0.01)
    p = make_policy("aioli", k, token_counts=[1, 2, 3, 4, 5], **opts)
    rng = np.random.default_rng(0)
    a = true_a(k, rng)
    ctrl = simulate(p, a, p.round_steps + p.lp_duration // 2 + 1, rng)
    p = ctrl.policy
    assert p.num_updates == 1 and p.phase_at(p.steps_observed)[0] == "learn"
    state = copy.deepcopy(p.state_dict())
    q = load_policy(pickle.loads(pickle.dumps(state)))
    futures = []
    for x in (p, q):  # the same future
        rng = np.random.default_rng(9)
        out = []
        for t in range(x.steps_observed, x.steps_observed + 2 * x.round_steps):
            if x.wants_eval_at(t) and x.wants_eval_feedback:
                x.observe_eval(t, 4.0 - 0.01 * t + 0.01 * rng.random(k))
            out.append(x.weights())
            x.observe(t, rng.multinomial(32, out[-1]).astype(float), 4 + rng.random(k))
        futures.append(np.array(out))
    assert futures[0].tobytes() == futures[1].tobytes()
    assert p.num_updates == q.num_updates == 3
    assert p.state_dict().keys() == q.state_dict().keys()
    for key, value in p.state_dict().items():
        other = q.state_dict()[key]
        if isinstance(value, np.ndarray):
            assert value.tobytes() == other.tobytes(), key
        else:
            assert value == other, key


def test_bad_options_are_refused_naming_them():
    bad = {
        "one_hot_factor": 0.25,  # = 1/K for K = 4
        "eta": 0.0,
        "lp_steps": 0,
        "lp_rounds": 0,
        "mix_steps": 0,
        "ema": 1.0,
        "signal": "val",
        "seed": -1,
        "warmup_steps": -1,
        "delta_min": -0.1,
        "normalize_A": "yes",
    }
    for name, value in bad.items():
        with pytest.raises(ValueError, match=name):
            make_policy("aioli", 4, **{name: value})
    with pytest.raises(ValueError, match="unknown option 'update_steps'"):
        make_policy("aioli", 4, update_steps=250)
    state = make_policy("aioli", 4).state_dict()
    state["bl"] = [1, 2]
    with pytest.raises(ValueError, match="not a valid aioli state"):
        make_policy("aioli", 4).load_state_dict(state)


@pytest.mark.parametrize("signal", ["eval", "train"])
def test_non_finite_and_missing_losses_never_give_nan_weights(signal):
    k = 5
    p = make_policy("aioli", k, signal=signal, lp_rounds=1, lp_steps=2, mix_steps=3, eta=5.0)
    rng = np.random.default_rng(0)
    specials = [np.nan, np.inf, -np.inf, 1e308, -1e308]
    for t in range(8 * p.round_steps):
        if p.wants_eval_at(t):
            v = 4.0 + rng.random(k)
            v[rng.random(k) < 0.3] = rng.choice(specials)
            if t % 3 == 0:
                v[:] = np.nan
            p.observe_eval(t, v)
        w = p.weights()
        assert np.isfinite(w).all() and abs(w.sum() - 1) < 1e-12 and (w >= 0).all()
        counts = rng.multinomial(8, w).astype(float)
        if t % 5 == 0:
            counts[:] = 0.0  # an empty step
        losses = np.where(counts > 0, 4.0 + rng.random(k), np.nan)
        losses[rng.random(k) < 0.3] = rng.choice(specials)
        p.observe(t, counts, losses)
        for arr in p.diagnostics().values():
            assert np.isfinite(arr).all()
    assert p.num_updates == 8


def test_constant_a_does_not_divide_by_zero():
    k = 3
    p = make_policy("aioli", k, lp_rounds=1, lp_steps=1, mix_steps=2)
    for t in range(2 * p.round_steps + p.lp_duration + 1):
        if p.wants_eval_at(t):
            p.observe_eval(t, np.full(k, 4.0))  # no loss moves: A = 0
        p.observe(t, p.weights() * 9, np.full(k, 4.0))
    assert p.phase_at(p.steps_observed)[0] == "mix"
    assert p.num_updates == 3 and np.array_equal(p.weights(), np.full(k, 1 / 3))


def test_floor_and_uniform_limit():
    k = 4
    rng = np.random.default_rng(0)
    a = true_a(k, rng)
    p = make_policy("aioli", k, mix_steps=10, eta=50.0, delta_min=0.05)
    ctrl = simulate(p, a, 2 * p.round_steps, rng)
    hist = np.array([row["weights"] for row in ctrl.history()])
    assert hist.min() >= 0.05 - 1e-15
    u = make_policy("aioli", k, delta_min=0.25, token_counts=[1, 2, 3, 4], warmup_steps=3)
    ctrl = simulate(u, a, u.round_steps + 5, rng)
    hist = np.array([row["weights"] for row in ctrl.history()])
    assert np.all(hist == 0.25)


def test_default_round_length_and_scaled_defaults():
    # the README example: K=2, lp_rounds 4 x lp_steps 4 -> 32 LearnParams steps of 250
    p = make_policy("aioli", 2)
    assert (p.lp_duration, p.round_steps) == (32, 250)
    assert make_policy("aioli", 22).round_steps == 2750
    assert AioliPolicy.scaled_defaults(5000) == {"mix_steps": 218}
    assert AioliPolicy.scaled_defaults(None) == {}
    q = make_policy("aioli", 22, **AioliPolicy.scaled_defaults(60000))
    assert q.round_steps == 352 + 2616
    assert p.options["ema"] is None and p.options["mix_steps"] is None
