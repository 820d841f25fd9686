"""Ray-level tests. Few and small: they share ONE local cluster (the ``ray_cluster`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ado_ray import storage
from ado_ray.data import load_corpus
from ado_ray.distributed.trainer import Placement, TrialFailed, describe_failure, run_trial
from ado_ray.results import EVALS_COLUMNS, STEPS_COLUMNS, TRIALS_COLUMNS, read_results
from ado_ray.study import load_study

try:
    from fast_ado import ADO_FAST
except ImportError:  # tests/ imported as a package
    from tests.fast_ado import ADO_FAST

from ado_ray.schema import DataSpec, ModelSpec, TrainingSpec
from ado_ray.train import TrainConfig

pytestmark = pytest.mark.ray

DATA = {"seq_len": 32, "sequences_per_domain": 300, "val_sequences_per_domain": 32, "seed": 0}


def _config(policy="ado", policy_options=ADO_FAST, **training) -> TrainConfig:
    base = dict(
        budget={"steps": 16},
        batch_size=8,
        lr=3e-3,
        eval_interval=4,
        eval_sequences=16,
        checkpoint_interval=4,
    )
    base.update(training)
    return TrainConfig(
        data=DataSpec("synthetic", dict(DATA)),
        model=ModelSpec(overrides={"n_layer": 1, "n_embd": 32, "n_head": 2}),
        training=TrainingSpec(**base),
        policy=policy,
        policy_options=dict(policy_options),
    )


def _read_trace(path: Path) -> dict[int, list[float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["step"]: r["weights"] for r in rows}


def test_two_workers_share_weights_and_history_is_complete(ray_cluster, tmp_path):
    cfg = _config()
    corpus = load_corpus("synthetic", **DATA)
    reports: list[dict] = []
    record = run_trial(
        cfg,
        "two-workers",
        str(tmp_path / "ray"),
        Placement(num_workers=2, cpus_per_worker=1),
        corpus=corpus,
        trace_dir=str(tmp_path),
        on_report=reports.append,  # relayed by the mixture actor, in this thread
    )
    # Every evaluation round's report reached the caller, once and in order, with the metrics
    # rank 0 reported.
    assert [(r["step"], r["eval_round"]) for r in reports] == [(4, 1), (8, 2), (12, 3), (16, 4)]
    assert reports[-1]["val_loss_balanced"] == record["summary"]["val_loss_balanced"]
    rank0, rank1 = _read_trace(tmp_path / "rank0.jsonl"), _read_trace(tmp_path / "rank1.jsonl")
    assert sorted(rank0) == sorted(rank1) == list(range(16))
    assert all(rank0[s] == rank1[s] for s in range(16))
    # The history is complete and is what the ranks used; ADO moved off the prior.
    assert [s["step"] for s in record["steps"]] == list(range(16))
    assert all(record["steps"][s]["weights"] == rank0[s] for s in range(16))
    assert sum(sum(s["counts"]) for s in record["steps"]) == 16 * 8
    assert not np.allclose(rank0[15], rank0[0])
    assert any(s["diagnostics"] is not None for s in record["steps"])
    assert [e["step"] for e in record["evals"]] == [0, 4, 8, 12, 16]


def test_eval_feedback_under_ray_is_what_the_plain_loop_computes(ray_cluster, tmp_path):
    # A policy registered in this process only (shipped to the actor); weights that depend on
    # the held-out losses; lag 1, so rank 1 waits on evaluations that rank 0 sends.
    from ray import cloudpickle

    try:
        import eval_chaser
    except ImportError:  # tests/ imported as a package
        from tests import eval_chaser
    from ado_ray.train import run_training

    cloudpickle.register_pickle_by_value(eval_chaser)  # the actor cannot import tests/
    cfg = _config(
        policy="eval_chaser",
        policy_options={},
        budget={"steps": 8},
        eval_interval=2,
        checkpoint_interval=8,
        mixture_lag=1,
    )
    corpus = load_corpus("synthetic", **DATA)
    record = run_trial(
        cfg,
        "eval-feedback",
        str(tmp_path / "ray"),
        Placement(num_workers=2, cpus_per_worker=1),
        corpus=corpus,
        trace_dir=str(tmp_path),
    )
    rank0, rank1 = _read_trace(tmp_path / "rank0.jsonl"), _read_trace(tmp_path / "rank1.jsonl")
    assert sorted(rank0) == sorted(rank1) == list(range(8))
    assert all(rank0[s] == rank1[s] for s in range(8))
    assert [e["step"] for e in record["evals"]] == [0, 2, 4, 6, 8]
    assert [s["step"] for s in record["steps"] if s["diagnostics"]] == [0, 1, 3, 5, 7]
    eval_tokens = record["summary"]["eval_tokens"]
    assert eval_tokens == 5 * len(corpus.domains) * 16 * DATA["seq_len"]
    # The plain loop in one process: the same batches and events, so the same weights (up to
    # the rounding of the two-rank losses).
    local = run_training(cfg, corpus)
    np.testing.assert_array_equal(record["steps"][0]["weights"], local["steps"][0]["weights"])
    np.testing.assert_allclose(
        [s["weights"] for s in record["steps"]], [s["weights"] for s in local["steps"]], rtol=1e-4
    )


class _FakeActor:
    """Stands in for the mixture actor: counts the calls and weight requests, answers at once."""

    def __init__(self):
        import ray

        outer = self
        self.requests: list[int] = []
        self.observed: list[int] = []
        self.calls = 0

        class _Method:
            def __init__(self, fn):
                def remote(*args):
                    outer.calls += 1
                    return fn(*args)

                self.remote = remote

        def weights_for(step):
            outer.requests.append(step)
            return ray.put([0.5, 0.5])

        def observe(step, *_):
            outer.observed.append(step)
            return ray.put(None)

        def observe_then_weights(step, counts, losses, eval_follows, upcoming):
            outer.observed.append(step)
            return weights_for(upcoming)

        self.weights_for = _Method(weights_for)
        self.observe = _Method(observe)
        self.observe_then_weights = _Method(observe_then_weights)
        self.state_dict = _Method(lambda: ray.put({"observed": list(outer.observed)}))


@pytest.mark.parametrize("lag", [1, 2, 3])
def test_the_client_asks_each_steps_weights_once_and_early(ray_cluster, lag):
    from ado_ray.distributed.actor import RayMixture

    actor = _FakeActor()
    client = RayMixture(actor, rank=0, lag=lag)
    for step in range(10):
        client.weights(step)
        before = actor.calls
        # Once step t is observed, steps t+1 .. t+lag are already asked for: with lag >= 2
        # the next step's answer has had a whole step to arrive.
        client.observe(step, [1, 1], [1.0, 1.0])
        assert set(range(step + 1, step + 1 + lag)) <= set(client._prefetch)
        assert len(client._prefetch) == lag
        if step > 0:  # one call per step: the observation carries the request for t + lag
            assert actor.calls - before == 1
    assert sorted(actor.requests) == list(range(10 + lag)) and len(set(actor.requests)) == 10 + lag
    assert client.state_dict() == {"observed": list(range(10))}
    assert client._sent == []  # a checkpoint waited for every observation it covers


def test_describe_failure_reaches_the_workers_own_exception():
    from ray.exceptions import RayTaskError
    from ray.train import ControllerError, WorkerGroupError

    try:
        raise FloatingPointError("non-finite training loss at step 3")
    except FloatingPointError as exc:
        inner = exc
    wrapped = RayTaskError("train_fn", "Traceback (most recent call last): ...", inner)
    group = WorkerGroupError("[Rank 1]\nTraceback ...", {1: wrapped, 0: wrapped})
    assert describe_failure(group) == "FloatingPointError: non-finite training loss at step 3"
    assert describe_failure(ControllerError(ValueError("bad\nmore"))) == "ValueError: bad"


def test_history_from_checkpoint_reads_the_newest_complete_one(tmp_path):
    import torch

    from ado_ray.distributed.trainer import MIXTURE_FILE, history_from_checkpoint
    from ado_ray.policies import make_policy
    from ado_ray.train import MixtureController

    assert history_from_checkpoint(str(tmp_path), "t") is None  # never checkpointed
    ctl = MixtureController(make_policy("uniform", 2), lag=1)
    root = tmp_path / "train-t"
    for step, name in (
        (0, "checkpoint_2026-01-01_00-00-01"),
        (1, "checkpoint_2026-01-01_00-00-02"),
    ):
        ctl.observe(step, [3, 1], [2.0, 1.5])
        ctl.record_eval({"step": step + 1, "val_loss": [2.0, 1.0]})
        (root / name).mkdir(parents=True)
        torch.save(ctl.state_dict(), root / name / MIXTURE_FILE)
    (root / "checkpoint_2026-01-01_00-00-03").mkdir()  # cut off before its files landed
    saved = history_from_checkpoint(str(tmp_path), "t")
    assert [s["step"] for s in saved["steps"]] == [0, 1]
    assert saved["steps"][1]["counts"] == [3, 1] and saved["steps"][1]["weights"] == [0.5, 0.5]
    assert [e["step"] for e in saved["evals"]] == [1, 2]


def test_stopped_trials_are_recorded_with_their_checkpointed_history(tmp_path):
    from types import SimpleNamespace

    import torch

    from ado_ray.distributed.sweep import _record_stopped
    from ado_ray.distributed.trainer import MIXTURE_FILE
    from ado_ray.policies import make_policy
    from ado_ray.results import ResultsWriter
    from ado_ray.train import MixtureController

    uri = str(tmp_path / "tiny")
    ray_storage = str(tmp_path / "tiny" / "ray")
    study = load_study(_tiny_study(str(tmp_path)))
    writer = ResultsWriter(uri, "tiny")
    writer.write_meta("name: tiny\n", "0", extra={"domains": ["a", "b"]})
    # An ASHA-pruned search trial with one checkpoint, and one stopped before any.
    ctl = MixtureController(make_policy("uniform", 2), lag=1)
    for step in range(3):
        ctl.observe(step, [4, 4], [2.0, 1.0])
    ctl.record_eval({"step": 3, "tokens_seen": 96, "val_loss": [1.9, 0.9], "entropy_rate": None})
    ckpt = Path(ray_storage) / "train-search-ado-aaa" / "checkpoint_2026-01-01_00-00-00"
    ckpt.mkdir(parents=True)
    torch.save(ctl.state_dict(), ckpt / MIXTURE_FILE)
    sampled = {"gamma1": 0.2, "s": 0.3, "seed": 5, "phase": "search", "arm": "ado"}
    grid = [
        SimpleNamespace(
            path=f"{ray_storage}/search-ado/search-ado-aaa",
            config=sampled,
            error=None,
            metrics={"val_loss_balanced": 1.4, "eval_round": 1},
        ),
        SimpleNamespace(
            path=f"{ray_storage}/search-ado/search-ado-bbb", config=sampled, error=None, metrics={}
        ),
    ]
    _record_stopped(study, uri, ray_storage, grid, "search", label="ado")
    # A confirm trial whose driver died (no record of its own), and one that finished.
    spec = {"trial_name": "confirm-uniform-x-s0", "arm": "uniform", "seed": 0, "options": {}}
    done = {**spec, "trial_name": "confirm-uniform-x-s1", "seed": 1}
    grid = [
        SimpleNamespace(
            path=None, config={"spec": spec}, error=RuntimeError("node lost"), metrics={}
        ),
        SimpleNamespace(path=None, config={"spec": done}, error=None, metrics={}),
    ]
    _record_stopped(study, uri, ray_storage, grid, "confirm")
    writer.merge()

    res = read_results(uri)
    trials = res.trials.set_index("trial_id")
    assert sorted(trials.index) == ["confirm-uniform-x-s0", "search-ado-aaa", "search-ado-bbb"]
    assert trials.loc["search-ado-aaa", "status"] == "pruned"
    assert trials.loc["search-ado-aaa", "val_loss_balanced"] == 1.4
    pruned = trials.loc["search-ado-aaa"]
    assert pruned["hp_gamma1"] == 0.2 and pruned["seed"] == 5
    assert list(res.steps_for(["search-ado-aaa"]).step.unique()) == [0, 1, 2]
    assert list(res.evals[res.evals.trial_id == "search-ado-aaa"].step.unique()) == [3]
    assert res.steps_for(["search-ado-bbb"]).empty
    row = trials.loc["confirm-uniform-x-s0"]
    assert row["status"] == "interrupted" and row["error"] == "RuntimeError: node lost"
    # Not the trial's own failure: --resume runs it again.
    assert "confirm-uniform-x-s0" not in writer.finished_trial_ids()
    assert {"search-ado-aaa", "search-ado-bbb"} <= writer.finished_trial_ids()


def test_diverged_trial_fails_with_its_own_error_and_no_retry(ray_cluster, tmp_path):
    # lr = 1e30 without clipping: the loss is non-finite from step 1 on.
    cfg = _config(policy="uniform", policy_options={}, lr=1e30, grad_clip=None, lr_warmup_steps=0)
    with pytest.raises(TrialFailed, match="FloatingPointError: non-finite training loss") as info:
        run_trial(
            cfg,
            "diverged",
            str(tmp_path / "ray"),
            Placement(max_failures=1),
            trace_dir=str(tmp_path),
        )
    partial = info.value.partial  # what the actor saw before the failure is kept
    assert [s["step"] for s in partial["steps"]] == [0]
    assert [e["step"] for e in partial["evals"]] == [0]
    assert "diverged" not in partial["summary"]
    # A NaN is deterministic: the retry that max_failures=1 allows is not spent on it.
    assert sorted(_read_trace(tmp_path / "rank0.jsonl")) == [0, 1]
    assert len((tmp_path / "rank0.jsonl").read_text().splitlines()) == 2


def test_killed_worker_resumes_with_complete_history(ray_cluster, tmp_path):
    cfg = _config(budget={"steps": 12})
    corpus = load_corpus("synthetic", **DATA)
    record = run_trial(
        cfg,
        "crash-once",
        str(tmp_path / "ray"),
        Placement(num_workers=1, max_failures=1),
        corpus=corpus,
        crash_at_step=6,
        crash_marker=str(tmp_path / "crashed"),
    )
    assert (tmp_path / "crashed").exists(), "the worker was not killed"
    assert [s["step"] for s in record["steps"]] == list(range(12))
    assert [e["step"] for e in record["evals"]] == [0, 4, 8, 12]
    # The resumed run continued as an uninterrupted one would (same process layout, local).
    from ado_ray.train import run_training

    reference = run_training(cfg, corpus)
    ref_w = np.array([s["weights"] for s in reference["steps"]])
    got_w = np.array([s["weights"] for s in record["steps"]])
    np.testing.assert_allclose(got_w, ref_w, rtol=1e-5, atol=1e-7)
    ref_l = np.array([s["train_loss"] for s in reference["steps"]], dtype=float)
    got_l = np.array([s["train_loss"] for s in record["steps"]], dtype=float)
    np.testing.assert_allclose(got_l, ref_l, rtol=1e-4)


def _tiny_study(storage_uri: str) -> dict:
    study = load_study("studies/quickstart.yaml").to_dict()
    study["name"] = "tiny"
    study["data"]["options"] = dict(DATA)
    study["model"]["overrides"] = {"n_layer": 1, "n_embd": 32, "n_head": 2}
    study["training"].update(
        budget={"steps": 24},
        batch_size=8,
        eval_interval=8,
        checkpoint_interval=8,
        eval_sequences=16,
        lr_warmup_steps=2,
    )
    study["arms"] = {
        "uniform": {},
        "ado": {
            "options": ADO_FAST,
            "search": {
                "gamma1": {"type": "loguniform", "low": 0.05, "high": 0.5},
                "s": {"type": "uniform", "low": 0.0, "high": 1.0},
            },
        },
    }
    study["seeds"] = [0, 1]
    study["search"].update(num_samples=2, top_k=1)
    study["storage"] = storage_uri
    return study


def test_sweep_writes_results_resumes_and_analyzes(ray_cluster, tmp_path):
    import duckdb

    from ado_ray.analysis import analyze
    from ado_ray.distributed.sweep import run_sweep
    from ado_ray.results import ResultsWriter

    uri = f"file://{tmp_path}/store"  # a URI, standing in for remote storage
    study = load_study(_tiny_study(uri))
    results = run_sweep(study)
    assert results == storage.join(uri, "tiny")

    res = read_results(results)
    trials = res.trials
    assert set(TRIALS_COLUMNS) <= set(trials.columns)
    assert {"hp_gamma1", "hp_s", "hp_delta_min"} <= set(trials.columns)
    assert list(res.steps.columns) == list(STEPS_COLUMNS)
    assert list(res.evals.columns) == list(EVALS_COLUMNS)
    search = trials[trials.phase == "search"]
    confirm = trials[trials.phase == "confirm"]
    assert len(search) == 2 and (search.status == "completed").all()
    assert sorted(confirm.arm) == ["ado", "ado", "uniform", "uniform"]
    assert (confirm.status == "completed").all() and confirm.val_loss_balanced.notna().all()
    assert (res.steps.groupby("trial_id").step.nunique() == 24).all()

    local = Path(str(tmp_path / "store" / "tiny"))
    con = duckdb.connect()
    arms = con.execute(
        f"SELECT arm, count(*) FROM '{local}/trials.parquet' GROUP BY arm ORDER BY arm"
    ).fetchall()
    assert arms == [("ado", 4), ("uniform", 2)]
    assert len(pd.read_parquet(local / "evals.parquet")) == len(res.evals)

    # Interrupt: one confirm trial is lost; --resume runs only that one, and keeps the rest.
    lost = confirm.trial_id.iloc[0]
    for kind in ("trials", "steps", "evals"):
        storage.delete(storage.join(results, "parts", f"{lost}.{kind}.parquet"))
    ResultsWriter(results, "tiny").merge()
    before = read_results(results).trials.set_index("trial_id").started_at
    with pytest.raises(ValueError, match="--resume"):
        run_sweep(study)
    run_sweep(study, resume=True)
    after = read_results(results).trials.set_index("trial_id").started_at
    assert len(after) == 6 and lost in after.index
    kept = before.index
    assert (after[kept] == before[kept]).all(), "a finished trial was re-run"

    report = analyze(results, out_dir=str(tmp_path / "analysis"))
    assert "uniform" in report.table.to_string()
    assert all(Path(p).stat().st_size > 0 for p in report.plots)


def test_asha_records_finished_trials_as_completed_and_stopped_ones_as_pruned(
    ray_cluster, tmp_path
):
    # ASHA stops every trial at its last round (max_t) too; a trial that ran to the end must
    # still be recorded as completed (its driver records it before Tune sees the last report),
    # so the confirm phase can pick it.
    from ado_ray.distributed.sweep import run_sweep

    d = _tiny_study(str(tmp_path / "store"))
    d["seeds"] = [0]
    d["search"].update(
        num_samples=4, scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2}
    )
    results = run_sweep(load_study(d))
    trials = read_results(results, with_steps=False).trials
    search = trials[trials.phase == "search"]
    assert len(search) == 4 and set(search.status) <= {"completed", "pruned"}
    done = search[search.status == "completed"]
    pruned = search[search.status == "pruned"]
    assert len(done) >= 1 and (done.steps == 24).all()
    assert ((pruned.steps < 24) & (pruned.steps % 8 == 0)).all()  # stopped at a round's end
    best = done.sort_values("val_loss_balanced").config_id.iloc[0]
    confirm = trials[(trials.phase == "confirm") & (trials.arm == "ado")]
    assert list(confirm.config_id) == [best]
    # The stopped trials' placement groups were freed (or the sweep would have waited for their
    # CPUs) by the sweep's janitor, not by a cleaner actor per run.
    from ray.util.placement_group import placement_group_table
    from ray.util.state import list_actors

    assert not list_actors(filters=[("class_name", "=", "PlacementGroupCleaner")])
    assert {g["state"] for g in placement_group_table().values()} <= {"REMOVED"}


def test_a_lost_worker_is_the_clusters_fault_not_the_trials():
    import ray.exceptions

    from ado_ray.distributed.trainer import is_infrastructure

    class WorkerGroupError(Exception):  # Train V2's shape: failures by rank
        def __init__(self, failures):
            super().__init__("worker group failed")
            self.worker_failures = failures

    lost = WorkerGroupError({1: ray.exceptions.ActorDiedError()})
    assert is_infrastructure(lost)
    own = WorkerGroupError({0: ValueError("bad batch")})
    assert not is_infrastructure(own)
    assert is_infrastructure(ray.exceptions.NodeDiedError("node gone"))
    # What Train 2.60 raises for a worker process that was killed (found by the interrupt suite).
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    killed = WorkerGroupError(
        {0: WorkerHealthCheckFailedError("health check failed", ray.exceptions.ActorDiedError())}
    )
    assert is_infrastructure(killed)


def test_trial_failed_survives_pickling():
    # Ray pickles a Tune trial's exception back to the driver.
    import pickle

    exc = TrialFailed("ActorDiedError: gone", {"steps": [{"step": 0}]}, infrastructure=True)
    back = pickle.loads(pickle.dumps(exc))
    assert (str(back), back.partial, back.infrastructure) == (str(exc), exc.partial, True)
