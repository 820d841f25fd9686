"""Held-out feedback (``observe_eval``) through the controller, the loop and the actor's buffer;
eval-token accounting; generic diagnostics in the history; the version-1 mixture state."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from ado_ray.data import load_corpus
from ado_ray.policies import make_policy
from ado_ray.schema import ModelSpec, TrainingSpec
from ado_ray.train import Runtime, TrainConfig, run_training
from ado_ray.train.loop import make_local_mixture, serialise_state
from ado_ray.train.mixture import (
    LocalMixture,
    MixtureClient,
    MixtureController,
    history_from_state,
)

try:
    from eval_chaser import EvalChaser
    from fast_ado import ADO_FAST
except ImportError:  # tests/ imported as a package
    from tests.eval_chaser import EvalChaser
    from tests.fast_ado import ADO_FAST


TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(
        "synthetic", seq_len=32, sequences_per_domain=400, val_sequences_per_domain=64, seed=0
    )


def config(policy="eval_chaser", policy_options=None, **training) -> TrainConfig:
    base = dict(
        budget={"steps": 12},
        batch_size=8,
        lr=3e-3,
        lr_warmup_steps=2,
        eval_interval=4,
        eval_sequences=32,
        eval_batch_size=32,
        checkpoint_interval=4,
    )
    base.update(training)
    return TrainConfig(
        training=TrainingSpec(**base),
        model=ModelSpec(overrides=TINY),
        policy=policy,
        policy_options=dict(policy_options or {}),
    )


# -- events: what a run of S steps, evaluated every E, feeds its mixture ----------------------


def events(steps: int, every: int, k: int = 3, seed: int = 0) -> list[tuple]:
    """("eval", d, val) / ("obs", t, counts, losses, eval_follows), in the loop's order."""
    rng = np.random.default_rng(seed)
    out: list[tuple] = [("eval", 0, 3.0 + rng.random(k))]
    for t in range(steps):
        done = t + 1
        follows = done % every == 0 or done == steps
        out.append(("obs", t, rng.integers(1, 5, k).astype(float), 3.0 + rng.random(k), follows))
        if follows:
            out.append(("eval", done, 3.0 / done + rng.random(k)))
    return out


def expected_weights(evs: list[tuple], lag: int, k: int = 3) -> list[np.ndarray]:
    """Weights at each step by the definition: the policy after every event up to and including
    step t - lag (the evaluation after t - lag + 1 steps included); initial for t < lag."""
    ref = make_policy("eval_chaser", k)
    initial = ref.weights()
    after: dict[int, np.ndarray] = {}
    for e in evs:
        if e[0] == "obs":
            ref.observe(e[1], e[2], e[3])
            after[e[1]] = ref.weights()
        else:
            ref.observe_eval(e[1], e[2])
            if e[1] >= 1:
                after[e[1] - 1] = ref.weights()
    steps = max(e[1] for e in evs if e[0] == "obs") + 1
    return [initial if t < lag else after[t - lag] for t in range(steps)]


def feed(target, e: tuple) -> None:
    if e[0] == "obs":
        target.observe(e[1], e[2], e[3], e[4])
    else:
        target.observe_eval(e[1], e[2])


@pytest.mark.parametrize("lag", [1, 2, 3])
def test_weights_depend_only_on_events_up_to_t_minus_lag_whatever_the_timing(lag):
    evs = events(steps=20, every=3)
    want = expected_weights(evs, lag)
    steps = len(want)

    # Lazy: every event sent first, weights asked afterwards.
    lazy = MixtureController(make_policy("eval_chaser", 3), lag=lag)
    for e in evs:
        feed(lazy, e)
    got_lazy = [lazy.weights_for(t) for t in range(steps)]

    # Eager, as the loop does: ask for step t's weights as soon as they can be known.
    eager = MixtureController(make_policy("eval_chaser", 3), lag=lag)
    got_eager = []
    pending = list(evs)
    for t in range(steps):
        while not eager.received_through() >= t - lag:
            feed(eager, pending.pop(0))
            eager.process()  # applied at once: a refit that finishes early
        got_eager.append(eager.weights_for(t))
    for t in range(steps):
        np.testing.assert_array_equal(got_lazy[t], want[t], err_msg=f"lazy step {t}")
        np.testing.assert_array_equal(got_eager[t], want[t], err_msg=f"eager step {t}")
    # The policy saw the evaluation after d steps between observe(d - 1) and observe(d).
    log = lazy.policy.log
    assert log[0] == ("eval", 0)
    for i, (kind, step) in enumerate(log):
        if kind == "eval" and step > 0:
            assert log[i - 1] == ("obs", step - 1)
    # Diagnostics are recorded on the step whose cached weights include the evaluation.
    rows = lazy.history()
    assert [r["step"] for r in rows if r["diagnostics"]] == [0] + [
        d - 1 for d in range(3, 21, 3)
    ] + [19]


