"""Study results as Parquet: the writer the sweep calls, the reader the analysis uses, the schema.

A results directory (any URI :mod:`ado_ray.storage` understands: a local path, ``file://``,
``s3://``, ``gs://``) holds::

    trials.parquet       one row per trial (wide: hyperparameters as hp_<name>, final aggregates)
    steps.parquet        one row per (trial, training step, domain): weight, count, train loss
    evals.parquet        one row per (trial, evaluation step, domain): held-out loss, perplexity
    diagnostics.parquet  one row per (trial, step, domain, name): the policy's diagnostics
    study.yaml           the study file as run
    meta.json            package version, schema version, creation time (plus extras)
    VERSION              the schema version as text
    parts/               <trial_id>.{trials,steps,evals,diagnostics}.parquet, one set per trial

Each finished trial is written as its own part files (so concurrent trials never touch the same
file, and a re-added trial simply replaces its parts); :meth:`ResultsWriter.merge` concatenates
them into the top-level files. Every file is written atomically (temporary sibling, then
rename; a single PUT on object stores), so a crash never leaves a half-written file behind.
The README's "Results schema" section documents every column.

Schema version 1 (before labelled arms and generic policy diagnostics) still reads: its trials
have no ``policy`` column (the policy is the arm) and no ``eval_tokens``, and its steps carry
``law_eps/law_beta/law_alpha``, which the reader turns into diagnostics rows of those names.

The files are plain Parquet: no pandas index metadata, no extension types, timestamps as
``timestamp[us, tz=UTC]``, JSON lists stored as strings. DuckDB, pandas and polars read them
without help.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import hashlib
import io
import json
import math
import re
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ado_ray import storage

SCHEMA_VERSION = 2

TRIALS_FILE = "trials.parquet"
STEPS_FILE = "steps.parquet"
EVALS_FILE = "evals.parquet"
DIAGNOSTICS_FILE = "diagnostics.parquet"
STUDY_FILE = "study.yaml"
META_FILE = "meta.json"
VERSION_FILE = "VERSION"
PARTS_DIR = "parts"

#: Statuses after which a trial is not run again on ``--resume``. ``pruned`` covers trials an
#: early-stopping scheduler ended (they are finished, just short).
FINISHED_STATUSES = frozenset({"completed", "failed", "pruned"})
# ``interrupted``: the driver or the actor died (a lost node, say); --resume runs it again,
# unless it was a search's.
KNOWN_STATUSES = FINISHED_STATUSES | {"running", "interrupted"}
#: A search trial is final in any of these: the search does not run it again (Train has retried
#: an interrupted one, and Optuna has moved on).
SEARCH_FINAL_STATUSES = FINISHED_STATUSES | {"interrupted"}

TS = pa.timestamp("us", tz="UTC")

#: trials.parquet, in column order. The ``hp_<name>`` columns follow these, sorted by name.
TRIALS_FIELDS: tuple[pa.Field, ...] = (
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("study", pa.string()),
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("arm", pa.string()),
    pa.field("policy", pa.string()),
    pa.field("phase", pa.string()),
    pa.field("config_id", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("val_loss_balanced", pa.float64()),
    pa.field("val_loss_natural", pa.float64()),
    pa.field("val_ppl_balanced", pa.float64()),
    pa.field("val_ppl_natural", pa.float64()),
    pa.field("excess_loss_balanced", pa.float64()),
    pa.field("final_train_loss", pa.float64()),
    pa.field("tokens_seen", pa.int64()),
    pa.field("eval_tokens", pa.int64()),
    pa.field("steps", pa.int64()),
    pa.field("seq_len", pa.int64()),
    pa.field("wall_seconds", pa.float64()),
    pa.field("tokens_per_second", pa.float64()),
    pa.field("mfu", pa.float64()),
    pa.field("time_data_s", pa.float64()),
    pa.field("time_compute_s", pa.float64()),
    pa.field("time_policy_wait_s", pa.float64()),
    pa.field("time_eval_s", pa.float64()),
    pa.field("time_startup_s", pa.float64()),
    pa.field("num_domains", pa.int32()),
    pa.field("domains", pa.string()),
    pa.field("package_version", pa.string()),
    pa.field("started_at", TS),
    pa.field("finished_at", TS),
)
TRIALS_COLUMNS: tuple[str, ...] = tuple(f.name for f in TRIALS_FIELDS)
HP_PREFIX = "hp_"

#: The metric columns of trials.parquet; they may come in ``record["metrics"]`` or at the top
#: level of the record (``metrics`` wins).
METRIC_COLUMNS: tuple[str, ...] = (
    "val_loss_balanced",
    "val_loss_natural",
    "val_ppl_balanced",
    "val_ppl_natural",
    "excess_loss_balanced",
    "final_train_loss",
    "tokens_seen",
    "eval_tokens",
    "steps",
    "seq_len",
    "wall_seconds",
    "tokens_per_second",
    "mfu",
    "time_data_s",
    "time_compute_s",
    "time_policy_wait_s",
    "time_eval_s",
    "time_startup_s",
)
_INT_METRICS = frozenset({"tokens_seen", "eval_tokens", "steps", "seq_len"})

STEPS_SCHEMA = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("domain_index", pa.int32(), nullable=False),
        pa.field("weight", pa.float64()),
        pa.field("count", pa.int64()),
        pa.field("train_loss", pa.float64()),
    ]
)
STEPS_COLUMNS: tuple[str, ...] = tuple(STEPS_SCHEMA.names)
#: The steps.parquet columns of schema version 1 that version 2 keeps in diagnostics.parquet
#: (ADO's fitted law, set on refit steps only); also the names of those diagnostics.
LEGACY_LAW_COLUMNS: tuple[str, ...] = ("law_eps", "law_beta", "law_alpha")

EVALS_SCHEMA = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("domain_index", pa.int32(), nullable=False),
        pa.field("val_loss", pa.float64()),
        pa.field("val_ppl", pa.float64()),
        pa.field("entropy_rate", pa.float64()),
        pa.field("excess_loss", pa.float64()),
        pa.field("tokens_seen", pa.int64()),
    ]
)
EVALS_COLUMNS: tuple[str, ...] = tuple(EVALS_SCHEMA.names)

DIAGNOSTICS_SCHEMA = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("domain_index", pa.int32(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
    ]
)
DIAGNOSTICS_COLUMNS: tuple[str, ...] = tuple(DIAGNOSTICS_SCHEMA.names)

_RECORD_KEYS = frozenset(TRIALS_COLUMNS) | {"hparams", "metrics"}
_PART_KINDS = ("trials", "steps", "evals", "diagnostics")
#: Sort keys of the long files (the merged files are in this order, a row group per trial).
_KEYS: dict[str, tuple[str, ...]] = {
    "steps": ("trial_id", "step", "domain_index"),
    "evals": ("trial_id", "step", "domain_index"),
    "diagnostics": ("trial_id", "step", "name", "domain_index"),
}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")
_MAX_ERROR_CHARS = 20_000


# --------------------------------------------------------------------------------------------
# small conversions


def _scalar(value: Any) -> Any:
    """NumPy scalars become Python scalars; NaN stays a float."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _opt_float(value: Any) -> float | None:
    """A finite-or-inf float, or None for None/NaN."""
    value = _scalar(value)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _opt_int(value: Any, field: str) -> int | None:
    """``value`` as an int (None for None or NaN); ``field`` names it in the error."""
    value = _scalar(value)
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not value.is_integer():
            raise ValueError(f"results: {field}: got {value!r}; allowed: an integer")
    return int(value)


