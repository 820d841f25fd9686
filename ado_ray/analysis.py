"""Tables, hyperparameter importances, plots and a report from a study's Parquet results.

The analysis reads only what :mod:`ado_ray.results` wrote, from any storage URI.

- :func:`main_table`: per arm configuration of the confirm phase, mean and 95% t-interval over
  seeds of the aggregate and per-domain final validation losses and of throughput, and the
  difference against the baseline arm (uniform) paired by seed, with its 95% t-interval and a
  verdict ("better" when the interval lies below 0, "worse" above, "n.s." otherwise).
- :func:`format_table`: the table as Markdown, CSV, JSON or HTML.
- :func:`hp_importances`: Optuna importances of the ADO hyperparameters over the search phase.
- :func:`analyze`: all of the above plus the four plots (:mod:`ado_ray.plots`) into
  ``report.md`` and ``report.html``.

Run ``python -m ado_ray.analysis RESULTS_URI [--out DIR] [--format markdown|csv|json]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from ado_ray import storage
from ado_ray.results import HP_PREFIX, Results, read_results

#: Trial-level metrics summarised in the main table, in column order.
TABLE_METRICS: tuple[str, ...] = (
    "val_loss_balanced",
    "val_loss_natural",
    "val_ppl_balanced",
    "val_ppl_natural",
    "excess_loss_balanced",
    "tokens_per_second",
)
#: Metrics compared with the baseline, paired by seed.
PAIRED_METRICS: tuple[str, ...] = ("val_loss_balanced", "val_loss_natural")
ARM_ORDER: tuple[str, ...] = ("uniform", "natural", "fixed", "ado")
CONFIDENCE = 0.95
FORMATS = ("markdown", "csv", "json", "html")


# --------------------------------------------------------------------------------------------
# statistics


def mean_ci(
    values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, int]:
    """Mean, half-width of the two-sided t confidence interval, and n over the finite values.

    The half-width is NaN with fewer than 2 values (no spread to estimate).
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(arr.mean())
    if n < 2:
        return mean, math.nan, n
    sem = float(arr.std(ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sem), n


def verdict(low: float, high: float, lower_is_better: bool = True) -> str:
    """'better' / 'worse' when the interval of (arm - baseline) excludes 0, else 'n.s.'."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    if high < 0:
        return "better" if lower_is_better else "worse"
    if low > 0:
        return "worse" if lower_is_better else "better"
    return "n.s."


# --------------------------------------------------------------------------------------------
# helpers over Results


def _as_results(results: Results | str) -> Results:
    return results if isinstance(results, Results) else read_results(results, with_steps=False)


def _completed(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return trials
    return trials[trials["status"] == "completed"]


def final_domain_losses(results: Results) -> pd.DataFrame:
    """Each trial's per-domain validation loss at its last evaluation: index trial_id, one
    column per domain (domain_index order)."""
    ev = results.evals
    if ev.empty:
        return pd.DataFrame()
    last = ev.groupby("trial_id")["step"].transform("max")
    final = ev[ev["step"] == last]
    table = final.pivot_table(index="trial_id", columns="domain", values="val_loss", aggfunc="mean")
    order = [d for d in results.domains() if d in table.columns]
    return table[order]


def hparams_of(trials: pd.DataFrame, config: str) -> dict[str, Any]:
    """The non-null hyperparameters of configuration ``config`` (names without ``hp_``)."""
    rows = trials[trials["config_id"] == config]
    if rows.empty:
        return {}
    row = rows.iloc[0]
    out = {}
    for col in trials.columns:
        if col.startswith(HP_PREFIX) and _notnull(row[col]):
            value = row[col]
            out[col[len(HP_PREFIX) :]] = value.item() if isinstance(value, np.generic) else value
    return out


def _notnull(value: Any) -> bool:
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True


def _hp_text(hp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(hp.items()))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def config_labels(trials: pd.DataFrame) -> dict[str, str]:
    """A readable label per config_id: ``ado#<config_id[:6]>`` for ADO, the arm name for any
    other arm with a single configuration (uniform, natural), else ``<arm>#<config_id[:6]>``."""
    labels: dict[str, str] = {}
    for arm, rows in trials.groupby("arm", sort=False):
        configs = list(dict.fromkeys(rows["config_id"].dropna()))
        for cid in configs:
            plain = len(configs) == 1 and arm != "ado"
            labels[cid] = str(arm) if plain else f"{arm}#{str(cid)[:6]}"
    return labels


def _arm_rank(arm: str) -> int:
    return ARM_ORDER.index(arm) if arm in ARM_ORDER else len(ARM_ORDER)


def _pick_phase(trials: pd.DataFrame, phase: str | None) -> str | None:
    """``phase`` when it has completed trials, else the phase that has (search first)."""
    done = _completed(trials)
    if done.empty:
        return phase
    phases = list(dict.fromkeys(done["phase"].dropna()))
    if phase is None or phase in phases:
        return phase
    for candidate in ("search", *phases):
        if candidate in phases:
            return candidate
    return phase


# --------------------------------------------------------------------------------------------
# the main table


def main_table(
    results: Results | str,
    *,
    phase: str | None = "confirm",
    baseline: str = "uniform",
    metrics: Sequence[str] = TABLE_METRICS,
    paired: Sequence[str] = PAIRED_METRICS,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per (arm, config_id) of the completed trials of ``phase`` (``confirm``; if it has
    none, the search phase; ``None``: all phases).

    Columns: ``label``, ``arm``, ``config_id``, ``hparams`` (text), ``n_seeds`` (completed),
    ``n_failed`` (failed or stopped trials of the config in the phase), ``seeds``; for
    each metric ``<m>_mean`` and ``<m>_ci95`` (half-width of the 95% t-interval over seeds,
    NaN with one seed); per domain ``val_loss__<domain>_mean`` / ``_ci95`` (final evaluation);
    for each paired metric, against the baseline arm paired by seed: ``diff_<m>_mean``,
    ``diff_<m>_ci95``, ``diff_<m>_ci_low``, ``diff_<m>_ci_high``, ``diff_<m>_n_pairs`` and
    ``diff_<m>_verdict`` (better / worse / n.s. / n/a; ``baseline`` on the baseline's row).
    Repeated trials of one seed are averaged first. ``df.attrs`` holds phase, baseline,
    confidence and notes.
    """
    res = _as_results(results)
    notes: list[str] = []
    used_phase = _pick_phase(res.trials, phase)
    if used_phase != phase:
        notes.append(f"no completed trials in phase {phase!r}; using phase {used_phase!r}")
    done = _completed(res.trials)
    if used_phase is not None and not done.empty:
        done = done[done["phase"] == used_phase]
    finals = final_domain_losses(res)
    domains = list(finals.columns)
    failed = res.trials[res.trials["status"] != "completed"] if not res.trials.empty else None
    if failed is not None and used_phase is not None:
        failed = failed[failed["phase"] == used_phase]
    has_failed = failed is not None and not failed.empty
    seen = pd.concat([done, failed]) if has_failed else done
    labels = config_labels(seen) if not seen.empty else {}

    def per_seed(rows: pd.DataFrame) -> pd.DataFrame:
        """Metrics and per-domain finals of ``rows``, one row per seed."""
        if rows.empty:
            return pd.DataFrame(
                columns=[*metrics, *[f"val_loss__{d}" for d in domains]], dtype=float
            )
        frame = rows[["trial_id", "seed", *metrics]].copy()
        for d in domains:
            frame[f"val_loss__{d}"] = frame["trial_id"].map(finals[d])
        return frame.drop(columns="trial_id").groupby("seed").mean(numeric_only=True)

    groups = []
    for (arm, cid), rows in done.groupby(["arm", "config_id"], sort=False):
        groups.append((str(arm), str(cid), rows))
    if has_failed:  # a configuration none of whose seeds completed still gets its row
        kept = {(a, c) for a, c, _ in groups}
        for (arm, cid), _ in failed.groupby(["arm", "config_id"], sort=False):
            if (str(arm), str(cid)) not in kept:
                groups.append((str(arm), str(cid), done.iloc[0:0]))

    def order(g: tuple[str, str, pd.DataFrame]) -> tuple[int, str, float]:
        m = g[2][metrics[0]].mean() if metrics else math.nan
        return _arm_rank(g[0]), g[0], float(m) if pd.notna(m) else math.inf

    groups.sort(key=order)

    base_seeds: pd.DataFrame | None = None
    base_cid = None
    base_groups = [g for g in groups if g[0] == baseline]
    if base_groups:
        arm, base_cid, rows = max(base_groups, key=lambda g: g[2]["seed"].nunique())
        base_seeds = per_seed(rows)
        if len(base_groups) > 1:
            notes.append(
                f"baseline {baseline!r} has {len(base_groups)} configurations; pairing with {base_cid}"
            )
    else:
        notes.append(f"no completed {baseline!r} trials in this phase: no paired differences")

    def summarise(values: np.ndarray, what: str, label: str) -> tuple[float, float, int]:
        # An infinite value, or a NaN beside finite ones, is a diverged seed: dropping it would
        # flatter the arm, so the whole cell becomes n/a. All-NaN is a metric not measured
        # (no entropy rate for real text, say): n/a without a note.
        finite = np.isfinite(values)
        if values.size and not finite.all() and (finite.any() or np.isinf(values).any()):
            notes.append(f"{label}: {what} is not finite on some seed; shown as n/a")
            return math.nan, math.nan, int(values.size)
        return mean_ci(values, confidence)

    out_rows = []
    for arm, cid, rows in groups:
        seeds = per_seed(rows)
        label = labels.get(cid, f"{arm}#{cid[:6]}")
        n_failed = 0
        if has_failed:
            n_failed = int(((failed["arm"] == arm) & (failed["config_id"] == cid)).sum())
        row: dict[str, Any] = {
            "label": label,
            "arm": arm,
            "config_id": cid,
            "hparams": _hp_text(hparams_of(seen, cid)),
            "n_seeds": int(len(seeds)),
            "n_failed": n_failed,
            "seeds": ",".join(str(int(s)) for s in seeds.index if _notnull(s)),
        }
        if n_failed:
            notes.append(
                f"{label}: {n_failed} trial(s) failed or were stopped; "
                + (
                    f"the statistics use the {len(seeds)} completed seed(s) only"
                    if len(seeds)
                    else "no seed completed"
                )
            )
        for m in [*metrics, *[f"val_loss__{d}" for d in domains]]:
            mean, half, _ = summarise(seeds[m].to_numpy(dtype=np.float64), m, label)
            row[f"{m}_mean"], row[f"{m}_ci95"] = mean, half
        for m in paired:
            key = f"diff_{m}"
            if base_seeds is None:
                diff = np.array([])
            else:
                base = base_seeds[[m]].rename(columns={m: "_base"})
                joined = seeds[[m]].join(base, how="inner")
                diff = (joined[m] - joined["_base"]).to_numpy(dtype=np.float64)
            mean, half, n = summarise(diff, f"Δ{m} vs {baseline}", label)
            row[f"{key}_mean"], row[f"{key}_ci95"] = mean, half
            row[f"{key}_ci_low"], row[f"{key}_ci_high"] = mean - half, mean + half
            row[f"{key}_n_pairs"] = n
            row[f"{key}_verdict"] = (
                "baseline" if cid == base_cid else verdict(mean - half, mean + half)
            )
        out_rows.append(row)

    columns = ["label", "arm", "config_id", "hparams", "n_seeds", "n_failed", "seeds"]
    for m in [*metrics, *[f"val_loss__{d}" for d in domains]]:
        columns += [f"{m}_mean", f"{m}_ci95"]
    for m in paired:
        columns += [
            f"diff_{m}_{s}" for s in ("mean", "ci95", "ci_low", "ci_high", "n_pairs", "verdict")
        ]
    table = pd.DataFrame(out_rows, columns=columns)
    table.attrs.update(
        {
            "phase": used_phase,
            "baseline": baseline,
            "baseline_config_id": base_cid,
            "confidence": confidence,
            "domains": domains,
            "notes": notes,
        }
    )
    return table


# --------------------------------------------------------------------------------------------
# formatting


def _fmt_num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def display_frame(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A string view of a main table for people: ``<m>_mean`` and ``<m>_ci95`` become one
    ``<m>`` column "mean ± ci"; each paired difference becomes one ``Δ<m> vs <baseline>``
    column "mean [low, high] verdict"; ``arm``, ``config_id``, ``hparams`` and ``seeds`` are
    left out. Other columns are formatted as they are."""
    baseline = df.attrs.get("baseline", "baseline")
    cols = list(df.columns)
    skip = {"arm", "config_id", "hparams", "seeds"} & set(cols)
    if "label" not in cols:
        skip = set()
    out: dict[str, list[str]] = {}
    handled: set[str] = set(skip)
    for col in cols:
        if col in handled:
            continue
        if col.startswith("diff_") and col.endswith("_mean"):
            m = col[len("diff_") : -len("_mean")]
            parts = {
                s: f"diff_{m}_{s}" for s in ("ci_low", "ci_high", "verdict", "ci95", "n_pairs")
            }
            cells = []
            for _, r in df.iterrows():
                verdict_text = r.get(parts["verdict"], "")
                if verdict_text == "baseline":
                    cells.append("(baseline)")
                    continue
                text = _fmt_num(r[col], digits)
                if parts["ci_low"] in df.columns and _notnull(r[parts["ci_low"]]):
                    text += f" [{_fmt_num(r[parts['ci_low']], digits)}, {_fmt_num(r[parts['ci_high']], digits)}]"
                if verdict_text:
                    text += f" {verdict_text}"
                if parts["n_pairs"] in df.columns and _notnull(r[parts["n_pairs"]]):
                    text += f" (n={int(r[parts['n_pairs']])})"  # seeds both arms completed
                cells.append(text)
            out[f"Δ{m} vs {baseline}"] = cells
            handled |= {col, *[c for c in parts.values() if c in df.columns]}
        elif col.endswith("_mean") and f"{col[: -len('_mean')]}_ci95" in df.columns:
            m = col[: -len("_mean")]
            ci = f"{m}_ci95"
            cells = []
            for mean, half in zip(df[col], df[ci]):
                text = _fmt_num(mean, digits)
                if _notnull(half) and math.isfinite(float(half)):
                    big = _notnull(mean) and abs(float(mean)) >= 1000
                    text += f" ± {f'{float(half):,.0f}' if big else _fmt_num(half, digits)}"
                elif _notnull(mean):
                    text += " ± n/a"
                cells.append(text)
            name = m.replace("val_loss__", "val_loss[") + "]" if m.startswith("val_loss__") else m
            out[name] = cells
            handled |= {col, ci}
        else:
            out[col] = [
                _fmt_num(v, digits)
                if isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, bool)
                else ("" if not _notnull(v) else str(v))
                for v in df[col]
            ]
            handled.add(col)
    return pd.DataFrame(out)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def format_table(df: pd.DataFrame, fmt: str = "markdown", digits: int = 4) -> str:
    """``markdown`` / ``html``: the readable view (:func:`display_frame`); ``csv`` / ``json``:
    every column with raw numbers (JSON: a list of records, NaN as null)."""
    fmt = fmt.lower()
    if fmt in ("md", "markdown"):
        return _markdown(display_frame(df, digits))
    if fmt == "html":
        return display_frame(df, digits).to_html(
            index=False, escape=True, border=0, classes="table"
        )
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        records = json.loads(df.to_json(orient="records", double_precision=15))
        return json.dumps(records, indent=2) + "\n"
    raise ValueError(f"unknown table format {fmt!r}; use one of {FORMATS}")


# --------------------------------------------------------------------------------------------
# hyperparameter importances


@dataclass
class SearchSpace:
    """The completed search-phase trials of one arm and the distributions of their varying
    hyperparameters (column name -> optuna distribution), inferred from the observed values."""

    trials: pd.DataFrame
    distributions: dict[str, Any]
    metric: str
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it was left out


def _column_kind(res: Results, col: str, values: pd.Series) -> str:
    typ = (
        res.trials_schema.field(col).type
        if res.trials_schema is not None and col in res.trials_schema.names
        else None
    )
    if typ is not None:
        if pa.types.is_boolean(typ) or pa.types.is_string(typ) or pa.types.is_large_string(typ):
            return "categorical"
        if pa.types.is_integer(typ):
            return "int"
        if pa.types.is_floating(typ):
            return "float"
    if values.map(lambda v: isinstance(v, (bool, np.bool_, str))).any():
        return "categorical"
    if pd.api.types.is_integer_dtype(values):
        return "int"
    return "float"


def search_space(
    results: Results | str,
    metric: str = "val_loss_balanced",
    arm: str = "ado",
    phase: str = "search",
) -> SearchSpace:
    """The completed, metric-bearing trials of ``arm`` in ``phase`` and their hp distributions:
    floats -> FloatDistribution(min, max) (log scale when positive and spanning >= 100x), ints
    -> IntDistribution, strings and bools -> CategoricalDistribution; constant columns skipped."""
    import optuna.distributions as od

    res = _as_results(results)
    t = _completed(res.trials)
    if not t.empty:
        t = t[(t["arm"] == arm) & (t["phase"] == phase)]
        t = t[t[metric].notna() & np.isfinite(t[metric].astype(float))]
    dists: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for col in [c for c in t.columns if c.startswith(HP_PREFIX)]:
        values = t[col].dropna()
        if values.empty:
            continue
        uniq = list(dict.fromkeys(values.tolist()))
        if len(uniq) < 2:
            skipped[col] = "constant"
            continue
        kind = _column_kind(res, col, values)
        if kind == "categorical":
            choices = tuple(
                sorted(
                    (v.item() if isinstance(v, np.generic) else v for v in uniq),
                    key=lambda v: (str(type(v)), str(v)),
                )
            )
            dists[col] = od.CategoricalDistribution(choices)
        elif kind == "int":
            lo, hi = int(min(uniq)), int(max(uniq))
            dists[col] = od.IntDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        else:
            lo, hi = float(min(uniq)), float(max(uniq))
            dists[col] = od.FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
    return SearchSpace(trials=t, distributions=dists, metric=metric, skipped=skipped)


def _param_value(dist: Any, value: Any) -> Any:
    import optuna.distributions as od

    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(dist, od.IntDistribution):
        return int(value)
    if isinstance(dist, od.FloatDistribution):
        return float(value)
    return value


# Below this many trials, PED-ANOVA's ranking often puts a knob with no effect first (checked
# on synthetic searches where only gamma1 mattered: wrong at 10 trials in 7 of 20 runs).
FEW_TRIALS_FOR_IMPORTANCES = 30


def hp_importances(
    results: Results | str,
    metric: str = "val_loss_balanced",
    arm: str = "ado",
    phase: str = "search",
    direction: str = "minimize",
) -> tuple[dict[str, float] | None, str]:
    """Optuna hyperparameter importances of ``arm`` over ``phase``: an in-memory study built
    from trials.parquet (no Optuna storage needed). Returns (importances by hyperparameter name
    without ``hp_``, normalised to sum 1, or None; a message saying what was done or why not)."""
    import optuna

    space = search_space(results, metric, arm, phase)
    n = len(space.trials)
    if n < 2:
        return (
            None,
            f"hyperparameter importances need >= 2 completed {arm} trials in phase {phase!r} with {metric}; found {n}",
        )
    if not space.distributions:
        return (
            None,
            f"hyperparameter importances need a varying {arm} hyperparameter in phase {phase!r}; none varies across the {n} trials",
        )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(direction=direction, study_name=f"{arm}-{phase}-importances")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for _, row in space.trials.iterrows():
        params, dists = {}, {}
        for col, dist in space.distributions.items():
            if _notnull(row[col]):
                name = col[len(HP_PREFIX) :]
                params[name] = _param_value(dist, row[col])
                dists[name] = dist
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, value=float(row[metric]))
        )
    evaluator = None
    if hasattr(optuna.importance, "PedAnovaImportanceEvaluator"):
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    name = type(evaluator).__name__ if evaluator is not None else "optuna's default evaluator"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # an evaluator's missing optional dependency, degenerate data...
        return None, f"optuna could not compute importances ({type(exc).__name__}: {exc})"
    imp = {str(k): float(v) for k, v in sorted(imp.items(), key=lambda kv: -kv[1])}
    msg = (
        f"{name} over {n} completed {arm} trials of phase {phase!r}, target {metric} ({direction})"
    )
    if n < FEW_TRIALS_FOR_IMPORTANCES:
        msg += (
            f". With fewer than {FEW_TRIALS_FOR_IMPORTANCES} trials the ranking is noisy: read it "
            "as a hint, not a finding"
        )
    return imp, msg + "; failed and pruned trials are not counted"


