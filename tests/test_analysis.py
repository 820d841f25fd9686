"""The analysis: main table against hand computation, formats, importances, plots and report;
labelled arms, version-1 results and the one-way imports (report -> plots -> analysis)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ado_ray import analysis as A
from ado_ray import report as Rep
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
    return Rep.analyze(str(root))


def _confirm(res, arm):
    t = res.trials
    return t[
        (t["phase"] == "confirm") & (t["arm"] == arm) & (t["status"] == "completed")
    ].set_index("seed")


def test_main_table_rows(table):
    assert table.attrs["phase"] == "confirm" and table.attrs["baseline"] == "uniform"
    ado_label = f"ado#{config_id('ado', fx.ADO_A)[:6]}"
    assert table["label"].tolist() == ["uniform", "natural", ado_label]
    assert table["policy"].tolist() == ["uniform", "natural", "ado"]
    assert table["n_seeds"].tolist() == [3, 3, 3]
    assert table["seeds"].tolist() == ["0,1,2"] * 3
    assert "gamma1=0.1" in table.loc[2, "hparams"]
    # Each configuration's compute: tokens per trial, mean over its completed trials.
    assert (table["train_tokens_per_trial"] == fx.STEPS * fx.BATCH * fx.SEQ_LEN).all()
    assert (table["eval_tokens_per_trial"] == 4 * 3 * fx.EVAL_SEQS * fx.SEQ_LEN).all()
    text = A.format_table(table, "markdown")
    assert "| 24,576 |" in text and "| 819,200 |" in text


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
    assert A.searched_arms(res) == ["ado"]  # meta.json's search_spaces; not the fixed arm
    imp, msg = A.hp_importances(res)
    assert imp is not None, msg
    # gamma2 is declared but the same in every completed ADO search trial.
    assert set(imp) <= {"gamma1", "delta_min", "refit_every", "use_prior"} and imp
    assert sum(imp.values()) == pytest.approx(1.0)
    assert "4 completed ado trials" in msg and "meta.json" in msg
    assert "noisy" in msg and "not counted" in msg  # 4 trials: a hint, and survivors only
    space = A.search_space(res)
    assert space.arm == "ado" and space.source == A.SPACE_FROM_META
    # The declared distributions, not ones guessed from the four observed values.
    gamma1 = space.distributions["hp_gamma1"]
    assert (gamma1.low, gamma1.high, gamma1.log) == (0.01, 1.0, True)
    refit = space.distributions["hp_refit_every"]
    assert type(refit).__name__ == "IntDistribution" and (refit.low, refit.step) == (50, 50)
    assert space.distributions["hp_use_prior"].choices == (True, False)
    # Only the declared options; count_mode and friends are fixed options, not searched.
    assert space.skipped == {"hp_gamma2": "constant"}


def test_search_space_keeps_to_the_declared_space(res):
    meta = dict(res.meta)
    meta["search_spaces"] = {
        "ado": {
            "gamma1": {"type": "uniform", "low": 0.2, "high": 1.0},  # A's 0.1 lies outside
            "delta_min": {"type": "uniform", "low": 0.0, "high": 0.1, "step": 0.01},
            "use_prior": {"type": "categorical", "choices": ["auto", True]},  # no False
        }
    }
    space = A.search_space(dataclasses.replace(res, meta=meta))
    assert space.skipped == {"hp_gamma1": "constant", "hp_use_prior": "constant"}
    assert list(space.distributions) == ["hp_delta_min"]
    assert any("2 recorded value(s) of gamma1" in n for n in space.notes)
    assert space.trials["hp_gamma1"].isna().sum() == 2
    assert sorted(space.trials["hp_delta_min"]) == [0.01, 0.01, 0.05, 0.05]


def test_importances_explain_when_impossible(tmp_path):
    uri = str(tmp_path / "one")
    w = ResultsWriter(uri, "s")
    w.add_trial(*fx.make_trial("ado", "search", 0, fx.ADO_A))
    imp, msg = A.hp_importances(uri)  # no meta.json, and one configuration is not a search
    assert imp is None and "need a searched arm" in msg
    imp, msg = A.hp_importances(uri, arm="ado")
    assert imp is None and ">= 2 completed" in msg
    w.add_trial(*fx.make_trial("ado", "search", 1, fx.ADO_A))
    imp, msg = A.hp_importances(uri, arm="ado")
    assert imp is None and "varying" in msg


def test_analyze_writes_plots_and_report(root, report):
    out = root / "analysis"
    names = sorted(os.path.basename(p) for p in report.plots)
    assert names == ["scaling_laws-ado.png", "search-ado.png", "val_loss.png", "weights.png"]
    for p in report.plots:
        data = open(p, "rb").read()
        assert data.startswith(PNG) and len(data) > 5_000
    assert report.report_path == str(out / "report.md")
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for name in names:
        assert f"](plots/{name})" in md
        assert f'src="plots/{name}"' in page
    assert "## Hyperparameter importances: ado (search phase)" in md
    assert list(report.importances) == ["ado"]
    assert any(f"| {name} |" in md for name in report.importances["ado"])
    assert "CUDA out of memory" in md  # the failed trial is listed
    assert report.text == report.table_text == A.format_table(report.table, "markdown")
    assert (out / "table.md").read_text() == report.table_text
    assert abs(sum(report.importances["ado"].values()) - 1) < 1e-9
    # The scaling-law plot says how n was counted, from the trial's recorded options.
    assert "count_mode=same_step_size, count_unit=tokens_1024" in md
    assert "Approximation" not in md and "version-1" not in md
    assert "Δ = arm − uniform (the reference arm)" in md
    assert "eval_tokens_per_trial" in md


def test_count_convention(res):
    from ado_ray.plots import count_convention

    trial = res.trials[res.trials["arm"] == "ado"].iloc[0].copy()
    scale, own, note = count_convention(res, trial)
    assert scale == 128 / 1024 and not own and "policy's own count" in note
    trial["hp_count_unit"], trial["hp_count_mode"] = "sequences", "own"
    assert count_convention(res, trial)[:2] == (1.0, True)
    trial["hp_count_unit"] = "tokens_1024"
    trial["seq_len"] = float("nan")  # meta.json's seq_len is the one used
    assert count_convention(res, trial)[:2] == (128 / 1024, True)
    trial["hp_seq_len"] = 256  # the policy's own option wins over meta.json's
    assert count_convention(res, trial)[0] == 256 / 1024
    # Version 2 records the options: missing ones are not guessed.
    trial["hp_count_unit"] = trial["hp_count_mode"] = None
    with pytest.raises(ValueError, match="records no count_mode, count_unit"):
        count_convention(res, trial)
    no_seq_len = dataclasses.replace(res, meta={**res.meta, "seq_len": None})
    trial["hp_count_unit"], trial["hp_count_mode"], trial["hp_seq_len"] = "tokens_1024", "own", None
    with pytest.raises(ValueError, match="seq_len"):
        count_convention(no_seq_len, trial)
    # Version 1 did not record them: a labelled approximation.
    trial["schema_version"] = 1
    trial["hp_count_unit"] = trial["hp_count_mode"] = None
    scale, own, note = count_convention(res, trial)
    assert scale == 128 / 1024 and not own and note.startswith("Approximation (version-1")


def test_analyze_to_uri_and_csv(root, tmp_path):
    out = "file://" + str(tmp_path / "out")
    rep = Rep.analyze(str(root), out, "json", make_plots=False)
    assert rep.plots == []
    assert json.loads((tmp_path / "out" / "table.json").read_text())[0]["label"] == "uniform"
    assert (tmp_path / "out" / "report.html").exists()
    rep = Rep.analyze("file://" + str(root), str(tmp_path / "csv"), "csv", make_plots=False)
    assert rep.text.startswith("label,arm,policy,config_id,")
    assert len(rep.text.strip().splitlines()) == 4
    assert (tmp_path / "csv" / "table.csv").read_text() == rep.text


def test_default_out_dir():
    assert Rep.default_out_dir("/data/study", "s") == "/data/study/analysis"
    assert Rep.default_out_dir("s3://bucket/study", "s").endswith("/analysis-s")


# --------------------------------------------------------------------------------------------
# labelled arms


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled") / "study"
    fx.build_labelled_results(str(root))
    return root


def test_arms_are_labels_in_the_studys_order(labelled):
    res = read_results(str(labelled), with_steps=False)
    assert A.arm_policies(res) == fx.LABELLED_ARMS
    assert A.reference_arm(res) == "base"  # the uniform policy's arm, though not listed first
    assert A.searched_arms(res) == ["ado_fast", "ado_slow"]
    table = A.main_table(res)
    assert table["arm"].tolist() == ["ado_fast", "base", "ado_slow"]
    assert table["policy"].tolist() == ["ado", "uniform", "ado"]
    assert table["label"].tolist()[1] == "base"
    assert table["label"].tolist()[0].startswith("ado_fast#")
    assert table.attrs["baseline"] == "base"
    t = table.set_index("arm")
    assert t.loc["base", "diff_val_loss_balanced_verdict"] == "baseline"
    # Δ against base, paired by seed, by hand.
    trials = res.trials[res.trials["phase"] == "confirm"]
    for arm in ("ado_fast", "ado_slow"):
        mine = trials[trials["arm"] == arm].set_index("seed")["val_loss_balanced"]
        base = trials[trials["arm"] == "base"].set_index("seed")["val_loss_balanced"]
        assert t.loc[arm, "diff_val_loss_balanced_mean"] == pytest.approx((mine - base).mean())
    assert t.loc["ado_slow", "diff_val_loss_balanced_mean"] == pytest.approx(
        t.loc["ado_fast", "diff_val_loss_balanced_mean"] + fx.SLOW_PENALTY, abs=2e-3
    )
    assert "Δval_loss_balanced vs base" in A.format_table(table, "markdown")


def test_importances_and_plots_per_searched_arm(labelled, tmp_path):
    rep = Rep.analyze(str(labelled), str(tmp_path / "out"))
    names = sorted(os.path.basename(p) for p in rep.plots)
    assert names == [
        "scaling_laws-ado_fast.png",
        "scaling_laws-ado_slow.png",
        "search-ado_fast.png",
        "search-ado_slow.png",
        "val_loss.png",
        "weights.png",
    ]
    assert set(rep.importance_notes) == {"ado_fast", "ado_slow"}
    # Each arm's importances rank its own declared search space.
    for arm, option in (("ado_fast", "gamma1"), ("ado_slow", "delta_min")):
        assert rep.importances.get(arm, {option: 1.0}) == {option: pytest.approx(1.0)}
        assert f"3 completed {arm} trials" in rep.importance_notes[arm]
    md = (tmp_path / "out" / "report.md").read_text()
    for arm in ("ado_fast", "ado_slow"):
        assert f"## Hyperparameter importances: {arm} (search phase)" in md
        assert f"### Search: {arm}" in md
        assert f"### Fitted scaling laws: {arm} (best configuration)" in md
    main = md.split("## Main comparison")[1]
    assert main.index("| ado_fast#") < main.index("| base |") < main.index("| ado_slow#")


def test_no_uniform_arm_means_no_paired_column(tmp_path):
    root = tmp_path / "study"
    fx.build_labelled_results(str(root), with_uniform=False)
    table = A.main_table(str(root))
    assert table.attrs["baseline"] is None
    assert not [c for c in table.columns if c.startswith("diff_")]
    assert any("no arm runs the 'uniform' policy" in n for n in table.attrs["notes"])
    rep = Rep.analyze(str(root), str(tmp_path / "out"), make_plots=False)
    md = Path(rep.report_path).read_text()
    assert "No arm runs the uniform policy" in md and "Δ" not in rep.table_text


# --------------------------------------------------------------------------------------------
# version-1 results


def test_version_1_results_analyse_like_version_2(root, table, tmp_path):
    v1 = tmp_path / "v1"
    fx.build_v1_results(str(v1))
    t1 = A.main_table(str(v1))
    assert t1["label"].tolist() == table["label"].tolist()  # arm order from the study file
    assert (t1["policy"] == t1["arm"]).all()
    for col in ("val_loss_balanced_mean", "diff_val_loss_balanced_mean", "val_loss__web_mean"):
        np.testing.assert_allclose(t1[col], table[col])
    assert t1["eval_tokens_per_trial"].isna().all()  # version 1 did not record them

    rep = Rep.analyze(str(v1), str(tmp_path / "out"))
    names = sorted(os.path.basename(p) for p in rep.plots)
    assert names == ["scaling_laws-ado.png", "search-ado.png", "val_loss.png", "weights.png"]
    assert "inferred from the observed values" in rep.importance_notes["ado"]
    md = Path(rep.report_path).read_text()
    assert "schema version 1 results" in md
    # The version-1 trials still record ADO's count options, so n needs no approximation.
    assert "count_mode=same_step_size, count_unit=tokens_1024" in md


# --------------------------------------------------------------------------------------------
# module structure


def test_imports_go_one_way_and_analyze_has_one_entry_point():
    code = (
        "import sys\n"
        "import ado_ray.analysis\n"
        "assert 'ado_ray.plots' not in sys.modules and 'ado_ray.report' not in sys.modules\n"
        "import ado_ray.plots\n"
        "assert 'ado_ray.report' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    source = Path(A.__file__).read_text()
    assert "__main__" not in source and "argparse" not in source
    assert not hasattr(A, "main")


def test_the_report_lists_trials_that_ended_on_an_error_their_own_or_the_clusters():
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d"],
            "arm": ["ado", "ado", "uniform", "uniform"],
            "phase": ["search", "search", "confirm", "confirm"],
            "status": ["completed", "failed", "interrupted", "pruned"],
            "error": [None, "Traceback ...\nFloatingPointError: non-finite", "node lost", None],
        }
    )
    listed = Rep._failed(trials)
    assert list(listed.trial_id) == ["b", "c"]
    assert list(listed.status) == ["failed", "interrupted"]
    assert list(listed.error) == ["FloatingPointError: non-finite", "node lost"]
    assert Rep._failed(trials[trials.status == "completed"]) is None


def test_an_unknown_search_space_type_is_refused_with_the_allowed_ones():
    assert A.distribution({"type": "int", "low": 1, "high": 9, "step": 2}).step == 2
    with pytest.raises(ValueError, match="'normal' is unknown; allowed: uniform, loguniform, int"):
        A.distribution({"type": "normal"})
