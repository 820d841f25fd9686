"""The search's best configurations read back from Parquet in their options' own types, even
where two policies' options share a name but not a type (one hp_ column holds both)."""

from __future__ import annotations

from ado_ray.distributed.sweep import best_configs
from ado_ray.results import ResultsWriter
from ado_ray.study import load_study


def test_best_configs_survive_a_column_shared_by_two_types(tmp_path):
    study = load_study(
        {
            "name": "mixed",
            "arms": {
                "ado": {"search": {"smoothing": {"type": "categorical", "choices": [True, False]}}},
                "odm": {"search": {"smoothing": {"type": "uniform", "low": 0.5, "high": 0.99}}},
            },
            "search": {"num_samples": 2, "top_k": 1},
        }
    )
    uri = str(tmp_path / "mixed")
    w = ResultsWriter(uri, "mixed")
    rows = [("ado", "a1", True, 3.0), ("ado", "a2", False, 2.0),
            ("odm", "o1", 0.9, 2.5), ("odm", "o2", 0.6, 2.7)]
    for arm, tid, value, metric in rows:
        w.add_trial(
            {
                "trial_id": f"search-{arm}-{tid}",
                "arm": arm,
                "policy": arm,
                "phase": "search",
                "seed": 3,
                "status": "completed",
                "hparams": {"smoothing": value},
                "metrics": {"val_loss_balanced": metric},
            },
            None,
            None,
        )
    w.merge()
    best = best_configs(study, uri)
    assert best["ado"] == [{"smoothing": False}]
    assert best["odm"] == [{"smoothing": 0.9}] and isinstance(best["odm"][0]["smoothing"], float)