def test_an_announced_evaluation_holds_the_weights_back():
    ctl = MixtureController(make_policy("eval_chaser", 2), lag=1)
    ctl.observe_eval(0, [3.0, 2.0])
    ctl.observe(0, [1, 1], [2.0, 2.0], eval_follows=True)
    assert ctl.received_through() == -1
    with pytest.raises(RuntimeError, match="announced but not received"):
        ctl.weights_for(1)
    with pytest.raises(ValueError, match="before the evaluation"):
        ctl.observe(1, [1, 1], [2.0, 2.0])
    before = ctl.policy.weights()
    ctl.observe_eval(1, [1.0, 4.0])
    w = ctl.weights_for(1)
    assert not np.allclose(w, before) and w[1] > w[0]
    assert ctl.observe_eval(1, [9.0, 9.0]) is False  # a replay is ignored
    # Without an announcement, an evaluation would make the weights depend on its timing.
    ctl.observe(1, [1, 1], [2.0, 2.0])
    with pytest.raises(ValueError, match="out of order"):
        ctl.observe_eval(2, [1.0, 1.0])


def test_policies_without_feedback_ignore_evaluations():
    ctl = MixtureController(make_policy("uniform", 2), lag=1)
    assert ctl.observe_eval(0, [1.0, 2.0]) is False
    ctl.observe(0, [1, 1], [2.0, 2.0], eval_follows=True)
    np.testing.assert_array_equal(ctl.weights_for(1), [0.5, 0.5])  # no wait for it
    assert ctl.observe_eval(1, [1.0, 2.0]) is False


def test_the_actors_buffer_orders_events_and_waits_for_announced_evaluations():
    from ado_ray.distributed.actor import MixtureService

    lag = 1
    evs = events(steps=16, every=2, seed=3)
    want = expected_weights(evs, lag)
    svc = MixtureService("eval_chaser", 3, {}, lag)
    got: dict[int, np.ndarray] = {}

    def other_rank() -> None:  # asks for every step's weights up front, as prefetches do
        threads = [
            threading.Thread(target=lambda t=t: got.__setitem__(t, svc.weights_for(t)))
            for t in range(len(want))
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)

    asker = threading.Thread(target=other_rank)
    asker.start()
    # Rank 0's calls land in any order, except that an evaluation is in before the next step's
    # observation is sent (RayMixture sends evaluations synchronously).
    rng = random.Random(0)
    batch: list[tuple] = []
    for e in evs:
        batch.append(e)
        if e[0] == "eval":
            rng.shuffle(batch)
            for b in batch:
                feed(svc, b)
                time.sleep(0.002)  # time for a waiting request to be answered too early
            batch = []
    rng.shuffle(batch)
    for b in batch:
        feed(svc, b)
    asker.join(timeout=60)
    assert sorted(got) == list(range(len(want)))
    for t in range(len(want)):
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"step {t}")
    assert [r["step"] for r in svc.export()["steps"]] == list(range(16))


@pytest.mark.parametrize("lag", [1, 2])
def test_one_call_per_step_gets_the_weights_the_definition_gives(lag):
    # A lead worker's per-step call: the observation of step t, then the weights of step
    # t + lag, which may wait for the evaluation announced with it (sent after this call).
    from ado_ray.distributed.actor import MixtureService

    evs = events(steps=12, every=3, seed=5)
    want = expected_weights(evs, lag)
    svc = MixtureService("eval_chaser", 3, {}, lag)
    got: dict[int, np.ndarray] = {}
    calls: list[threading.Thread] = []
    for e in evs:
        if e[0] == "eval":
            feed(svc, e)
            continue
        t = e[1]

        def call(e=e, t=t):
            got[t + lag] = svc.observe_then_weights(*e[1:], t + lag)

        calls.append(threading.Thread(target=call))  # asynchronous, as the actor call is
        calls[-1].start()
    for th in calls:
        th.join(timeout=60)
    for t in range(lag, len(want)):
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"step {t}")
    assert [r["step"] for r in svc.export()["steps"]] == list(range(12))