def _timestamp(value: Any, field: str) -> _dt.datetime | None:
    """datetime / pandas Timestamp / numpy datetime64 / ISO string / epoch seconds -> aware
    UTC datetime; ``field`` names it in the error."""
    if isinstance(value, np.datetime64):
        value = None if np.isnat(value) else pd.Timestamp(value)
    value = _scalar(value)
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return None
        return _dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc)
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass  # refused below, with the field's name
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, _dt.datetime):
        raise ValueError(
            f"results: {field}: got {value!r:.80}; allowed: a datetime, an ISO 8601 string or "
            "epoch seconds"
        )
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)


def _jsonable(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def hp_column(name: str) -> str:
    """The trials.parquet column of hyperparameter ``name``: ``hp_`` + name, with every
    character outside ``[A-Za-z0-9_]`` replaced by ``_`` (so SQL needs no quoting)."""
    return HP_PREFIX + re.sub(r"[^0-9A-Za-z_]", "_", str(name))


def _hp_value(value: Any) -> tuple[Any, pa.DataType]:
    """A hyperparameter value and its Arrow type: bool, int64, float64 or string.

    Lists, tuples, dicts and arrays (e.g. the fixed arm's weights) become JSON strings.
    """
    value = _scalar(value)
    if value is None:
        return None, pa.null()
    if isinstance(value, bool):
        return value, pa.bool_()
    if isinstance(value, int):
        return value, pa.int64()
    if isinstance(value, float):
        return (None if math.isnan(value) else value), pa.float64()
    if isinstance(value, str):
        return value, pa.string()
    if isinstance(value, (list, tuple, Mapping, np.ndarray)):
        return json.dumps(_jsonable(value)), pa.string()
    return str(value), pa.string()


def config_id(arm: str, hparams: Mapping[str, Any] | None) -> str:
    """A stable id for a hyperparameter configuration, the same across seeds.

    The first 12 hex digits of SHA-1 over the arm and the sorted hyperparameters as JSON.
    Leave ``seed`` (and anything else that varies between repeats) out of ``hparams``.
    """
    payload = json.dumps(
        {"arm": str(arm), "hparams": _jsonable(dict(hparams or {}))},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:12]


def _check_trial_id(trial_id: Any) -> str:
    if trial_id is None:
        raise ValueError("results: the trial record needs a 'trial_id'")
    trial_id = str(trial_id)
    if not _SAFE_ID.match(trial_id) or ".." in trial_id:
        raise ValueError(
            f"results: trial_id {trial_id!r} must match {_SAFE_ID.pattern} (it names part files)"
        )
    return trial_id


# --------------------------------------------------------------------------------------------
# wide -> long


def _as_list(value: Any, k: int, what: str, step: Any) -> list[Any]:
    if value is None:
        return [None] * k
    seq = list(np.asarray(value, dtype=object).reshape(-1)) if np.ndim(value) else [value]
    if len(seq) != k:
        raise ValueError(f"results: step {step}: {what} has {len(seq)} entries, expected {k}")
    return seq


def _required_step(trial_id: str, row: Mapping[str, Any]) -> int:
    step = _opt_int(row.get("step"), f"trial {trial_id}: step")
    if step is None:
        raise ValueError(
            f"results: trial {trial_id}: a history row has no step: {dict(row)!r:.200}"
        )
    return step


def steps_table(
    trial_id: str, domains: Sequence[str], steps: Iterable[Mapping[str, Any]]
) -> pa.Table:
    """Long-format steps rows from the training loop's wide per-step dicts.

    Each dict: ``step``, ``weights`` [K], ``counts`` [K], ``train_loss`` [K] (NaN where the
    domain had no sequences). Its ``diagnostics`` (or old ``law``) go to
    :func:`diagnostics_table`.
    """
    k = len(domains)
    cols: dict[str, list[Any]] = {name: [] for name in STEPS_COLUMNS}
    for row in steps:
        step = _required_step(trial_id, row)
        weights = _as_list(row.get("weights"), k, "weights", step)
        counts = _as_list(row.get("counts"), k, "counts", step)
        losses = _as_list(row.get("train_loss"), k, "train_loss", step)
        for i, name in enumerate(domains):
            count = _opt_int(counts[i], f"trial {trial_id}: step {step}: counts")
            loss = _opt_float(losses[i])
            if count == 0:
                loss = None
            cols["trial_id"].append(trial_id)
            cols["step"].append(step)
            cols["domain"].append(str(name))
            cols["domain_index"].append(i)
            cols["weight"].append(_opt_float(weights[i]))
            cols["count"].append(count)
            cols["train_loss"].append(loss)
    return pa.Table.from_pydict(cols, schema=STEPS_SCHEMA)


def _step_diagnostics(row: Mapping[str, Any], k: int, step: int) -> dict[str, list[Any]]:
    """name -> K values of one step row: its ``diagnostics`` mapping, plus the old ``law`` key
    (K triples eps, beta, alpha, or None) as law_eps/law_beta/law_alpha unless already given."""
    out: dict[str, list[Any]] = {}
    diag = row.get("diagnostics")
    if diag is not None:
        if not isinstance(diag, Mapping):
            raise ValueError(
                f"results: step {step}: diagnostics must map names to K values, got "
                f"{type(diag).__name__}"
            )
        for name, values in diag.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"results: step {step}: diagnostic name {name!r} is not a name")
            out[name] = _as_list(values, k, f"diagnostics[{name!r}]", step)
    law = row.get("law")
    if law is not None:
        laws = list(law)
        if len(laws) != k:
            raise ValueError(f"results: step {step}: law has {len(laws)} rows, expected {k}")
        for j, name in enumerate(LEGACY_LAW_COLUMNS):
            if name not in out:
                out[name] = [None if triple is None else list(triple)[j] for triple in laws]
    return out


