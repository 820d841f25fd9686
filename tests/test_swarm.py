"""The swarm's pure parts: mixtures sampled around a centre, a regression that ranks held-out
mixtures, and RegMix's proposal landing near a known optimum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ado_ray.swarm import dirichlet_alpha, fit_swarm, propose_mixture, sample_mixtures

TARGET = np.array([0.5, 0.3, 0.15, 0.05])


def loss(w: np.ndarray) -> np.ndarray:
    """A metric with diminishing returns per domain, best near TARGET."""
    return -(TARGET * np.log(np.asarray(w) + 1e-4)).sum(axis=-1)


def test_the_swarm_starts_with_uniform_and_natural_and_is_reproducible():
    natural = [4, 3, 2, 1]
    a = sample_mixtures(10, natural, natural, concentration=1.0, seed=3)
    b = sample_mixtures(10, natural, natural, concentration=1.0, seed=3)
    assert a.shape == (10, 4) and np.array_equal(a, b)
    assert np.allclose(a.sum(axis=1), 1.0) and (a >= 0).all()
    assert np.allclose(a[0], 0.25) and np.allclose(a[1], [0.4, 0.3, 0.2, 0.1])
    # no duplicate uniform member when the natural mixture is uniform
    c = sample_mixtures(5, [1, 1], [1, 1], 1.0, 0)
    assert np.allclose(c[0], 0.5) and not np.allclose(c[1], 0.5)


def test_concentration_controls_the_spread_around_the_centre():
    center = np.array([0.4, 0.3, 0.2, 0.1])
    assert np.allclose(dirichlet_alpha(center, 1.0), 4 * center)
    tight = sample_mixtures(400, center, center, 50.0, 1)[2:]
    loose = sample_mixtures(400, center, center, 0.5, 1)[2:]
    assert np.abs(tight.mean(0) - center).max() < 0.02
    assert tight.std(0).mean() < loose.std(0).mean() / 3


def test_the_regression_ranks_held_out_mixtures_and_the_proposal_finds_the_optimum():
    w = sample_mixtures(40, [1, 1, 1, 1], [1, 1, 1, 1], 1.0, seed=0)
    rng = np.random.default_rng(0)
    y = loss(w) + rng.normal(0, 0.01, len(w))
    fit = fit_swarm(w, y, folds=5)
    assert fit.n == 40 and fit.cv_spearman > 0.9
    best = propose_mixture(fit, [1, 1, 1, 1], 1.0, candidates=20000, top_k=50, seed=0)
    assert np.isclose(best.sum(), 1.0)
    assert np.abs(best - TARGET).max() < 0.1
    # better than every mixture the swarm ran, on the true metric
    assert loss(best) < loss(w).min() + 0.01


def test_a_swarm_too_small_to_fit_is_refused():
    with pytest.raises(ValueError, match="at least 3"):
        fit_swarm(np.eye(3)[:2], np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="swarm.regression"):
        fit_swarm(np.eye(3), np.ones(3), kind="forest")


# -- the swarm phase through Ray ----------------------------------------------------------------


@pytest.mark.ray
def test_a_swarm_runs_concurrently_fits_and_confirms_its_mixtures(ray_cluster, tmp_path):
    import json

    from ado_ray.distributed.sweep import run_sweep
    from ado_ray.report import analyze
    from ado_ray.results import read_results
    from ado_ray.study import load_study

    study = load_study(
        {
            "name": "swarm_t",
            "data": {
                "source": "synthetic",
                "options": {
                    "seq_len": 32,
                    "sequences_per_domain": 300,
                    "val_sequences_per_domain": 32,
                    "domains": ["markov1", "zipf", "uniform"],
                },
            },
            "model": {"preset": "tiny", "overrides": {"n_layer": 1, "n_embd": 32, "n_head": 2}},
            "training": {
                "budget": {"steps": 16},
                "batch_size": 8,
                "eval_interval": 8,
                "checkpoint_interval": 8,
                "eval_sequences": 16,
                "lr_warmup_steps": 2,
            },
            "arms": {"uniform": {}},
            "seeds": [0, 1],
            "swarm": {"n_mixtures": 5, "budget_fraction": 0.5, "candidates": 500, "top_k": 10,
                      "folds": 3},
            "resources": {"max_concurrent_trials": 2},
            "storage": str(tmp_path / "results"),
        }
    )
    uri = run_sweep(study)
    t = read_results(uri, with_steps=False).trials
    swarm = t[t.phase == "swarm"]
    assert len(swarm) == 5 and (swarm.status == "completed").all()
    assert (swarm.steps == 8).all() and (swarm.policy == "fixed").all()  # half the budget
    assert set(swarm.seed) == {2}  # the search seed, not a confirm seed
    saved = json.loads((Path(uri) / "swarm.json").read_text())
    assert saved["n_mixtures"] == 5 and np.isclose(sum(saved["swarm_best"]), 1.0)
    confirm = t[t.phase == "confirm"]
    assert sorted(set(confirm.arm)) == ["swarm_best", "swarm_top", "uniform"]
    assert (confirm.groupby("arm").seed.nunique() == 2).all()
    assert (confirm.steps == 16).all()
    # --resume neither loses nor reruns swarm trials
    before = set(swarm.trial_id)
    run_sweep(study, resume=True)
    again = read_results(uri, with_steps=False).trials
    assert set(again[again.phase == "swarm"].trial_id) == before and len(again) == len(t)
    report = analyze(uri, out_dir=str(tmp_path / "analysis"))
    assert "regret" in report.text.lower() and "headroom" in report.text.lower()