# --------------------------------------------------------------------------------------------
# the report


@dataclass
class AnalysisReport:
    table: pd.DataFrame
    importances: dict[str, float] | None
    plots: list[str]
    report_path: str | None
    html_path: str | None = None
    table_path: str | None = None
    table_text: str = ""
    messages: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The table in the requested format (what ``ado-ray analyze`` prints)."""
        return self.table_text


def default_out_dir(uri: str, study: str | None) -> str:
    """``<results>/analysis`` for local results; ``./analysis-<study>`` for remote ones."""
    if storage.is_remote(uri):
        return storage.normalize(f"analysis-{study or 'study'}")
    return storage.join(storage.normalize(uri), "analysis")


def _rel(out_dir: str, target: str) -> str:
    prefix = out_dir.rstrip("/") + "/"
    return target[len(prefix) :] if target.startswith(prefix) else target


def best_ado_config(
    table: pd.DataFrame, results: Results, metric: str
) -> tuple[str | None, str | None]:
    """(config_id, phase) of the ADO configuration with the lowest mean ``metric``: from the
    main table's phase when it has ADO, else the search phase."""
    col = f"{metric}_mean"
    if not table.empty and col in table.columns:
        ado = table[(table["arm"] == "ado") & table[col].notna()]
        if not ado.empty:
            return str(ado.loc[ado[col].idxmin(), "config_id"]), table.attrs.get("phase")
    done = _completed(results.trials)
    if done.empty:
        return None, None
    ado = done[(done["arm"] == "ado") & done[metric].notna()]
    if ado.empty:
        return None, None
    for ph in ("search", *ado["phase"].dropna().unique()):
        rows = ado[ado["phase"] == ph]
        if not rows.empty:
            means = rows.groupby("config_id")[metric].mean()
            return str(means.idxmin()), ph
    return None, None