def diagnostics_table(
    trial_id: str, domains: Sequence[str], steps: Iterable[Mapping[str, Any]]
) -> pa.Table:
    """Long-format diagnostics rows (one per step, name and domain) from the per-step dicts'
    ``diagnostics`` ({name: K floats} or None; the old ``law`` key maps to law_eps/law_beta/
    law_alpha). NaN is stored as null (unknown), like everywhere else in the results."""
    k = len(domains)
    cols: dict[str, list[Any]] = {name: [] for name in DIAGNOSTICS_COLUMNS}
    for row in steps:
        step = _required_step(trial_id, row)
        diag = _step_diagnostics(row, k, step)
        for name in sorted(diag):  # the merged files' order: step, name, domain
            for i, domain in enumerate(domains):
                cols["trial_id"].append(trial_id)
                cols["step"].append(step)
                cols["domain"].append(str(domain))
                cols["domain_index"].append(i)
                cols["name"].append(name)
                cols["value"].append(_opt_float(diag[name][i]))
    return pa.Table.from_pydict(cols, schema=DIAGNOSTICS_SCHEMA)


def laws_to_diagnostics(steps: pa.Table) -> pa.Table:
    """Diagnostics rows from a schema-version-1 steps table: one row per non-null
    law_eps/law_beta/law_alpha cell (version 1 set them on refit steps only)."""
    import pyarrow.compute as pc

    pieces = []
    for name in LEGACY_LAW_COLUMNS:
        if name not in steps.column_names:
            continue
        col = steps.column(name).cast(pa.float64())
        sub = steps.filter(pc.and_(pc.is_valid(col), pc.invert(pc.is_nan(col))))
        pieces.append(
            pa.table(
                {
                    "trial_id": sub.column("trial_id"),
                    "step": sub.column("step"),
                    "domain": sub.column("domain"),
                    "domain_index": sub.column("domain_index"),
                    "name": pa.array([name] * sub.num_rows, type=pa.string()),
                    "value": sub.column(name),
                }
            )
        )
    return _sorted(_concat_long(pieces, DIAGNOSTICS_SCHEMA), _KEYS["diagnostics"])