def test_the_actors_mailbox_hands_over_reports_in_order_and_says_when_the_run_ended():
    from ado_ray.distributed.actor import MixtureService

    svc = MixtureService("uniform", 3, {}, 1)
    assert svc.take_reports(timeout=0.01) == ([], False)  # nothing yet: waits, then returns
    poster = threading.Timer(0.05, svc.post_report, args=({"step": 4},))
    poster.start()
    t = time.monotonic()
    assert svc.take_reports(timeout=30) == ([{"step": 4}], False)  # woken by the post
    assert time.monotonic() - t < 10
    svc.post_report({"step": 8})
    svc.post_report({"step": 12})
    svc.end_reports()
    assert svc.take_reports(timeout=30) == ([{"step": 8}, {"step": 12}], True)
    assert svc.take_reports(timeout=30) == ([], True)  # ended: no wait
    svc.reset()  # a restarted run's policy reset leaves the mailbox alone
    assert svc.take_reports(timeout=0) == ([], True)


class _Direct:
    """An actor handle stand-in: ``handle.method.remote(...)`` calls the method here."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        return type("M", (), {"remote": staticmethod(getattr(self._obj, name))})


class _Trainer:
    """Stands in for TorchTrainer: fit() posts reports as Train's controller does."""

    def __init__(self, svc, steps, error=None, pause=0.0):
        self.svc, self.steps, self.error, self.pause, self.done = svc, steps, error, pause, False

    def fit(self):
        for step in self.steps:
            time.sleep(self.pause)
            self.svc.post_report({"step": step})
        self.done = True
        if self.error is not None:
            raise self.error


@pytest.fixture
def direct_relay(monkeypatch):
    import ado_ray.distributed.relay as relay

    monkeypatch.setattr(relay.ray, "get", lambda value: value)
    monkeypatch.setattr(relay, "RELAY_WAIT_S", 0.01)  # many empty waits: the racy path
    return relay.fit_relaying


def test_the_relay_hands_over_every_report_in_order_and_reraises_fits_error(direct_relay):
    from ado_ray.distributed.actor import MixtureService

    for error in (None, RuntimeError("worker failed")):
        svc = MixtureService("uniform", 3, {}, 1)
        got: list[int] = []
        fake = _Trainer(svc, [4, 8, 12, 16], error=error, pause=0.02)
        try:
            direct_relay(fake, _Direct(svc), lambda m, got=got: got.append(m["step"]))
        except RuntimeError as exc:
            assert exc is error
        else:
            assert error is None
        assert got == [4, 8, 12, 16]  # the last one too, posted as fit() returned


def test_when_the_caller_fails_on_a_report_the_run_ends_before_the_error_is_raised(
    direct_relay,
):
    from ado_ray.distributed.actor import MixtureService

    svc = MixtureService("uniform", 3, {}, 1)
    fake = _Trainer(svc, [4, 8, 12], pause=0.05)

    def refuse(metrics):
        raise ValueError("no more")

    with pytest.raises(ValueError, match="no more"):
        direct_relay(fake, _Direct(svc), refuse)
    assert fake.done  # no training outlives the call


# -- the loop ---------------------------------------------------------------------------------


class Recorder(LocalMixture):
    def __init__(self, inner: LocalMixture):
        super().__init__(inner.controller)
        self.calls: list[tuple] = []

    def observe(self, step, counts, losses, eval_follows=False):
        self.calls.append(("obs", step, eval_follows))
        super().observe(step, counts, losses, eval_follows)

    def observe_eval(self, step, val_losses):
        self.calls.append(("eval", step))
        super().observe_eval(step, val_losses)


