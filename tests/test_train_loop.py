"""The plain-Python training loop (no Ray): learning, accounting, determinism, exact resume."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from ado_ray.data import MixtureSampler, load_corpus

try:
    from fast_ado import ADO_FAST
except ImportError:  # tests/ imported as a package
    from tests.fast_ado import ADO_FAST

from ado_ray.schema import ModelSpec, TrainingSpec
from ado_ray.train import MixtureController, Runtime, TrainConfig, build_model, run_training
from ado_ray.train.loop import make_local_mixture, serialise_state
from ado_ray.train.mixture import LocalMixture, history_from_state


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(
        "synthetic", seq_len=32, sequences_per_domain=400, val_sequences_per_domain=64, seed=0
    )


TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2}


def config(policy="uniform", policy_options=None, seed=0, **training) -> TrainConfig:
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
        seed=seed,
    )


def test_every_domain_val_loss_falls():
    # Domains a one-layer model can learn in a few seconds. (The default testbed's noise
    # domain starts at its floor, log V, so it has nothing to fall to; copy and order-2 chains
    # need far longer runs.)
    corpus = load_corpus(
        "synthetic",
        vocab_size=16,
        domains=["markov1", "zipf", {"name": "wide", "kind": "markov", "order": 1, "support": 6}],
        seq_len=32,
        sequences_per_domain=400,
        val_sequences_per_domain=64,
        seed=0,
    )
    cfg = config(budget={"steps": 100}, eval_interval=100, lr=1e-2, batch_size=16)
    record = run_training(cfg, corpus)
    first, last = record["evals"][0], record["evals"][-1]
    assert first["step"] == 0 and last["step"] == 100
    for name, before, after in zip(corpus.domains, first["val_loss"], last["val_loss"]):
        assert after < before, f"{name}: {before:.4f} -> {after:.4f}"
    # The summary's aggregates follow from the per-domain losses.
    summary = record["summary"]
    assert summary["val_loss_balanced"] == pytest.approx(np.mean(last["val_loss"]))
    assert summary["tokens_seen"] == 100 * 16 * corpus.seq_len
    assert len(record["steps"]) == 100


class Spy(LocalMixture):
    def __init__(self, inner: LocalMixture):
        super().__init__(inner.controller)
        self.seen: list[tuple[int, np.ndarray, np.ndarray]] = []

    def observe(self, step, counts, losses, eval_follows=False):
        self.seen.append((step, np.array(counts), np.array(losses)))
        super().observe(step, counts, losses, eval_follows)


def test_per_domain_accounting_matches_direct_computation(corpus):
    cfg = config(budget={"steps": 1}, grad_accum=2, batch_size=16)
    spy = Spy(make_local_mixture(cfg, corpus))
    run_training(cfg, corpus, mixture=spy)
    _, counts, losses = spy.seen[0]

    # Rebuild the first step's model and batch, and score each sequence with the HF loss.
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.preset, corpus.vocab_size, corpus.seq_len, cfg.model.overrides)
    sampler = MixtureSampler(corpus, cfg.training.batch_size, seed=cfg.seed)
    ids, doms = sampler.sample(np.full(corpus.num_domains, 1 / corpus.num_domains))
    with torch.no_grad():
        per_seq = np.array(
            [
                model(
                    input_ids=torch.as_tensor(row[None]), labels=torch.as_tensor(row[None])
                ).loss.item()
                for row in ids
            ]
        )
    for d in range(corpus.num_domains):
        mine = doms == d
        assert counts[d] == mine.sum()
        if mine.any():
            assert losses[d] == pytest.approx(per_seq[mine].mean(), rel=1e-5)
        else:
            assert math.isnan(losses[d])


def same_history(a: list[dict], b: list[dict]) -> None:
    """Bit-identical step histories (NaN, for absent domains, equals NaN)."""
    assert [s["step"] for s in a] == [s["step"] for s in b]
    for key in ("weights", "counts", "train_loss"):
        np.testing.assert_array_equal([s[key] for s in a], [s[key] for s in b], err_msg=key)
    assert [s["diagnostics"] for s in a] == [s["diagnostics"] for s in b]


def test_same_seed_gives_identical_runs(corpus):
    cfg = config(policy="ado", policy_options=ADO_FAST)
    a, b = run_training(cfg, corpus), run_training(cfg, corpus)
    same_history(a["steps"], b["steps"])
    assert [e["val_loss"] for e in a["evals"]] == [e["val_loss"] for e in b["evals"]]
    c = run_training(config(policy="ado", policy_options=ADO_FAST, seed=1), corpus)
    assert not np.array_equal(
        [s["train_loss"] for s in a["steps"]], [s["train_loss"] for s in c["steps"]], equal_nan=True
    )


@pytest.mark.parametrize("lag", [1, 3])
def test_resume_continues_exactly(corpus, lag):
    cfg = config(policy="ado", policy_options=ADO_FAST, mixture_lag=lag)
    states = []

    def keep(metrics, state):
        if state is not None:
            states.append(serialise_state(state))

    full = run_training(cfg, corpus, runtime=Runtime(report=keep))
    assert [s["step"] for s in states] == [3, 7, 11]
    # ADO actually moved the weights, so the resume has something to get wrong.
    assert not np.allclose(full["steps"][-1]["weights"], full["steps"][0]["weights"])

    resumed = run_training(cfg, corpus, runtime=Runtime(resume_state=states[1]))
    same_history(resumed["steps"], full["steps"])
    assert [e["val_loss"] for e in resumed["evals"]] == [e["val_loss"] for e in full["evals"]]
    assert resumed["summary"]["tokens_seen"] == full["summary"]["tokens_seen"]


def test_startup_time_counts_from_the_training_function_and_adds_up_over_restarts(corpus):
    cfg = config()
    states = []

    def keep(metrics, state):
        if state is not None:
            states.append(serialise_state(state))

    # As if the training function had spent 5 s (importing the loop) before calling it.
    t0 = time.perf_counter()
    full = run_training(cfg, corpus, runtime=Runtime(report=keep, started_at=t0 - 5.0))
    call = time.perf_counter() - t0
    s = full["summary"]
    # The 5 s, plus the build before the first step: what the call spent outside the training
    # steps and evaluations (wall_seconds).
    assert 5.0 < s["time_startup_s"] <= 5.0 + call - s["wall_seconds"]
    saved = states[1]["timing"]["startup"]
    assert saved == pytest.approx(s["time_startup_s"])  # the first start, in every checkpoint
    resumed = run_training(cfg, corpus, runtime=Runtime(resume_state=states[1]))
    # The restart's own start-up (from its call: no started_at) adds to the saved one.
    assert saved < resumed["summary"]["time_startup_s"] < saved + 5.0


def test_history_from_a_checkpoint_is_the_run_up_to_it(corpus):
    # A trial stopped from outside (an ASHA prune) is recorded from its last checkpoint.
    cfg = config(policy="ado", policy_options=ADO_FAST)
    states = []

    def keep(metrics, state):
        if state is not None:
            states.append(serialise_state(state))

    full = run_training(cfg, corpus, runtime=Runtime(report=keep))
    saved = history_from_state(states[1]["mixture"])  # the checkpoint after step 7
    same_history(saved["steps"], full["steps"][:8])
    assert [e["step"] for e in saved["evals"]] == [0, 4, 8]
    assert [e["val_loss"] for e in saved["evals"]] == [e["val_loss"] for e in full["evals"][:3]]


def test_weights_follow_the_lag():
    from ado_ray.policies import make_policy

    ctl = MixtureController(make_policy("ado", 3, **ADO_FAST), lag=2)
    rng = np.random.default_rng(0)
    after = []
    for step in range(12):
        w = ctl.weights_for(step)
        expected = after[step - 2] if step >= 2 else ctl._initial
        np.testing.assert_array_equal(w, expected)
        ctl.observe(step, rng.integers(1, 5, 3), 3.0 / (1 + step) + rng.random(3) * 0.01)
        ctl.process()
        after.append(ctl.policy.weights().copy())
    # Replayed steps (after a worker restart) are ignored.
    assert ctl.observe(5, [1, 1, 1], [1.0, 1.0, 1.0]) is False