def _trial_summary(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return pd.DataFrame(columns=["phase", "arm", "status", "trials"])
    t = trials.fillna({"phase": "?", "arm": "?", "status": "?"})
    counts = t.groupby(["phase", "arm", "status"]).size().reset_index(name="trials")
    counts["_r"] = counts["arm"].map(_arm_rank)
    return counts.sort_values(["phase", "_r", "arm", "status"]).drop(columns="_r")


def _split_table(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(aggregates + differences, per-domain losses, configurations) views of the main table."""
    dom_cols = [c for c in table.columns if c.startswith("val_loss__")]
    agg = table.drop(columns=dom_cols)
    agg = agg[[c for c in agg.columns if c not in ("hparams",)]]
    dom = table[["label", "n_seeds", *dom_cols]]
    cfg = table[["label", "arm", "config_id", "hparams", "n_seeds", "seeds"]]
    for part in (agg, dom):
        part.attrs.update(table.attrs)
    return agg, dom, cfg


def analyze(
    uri: str,
    out_dir: str | None = None,
    fmt: str = "markdown",
    *,
    metric: str = "val_loss_balanced",
    baseline: str = "uniform",
    phase: str = "confirm",
    make_plots: bool = True,
) -> AnalysisReport:
    """Analyse the results at ``uri``; write the table (``table.md``/``.csv``/``.json`` per
    ``fmt``), ``plots/*.png``, ``report.md`` and ``report.html`` to ``out_dir`` (any storage
    URI; default :func:`default_out_dir`)."""
    from ado_ray import plots as plots_mod

    if fmt not in FORMATS and fmt != "md":
        raise ValueError(f"unknown table format {fmt!r}; use one of {FORMATS}")
    res = read_results(uri, with_steps=False)  # plots read the steps of the trials they draw
    out_dir = storage.normalize(out_dir) if out_dir else default_out_dir(res.uri, res.study)
    messages: list[str] = []
    table = main_table(res, phase=phase, baseline=baseline)
    messages += table.attrs.get("notes", [])
    importances, imp_msg = hp_importances(res, metric=metric)

    table_text = format_table(table, fmt)
    ext = {"markdown": "md", "md": "md", "csv": "csv", "json": "json", "html": "html"}[fmt]
    table_path = storage.join(out_dir, f"table.{ext}")
    storage.write_text_atomic(table_path, table_text)

    figures: list[tuple[str, str, str]] = []  # (uri, title, caption)
    if make_plots:
        best_cid, best_phase = best_ado_config(table, res, metric)
        for name, title, build in (
            (
                "weights.png",
                "Mixture weights",
                lambda: plots_mod.plot_weights(res, table, best_cid, best_phase),
            ),
            (
                "val_loss.png",
                "Validation loss per domain",
                lambda: plots_mod.plot_val_curves(res, table),
            ),
            (
                "scaling_laws.png",
                "Fitted scaling laws (best ADO trial)",
                lambda: plots_mod.plot_scaling_laws(res, best_cid, best_phase, metric),
            ),
            (
                "search.png",
                "Search: hyperparameters vs metric",
                lambda: plots_mod.plot_search(res, metric),
            ),
        ):
            try:
                fig, caption = build()
            except Exception as exc:  # a plot must not sink the report
                fig, caption = None, f"{type(exc).__name__}: {exc}"
            if fig is None:
                messages.append(f"{title}: not drawn ({caption})")
                continue
            target = storage.join(out_dir, "plots", name)
            plots_mod.save_png(fig, target)
            figures.append((target, title, caption))

    md, page = _render_report(res, table, importances, imp_msg, figures, messages, out_dir, metric)
    report_path = storage.join(out_dir, "report.md")
    html_path = storage.join(out_dir, "report.html")
    storage.write_text_atomic(report_path, md)
    storage.write_text_atomic(html_path, page)
    return AnalysisReport(
        table=table,
        importances=importances,
        plots=[f[0] for f in figures],
        report_path=report_path,
        html_path=html_path,
        table_path=table_path,
        table_text=table_text,
        messages=[*messages, imp_msg],
    )


def _render_report(
    res: Results,
    table: pd.DataFrame,
    importances: dict[str, float] | None,
    imp_msg: str,
    figures: list[tuple[str, str, str]],
    messages: list[str],
    out_dir: str,
    metric: str,
) -> tuple[str, str]:
    study = res.study or "study"
    meta = res.meta or {}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    head = (
        f"Results: `{res.uri}` · schema version {meta.get('schema_version', '?')} · "
        f"package {meta.get('package_version', '?')} · analysed {now}"
    )
    phase = table.attrs.get("phase")
    baseline = table.attrs.get("baseline")
    intro = (
        f"Phase **{phase}**, completed trials only. Mean ± half-width of the 95% t-interval over "
        f"seeds (n/a with one seed). Δ = arm − {baseline}, paired by seed, with its 95% t-interval; "
        "'better' when the interval lies below 0 (lower loss); n = the seeds paired. "
        "The intervals are not corrected for comparing several ADO configurations."
    )
    agg, dom, cfg = _split_table(table)
    summary = _trial_summary(res.trials)
    failed = _failed(res.trials)
    imp_frame = (
        pd.DataFrame(
            {"hyperparameter": list(importances), "importance": list(importances.values())}
        )
        if importances
        else None
    )

    md: list[str] = [f"# Analysis of study `{study}`", "", head, ""]
    md += [
        "## Trials",
        "",
        _markdown(summary.astype(str)) if not summary.empty else "No trials recorded.\n",
    ]
    if failed is not None:
        md += ["Failed trials:", "", _markdown(failed)]
    md += ["## Main comparison", "", intro, ""]
    md += [
        format_table(agg, "markdown") if not table.empty else "No completed trials to compare.\n"
    ]
    if not table.empty:
        md += ["### Final validation loss per domain", "", format_table(dom, "markdown")]
        md += ["### Configurations", "", _markdown(cfg.astype(str))]
    md += ["## Hyperparameter importances (ADO, search phase)", "", imp_msg + ".", ""]
    if imp_frame is not None:
        md += [format_table(imp_frame, "markdown")]
    md += ["## Plots", ""]
    for target, title, caption in figures:
        md += [f"### {title}", "", f"![{title}]({_rel(out_dir, target)})", "", caption, ""]
    if messages:
        md += ["## Notes", "", *[f"- {m}" for m in messages], ""]

    e = html.escape
    body: list[str] = [
        f"<h1>Analysis of study <code>{e(study)}</code></h1>",
        f"<p>{e(head.replace('`', ''))}</p>",
    ]
    body += ["<h2>Trials</h2>", summary.to_html(index=False, border=0, classes="table")]
    if failed is not None:
        body += ["<p>Failed trials:</p>", failed.to_html(index=False, border=0, classes="table")]
    body += ["<h2>Main comparison</h2>", f"<p>{e(intro).replace('**', '')}</p>"]
    if not table.empty:
        body += [
            format_table(agg, "html"),
            "<h3>Final validation loss per domain</h3>",
            format_table(dom, "html"),
        ]
        body += ["<h3>Configurations</h3>", cfg.to_html(index=False, border=0, classes="table")]
    else:
        body += ["<p>No completed trials to compare.</p>"]
    body += ["<h2>Hyperparameter importances (ADO, search phase)</h2>", f"<p>{e(imp_msg)}.</p>"]
    if imp_frame is not None:
        body += [format_table(imp_frame, "html")]
    body += ["<h2>Plots</h2>"]
    for target, title, caption in figures:
        body += [
            f'<figure><img src="{e(_rel(out_dir, target))}" alt="{e(title)}">',
            f"<figcaption><b>{e(title)}.</b> {e(caption)}</figcaption></figure>",
        ]
    if messages:
        body += ["<h2>Notes</h2>", "<ul>", *[f"<li>{e(m)}</li>" for m in messages], "</ul>"]
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img{max-width:100%}figure{margin:1.5em 0}"
    )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{e(study)} analysis</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    return "\n".join(md), page


def _failed(trials: pd.DataFrame) -> pd.DataFrame | None:
    if trials.empty:
        return None
    bad = trials[trials["status"] == "failed"]
    if bad.empty:
        return None
    errors = (
        bad["error"]
        .fillna("")
        .astype(str)
        .map(lambda s: (s.strip().splitlines() or [""])[-1][:200])
    )
    return pd.DataFrame(
        {
            "trial_id": bad["trial_id"].astype(str),
            "arm": bad["arm"].astype(str),
            "phase": bad["phase"].astype(str),
            "error": errors,
        }
    )


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ado-ray analyze", description="Tables, plots and a report from a study's results."
    )
    p.add_argument("results", help="results directory (local path, file://, s3://, gs://)")
    p.add_argument(
        "--out",
        default=None,
        help="output directory (default: <results>/analysis, or ./analysis-<study> for remote results)",
    )
    p.add_argument(
        "--format",
        dest="fmt",
        choices=["markdown", "csv", "json"],
        default="markdown",
        help="format of the printed table",
    )
    p.add_argument(
        "--metric",
        default="val_loss_balanced",
        help="metric for the best configuration and the importances",
    )
    p.add_argument(
        "--baseline", default="uniform", help="arm the paired differences are taken against"
    )
    p.add_argument(
        "--phase", default="confirm", help="phase of the main table (falls back to search)"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = analyze(
        args.results,
        args.out,
        args.fmt,
        metric=args.metric,
        baseline=args.baseline,
        phase=args.phase,
        make_plots=not args.no_plots,
    )
    sys.stdout.write(report.table_text)
    for m in report.messages:
        print(f"note: {m}", file=sys.stderr)
    print(f"report: {report.report_path}", file=sys.stderr)
    return 0


__all__ = [
    "AnalysisReport",
    "analyze",
    "format_table",
    "hp_importances",
    "main",
    "main_table",
    "mean_ci",
    "search_space",
]

if __name__ == "__main__":
    raise SystemExit(main())