def test_the_loop_feeds_evaluations_in_order_and_resumes_exactly(corpus):
    cfg = config(mixture_lag=2)
    mix = Recorder(make_local_mixture(cfg, corpus))
    assert isinstance(mix, MixtureClient)
    states, reports = [], []

    def keep(metrics, state):
        reports.append(metrics)
        if state is not None:
            states.append(serialise_state(state))

    full = run_training(cfg, corpus, mixture=mix, runtime=Runtime(report=keep))
    evals_at = [c[1] for c in mix.calls if c[0] == "eval"]
    assert evals_at == [0, 4, 8, 12]
    assert [c[2] for c in mix.calls if c[0] == "obs"] == [s % 4 == 3 for s in range(12)]
    log = mix.controller.policy.log
    assert log[0] == ("eval", 0) and log[-1] == ("eval", 12)
    assert [e for e in log if e[0] == "obs"] == [("obs", s) for s in range(12)]
    for i, (kind, step) in enumerate(log[1:], 1):
        if kind == "eval":
            assert log[i - 1] == ("obs", step - 1)
    # The weights of step t are the policy's after the evaluation made after t - lag + 1 steps
    # and the train losses of steps up to t - lag.
    val = {e["step"]: np.array(e["val_loss"]) for e in full["evals"]}
    w = np.array([s["weights"] for s in full["steps"]])
    loss, temp = np.zeros(corpus.num_domains), EvalChaser.options_spec[0].default
    for t in range(12):
        if t >= 2:
            row = np.array(full["steps"][t - 2]["train_loss"])
            loss = np.where(np.isfinite(row), row, loss)
            z = (val[max(d for d in val if d <= t - 1)] + 0.1 * loss) / temp
            np.testing.assert_allclose(w[t], np.exp(z - z.max()) / np.exp(z - z.max()).sum())
        else:
            np.testing.assert_allclose(w[t], np.full(corpus.num_domains, 1 / corpus.num_domains))
    assert not np.allclose(w[5], w[4])  # the evaluation after 4 steps reached step 5
    diag_steps = [s["step"] for s in full["steps"] if s["diagnostics"]]
    assert diag_steps == [0, 3, 7, 11]
    np.testing.assert_array_equal(full["steps"][3]["diagnostics"]["last_val"], val[4])

    # Resumed from the checkpoint after step 7: the same weights, evaluations and feedback.
    assert [s["step"] for s in states] == [3, 7, 11]
    resumed = run_training(cfg, corpus, runtime=Runtime(resume_state=states[1]))
    np.testing.assert_array_equal([s["weights"] for s in resumed["steps"]], w)
    assert [s["diagnostics"] for s in resumed["steps"]] == [s["diagnostics"] for s in full["steps"]]
    assert [e["val_loss"] for e in resumed["evals"]] == [e["val_loss"] for e in full["evals"]]
    assert resumed["summary"]["eval_tokens"] == full["summary"]["eval_tokens"]


def test_eval_tokens_count_every_evaluation(corpus):
    cfg = config(policy="uniform", eval_sequences=32)
    reports = []
    record = run_training(cfg, corpus, runtime=Runtime(report=lambda m, s: reports.append(m)))
    k, seq_len = corpus.num_domains, corpus.seq_len
    per_eval = k * 32 * seq_len  # 32 of the 64 held-out sequences of each domain
    assert record["summary"]["eval_tokens"] == 4 * per_eval  # after 0, 4, 8 and 12 steps
    assert [m["eval_tokens"] for m in reports] == [2 * per_eval, 3 * per_eval, 4 * per_eval]
    assert [m["tokens_seen"] for m in reports] == [n * 8 * seq_len for n in (4, 8, 12)]
    cfg = config(policy="uniform", eval_sequences=None, budget={"steps": 2})
    everything = run_training(cfg, corpus)  # evaluated after 0 and 2 steps, all 64 per domain
    assert everything["summary"]["eval_tokens"] == 2 * k * 64 * seq_len


def test_a_version_1_checkpoint_resumes_with_the_same_eval_tokens(corpus):
    cfg = config(policy="uniform")
    states = []
    full = run_training(
        cfg, corpus, runtime=Runtime(report=lambda m, s: s and states.append(serialise_state(s)))
    )
    old = dict(states[0])
    del old["eval_tokens"], old["version"]
    resumed = run_training(cfg, corpus, runtime=Runtime(resume_state=old))
    assert resumed["summary"]["eval_tokens"] == full["summary"]["eval_tokens"]


# -- diagnostics ------------------------------------------------------------------------------