def evals_table(
    trial_id: str, domains: Sequence[str], evals: Iterable[Mapping[str, Any]]
) -> pa.Table:
    """Long-format evals rows from wide dicts: ``step``, ``tokens_seen``, ``val_loss`` [K],
    ``entropy_rate`` [K] or None. ``val_ppl = exp(val_loss)``; ``excess_loss = val_loss -
    entropy_rate`` where the entropy rate is known."""
    k = len(domains)
    cols: dict[str, list[Any]] = {name: [] for name in EVALS_COLUMNS}
    for row in evals:
        step = _required_step(trial_id, row)
        tokens = _opt_int(row.get("tokens_seen"), f"trial {trial_id}: step {step}: tokens_seen")
        losses = _as_list(row.get("val_loss"), k, "val_loss", step)
        entropy = _as_list(row.get("entropy_rate"), k, "entropy_rate", step)
        for i, name in enumerate(domains):
            loss = _opt_float(losses[i])
            h = _opt_float(entropy[i])
            cols["trial_id"].append(trial_id)
            cols["step"].append(step)
            cols["domain"].append(str(name))
            cols["domain_index"].append(i)
            cols["val_loss"].append(loss)
            cols["val_ppl"].append(None if loss is None else _safe_exp(loss))
            cols["entropy_rate"].append(h)
            cols["excess_loss"].append(None if loss is None or h is None else loss - h)
            cols["tokens_seen"].append(tokens)
    return pa.Table.from_pydict(cols, schema=EVALS_SCHEMA)


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def trial_table(
    record: Mapping[str, Any],
    study: str,
    package_version: str | None,
    evals: Sequence[Mapping[str, Any]] | None = None,
) -> pa.Table:
    """The one-row trials table of a trial record (see :meth:`ResultsWriter.add_trial`)."""
    unknown = sorted(set(record) - _RECORD_KEYS)
    if unknown:
        warnings.warn(
            f"results: trial record keys {unknown} are not trials.parquet columns; dropped "
            "(put hyperparameters under 'hparams' and metrics under 'metrics')",
            stacklevel=3,
        )
    trial_id = _check_trial_id(record.get("trial_id"))
    metrics = dict(record.get("metrics") or {})
    unknown_metrics = sorted(set(metrics) - set(METRIC_COLUMNS))
    if unknown_metrics:
        warnings.warn(
            f"results: metrics {unknown_metrics} are not trials.parquet columns; dropped",
            stacklevel=3,
        )
    hparams = dict(record.get("hparams") or {})
    arm = record.get("arm")
    # Arms are labels; several may run one policy. Records from before labels name only the arm.
    policy = record.get("policy")
    if policy is None:
        policy = arm
    status = record.get("status")
    status = None if status is None else str(status).lower()
    if status is not None and status not in KNOWN_STATUSES:
        warnings.warn(f"results: unknown trial status {status!r}", stacklevel=3)

    domains = record.get("domains")
    domains = None if domains is None else [str(d) for d in domains]

    def metric(name: str) -> Any:
        if name in metrics:
            return metrics[name]
        return record.get(name)

    values: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "study": str(record.get("study") or study),
        "trial_id": trial_id,
        "arm": None if arm is None else str(arm),
        "policy": None if policy is None else str(policy),
        "phase": None if record.get("phase") is None else str(record["phase"]),
        "config_id": (
            str(record["config_id"])
            if record.get("config_id") is not None
            else config_id(str(arm), hparams)
        ),
        "seed": _opt_int(record.get("seed"), f"trial {trial_id}: seed"),
        "status": status,
        "error": None if record.get("error") is None else str(record["error"])[:_MAX_ERROR_CHARS],
        "num_domains": None if domains is None else len(domains),
        "domains": None if domains is None else json.dumps(domains),
        "package_version": str(record.get("package_version") or package_version or "") or None,
        "started_at": _timestamp(record.get("started_at"), f"trial {trial_id}: started_at"),
        "finished_at": _timestamp(record.get("finished_at"), f"trial {trial_id}: finished_at"),
    }
    for name in METRIC_COLUMNS:
        if name in _INT_METRICS:
            values[name] = _opt_int(metric(name), f"trial {trial_id}: metrics.{name}")
        else:
            values[name] = _opt_float(metric(name))
    _derive_metrics(values, domains, evals)

    fields = list(TRIALS_FIELDS)
    arrays = [pa.array([values[f.name]], type=f.type) for f in fields]
    hp_cols: dict[str, tuple[Any, pa.DataType]] = {}
    for name, value in hparams.items():
        col = hp_column(name)
        if col in hp_cols:
            raise ValueError(f"results: hyperparameters collide on column {col!r}")
        hp_cols[col] = _hp_value(value)
    for col in sorted(hp_cols):
        value, typ = hp_cols[col]
        fields.append(pa.field(col, typ))
        arrays.append(pa.array([value], type=typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _derive_metrics(
    values: dict[str, Any], domains: list[str] | None, evals: Sequence[Mapping[str, Any]] | None
) -> None:
    """Fill aggregates the record left out but the data determines (never overrides)."""
    if (
        evals
        and domains
        and values["val_loss_balanced"] is None
        and values["status"] == "completed"
    ):
        last = max(evals, key=lambda e: e["step"])
        losses = [
            _opt_float(x)
            for x in _as_list(last.get("val_loss"), len(domains), "val_loss", last["step"])
        ]
        if all(x is not None for x in losses):
            values["val_loss_balanced"] = float(np.mean(losses))
            entropy = last.get("entropy_rate")
            if entropy is not None and values["excess_loss_balanced"] is None:
                hs = [
                    _opt_float(x)
                    for x in _as_list(entropy, len(domains), "entropy_rate", last["step"])
                ]
                if all(h is not None for h in hs):
                    values["excess_loss_balanced"] = float(np.mean(np.subtract(losses, hs)))
    for kind in ("balanced", "natural"):
        loss = values[f"val_loss_{kind}"]
        if values[f"val_ppl_{kind}"] is None and loss is not None:
            values[f"val_ppl_{kind}"] = _safe_exp(loss)
    tokens, wall = values["tokens_seen"], values["wall_seconds"]
    if values["tokens_per_second"] is None and tokens is not None and wall:
        values["tokens_per_second"] = tokens / wall


# --------------------------------------------------------------------------------------------
# unifying part schemas


def _unify_type(types: Iterable[pa.DataType]) -> pa.DataType:
    kinds = {t for t in types if t != pa.null()}
    if not kinds:
        return pa.string()  # an all-null column: readable everywhere, unlike Arrow's null type
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def _to_string(array: pa.ChunkedArray) -> pa.ChunkedArray:
    if array.type == pa.string():
        return array
    if array.type == pa.null():
        return array.cast(pa.string())
    if array.type == pa.bool_():
        # JSON spelling, so a mixed column still parses as JSON.
        values = [None if v is None else ("true" if v else "false") for v in array.to_pylist()]
        return pa.chunked_array([pa.array(values, type=pa.string())])
    return array.cast(pa.string())


def concat_trials(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate one-or-more-row trials tables whose hp_ columns differ in presence or type.

    Missing hp columns become null. A column that is int in some trials and float in others
    becomes float; any other mixture becomes string (bools as ``true``/``false``). A row without
    a policy (schema version 1, where the arm was the policy) gets its arm as policy.
    """
    if not tables:
        return empty_trials()
    hp_types: dict[str, list[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            if f.name not in TRIALS_COLUMNS:
                hp_types.setdefault(f.name, []).append(f.type)
    target = pa.schema(
        list(TRIALS_FIELDS) + [pa.field(c, _unify_type(hp_types[c])) for c in sorted(hp_types)]
    )
    aligned = []
    for t in tables:
        arrays = []
        for f in target:
            if f.name in t.column_names:
                col = t.column(f.name)
                if col.type != f.type:
                    col = _to_string(col) if f.type == pa.string() else col.cast(f.type)
                arrays.append(col)
            else:
                arrays.append(pa.nulls(t.num_rows, type=f.type))
        aligned.append(pa.Table.from_arrays(arrays, schema=target))
    return _fill_policy(pa.concat_tables(aligned))


def _fill_policy(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    policy = table.column("policy")
    if policy.null_count == 0:
        return table
    filled = pc.coalesce(policy, table.column("arm"))
    return table.set_column(table.schema.get_field_index("policy"), "policy", filled)


def empty_trials() -> pa.Table:
    return pa.schema(list(TRIALS_FIELDS)).empty_table()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast ``table`` to ``schema`` (dropping metadata)."""
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _concat_long(tables: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([_conform(t, schema) for t in tables])


def _without_ids(table: pa.Table, trial_ids: set[str]) -> pa.Table:
    if not trial_ids or table.num_rows == 0:
        return table
    import pyarrow.compute as pc

    mask = pc.invert(pc.is_in(table.column("trial_id"), value_set=pa.array(sorted(trial_ids))))
    return table.filter(mask)


def _sorted(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    if table.num_rows == 0:
        return table
    return table.sort_by([(k, "ascending") for k in keys])


# --------------------------------------------------------------------------------------------
# parts on storage


@dataclass
class _Parts:
    """What the parts directory holds: per trial id, kind -> (uri, mtime in ns or None)."""

    files: dict[str, dict[str, tuple[str, int | None]]] = field(default_factory=dict)

    def trial_ids(self) -> list[str]:
        return sorted(tid for tid, kinds in self.files.items() if "trials" in kinds)


def _part_name(trial_id: str, kind: str) -> str:
    return f"{trial_id}.{kind}.parquet"


def _scan_parts(uri: str) -> _Parts:
    parts_uri = storage.join(uri, PARTS_DIR)
    fs, path = storage.resolve(parts_uri)
    parts = _Parts()
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return parts
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        name = info.base_name
        if info.type != pafs.FileType.File or ".tmp-" in name or not name.endswith(".parquet"):
            continue
        stem = name[: -len(".parquet")]
        trial_id, _, kind = stem.rpartition(".")
        if kind not in _PART_KINDS or not trial_id:
            continue
        mtime = info.mtime_ns
        parts.files.setdefault(trial_id, {})[kind] = (storage.join(parts_uri, name), mtime)
    return parts


def _mtime_ns(uri: str) -> int | None:
    fs, path = storage.resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return None
    return info.mtime_ns


_FILES = {
    "trials": TRIALS_FILE,
    "steps": STEPS_FILE,
    "evals": EVALS_FILE,
    "diagnostics": DIAGNOSTICS_FILE,
}
_LONG_SCHEMAS = {"steps": STEPS_SCHEMA, "evals": EVALS_SCHEMA, "diagnostics": DIAGNOSTICS_SCHEMA}


def _read_file(
    target: str, trial_ids: Iterable[str] | None, columns: Sequence[str] | None = None
) -> pa.Table:
    """A Parquet file (only the rows of ``trial_ids`` when given; only ``columns`` if given).
    A file that is not readable Parquet raises ``ValueError`` naming it."""
    try:
        return _read_file_unchecked(target, trial_ids, columns)
    except pa.ArrowInvalid as exc:
        _unreadable(target, exc)
        return None  # type: ignore[return-value]


#: Files skipped under :func:`partial_reads` (None outside it: an unreadable file is an error).
_SKIPPED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "ado_ray_skipped", default=None
)


@contextlib.contextmanager
def partial_reads() -> Iterator[list[str]]:
    """Within this block an unreadable results file is skipped (its rows read as absent)
    instead of raising; the yielded list collects ``"<file>: <reason>"`` for each."""
    skipped: list[str] = []
    token = _SKIPPED.set(skipped)
    try:
        yield skipped
    finally:
        _SKIPPED.reset(token)


def _unreadable(target: str, exc: BaseException) -> None:
    message = f"{target}: not a readable Parquet file ({_first_line(exc)})"
    skipped = _SKIPPED.get()
    if skipped is None:
        raise ValueError(message) from None
    if message not in skipped:
        skipped.append(message)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _read_file_unchecked(
    target: str, trial_ids: Iterable[str] | None, columns: Sequence[str] | None = None
) -> pa.Table:
    fs, path = storage.resolve(target)
    cols = None if columns is None else list(columns)
    if trial_ids is None:
        return pq.read_table(path, filesystem=fs, columns=cols)
    ids = sorted(set(trial_ids))
    if not ids:
        schema = pq.read_schema(path, filesystem=fs)
        return (
            schema.empty_table()
            if cols is None
            else pa.schema([schema.field(c) for c in cols]).empty_table()
        )
    # The merged files are sorted by trial_id with a row group per trial, so this reads little.
    return pq.read_table(path, filesystem=fs, columns=cols, filters=[("trial_id", "in", ids)])


def _legacy_law_columns(target: str) -> list[str]:
    """The law_* columns of a (version-1) steps file, [] if it has none or is missing."""
    fs, path = storage.resolve(target)
    try:
        names = pq.read_schema(path, filesystem=fs).names
    except FileNotFoundError:
        return []
    except pa.ArrowInvalid as exc:  # unreadable: an error, or skipped under partial_reads
        _unreadable(target, exc)
        return []
    return [c for c in LEGACY_LAW_COLUMNS if c in names]


def _legacy_diagnostics(steps_uri: str, trial_ids: Iterable[str] | None) -> pa.Table | None:
    """Diagnostics rows derived from a version-1 steps file's law columns, or None if it has
    none (a version-2 steps file, or no file)."""
    laws = _legacy_law_columns(steps_uri)
    if not laws:
        return None
    columns = ["trial_id", "step", "domain", "domain_index", *laws]
    try:
        table = _read_file(steps_uri, trial_ids, columns)
        return None if table is None else laws_to_diagnostics(table)
    except FileNotFoundError:  # replaced by a concurrent add_trial between scan and read
        return None


def _read_merged(uri: str, kind: str, trial_ids: Iterable[str] | None = None) -> pa.Table | None:
    """The merged file of ``kind`` (only the rows of ``trial_ids`` when given), or None.

    Version-1 results have no diagnostics file: their diagnostics come from the law columns of
    their steps file."""
    target = storage.join(uri, _FILES[kind])
    if not storage.exists(target):
        if kind == "diagnostics":
            return _legacy_diagnostics(storage.join(uri, STEPS_FILE), trial_ids)
        return None
    return _read_file(target, trial_ids)


def _read_part(parts: _Parts, trial_id: str, kind: str) -> pa.Table | None:
    entry = parts.files.get(trial_id, {}).get(kind)
    if entry is None:
        steps = parts.files.get(trial_id, {}).get("steps")
        if kind == "diagnostics" and steps is not None:  # a version-1 part: laws in its steps
            return _legacy_diagnostics(steps[0], None)
        return None
    try:
        return storage.read_table(entry[0])
    except FileNotFoundError:  # replaced by a concurrent add_trial between scan and read
        return None
    except pa.ArrowInvalid as exc:
        _unreadable(entry[0], exc)
        return None


def _finish(kind: str, tables: list[pa.Table]) -> pa.Table:
    if kind == "trials":
        return _sorted(concat_trials(tables), ["trial_id"])
    return _sorted(_concat_long(tables, _LONG_SCHEMAS[kind]), _KEYS[kind])


def _stale_part_ids(uri: str, parts: _Parts, merged_trials: pa.Table | None) -> list[str]:
    """Trials whose parts the merged files do not reflect: not merged at all, or parts written
    at or after the merged trials file (equal times count: object-store clocks are coarse)."""
    ids = parts.trial_ids()
    if merged_trials is None:
        return ids
    merged_mtime = _mtime_ns(storage.join(uri, TRIALS_FILE))
    merged_ids = set(merged_trials.column("trial_id").to_pylist())

    def stale(tid: str) -> bool:
        if tid not in merged_ids or merged_mtime is None:
            return True
        return any(m is None or m >= merged_mtime for _, m in parts.files[tid].values())

    return [tid for tid in ids if stale(tid)]


def _overlay(
    uri: str,
    kind: str,
    parts: _Parts,
    part_ids: list[str],
    trial_ids: Iterable[str] | None = None,
    merged: pa.Table | None = None,
) -> pa.Table:
    """The rows of ``kind``: the merged file's, with the trials in ``part_ids`` replaced by
    their parts (a trial's parts replace all its merged rows); only ``trial_ids`` if given."""
    wanted = None if trial_ids is None else set(trial_ids)
    if merged is None:
        merged = _read_merged(uri, kind, wanted)
    elif wanted is not None:
        merged = _only_ids(merged, wanted)
    tables = [] if merged is None else [_without_ids(merged, set(part_ids))]
    for tid in part_ids:
        if wanted is None or tid in wanted:
            part = _read_part(parts, tid, kind)
            if part is not None:
                tables.append(part)
    return _finish(kind, tables)


def _only_ids(table: pa.Table, trial_ids: set[str]) -> pa.Table:
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table.column("trial_id"), value_set=pa.array(sorted(trial_ids))))


def _write_parquet_stream(uri: str, schema: pa.Schema, tables: Iterable[pa.Table]) -> None:
    """Write tables one after another (one row group or more each) into one Parquet file,
    atomically, holding one table in memory at a time. Local paths: stream into a temporary
    sibling, then rename (as :func:`storage.write_bytes_atomic` does). Object stores: stream
    into memory (compressed), then one PUT, so a failure never leaves a partial object."""
    if storage.is_remote(uri):
        buf = io.BytesIO()
        with pq.ParquetWriter(buf, schema) as writer:
            for table in tables:
                writer.write_table(_conform(table, schema))
        storage.write_bytes_atomic(uri, buf.getvalue())
        return
    fs, path = storage.resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open_output_stream(tmp) as out, pq.ParquetWriter(out, schema) as writer:
            for table in tables:
                writer.write_table(_conform(table, schema))
        fs.move(tmp, path)
    except BaseException:
        if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)
        raise


# --------------------------------------------------------------------------------------------
# writer


class ResultsWriter:
    """Writes a study's results under ``uri`` (see the module docstring for the layout).

    Safe to use from several processes at once as long as each trial id is added by one of
    them; :meth:`merge` is meant for one process (the study driver) at a time.
    """

    def __init__(self, uri: str, study_name: str):
        self.uri = storage.normalize(uri)
        self.study_name = str(study_name)
        self.package_version: str | None = None
        storage.makedirs(storage.join(self.uri, PARTS_DIR))

    # -- metadata

    def write_meta(
        self, study_yaml: str, package_version: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Write ``study.yaml`` (the study file as run), ``meta.json`` and ``VERSION``.

        ``extra`` adds keys to meta.json. The analysis reads ``seq_len`` (the scaling-law
        plot's count unit), ``arms`` ({label: policy}, in the study's order; the report's arm
        order and its uniform reference) and ``search_spaces`` ({label: {option: {"type":
        "uniform" | "loguniform" | "int" | "categorical", "low", "high", "step", "log",
        "choices"}}}, the distributions of the importances and search plots). The sweep also
        writes ``total_steps`` and ``domains``.
        """
        self.package_version = str(package_version)
        meta = {
            "study": self.study_name,
            "schema_version": SCHEMA_VERSION,
            "package_version": self.package_version,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if extra:
            for key, value in extra.items():
                meta.setdefault(str(key), _jsonable(value))
        storage.write_text_atomic(storage.join(self.uri, STUDY_FILE), study_yaml or "")
        storage.write_text_atomic(
            storage.join(self.uri, META_FILE), json.dumps(meta, indent=2, default=str) + "\n"
        )
        storage.write_text_atomic(storage.join(self.uri, VERSION_FILE), f"{SCHEMA_VERSION}\n")

    # -- trials

    def add_trial(self, record: dict, steps: list[dict] | None, evals: list[dict] | None) -> None:
        """Record one trial: its row, and its per-step and per-evaluation history.

        ``record``: ``trial_id`` (required), ``arm`` (the arm's label), ``policy`` (the policy
        it runs; the arm when absent), ``phase``, ``config_id`` (derived from arm and hparams
        with :func:`config_id` when absent), ``seed``, ``status``, ``error``, ``domains`` [K
        names], ``hparams`` {name: value}, ``metrics`` {column: value} (``tokens_seen``,
        ``eval_tokens``...), and any other trials.parquet column (``started_at``,
        ``finished_at``, ``package_version``...). ``steps`` / ``evals``: wide per-step /
        per-eval dicts (see :func:`steps_table`, :func:`diagnostics_table`,
        :func:`evals_table`); they need ``record["domains"]``.

        Writes ``parts/<trial_id>.{steps,evals,diagnostics,trials}.parquet``, the trials part
        last, so a trial counts as recorded only once all its parts are in place. Re-adding a
        trial id replaces its parts (a part it no longer has is deleted).
        """
        trial_id = _check_trial_id(record.get("trial_id"))
        domains = record.get("domains")
        if (steps or evals) and not domains:
            raise ValueError(f"results: trial {trial_id}: steps/evals need record['domains']")
        row = trial_table(record, self.study_name, self.package_version, evals)
        # Build every table before writing any, so bad input leaves the old parts alone.
        tables = {
            "steps": steps_table(trial_id, list(domains), steps) if steps else None,
            "evals": evals_table(trial_id, list(domains), evals) if evals else None,
            "diagnostics": diagnostics_table(trial_id, list(domains), steps) if steps else None,
        }
        parts_uri = storage.join(self.uri, PARTS_DIR)
        for kind, table in tables.items():
            part = storage.join(parts_uri, _part_name(trial_id, kind))
            if table is not None and table.num_rows:
                storage.write_table_atomic(part, table)
            elif storage.exists(part):
                storage.delete(part)
        storage.write_table_atomic(storage.join(parts_uri, _part_name(trial_id, "trials")), row)

    def finished_trial_ids(self) -> set[str]:
        """Trial ids already recorded as finished (completed, failed or pruned), from the parts
        and the merged trials file: the trials ``--resume`` need not run again."""
        return {tid for tid, st in self.recorded_statuses().items() if st in FINISHED_STATUSES}

    def recorded_statuses(self) -> dict[str, str | None]:
        """The status of every trial recorded so far (finished or interrupted), by trial id."""
        status: dict[str, str | None] = {}
        merged = _read_merged(self.uri, "trials")
        if merged is not None:
            status.update(
                zip(merged.column("trial_id").to_pylist(), merged.column("status").to_pylist())
            )
        parts = _scan_parts(self.uri)
        for tid in parts.trial_ids():  # parts are never older than what was merged from them
            row = storage.read_table(parts.files[tid]["trials"][0])
            status[tid] = row.column("status")[0].as_py()
        return status

    # -- merge

    def merge(self) -> None:
        """Write trials/steps/evals/diagnostics.parquet from the parts (plus rows already
        merged for trials whose parts are gone), each atomically: readers see the old file or
        the new one. The files written are in this schema version's layout, whatever version
        the directory held (version-1 law columns move to diagnostics.parquet).

        The long files are streamed one trial at a time (sorted by trial_id, a row group per
        trial), so the merge holds one trial's history in memory, not the study's."""
        parts = _scan_parts(self.uri)
        part_ids = parts.trial_ids()
        ids = set(part_ids)
        trials = _overlay(self.uri, "trials", parts, part_ids)
        order = trials.column("trial_id").to_pylist()
        # History first: a reader that sees a trial in trials.parquet finds its history.
        # Diagnostics before steps: a version-1 steps file holds them until it is rewritten.
        for kind in ("diagnostics", "steps", "evals"):
            old = _read_merged(self.uri, kind)
            kept = None if old is None else _without_ids(old, ids)
            del old
            kept_ids = set() if kept is None else set(kept.column("trial_id").to_pylist())

            def tables(kind: str = kind, kept: pa.Table | None = kept, kept_ids: set = kept_ids):
                for tid in order:
                    if tid in ids:
                        part = _read_part(parts, tid, kind)
                        if part is not None:
                            yield _sorted(part, _KEYS[kind])
                    elif tid in kept_ids:
                        yield _sorted(_only_ids(kept, {tid}), _KEYS[kind])

            _write_parquet_stream(
                storage.join(self.uri, _FILES[kind]), _LONG_SCHEMAS[kind], tables()
            )
        storage.write_table_atomic(storage.join(self.uri, TRIALS_FILE), trials)
        version = storage.join(self.uri, VERSION_FILE)
        # The merged files are now in this version's layout, whatever VERSION said before.
        if not storage.exists(version) or storage.read_text(version).strip() != str(SCHEMA_VERSION):
            storage.write_text_atomic(version, f"{SCHEMA_VERSION}\n")


# --------------------------------------------------------------------------------------------
# reader


def _empty_frame(schema: pa.Schema) -> pd.DataFrame:
    return schema.empty_table().to_pandas()


@dataclass
class Results:
    """A study's results as pandas DataFrames (columns as documented in the README), in this
    schema version's layout whatever version wrote them."""

    uri: str
    trials: pd.DataFrame
    steps: pd.DataFrame
    evals: pd.DataFrame
    study_yaml: str | None = None
    meta: dict[str, Any] | None = None
    #: The Arrow schema of trials.parquet (tells int from float hyperparameters that pandas
    #: turned into float64 because of nulls).
    trials_schema: pa.Schema | None = None
    #: False when read with ``with_steps=False``: ``steps`` is then empty; use steps_for().
    steps_complete: bool = True
    diagnostics: pd.DataFrame = field(default_factory=lambda: _empty_frame(DIAGNOSTICS_SCHEMA))
    #: False when read with ``with_diagnostics=False``: use diagnostics_for().
    diagnostics_complete: bool = True
    _parts: _Parts | None = field(default=None, repr=False)
    _part_ids: list[str] | None = field(default=None, repr=False)

    def _history_for(self, kind: str, trial_ids: Iterable[str]) -> pd.DataFrame:
        ids = {str(t) for t in trial_ids}
        frame = self.steps if kind == "steps" else self.diagnostics
        if self.steps_complete if kind == "steps" else self.diagnostics_complete:
            return frame[frame["trial_id"].isin(sorted(ids))]
        if self._parts is None:
            return _read_history(self.uri, kind, ids, include_parts=True)
        table = _overlay(self.uri, kind, self._parts, self._part_ids or [], ids)
        return _to_pandas(table)

    def steps_for(self, trial_ids: Iterable[str]) -> pd.DataFrame:
        """The steps rows of ``trial_ids``, read from storage if ``steps`` was not loaded."""
        return self._history_for("steps", trial_ids)

    def diagnostics_for(self, trial_ids: Iterable[str]) -> pd.DataFrame:
        """The diagnostics rows of ``trial_ids``, read from storage if ``diagnostics`` was not
        loaded."""
        return self._history_for("diagnostics", trial_ids)

    @property
    def schema_version(self) -> int | None:
        """The schema version meta.json records (None without meta.json). Each trial row
        also records the version that wrote it (``schema_version`` column)."""
        if self.meta and self.meta.get("schema_version") is not None:
            return int(self.meta["schema_version"])
        return None

    @property
    def study(self) -> str | None:
        if self.meta and self.meta.get("study"):
            return str(self.meta["study"])
        if not self.trials.empty:
            return (
                str(self.trials["study"].dropna().iloc[0])
                if self.trials["study"].notna().any()
                else None
            )
        return None

    def hp_columns(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith(HP_PREFIX)]

    def domains(self) -> list[str]:
        """Domain names in domain_index order."""
        for frame in (self.evals, self.steps):
            if not frame.empty:
                pairs = (
                    frame[["domain_index", "domain"]].drop_duplicates().sort_values("domain_index")
                )
                return [str(d) for d in pairs["domain"]]
        if not self.trials.empty and self.trials["domains"].notna().any():
            return list(json.loads(self.trials["domains"].dropna().iloc[0]))
        return []


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.replace_schema_metadata(None).to_pandas()


def read_meta(uri: str) -> dict[str, Any] | None:
    """The study's ``meta.json`` (see :meth:`ResultsWriter.write_meta`), or None if absent."""
    meta_uri = storage.join(storage.normalize(uri), META_FILE)
    return json.loads(storage.read_text(meta_uri)) if storage.exists(meta_uri) else None


def require_study(uri: str) -> None:
    """``ValueError`` unless ``uri`` is a results directory (it holds a meta.json, study.yaml,
    trials.parquet or parts/): a typo must not read as an empty study."""
    fs, path = storage.resolve(uri)
    is_dir = fs.get_file_info(path).type == pafs.FileType.Directory
    names = set(storage.listdir(uri)) if is_dir else set()
    if not names & {META_FILE, STUDY_FILE, TRIALS_FILE, PARTS_DIR}:
        raise ValueError(
            f"results: {uri} holds no ado-ray study (no {META_FILE}, {STUDY_FILE}, "
            f"{TRIALS_FILE} or {PARTS_DIR}/); allowed: a directory printed by `ado-ray sweep`"
        )


def _check_readable(uri: str) -> None:
    """Every merged file's Parquet footer reads (a cheap check, so that a corrupt file is named
    at once, not discovered by a plot that then goes missing)."""
    for name in _FILES.values():
        target = storage.join(uri, name)
        if not storage.exists(target):
            continue
        fs, path = storage.resolve(target)
        try:
            pq.read_metadata(path, filesystem=fs)
        except pa.ArrowInvalid as exc:
            _unreadable(target, exc)


def read_results(
    uri: str,
    include_parts: bool = True,
    with_steps: bool = True,
    with_diagnostics: bool | None = None,
) -> Results:
    """Read a results directory (schema version 1 or 2).

    ``include_parts``: trials whose parts are newer than the merged files (or not in them at
    all) are merged in memory, so an unmerged or half-run study reads complete.
    ``with_steps=False`` leaves ``steps`` empty (the largest file by far); get the rows of
    chosen trials with :meth:`Results.steps_for` or :func:`read_steps`.
    ``with_diagnostics`` (default: as ``with_steps``) likewise for ``diagnostics``, with
    :meth:`Results.diagnostics_for` or :func:`read_diagnostics`.
    """
    if with_diagnostics is None:
        with_diagnostics = with_steps
    uri = storage.normalize(uri)
    require_study(uri)
    _check_readable(uri)
    parts = _scan_parts(uri) if include_parts else _Parts()
    merged_trials = _read_merged(uri, "trials")
    part_ids = _stale_part_ids(uri, parts, merged_trials)
    trials = _overlay(uri, "trials", parts, part_ids, merged=merged_trials)
    evals = _overlay(uri, "evals", parts, part_ids)
    steps = _overlay(uri, "steps", parts, part_ids) if with_steps else STEPS_SCHEMA.empty_table()
    diagnostics = (
        _overlay(uri, "diagnostics", parts, part_ids)
        if with_diagnostics
        else DIAGNOSTICS_SCHEMA.empty_table()
    )
    study_yaml = None
    study_uri = storage.join(uri, STUDY_FILE)
    if storage.exists(study_uri):
        study_yaml = storage.read_text(study_uri)
    meta = read_meta(uri)
    return Results(
        uri=uri,
        trials=_to_pandas(trials),
        steps=_to_pandas(steps),
        evals=_to_pandas(evals),
        study_yaml=study_yaml,
        meta=meta,
        trials_schema=trials.schema,
        steps_complete=with_steps,
        diagnostics=_to_pandas(diagnostics),
        diagnostics_complete=with_diagnostics,
        _parts=parts,
        _part_ids=part_ids,
    )


def _read_history(
    uri: str, kind: str, trial_ids: Iterable[str] | None, include_parts: bool
) -> pd.DataFrame:
    uri = storage.normalize(uri)
    parts = _scan_parts(uri) if include_parts else _Parts()
    part_ids = _stale_part_ids(uri, parts, _read_merged(uri, "trials"))
    return _to_pandas(_overlay(uri, kind, parts, part_ids, trial_ids))


def read_steps(
    uri: str, trial_ids: Iterable[str] | None = None, include_parts: bool = True
) -> pd.DataFrame:
    """steps.parquet rows of ``trial_ids`` (all trials when None), unmerged parts included."""
    return _read_history(uri, "steps", trial_ids, include_parts)


def read_diagnostics(
    uri: str, trial_ids: Iterable[str] | None = None, include_parts: bool = True
) -> pd.DataFrame:
    """diagnostics.parquet rows of ``trial_ids`` (all trials when None), unmerged parts
    included; for version-1 results, rows derived from the steps' law columns."""
    return _read_history(uri, "diagnostics", trial_ids, include_parts)
