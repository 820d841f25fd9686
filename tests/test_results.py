"""The Parquet results: layout, exact columns, round trip, idempotency, atomic merge, readers,
and reading schema-version-1 directories."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ado_ray import results as R
from ado_ray import storage

try:
    import fixtures_results as fx
except ImportError:  # tests/ imported as a package
    from tests import fixtures_results as fx

DOCS = Path(__file__).resolve().parents[1] / "README.md"  # documents every column
FIXTURE_HP = [
    "hp_count_mode",
    "hp_count_unit",
    "hp_delta_min",
    "hp_gamma1",
    "hp_gamma2",
    "hp_refit_every",
    "hp_use_prior",
    "hp_weights",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "study"
    trials = fx.build_results(str(root))
    return root, trials


def _confirm_ado(trials):
    return next(v for k, v in trials.items() if k.startswith("confirm-ado") and k.endswith("-s1"))


def test_layout_and_exact_columns(built):
    root, _ = built
    names = set(os.listdir(root))
    assert {
        "trials.parquet",
        "steps.parquet",
        "evals.parquet",
        "diagnostics.parquet",
        "study.yaml",
        "meta.json",
        "VERSION",
    } <= names
    assert pq.read_schema(root / "trials.parquet").names == [*R.TRIALS_COLUMNS, *FIXTURE_HP]
    assert pq.read_schema(root / "steps.parquet").names == list(R.STEPS_COLUMNS)
    assert pq.read_schema(root / "evals.parquet").names == list(R.EVALS_COLUMNS)
    assert pq.read_schema(root / "diagnostics.parquet").names == list(R.DIAGNOSTICS_COLUMNS)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["schema_version"] == R.SCHEMA_VERSION == 2
    assert meta["package_version"] == "0.1.0" and meta["seq_len"] == 128
    assert meta["arms"] == fx.ARMS and meta["search_spaces"] == fx.SEARCH_SPACES
    assert (root / "VERSION").read_text().strip() == "2"
    assert (root / "study.yaml").read_text() == fx.STUDY_YAML


def test_plain_parquet_types(built):
    root, _ = built
    for name in ("trials", "steps", "evals", "diagnostics"):
        schema = pq.read_schema(root / f"{name}.parquet")
        assert not (schema.metadata or {}).get(b"pandas"), "no pandas metadata"
        for f in schema:
            assert not isinstance(f.type, pa.ExtensionType)
            assert f.type != pa.null()
    schema = pq.read_schema(root / "trials.parquet")
    assert schema.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("finished_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("hp_refit_every").type == pa.int64()
    assert schema.field("hp_use_prior").type == pa.bool_()
    assert schema.field("hp_weights").type == pa.string()


def test_columns_match_the_docs(built):
    """Every column in the files is documented, and the docs list no column the files lack."""
    text = DOCS.read_text()
    for name, fixed in (
        ("trials", R.TRIALS_COLUMNS),
        ("steps", R.STEPS_COLUMNS),
        ("evals", R.EVALS_COLUMNS),
        ("diagnostics", R.DIAGNOSTICS_COLUMNS),
    ):
        section = text.split(f"## `{name}.parquet`")[1].split("\n#")[0]
        documented = re.findall(r"^\| `([a-z_<>]+)` \|", section, flags=re.M)
        assert [c for c in documented if "<" not in c] == list(fixed), name


def test_round_trip(built):
    root, trials = built
    record, steps, evals = _confirm_ado(trials)
    res = R.read_results(str(root))
    row = res.trials.set_index("trial_id").loc[record["trial_id"]]
    for key, value in record["metrics"].items():
        if value is None:
            assert pd.isna(row[key]), key
        else:
            assert row[key] == pytest.approx(value), key
    assert row["arm"] == "ado" and row["policy"] == "ado"
    assert row["phase"] == "confirm" and row["seed"] == 1
    assert row["eval_tokens"] == 4 * 3 * fx.EVAL_SEQS * fx.SEQ_LEN
    assert row["status"] == "completed" and pd.isna(row["error"])
    assert row["config_id"] == R.config_id("ado", fx.ADO_A)
    assert row["study"] == fx.STUDY and row["schema_version"] == 2
    assert json.loads(row["domains"]) == fx.DOMAINS and row["num_domains"] == 3
    assert row["package_version"] == "0.1.0"
    assert row["started_at"] == pd.Timestamp(record["started_at"])
    assert row["hp_gamma1"] == 0.1 and row["hp_count_mode"] == "same_step_size"
    assert row["hp_refit_every"] == 50 and bool(row["hp_use_prior"]) is True
    assert pd.isna(row["hp_weights"])

    s = res.steps[res.steps["trial_id"] == record["trial_id"]].sort_values(["step", "domain_index"])
    assert len(s) == fx.STEPS * 3
    weights = s["weight"].to_numpy().reshape(fx.STEPS, 3)
    counts = s["count"].to_numpy().reshape(fx.STEPS, 3)
    losses = s["train_loss"].to_numpy().reshape(fx.STEPS, 3)
    np.testing.assert_allclose(weights, [r["weights"] for r in steps])
    np.testing.assert_array_equal(counts, [r["counts"] for r in steps])
    expected = np.array([r["train_loss"] for r in steps], dtype=float)
    np.testing.assert_allclose(losses, expected)  # NaN where NaN
    empty = res.steps["count"] == 0
    assert empty.any(), "the fixture has domains absent from some batches"
    assert res.steps.loc[empty, "train_loss"].isna().all()
    assert res.steps.loc[~empty, "train_loss"].notna().all()
    assert list(s["domain"][:3]) == fx.DOMAINS

    # Diagnostics: every step from the first refit on, K values per name, exactly as given.
    d = res.diagnostics[res.diagnostics["trial_id"] == record["trial_id"]]
    names = ["law_alpha", "law_beta", "law_eps", "law_fit_step"]
    assert sorted(d["name"].unique()) == names
    assert len(d) == (fx.STEPS - 50) * len(names) * 3
    assert sorted(d["step"].unique()) == list(range(50, fx.STEPS))
    refits = sorted(d.loc[d["name"] == "law_fit_step", "value"].unique())
    assert refits == [t for t in range(1, fx.STEPS) if t % 50 == 0]
    for row_in in (steps[120], steps[-1]):
        at = d[d["step"] == row_in["step"]]
        for name in names:
            got = at[at["name"] == name].sort_values("domain_index")
            assert list(got["domain"]) == fx.DOMAINS
            np.testing.assert_allclose(got["value"], row_in["diagnostics"][name])

    e = res.evals[res.evals["trial_id"] == record["trial_id"]].sort_values(["step", "domain_index"])
    assert len(e) == len(evals) * 3
    np.testing.assert_allclose(e["val_loss"].to_numpy(), np.ravel([r["val_loss"] for r in evals]))
    np.testing.assert_allclose(e["val_ppl"], np.exp(e["val_loss"]))
    known = e[e["domain"] != "books"]
    np.testing.assert_allclose(known["excess_loss"], known["val_loss"] - known["entropy_rate"])
    books = e[e["domain"] == "books"]
    assert books["entropy_rate"].isna().all() and books["excess_loss"].isna().all()
    assert list(e["tokens_seen"][::3]) == [r["tokens_seen"] for r in evals]


def test_failed_trial_row(built):
    root, trials = built
    failed = [k for k, (rec, _, _) in trials.items() if rec["status"] == "failed"]
    assert len(failed) == 1
    res = R.read_results(str(root))
    row = res.trials.set_index("trial_id").loc[failed[0]]
    assert row["status"] == "failed" and "out of memory" in row["error"]
    for m in R.METRIC_COLUMNS:
        assert pd.isna(row[m]), m
    assert row["hp_count_mode"] == "own"
    history = set(res.steps["trial_id"]) | set(res.evals["trial_id"])
    assert failed[0] not in history | set(res.diagnostics["trial_id"])


def test_pandas_and_duckdb_read_without_help(built):
    root, written = built
    trials = pd.read_parquet(root / "trials.parquet")
    assert list(trials.columns)[: len(R.TRIALS_COLUMNS)] == list(R.TRIALS_COLUMNS)
    assert isinstance(trials.index, pd.RangeIndex)
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(
        f"SELECT arm, avg(val_loss_balanced) AS m FROM '{root / 'trials.parquet'}' GROUP BY arm ORDER BY arm"
    ).fetchall()
    want = trials.groupby("arm")["val_loss_balanced"].mean().sort_index()
    assert [a for a, _ in got] == list(want.index)
    np.testing.assert_allclose([m for _, m in got], want.to_numpy())
    n = duckdb.sql(
        f"SELECT count(*) FROM '{root / 'diagnostics.parquet'}' d "
        f"JOIN '{root / 'trials.parquet'}' t USING (trial_id) "
        "WHERE t.policy = 'ado' AND d.name = 'law_eps' AND d.value IS NOT NULL"
    ).fetchall()[0][0]
    want = sum(1 for _, steps, _ in written.values() for row in steps or [] if row["diagnostics"])
    assert n == want * 3
    ts = duckdb.sql(
        f"SELECT typeof(started_at) FROM '{root / 'trials.parquet'}' LIMIT 1"
    ).fetchall()[0][0]
    assert ts == "TIMESTAMP WITH TIME ZONE"


def test_polars_reads(built):
    pl = pytest.importorskip("polars")
    root, _ = built
    df = pl.read_parquet(root / "trials.parquet")
    assert df.columns[: len(R.TRIALS_COLUMNS)] == list(R.TRIALS_COLUMNS)


def test_finished_trial_ids(built, tmp_path):
    root, trials = built
    writer = R.ResultsWriter(str(root), fx.STUDY)
    assert writer.finished_trial_ids() == set(trials)
    # A running trial (parts only, not merged) is not finished; a pruned one is.
    fresh = R.ResultsWriter(str(tmp_path / "s"), "s")
    assert fresh.finished_trial_ids() == set()
    fresh.add_trial({"trial_id": "a", "arm": "uniform", "status": "running"}, None, None)
    fresh.add_trial({"trial_id": "b", "arm": "uniform", "status": "pruned"}, None, None)
    fresh.add_trial({"trial_id": "c", "arm": "uniform", "status": "completed"}, None, None)
    assert fresh.finished_trial_ids() == {"b", "c"}
    fresh.merge()
    fresh.add_trial(
        {"trial_id": "a", "arm": "uniform", "status": "failed", "error": "x"}, None, None
    )
    assert fresh.finished_trial_ids() == {"a", "b", "c"}


def _one(tmp_path, **over):
    record, steps, evals = fx.make_trial("ado", "confirm", 7, fx.ADO_A)
    record = {**record, **over}
    return record, steps, evals


def test_readd_is_idempotent_and_unmerged_parts_are_read(tmp_path):
    uri = str(tmp_path / "study")
    w = R.ResultsWriter(uri, "s")
    record, steps, evals = _one(tmp_path)
    w.add_trial(record, steps, evals)
    # Not merged yet: read_results merges the parts in memory.
    res = R.read_results(uri)
    assert len(res.trials) == 1 and len(res.steps) == fx.STEPS * 3
    w.merge()
    w.add_trial(record, steps, evals)
    w.merge()
    res = R.read_results(uri)
    assert len(res.trials) == 1 and len(res.steps) == fx.STEPS * 3 and len(res.evals) == 12

    # Re-adding replaces every part, including dropping history the new record lacks.
    changed = {**record, "metrics": {**record["metrics"], "val_loss_balanced": 9.5}}
    w.add_trial(changed, steps[:10], None)
    res = R.read_results(uri)  # parts newer than the merged files win, before merge()
    assert res.trials["val_loss_balanced"].tolist() == [9.5]
    assert len(res.steps) == 30 and res.evals.empty
    w.merge()
    res = R.read_results(uri, include_parts=False)
    assert res.trials["val_loss_balanced"].tolist() == [9.5]
    assert len(res.steps) == 30 and res.evals.empty
    assert sorted(os.listdir(tmp_path / "study" / "parts")) == [
        f"{record['trial_id']}.{k}.parquet" for k in ("steps", "trials")
    ]


def test_merge_leaves_no_temporaries_and_survives_a_crash(tmp_path, monkeypatch):
    uri = str(tmp_path / "study")
    w = R.ResultsWriter(uri, "s")
    record, steps, evals = _one(tmp_path)
    w.add_trial(record, steps, evals)
    w.merge()
    leftovers = [p for p in (tmp_path / "study").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
    before = pq.read_table(tmp_path / "study" / "trials.parquet")

    second, s2, e2 = fx.make_trial("uniform", "confirm", 7, None)
    w.add_trial(second, s2, e2)

    real = storage.write_table_atomic

    def crash_on_trials(target, table):
        if target.endswith("/trials.parquet"):
            # Die after writing half of the temporary file, before the rename.
            fs, path = storage.resolve(target)
            with fs.open_output_stream(path + ".tmp-crashed") as out:
                out.write(b"PAR1\x00\x01")
            raise KeyboardInterrupt("killed")
        return real(target, table)

    monkeypatch.setattr(R.storage, "write_table_atomic", crash_on_trials)
    with pytest.raises(KeyboardInterrupt):
        w.merge()
    monkeypatch.undo()
    # The merged trials file is the old one, whole; the reader still sees both trials.
    assert pq.read_table(tmp_path / "study" / "trials.parquet").equals(before)
    res = R.read_results(uri)
    assert sorted(res.trials["trial_id"]) == sorted([record["trial_id"], second["trial_id"]])
    w.merge()
    assert pq.read_table(tmp_path / "study" / "trials.parquet").num_rows == 2


def test_file_uri(tmp_path):
    uri = "file://" + str(tmp_path / "via-uri")
    w = R.ResultsWriter(uri, "s")
    w.write_meta("name: s\n", "9.9")
    record, steps, evals = _one(tmp_path)
    w.add_trial(record, steps, evals)
    w.merge()
    assert (tmp_path / "via-uri" / "trials.parquet").exists()
    res = R.read_results(uri)
    assert res.study_yaml == "name: s\n" and res.meta["package_version"] == "9.9"
    assert res.trials["package_version"].tolist() == ["9.9"]
    assert res.domains() == fx.DOMAINS


def test_hp_types_unify_across_trials(tmp_path):
    uri = str(tmp_path / "study")
    w = R.ResultsWriter(uri, "s")
    w.add_trial(
        {
            "trial_id": "t1",
            "arm": "ado",
            "status": "completed",
            "hparams": {"x": 1, "flag": True, "w": [0.5, 0.5], "only1": "a"},
        },
        None,
        None,
    )
    w.add_trial(
        {
            "trial_id": "t2",
            "arm": "ado",
            "status": "completed",
            "hparams": {"x": 0.5, "flag": "auto", "w": None, "none": None},
        },
        None,
        None,
    )
    w.merge()
    table = pq.read_table(tmp_path / "study" / "trials.parquet")
    types = {f.name: f.type for f in table.schema if f.name.startswith("hp_")}
    assert types == {
        "hp_flag": pa.string(),
        "hp_none": pa.string(),
        "hp_only1": pa.string(),
        "hp_w": pa.string(),
        "hp_x": pa.float64(),
    }
    rows = {r["trial_id"]: r for r in table.to_pylist()}
    assert rows["t1"]["hp_x"] == 1.0 and rows["t2"]["hp_x"] == 0.5
    assert rows["t1"]["hp_flag"] == "true" and rows["t2"]["hp_flag"] == "auto"
    assert json.loads(rows["t1"]["hp_w"]) == [0.5, 0.5] and rows["t2"]["hp_w"] is None
    assert rows["t2"]["hp_only1"] is None and rows["t1"]["hp_none"] is None


def test_derived_metrics_and_config_id():
    record = {
        "trial_id": "t",
        "arm": "ado",
        "status": "completed",
        "domains": ["a", "b"],
        "hparams": {"gamma1": np.float64(0.1)},
        "metrics": {"val_loss_natural": 2.0, "tokens_seen": 1000, "wall_seconds": 4.0},
    }
    evals = [{"step": 5, "tokens_seen": 1000, "val_loss": [1.0, 3.0], "entropy_rate": [0.5, 1.0]}]
    row = R.trial_table(record, "s", "0.1.0", evals).to_pylist()[0]
    assert row["val_loss_balanced"] == 2.0 and row["excess_loss_balanced"] == pytest.approx(1.25)
    assert row["val_ppl_natural"] == pytest.approx(math.exp(2.0))
    assert row["tokens_per_second"] == 250.0
    assert (
        row["config_id"]
        == R.config_id("ado", {"gamma1": 0.1})
        != R.config_id("ado", {"gamma1": 0.2})
    )
    assert R.config_id("uniform", {}) == R.config_id("uniform", None)


def test_bad_input_is_refused(tmp_path):
    w = R.ResultsWriter(str(tmp_path / "s"), "s")
    with pytest.raises(ValueError, match="trial_id"):
        w.add_trial({"trial_id": "../x", "arm": "ado"}, None, None)
    with pytest.raises(ValueError, match="domains"):
        w.add_trial({"trial_id": "x"}, [{"step": 0, "weights": [1.0]}], None)
    with pytest.raises(ValueError, match="expected 2"):
        w.add_trial(
            {"trial_id": "x", "domains": ["a", "b"]},
            [{"step": 0, "weights": [1.0, 0, 0], "counts": [1, 0]}],
            None,
        )
    with pytest.warns(UserWarning, match="not trials.parquet columns"):
        w.add_trial({"trial_id": "y", "arm": "ado", "lr": 0.1}, None, None)


def test_empty_study_reads_and_merges(tmp_path):
    uri = str(tmp_path / "empty")
    w = R.ResultsWriter(uri, "s")
    w.merge()
    res = R.read_results(uri)
    assert res.trials.empty and list(res.trials.columns) == list(R.TRIALS_COLUMNS)
    assert list(res.steps.columns) == list(R.STEPS_COLUMNS)
    assert list(res.diagnostics.columns) == list(R.DIAGNOSTICS_COLUMNS)
    assert pq.read_schema(tmp_path / "empty" / "diagnostics.parquet").names == list(
        R.DIAGNOSTICS_COLUMNS
    )
    # A path that holds no study is refused, not read as an empty one (a typo must not pass).
    with pytest.raises(ValueError, match="does-not-exist holds no ado-ray study"):
        R.read_results(str(tmp_path / "does-not-exist"))
    assert not (tmp_path / "does-not-exist").exists()


def test_a_corrupt_file_is_an_error_naming_it(tmp_path):
    uri = str(tmp_path / "s")
    fx.build_results(uri)
    (tmp_path / "s" / "steps.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"steps\.parquet: not a readable Parquet file"):
        R.read_results(uri)


def test_timestamp_inputs():
    want = pd.Timestamp("2025-01-02T03:04:05", tz="UTC")
    for value in (
        "2025-01-02T03:04:05Z",
        "2025-01-02T04:04:05+01:00",
        want.timestamp(),
        np.datetime64("2025-01-02T03:04:05", "ns"),
        want.to_pydatetime().replace(tzinfo=None),  # naive: taken as UTC
        want,
    ):
        row = R.trial_table({"trial_id": "t", "started_at": value}, "s", None).to_pylist()[0]
        assert pd.Timestamp(row["started_at"]) == want, value
    with pytest.raises(ValueError, match="no step"):
        R.steps_table("t", ["a"], [{"weights": [1.0]}])


def test_steps_on_demand(built):
    root, trials = built
    res = R.read_results(str(root), with_steps=False)
    assert res.steps.empty and list(res.steps.columns) == list(R.STEPS_COLUMNS)
    assert len(res.trials) == len(trials) and not res.evals.empty
    some = sorted(trials)[:2]
    got = res.steps_for(some)
    assert sorted(got["trial_id"].unique()) == [t for t in some if trials[t][1]]
    full = R.read_results(str(root))
    want = full.steps[full.steps["trial_id"].isin(some)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    pd.testing.assert_frame_equal(R.read_steps(str(root), some).reset_index(drop=True), want)
    # Diagnostics likewise: on demand, the same rows as a full read.
    assert res.diagnostics.empty and not res.diagnostics_complete
    ado = sorted(t for t in trials if "-ado-" in t and trials[t][1])[:2]
    got = res.diagnostics_for(ado).reset_index(drop=True)
    want = full.diagnostics[full.diagnostics["trial_id"].isin(ado)].reset_index(drop=True)
    assert len(want) > 0 and sorted(got["trial_id"].unique()) == ado
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(R.read_diagnostics(str(root), ado).reset_index(drop=True), want)
    ids = pq.read_table(root / "diagnostics.parquet", columns=["trial_id"]).column("trial_id")
    assert ids.to_pylist() == sorted(ids.to_pylist())
    # The merged steps file is sorted by trial, a row group (or more) per trial.
    meta = pq.ParquetFile(root / "steps.parquet").metadata
    assert meta.num_row_groups >= len([t for t in trials.values() if t[1]])
    ids = pq.read_table(root / "steps.parquet", columns=["trial_id"]).column("trial_id").to_pylist()
    assert ids == sorted(ids)


def test_streamed_write_failure_leaves_old_file(tmp_path):
    target = tmp_path / "x.parquet"
    R._write_parquet_stream(str(target), R.EVALS_SCHEMA, [R.EVALS_SCHEMA.empty_table()])
    before = target.read_bytes()

    def boom():
        yield R.evals_table("t", ["a"], [{"step": 1, "val_loss": [1.0]}])
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        R._write_parquet_stream(str(target), R.EVALS_SCHEMA, boom())
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.parquet"]


# --------------------------------------------------------------------------------------------
# schema version 2: policy, eval_tokens, diagnostics


def test_policy_defaults_to_the_arm_and_eval_tokens_round_trip(tmp_path):
    uri = str(tmp_path / "s")
    w = R.ResultsWriter(uri, "s")
    w.add_trial({"trial_id": "a", "arm": "ado_fast", "policy": "ado"}, None, None)
    w.add_trial(
        {"trial_id": "b", "arm": "uniform", "metrics": {"eval_tokens": np.int64(4096)}},
        None,
        None,
    )
    w.merge()
    table = pq.read_table(tmp_path / "s" / "trials.parquet")
    assert table.schema.field("eval_tokens").type == pa.int64()
    rows = {r["trial_id"]: r for r in table.to_pylist()}
    assert rows["a"]["policy"] == "ado" and rows["a"]["arm"] == "ado_fast"
    assert rows["b"]["policy"] == "uniform" and rows["b"]["eval_tokens"] == 4096
    assert rows["a"]["eval_tokens"] is None
    assert "eval_tokens" in R.METRIC_COLUMNS


def test_diagnostics_rows_and_the_old_law_key(tmp_path):
    domains = ["a", "b"]
    steps = [
        {"step": 0, "weights": [0.5, 0.5], "counts": [1, 1], "train_loss": [1.0, 2.0]},
        {
            "step": 1,
            "weights": [0.5, 0.5],
            "counts": [1, 1],
            "train_loss": [1.0, 2.0],
            "diagnostics": {"h": np.array([0.25, float("nan")]), "law_eps": [9.0, 9.5]},
            "law": [[1.0, 2.0, 0.3], None],  # old key: law_eps comes from diagnostics instead
        },
        {
            "step": 2,
            "weights": [0.5, 0.5],
            "counts": [1, 1],
            "train_loss": [1.0, 2.0],
            "law": np.array([[1.5, 2.5, 0.35], [1.6, 2.6, 0.36]]),
        },
        {
            "step": 3,
            "weights": [0.5, 0.5],
            "counts": [1, 1],
            "train_loss": [1.0, 2.0],
            "diagnostics": {},
            "law": None,
        },
    ]
    table = R.diagnostics_table("t", domains, steps)
    got = {
        (r["step"], r["name"], r["domain"]): r["value"]
        for r in table.to_pylist()
        if r["trial_id"] == "t"
    }
    assert got == {
        (1, "h", "a"): 0.25,
        (1, "h", "b"): None,  # NaN is stored as null
        (1, "law_eps", "a"): 9.0,
        (1, "law_eps", "b"): 9.5,
        (1, "law_beta", "a"): 2.0,
        (1, "law_beta", "b"): None,
        (1, "law_alpha", "a"): 0.3,
        (1, "law_alpha", "b"): None,
        (2, "law_eps", "a"): 1.5,
        (2, "law_eps", "b"): 1.6,
        (2, "law_beta", "a"): 2.5,
        (2, "law_beta", "b"): 2.6,
        (2, "law_alpha", "a"): 0.35,
        (2, "law_alpha", "b"): 0.36,
    }
    assert R.steps_table("t", domains, steps).column_names == list(R.STEPS_COLUMNS)

    uri = str(tmp_path / "s")
    w = R.ResultsWriter(uri, "s")
    w.add_trial({"trial_id": "t", "arm": "x", "domains": domains}, steps, None)
    res = R.read_results(uri)  # from the parts
    assert len(res.diagnostics) == len(got)
    w.merge()
    res = R.read_results(uri, include_parts=False)
    back = res.diagnostics.set_index(["step", "name", "domain"])["value"]
    assert back[(2, "law_alpha", "b")] == 0.36 and pd.isna(back[(1, "h", "b")])
    # Re-adding without diagnostics removes the trial's diagnostics part.
    w.add_trial({"trial_id": "t", "arm": "x", "domains": domains}, steps[:1], None)
    assert sorted(os.listdir(tmp_path / "s" / "parts")) == ["t.steps.parquet", "t.trials.parquet"]
    assert R.read_results(uri).diagnostics.empty

    bad = [{"step": 0, "diagnostics": {"h": [1.0, 2.0, 3.0]}}]
    with pytest.raises(ValueError, match=r"diagnostics\['h'\] has 3 entries, expected 2"):
        w.add_trial({"trial_id": "u", "domains": domains}, bad, None)
    with pytest.raises(ValueError, match="must map names"):
        R.diagnostics_table("u", domains, [{"step": 0, "diagnostics": [1.0, 2.0]}])
    assert not (tmp_path / "s" / "parts" / "u.steps.parquet").exists()  # nothing half-written


# --------------------------------------------------------------------------------------------
# schema version 1 still reads


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
    root = tmp_path_factory.mktemp("v1") / "study"
    trials = fx.build_v1_results(str(root))
    return root, trials


def _expected_v1_laws(trials) -> pd.DataFrame:
    """law_* diagnostics rows a version-1 directory holds: the refit steps only."""
    rows = []
    for tid, (_, steps, _) in trials.items():
        for row in steps or []:
            diag = row["diagnostics"]
            if diag and diag["law_fit_step"][0] == row["step"]:
                for name in R.LEGACY_LAW_COLUMNS:
                    for i, d in enumerate(fx.DOMAINS):
                        rows.append((tid, row["step"], d, i, name, diag[name][i]))
    frame = pd.DataFrame(rows, columns=list(R.DIAGNOSTICS_COLUMNS))
    return frame.sort_values(["trial_id", "step", "name", "domain_index"]).reset_index(drop=True)


def test_version_1_layout_is_what_version_1_wrote(v1):
    root, _ = v1
    assert (root / "VERSION").read_text().strip() == "1"
    assert not (root / "diagnostics.parquet").exists()
    names = pq.read_schema(root / "trials.parquet").names
    assert "policy" not in names and "eval_tokens" not in names
    assert pq.read_schema(root / "steps.parquet").names[-3:] == list(R.LEGACY_LAW_COLUMNS)


def test_version_1_reads_in_the_version_2_layout(v1, built):
    root, trials = v1
    res = R.read_results(str(root))
    assert len(res.trials) == len(trials)  # the unmerged part included
    assert list(res.trials.columns)[: len(R.TRIALS_COLUMNS)] == list(R.TRIALS_COLUMNS)
    assert (res.trials["policy"] == res.trials["arm"]).all()
    assert res.trials["eval_tokens"].isna().all()
    assert set(res.trials["schema_version"]) == {1} and res.schema_version == 1
    assert list(res.steps.columns) == list(R.STEPS_COLUMNS)

    got = res.diagnostics.sort_values(["trial_id", "step", "name", "domain_index"])
    want = _expected_v1_laws(trials)
    unmerged = next(t for t in trials if t.startswith("confirm-ado") and t.endswith("-s2"))
    assert unmerged in set(got["trial_id"])  # from the version-1 part's steps
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want, check_dtype=False, check_categorical=False
    )
    # The same numbers as the version-2 writer's files, where the two layouts overlap.
    v2 = R.read_results(str(built[0]))
    cols = ["val_loss_balanced", "val_loss_natural", "tokens_seen", "hp_gamma1"]
    pd.testing.assert_frame_equal(
        res.trials.set_index("trial_id")[cols].sort_index(),
        v2.trials.set_index("trial_id")[cols].sort_index(),
    )
    pd.testing.assert_frame_equal(res.steps.reset_index(drop=True), v2.steps.reset_index(drop=True))

    # On demand, from the merged steps file and from a part.
    lazy = R.read_results(str(root), with_steps=False)
    some = sorted(want["trial_id"].unique())[:1] + [unmerged]
    pd.testing.assert_frame_equal(
        lazy.diagnostics_for(some).reset_index(drop=True),
        want[want["trial_id"].isin(some)].reset_index(drop=True),
        check_dtype=False,
    )
    assert len(R.read_diagnostics(str(root), some)) == (want["trial_id"].isin(some)).sum()


def test_merging_version_1_results_writes_version_2(tmp_path):
    root = tmp_path / "v1"
    trials = fx.build_v1_results(str(root), unmerged=2)
    before = R.read_results(str(root))
    R.ResultsWriter(str(root), fx.STUDY).merge()
    assert (root / "VERSION").read_text().strip() == str(R.SCHEMA_VERSION)
    assert pq.read_schema(root / "steps.parquet").names == list(R.STEPS_COLUMNS)
    assert pq.read_schema(root / "trials.parquet").names[: len(R.TRIALS_COLUMNS)] == list(
        R.TRIALS_COLUMNS
    )
    after = R.read_results(str(root), include_parts=False)
    assert len(after.trials) == len(trials)
    assert (after.trials["policy"] == after.trials["arm"]).all()
    for frame in ("diagnostics", "steps", "evals"):
        pd.testing.assert_frame_equal(
            getattr(after, frame).reset_index(drop=True),
            getattr(before, frame).reset_index(drop=True),
        )
    assert len(after.diagnostics) == len(_expected_v1_laws(trials))


@pytest.mark.parametrize(
    "record, field",
    [
        ({"seed": 1.5}, "trial t1: seed: got 1.5; allowed: an integer"),
        ({"metrics": {"steps": 2.5}}, "trial t1: metrics.steps: got 2.5; allowed: an integer"),
        ({"started_at": [1]}, "trial t1: started_at: got [1]; allowed: a datetime"),
        ({"finished_at": "yesterday"}, "trial t1: finished_at: got 'yesterday'; allowed:"),
    ],
)
def test_a_bad_trial_value_is_refused_naming_its_field(record, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        R.trial_table({"trial_id": "t1", **record}, "study", "0")


def test_a_bad_history_value_is_refused_naming_its_trial_and_step():
    with pytest.raises(ValueError, match=re.escape("trial t1: step: got 0.5; allowed: an integer")):
        R.steps_table("t1", ["a"], [{"step": 0.5, "weights": [1.0], "counts": [1]}])
    row = {"step": 3, "weights": [1.0], "counts": [1.5], "train_loss": [2.0]}
    with pytest.raises(ValueError, match=re.escape("step 3: counts: got 1.5")):
        R.steps_table("t1", ["a"], [row])


def test_a_failed_atomic_write_leaves_no_temporary_sibling(tmp_path):
    target = tmp_path / "taken"
    (target / "child").mkdir(parents=True)  # a non-empty directory: the rename must fail
    with pytest.raises(OSError):
        storage.write_text_atomic(str(target), "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
