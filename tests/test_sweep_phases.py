"""The sweep's phases without Ray: Tune's runners are replaced by ones that record each trial at
once, so what a phase plans, counts and hands on can be checked in a second."""

from __future__ import annotations

import numpy as np
import pytest

from ado_ray.distributed import sweep
from ado_ray.distributed.interrupts import StudyIncomplete
from ado_ray.preflight import prepare_sweep
from ado_ray.results import ResultsWriter, read_results
from ado_ray.study import dump_study, load_study

try:
    from fast_ado import ADO_FAST
except ImportError:  # tests/ imported as a package
    from tests.fast_ado import ADO_FAST

DOMAINS = ["markov1", "zipf", "uniform"]


def _study(tmp_path, **changes):
    study = {
        "name": "phases",
        "data": {
            "source": "synthetic",
            "options": {
                "seq_len": 16,
                "sequences_per_domain": 40,
                "val_sequences_per_domain": 8,
                "domains": DOMAINS,
            },
        },
        "model": {"preset": "tiny"},
        "training": {"budget": {"steps": 16}, "batch_size": 4, "eval_interval": 8},
        "arms": {"uniform": {}},
        "seeds": [0, 1],
        "storage": str(tmp_path / "results"),
    }
    study.update(changes)
    return load_study(study)


def _loss(weights) -> float:
    """A made-up metric with one best mixture, so the swarm's fit has something to find."""
    w = np.asarray(weights, dtype=float)
    return float(2.0 + ((w - np.array([0.6, 0.3, 0.1])) ** 2).sum())


def _record(run, trial_id, arm, policy, phase, seed, options, status):
    hparams = sweep._hparams(policy, options)
    metric = _loss(options["weights"]) if "weights" in options else 2.5 - 0.1 * seed
    ResultsWriter(run.results_uri, run.study.name).add_trial(
        {
            "trial_id": trial_id,
            "arm": arm,
            "policy": policy,
            "phase": phase,
            "seed": seed,
            "status": status,
            "hparams": hparams,
            "metrics": {"val_loss_balanced": metric, "tokens_seen": 64, "eval_tokens": 32},
            "domains": DOMAINS,
        },
        None,
        None,
    )


def _fake_tune(monkeypatch, lost: set[str]) -> list[str]:
    """Replace the sweep's Tune runners: every trial completes at once, except those named in
    ``lost``, which a lost node interrupts. Returns the names of the trials run."""
    ran: list[str] = []

    def run_grid(run, specs, phase):
        for sp in specs:
            ran.append(sp["trial_name"])
            status = "interrupted" if sp["trial_name"] in lost else "completed"
            _record(
                run, sp["trial_name"], sp["arm"], sp["policy"], phase, sp["seed"],
                sp["options"], status,
            )

    def run_search(run, label):
        policy = run.study.arm(label).policy
        for i in range(run.study.num_samples(label)):
            name = f"search-{label}-{i}"
            ran.append(name)
            options = run.study.arm_options(label, {"gamma1": 0.1 + 0.1 * i})
            status = "interrupted" if name in lost else "completed"
            seed = run.study.search_seeds[0]
            _record(run, name, label, policy, "search", seed, options, status)
        sweep.storage.write_text_atomic(
            sweep.storage.join(run.results_uri, sweep._search_done(label)), "{}\n"
        )

    monkeypatch.setattr(sweep, "_run_grid", run_grid)
    monkeypatch.setattr(sweep, "_run_search", run_search)
    return ran


def _phases(study, resume=False) -> str:
    checked = prepare_sweep(study, resume=resume)
    writer = ResultsWriter(checked.results_uri, study.name)
    writer.write_meta(dump_study(study), "0", extra={"domains": DOMAINS})
    return sweep._run_phases(
        study, checked, checked.results_uri, checked.results_uri + "/ray", writer, 2, resume,
        [], [], None,
    )


def test_the_swarm_is_fitted_and_confirmed_only_once_all_its_trials_finished(
    tmp_path, monkeypatch
):
    study = _study(
        tmp_path,
        swarm={"n_mixtures": 6, "budget_fraction": 0.5, "candidates": 200, "folds": 3},
    )
    lost = sweep.swarm_specs(study, prepare_sweep(study).corpus, 16)[2]["trial_name"]
    _fake_tune(monkeypatch, {lost})
    with pytest.raises(StudyIncomplete):
        _phases(study)
    confirm = read_results(str(tmp_path / "results" / "phases"), with_steps=False).trials
    confirm = confirm[confirm.phase == "confirm"]
    # The other arms are confirmed; the swarm's mixtures wait for its lost trial.
    assert sorted(confirm.arm) == ["uniform", "uniform"]

    ran = _fake_tune(monkeypatch, set())
    _phases(study, resume=True)
    assert ran[0] == lost and ran.count(lost) == 1  # only the lost swarm trial runs again
    t = read_results(str(tmp_path / "results" / "phases"), with_steps=False).trials
    confirm = t[t.phase == "confirm"]
    for arm in ("swarm_best", "swarm_top"):
        mine = confirm[confirm.arm == arm]
        # One mixture, fitted on every swarm trial, confirmed on every seed.
        assert mine.config_id.nunique() == 1 and sorted(mine.seed) == [0, 1]
    top = confirm[confirm.arm == "swarm_top"].hp_weights.iloc[0]
    swarm = t[t.phase == "swarm"]
    best_member = swarm.loc[swarm.val_loss_balanced.idxmin(), "hp_weights"]
    assert top == best_member


def test_a_search_trial_lost_to_the_cluster_is_final(tmp_path, monkeypatch):
    study = _study(
        tmp_path,
        arms={
            "uniform": {},
            "ado": {
                "options": ADO_FAST,
                "num_samples": 3,
                "search": {"gamma1": {"type": "uniform", "low": 0.05, "high": 0.5}},
            },
        },
    )
    ran = _fake_tune(monkeypatch, {"search-ado-1"})
    uri = _phases(study)  # complete: the search counts the lost sample, the confirm phase ran
    t = read_results(uri, with_steps=False).trials.set_index("trial_id")
    assert t.loc["search-ado-1", "status"] == "interrupted"
    assert sorted(t[t.phase == "confirm"].arm) == ["ado", "ado", "uniform", "uniform"]
    ran.clear()
    _phases(study, resume=True)  # nothing left to run
    assert ran == []


def test_meta_json_records_the_spaces_of_the_searched_arms_only(tmp_path):
    space = {"gamma1": {"type": "uniform", "low": 0.05, "high": 0.5}}
    study = _study(
        tmp_path,
        arms={
            "uniform": {},
            "ado": {"options": ADO_FAST, "search": space},
            "ado_off": {"policy": "ado", "options": ADO_FAST, "search": space, "num_samples": 0},
        },
    )
    meta = sweep.study_meta(study, prepare_sweep(study).corpus, 16)
    assert meta["search_spaces"] == {"ado": {"gamma1": {**space["gamma1"]}}}
    assert meta["arms"] == {"uniform": "uniform", "ado": "ado", "ado_off": "ado"}
    assert meta["domains"] == DOMAINS and meta["total_steps"] == 16