def test_ado_diagnostics_are_recorded_at_its_refits():
    ctl = MixtureController(make_policy("ado", 3, **ADO_FAST), lag=2)
    rng = np.random.default_rng(0)
    refits = []
    for step in range(30):
        ctl.observe(step, rng.integers(1, 5, 3), 3.0 / (1 + step) + rng.random(3) * 0.01)
        ctl.process()
        if ctl.policy.last_fit_step == step:
            refits.append(step)
    rows = ctl.history()
    assert len(refits) >= 3
    assert [r["step"] for r in rows if r["diagnostics"] is not None] == refits
    last = rows[refits[-1]]["diagnostics"]
    assert set(last) == {"law_eps", "law_beta", "law_alpha", "law_fit_step"}
    np.testing.assert_allclose(
        np.stack([last["law_eps"], last["law_beta"], last["law_alpha"]], axis=1),
        ctl.policy.fitted_laws(),
    )
    assert last["law_fit_step"] == [float(refits[-1])] * 3


def _as_version_1(state: dict) -> dict:
    """A version-2 controller state of ADO in the version-1 layout (laws, no version)."""
    old = {k: v for k, v in state.items() if k not in ("version", "diagnostics", "last_eval")}
    old.pop("eval_due", None)
    old["laws"] = {
        s: np.stack([d["law_eps"], d["law_beta"], d["law_alpha"]], axis=1)
        for s, d in state["diagnostics"].items()
    }
    return old


def test_version_1_states_read_and_resume_with_diagnostics():
    rng = np.random.default_rng(1)
    data = [(rng.integers(1, 5, 3), 3.0 / (1 + s) + rng.random(3) * 0.01) for s in range(30)]
    full = MixtureController(make_policy("ado", 3, **ADO_FAST), lag=2)
    for s, (c, l_) in enumerate(data):
        full.observe(s, c, l_)
    half = MixtureController(make_policy("ado", 3, **ADO_FAST), lag=2)
    for s, (c, l_) in enumerate(data[:15]):
        half.observe(s, c, l_)
    v1 = _as_version_1(half.state_dict())
    assert "laws" in v1 and "version" not in v1

    rows = history_from_state(v1)["steps"]
    want = full.history()[:15]
    assert [r["step"] for r in rows if r["diagnostics"]] == [
        r["step"] for r in want if r["diagnostics"]
    ]
    assert [r["diagnostics"] for r in rows] == [r["diagnostics"] for r in want]

    again = MixtureController(make_policy("ado", 3, **ADO_FAST), lag=2)
    again.load_state_dict(v1)
    for s, (c, l_) in enumerate(data):
        again.observe(s, c, l_)  # replayed steps are ignored
    assert again.history() == full.history()
    assert again.state_dict()["version"] == 2


def test_reset_gives_a_fresh_policy_and_history():
    mix = LocalMixture(MixtureController(make_policy("eval_chaser", 2), lag=1))
    mix.observe_eval(0, [5.0, 1.0])
    mix.observe(0, [1, 1], [2.0, 2.0])
    fresh = mix.weights(0).copy()
    assert not np.allclose(mix.weights(1), fresh)
    mix.reset()
    assert mix.export()["steps"] == [] and mix.controller.policy.log == []
    mix.observe(0, [1, 1], [2.0, 2.0])
    np.testing.assert_array_equal(mix.weights(0), fresh)


def test_a_policy_gets_the_evaluations_it_schedules_without_extra_reports(corpus):
    # Regular evaluations every 4 steps (reported); the policy also asks every 3 steps.
    reports: list[int] = []
    rt = Runtime(report=lambda metrics, ckpt: reports.append(metrics["step"]))
    cfg = config(policy="scheduled_chaser", policy_options={"every": 3})
    mixture = make_local_mixture(cfg, corpus)
    record = run_training(cfg, corpus, mixture=mixture, runtime=rt)
    log = mixture.controller.policy.log
    evals = [step for kind, step in log if kind == "eval"]
    assert evals == [0, 3, 4, 6, 8, 9, 12]  # union of both schedules, in order
    # each evaluation comes between observe(step - 1) and observe(step)
    for i, (kind, step) in enumerate(log):
        if kind == "eval" and step > 0:
            assert log[i - 1] == ("obs", step - 1)
    assert reports == [4, 8, 12], "only the regular rounds are reported"
    assert [e["step"] for e in record["evals"]] == evals
    per_eval = 32 * corpus.num_domains * int(corpus.seq_len)
    assert record["summary"]["eval_tokens"] == len(evals) * per_eval
