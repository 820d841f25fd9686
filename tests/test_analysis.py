"""The analysis: main table against hand computation, formats, importances, plots and report."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ado_ray import analysis as A
from ado_ray.results import ResultsWriter, config_id, read_results

try:
    import fixtures_results as fx
except ImportError:  # tests/ imported as a package
    from tests import fixtures_results as fx

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysis") / "study"
    fx.build_results(str(path))
    return path


@pytest.fixture(scope="module")
def res(root):
    return read_results(str(root))


@pytest.fixture(scope="module")
def table(res):
    return A.main_table(res)


@pytest.fixture(scope="module")
def report(root):
    return A.analyze(str(root))


def _confirm(res, arm):
    t = res.trials
    return t[
        (t["phase"] == "confirm") & (t["arm"] == arm) & (t["status"] == "completed")
    ].set_index("seed")


def test_main_table_rows(table):
    assert table.attrs["phase"] == "confirm" and table.attrs["baseline"] == "uniform"
    ado_label = f"ado#{config_id('ado', fx.ADO_A)[:6]}"
    assert table["label"].tolist() == ["uniform", "natural", ado_label]
    assert table["n_seeds"].tolist() == [3, 3, 3]
    assert table["seeds"].tolist() == ["0,1,2"] * 3
    assert "gamma1=0.1" in table.loc[2, "hparams"]


def test_mean_and_t_interval_by_hand(res, table):
    vals = _confirm(res, "ado")["val_loss_balanced"].to_numpy()
    mean = vals.mean()
    half = stats.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals))
    row = table[table["arm"] == "ado"].iloc[0]
    assert row["val_loss_balanced_mean"] == pytest.approx(mean, rel=1e-12)
    assert row["val_loss_balanced_ci95"] == pytest.approx(half, rel=1e-9)
    tps = _confirm(res, "natural")["tokens_per_second"].to_numpy()
    row = table[table["arm"] == "natural"].iloc[0]
    assert row["tokens_per_second_mean"] == pytest.approx(tps.mean())
    assert np.isnan(row["excess_loss_balanced_ci95"]) and np.isnan(row["excess_loss_balanced_mean"])


def test_paired_difference_by_hand(res, table):
    for metric in ("val_loss_balanced", "val_loss_natural"):
        ado = _confirm(res, "ado")[metric]
        uni = _confirm(res, "uniform")[metric]
        diff = (ado - uni.reindex(ado.index)).to_numpy()
        mean = diff.mean()
        half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / math.sqrt(3)
        row = table[table["arm"] == "ado"].iloc[0]
        assert row[f"diff_{metric}_mean"] == pytest.approx(mean, rel=1e-9)
        assert row[f"diff_{metric}_ci95"] == pytest.approx(half, rel=1e-9)
        assert row[f"diff_{metric}_ci_low"] == pytest.approx(mean - half, rel=1e-9)
        assert row[f"diff_{metric}_n_pairs"] == 3
    verdicts = table.set_index("arm")
    # The fixture's offsets: ADO better on every domain; natural worse on the balanced metric.
    assert verdicts.loc["ado", "diff_val_loss_balanced_verdict"] == "better"
    assert verdicts.loc["natural", "diff_val_loss_balanced_verdict"] == "worse"
    assert verdicts.loc["uniform", "diff_val_loss_balanced_verdict"] == "baseline"


def test_per_domain_final_losses(res, table):
    ids = _confirm(res, "uniform")["trial_id"]
    ev = res.evals[res.evals["trial_id"].isin(ids)]
    last = ev[ev["step"] == ev.groupby("trial_id")["step"].transform("max")]
    for d in fx.DOMAINS:
        want = last[last["domain"] == d]["val_loss"].mean()
        assert table.loc[0, f"val_loss__{d}_mean"] == pytest.approx(want)


def test_one_seed_has_no_interval(res):
    t = A.main_table(res, phase="search")
    fixed = t[t["arm"] == "fixed"].iloc[0]
    assert fixed["n_seeds"] == 1 and np.isnan(fixed["val_loss_balanced_ci95"])
    assert fixed["diff_val_loss_balanced_verdict"] == "n/a"  # no uniform in the search phase
    text = A.format_table(t, "markdown")
    assert "± n/a" in text
    assert A.mean_ci([2.0]) == (2.0, pytest.approx(float("nan"), nan_ok=True), 1)


def test_a_diverged_or_failed_seed_is_never_dropped_silently(tmp_path):
    uri = str(tmp_path / "diverged")
    w = ResultsWriter(uri, "s")
    for seed in (0, 1, 2):
        w.add_trial(*fx.make_trial("uniform", "confirm", seed, None))
        rec, steps, evals = fx.make_trial("ado", "confirm", seed, fx.ADO_A)
        if seed == 2:
            rec["metrics"]["val_loss_balanced"] = math.inf  # this seed diverged at eval
        w.add_trial(rec, steps, evals)
    w.add_trial(*fx.make_trial("natural", "confirm", 0, None))
    w.add_trial(*fx.make_trial("natural", "confirm", 1, None, fail=True))
    for seed in (0, 1):  # an arm none of whose seeds completed
        w.add_trial(*fx.make_trial("fixed", "confirm", seed, None, fail=True))
    w.merge()
    table = A.main_table(uri)
    t = table.set_index("arm")
    # Dropping the infinite seed would report ADO's two good seeds as its result.
    assert math.isnan(t.loc["ado", "val_loss_balanced_mean"])
    assert t.loc["ado", "diff_val_loss_balanced_verdict"] == "n/a"
    assert math.isfinite(t.loc["ado", "val_loss_natural_mean"])  # other metrics stand
    assert t.loc["ado", "diff_val_loss_natural_n_pairs"] == 3
    assert t.loc["natural", "n_seeds"] == 1 and t.loc["natural", "n_failed"] == 1
    assert t.loc["uniform", "n_failed"] == 0
    assert t.loc["fixed", "n_seeds"] == 0 and t.loc["fixed", "n_failed"] == 2
    assert math.isnan(t.loc["fixed", "val_loss_balanced_mean"])
    assert "weights=" in t.loc["fixed", "hparams"]
    notes = " ".join(table.attrs["notes"])
    assert "val_loss_balanced is not finite" in notes
    assert "natural: 1 trial(s) failed" in notes and "fixed: 2 trial(s) failed" in notes
    assert "no seed completed" in notes
    # A metric no seed measured (this fixture's excess loss) is n/a without a divergence note.
    assert "excess_loss_balanced" not in notes
    text = A.format_table(table, "markdown")
    assert "(n=3)" in text and "(n=1)" in text  # the pairs behind each difference


def test_phase_fallback(tmp_path):
    uri = str(tmp_path / "only-search")
    w = ResultsWriter(uri, "s")
    for seed in (0, 1):
        w.add_trial(*fx.make_trial("uniform", "search", seed, None))
        w.add_trial(*fx.make_trial("ado", "search", seed, fx.ADO_A))
    w.merge()
    t = A.main_table(uri)
    assert t.attrs["phase"] == "search" and len(t) == 2
    assert any("using phase 'search'" in n for n in t.attrs["notes"])


def test_format_markdown(table):
    text = A.format_table(table, "markdown")
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(table)
    assert lines[0].startswith("| label | n_seeds | n_failed | val_loss_balanced |")
    assert "Δval_loss_balanced vs uniform" in lines[0]
    assert "better" in lines[-1] and "(baseline)" in lines[2]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    mean, half = table.loc[0, ["val_loss_balanced_mean", "val_loss_balanced_ci95"]]
    assert f"{mean:.4f} ± {half:.4f}" in lines[2]


def test_format_csv_and_json(table):
    back = pd.read_csv(io.StringIO(A.format_table(table, "csv")))
    assert list(back.columns) == list(table.columns)
    np.testing.assert_allclose(back["val_loss_balanced_mean"], table["val_loss_balanced_mean"])
    records = json.loads(A.format_table(table, "json"))
    assert len(records) == len(table) and set(records[0]) == set(table.columns)
    assert records[0]["excess_loss_balanced_mean"] is None  # NaN -> null
    assert records[2]["diff_val_loss_balanced_mean"] == pytest.approx(
        table.loc[2, "diff_val_loss_balanced_mean"]
    )
    with pytest.raises(ValueError):
        A.format_table(table, "xlsx")


def test_importances(res):
    imp, msg = A.hp_importances(res)
    assert imp is not None, msg
    # gamma2 and the count options are the same in every completed ADO search trial.
    assert set(imp) <= {"gamma1", "delta_min", "refit_every", "use_prior"} and imp
    assert sum(imp.values()) == pytest.approx(1.0)
    assert "4 completed ado trials" in msg
    assert "noisy" in msg and "not counted" in msg  # 4 trials: a hint, and survivors only
    space = A.search_space(res)
    assert type(space.distributions["hp_refit_every"]).__name__ == "IntDistribution"
    assert type(space.distributions["hp_use_prior"]).__name__ == "CategoricalDistribution"
    assert space.skipped == {
        "hp_count_mode": "constant",
        "hp_count_unit": "constant",
        "hp_gamma2": "constant",
    }


def test_importances_explain_when_impossible(tmp_path):
    uri = str(tmp_path / "one")
    w = ResultsWriter(uri, "s")
    w.add_trial(*fx.make_trial("ado", "search", 0, fx.ADO_A))
    imp, msg = A.hp_importances(uri)
    assert imp is None and ">= 2 completed" in msg
    w.add_trial(*fx.make_trial("ado", "search", 1, fx.ADO_A))
    imp, msg = A.hp_importances(uri)
    assert imp is None and "varying" in msg


def test_analyze_writes_plots_and_report(root, report):
    out = root / "analysis"
    names = sorted(os.path.basename(p) for p in report.plots)
    assert names == ["scaling_laws.png", "search.png", "val_loss.png", "weights.png"]
    for p in report.plots:
        data = open(p, "rb").read()
        assert data.startswith(PNG) and len(data) > 5_000
    assert report.report_path == str(out / "report.md")
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for name in names:
        assert f"](plots/{name})" in md
        assert f'src="plots/{name}"' in page
    assert "Hyperparameter importances" in md
    assert any(f"| {name} |" in md for name in report.importances)
    assert "CUDA out of memory" in md  # the failed trial is listed
    assert report.text == report.table_text == A.format_table(report.table, "markdown")
    assert (out / "table.md").read_text() == report.table_text
    assert report.importances and abs(sum(report.importances.values()) - 1) < 1e-9
    # The scaling-law plot says how n was counted.
    assert "count_mode=same_step_size, count_unit=tokens_1024" in md


def test_count_convention(res):
    from ado_ray.plots import count_convention

    trial = res.trials[res.trials["arm"] == "ado"].iloc[0].copy()
    scale, own, note = count_convention(res, trial)
    assert scale == 128 / 1024 and not own and "policy's own count" in note
    trial["hp_count_unit"], trial["hp_count_mode"] = "sequences", "own"
    assert count_convention(res, trial)[:2] == (1.0, True)
    trial["hp_count_unit"] = trial["hp_count_mode"] = None
    trial["seq_len"] = float("nan")  # falls back to meta.json's seq_len
    scale, own, note = count_convention(res, trial)
    assert scale == 128 / 1024 and not own and note.startswith("Approximation")


def test_analyze_to_uri_and_cli(root, tmp_path, capsys):
    out = "file://" + str(tmp_path / "out")
    rep = A.analyze(str(root), out, "json", make_plots=False)
    assert rep.plots == []
    assert json.loads((tmp_path / "out" / "table.json").read_text())[0]["label"] == "uniform"
    assert (tmp_path / "out" / "report.html").exists()
    assert (
        A.main(
            ["file://" + str(root), "--out", str(tmp_path / "cli"), "--format", "csv", "--no-plots"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("label,arm,config_id,")
    assert len(printed.strip().splitlines()) == 4


def test_default_out_dir():
    assert A.default_out_dir("/data/study", "s") == "/data/study/analysis"
    assert A.default_out_dir("s3://bucket/study", "s").endswith("/analysis-s")
