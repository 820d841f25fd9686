"""Tables and statistics from a study's Parquet results: no plotting, no report writing.

The analysis reads only what :mod:`ado_ray.results` wrote, from any storage URI. The import
direction is one way: :mod:`ado_ray.report` (the ``ado-ray analyze`` report) uses
:mod:`ado_ray.plots`, which uses this module; this module imports neither.

Arms are labels (``ado_fast``, ``uniform``...), each running a policy; several may share one.

- :func:`arm_policies`: the study's arms (label -> policy) in the study's order.
- :func:`main_table`: per arm configuration of the confirm phase, mean and 95% t-interval over
  seeds of the aggregate and per-domain final validation losses and of throughput, the training
  and evaluation tokens per trial, and the difference against the reference arm (the first arm
  running the ``uniform`` policy) paired by seed, with its 95% t-interval and a verdict
  ("better" when the interval lies below 0, "worse" above, "n.s." otherwise).
- :func:`format_table`: the table as Markdown, CSV, JSON or HTML.
- :func:`searched_arms`, :func:`search_space`, :func:`hp_importances`: per searched arm, its
  search space (from meta.json) and Optuna importances of its hyperparameters.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from ado_ray.results import HP_PREFIX, Results, hp_column, read_results

#: Trial-level metrics summarised in the main table, in column order.
TABLE_METRICS: tuple[str, ...] = (
    "val_loss_balanced",
    "val_loss_natural",
    "val_ppl_balanced",
    "val_ppl_natural",
    "excess_loss_balanced",
    "tokens_per_second",
)
#: Metrics compared with the reference arm, paired by seed.
PAIRED_METRICS: tuple[str, ...] = ("val_loss_balanced", "val_loss_natural")
#: Compute per trial (main-table column -> trials.parquet column): a mean over the
#: configuration's completed trials, without an interval (a budget, not a measurement).
COMPUTE_COLUMNS: dict[str, str] = {
    "train_tokens_per_trial": "tokens_seen",
    "eval_tokens_per_trial": "eval_tokens",
    "mfu": "mfu",  # on CUDA; NaN on CPU
}
#: The policy of the reference arm the paired differences are taken against.
REFERENCE_POLICY = "uniform"
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


def config_labels(trials: pd.DataFrame, searched: Sequence[str] = ()) -> dict[str, str]:
    """A readable label per config_id: the arm label for an arm with a single configuration
    that was not searched (uniform, natural), else ``<arm>#<config_id[:6]>`` (a searched arm's
    configuration is one of many, even when only one was confirmed)."""
    labels: dict[str, str] = {}
    for arm, rows in trials.groupby("arm", sort=False):
        configs = list(dict.fromkeys(rows["config_id"].dropna()))
        for cid in configs:
            plain = len(configs) == 1 and arm not in searched
            labels[cid] = str(arm) if plain else f"{arm}#{str(cid)[:6]}"
    return labels


# --------------------------------------------------------------------------------------------
# arms: labels, their policies, their order


def _study_file_arms(study_yaml: str | None) -> dict[str, str]:
    """label -> policy from the study file's ``arms``: a list of names (schema version 1's
    studies: the name is the policy) or a mapping label -> {policy: ..., ...}."""
    if not study_yaml:
        return {}
    try:
        import yaml

        doc = yaml.safe_load(study_yaml)
    except Exception:  # an unreadable study file only loses the order
        return {}
    arms = doc.get("arms") if isinstance(doc, Mapping) else None
    if isinstance(arms, list):
        return {str(a): str(a) for a in arms if isinstance(a, str)}
    if isinstance(arms, Mapping):
        out = {}
        for label, spec in arms.items():
            policy = spec.get("policy") if isinstance(spec, Mapping) else None
            out[str(label)] = str(policy or label)
        return out
    return {}


def arm_policies(results: Results | str) -> dict[str, str]:
    """The study's arms, label -> policy, in the study's order: meta.json's ``arms`` (written
    by the sweep), else the study file's; then any other arm of the trials, in the order they
    first started. An arm without a recorded policy runs the policy of its own name."""
    res = _as_results(results)
    out: dict[str, str] = {}
    meta_arms = (res.meta or {}).get("arms")
    if isinstance(meta_arms, Mapping):
        for label, policy in meta_arms.items():
            if isinstance(policy, Mapping):
                policy = policy.get("policy")
            out[str(label)] = str(policy or label)
    else:
        out.update(_study_file_arms(res.study_yaml))
    t = res.trials
    if not t.empty:
        t = t.sort_values(["started_at", "trial_id"], na_position="last", kind="stable")
        for arm, policy in zip(t["arm"], t["policy"]):
            if isinstance(arm, str) and arm not in out:
                out[arm] = policy if isinstance(policy, str) else arm
    return out


def reference_arm(results: Results | str) -> str | None:
    """The arm the paired differences are taken against: the first arm whose policy is
    ``uniform``; None when no arm runs it."""
    return next(
        (a for a, p in arm_policies(results).items() if p == REFERENCE_POLICY),
        None,
    )


def searched_arms(results: Results | str, phase: str = "search") -> list[str]:
    """The arms with a hyperparameter search, in arm order: those with a search space in
    meta.json's ``search_spaces``; for results without it (schema version 1), the arms whose
    completed ``phase`` trials have hyperparameters and more than one configuration (one
    configuration is not a search, whatever phase it ran in)."""
    res = _as_results(results)
    order = list(arm_policies(res))
    spaces = (res.meta or {}).get("search_spaces")
    if isinstance(spaces, Mapping):
        declared = [str(a) for a, space in spaces.items() if space]
        return [a for a in order if a in declared] + [a for a in declared if a not in order]
    done = _completed(res.trials)
    if done.empty:
        return []
    done = done[done["phase"] == phase]
    hp = [c for c in done.columns if c.startswith(HP_PREFIX)]
    out = []
    for arm in order:
        rows = done[done["arm"] == arm]
        if hp and rows[hp].notna().to_numpy().any() and rows["config_id"].nunique() > 1:
            out.append(arm)
    return out


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
    baseline: str | None = None,
    metrics: Sequence[str] = TABLE_METRICS,
    paired: Sequence[str] = PAIRED_METRICS,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per (arm, config_id) of the completed trials of ``phase`` (``confirm``; if it has
    none, the search phase; ``None``: all phases).

    Rows are in arm order (:func:`arm_policies`), then by the first metric. Columns: ``label``,
    ``arm``, ``policy``, ``config_id``, ``hparams`` (text), ``n_seeds`` (completed),
    ``n_failed`` (failed or stopped trials of the config in the phase), ``seeds``; for each
    metric ``<m>_mean`` and ``<m>_ci95`` (half-width of the 95% t-interval over seeds, NaN with
    one seed); ``train_tokens_per_trial`` and ``eval_tokens_per_trial`` (means over the
    completed trials: each configuration's compute); per domain ``val_loss__<domain>_mean`` /
    ``_ci95`` (final evaluation); for each paired metric, against the ``baseline`` arm (default
    :func:`reference_arm`) paired by seed: ``diff_<m>_mean``, ``diff_<m>_ci95``,
    ``diff_<m>_ci_low``, ``diff_<m>_ci_high``, ``diff_<m>_n_pairs`` and ``diff_<m>_verdict``
    (better / worse / n.s. / n/a; ``baseline`` on the baseline's row). Without a baseline arm
    (no arm runs the uniform policy) there are no ``diff_`` columns. Repeated trials of one
    seed are averaged first. ``df.attrs`` holds phase, baseline, confidence and notes.
    """
    res = _as_results(results)
    notes: list[str] = []
    policies = arm_policies(res)
    rank = {arm: i for i, arm in enumerate(policies)}
    if baseline is None:
        baseline = reference_arm(res)
    if baseline is None:
        paired = ()
        notes.append(
            f"no arm runs the {REFERENCE_POLICY!r} policy: no reference arm, so no paired "
            "differences (Δ)"
        )
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
    labels = config_labels(seen, searched_arms(res)) if not seen.empty else {}

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
        return rank.get(g[0], len(rank)), g[0], float(m) if pd.notna(m) else math.inf

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
    elif baseline is not None:
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
        recorded = seen.loc[seen["config_id"] == cid, "policy"].dropna()
        row: dict[str, Any] = {
            "label": label,
            "arm": arm,
            "policy": str(recorded.iloc[0]) if not recorded.empty else policies.get(arm, arm),
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
        for col, src in COMPUTE_COLUMNS.items():
            values = rows[src].to_numpy(dtype=np.float64) if src in rows else np.array([])
            values = values[np.isfinite(values)]
            row[col] = float(values.mean()) if values.size else math.nan
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

    columns = ["label", "arm", "policy", "config_id", "hparams", "n_seeds", "n_failed", "seeds"]
    for m in metrics:
        columns += [f"{m}_mean", f"{m}_ci95"]
    columns += list(COMPUTE_COLUMNS)
    for d in domains:
        columns += [f"val_loss__{d}_mean", f"val_loss__{d}_ci95"]
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
# headroom and regret (a study with a swarm)

#: The confirmed mixtures a swarm adds (``ado_ray.study.schema.SWARM_ARMS``): the regression's
#: proposal and the best swarm member observed.
SWARM_BEST, SWARM_TOP = "swarm_best", "swarm_top"
SWARM_FILE = "swarm.json"


def swarm_summary(results: Results | str) -> dict[str, Any] | None:
    """What the sweep saved about the swarm (``swarm.json``: the regression, its held-out rank
    correlation, the proposed and the best observed mixtures), or None without a swarm."""
    from ado_ray import storage

    res = _as_results(results)
    target = storage.join(res.uri, SWARM_FILE)
    return json.loads(storage.read_text(target)) if storage.exists(target) else None


def _finding_tokens(res: Results) -> dict[str, float]:
    """Tokens (training + evaluation) each arm spent finding its mixture: the swarm's for the
    swarm's mixtures, each searched arm's search trials for it."""
    t = res.trials
    if t.empty:
        return {}
    spent = t["tokens_seen"].fillna(0).astype(float) + t["eval_tokens"].fillna(0).astype(float)
    out: dict[str, float] = {}
    swarm = spent[t["phase"] == "swarm"].sum()
    if swarm:
        out[SWARM_BEST] = out[SWARM_TOP] = float(swarm)
    search = t["phase"] == "search"
    for arm, total in spent[search].groupby(t.loc[search, "arm"]).sum().items():
        out[str(arm)] = float(total)
    return out


def regret_table(
    results: Results | str, metric: str = "val_loss_balanced", confidence: float = CONFIDENCE
) -> pd.DataFrame | None:
    """Each confirmed configuration's regret: its ``metric`` minus the best static mixture's,
    paired by seed, against the swarm's proposal (``swarm_best``) and its best observed member
    (``swarm_top``), with ``confidence`` intervals; and its compute: training and evaluation
    tokens per trial, the tokens it spent finding its mixture (swarm or search) and the total
    per confirmed run. ``attrs["headroom"]``: the reference (uniform) arm's regret against the
    better of the two static mixtures, i.e. how much any static reweighting gained. None
    without a swarm."""
    res = _as_results(results)
    arms = set(res.trials["arm"]) if not res.trials.empty else set()
    if not {SWARM_BEST, SWARM_TOP} & arms:
        return None
    finding = _finding_tokens(res)
    frames = {}
    for ref in (SWARM_BEST, SWARM_TOP):
        if ref in arms:
            frames[ref] = main_table(
                res, baseline=ref, metrics=(metric,), paired=(metric,), confidence=confidence
            )
    base = next(iter(frames.values()))
    out = base[["label", "arm", "policy", "config_id", "n_seeds", f"{metric}_mean",
                f"{metric}_ci95"]].copy()
    for ref, frame in frames.items():
        tag = "best" if ref == SWARM_BEST else "top"
        d = f"diff_{metric}"
        cols = {f"{d}_mean": f"regret_{tag}_mean", f"{d}_ci_low": f"regret_{tag}_ci_low",
                f"{d}_ci_high": f"regret_{tag}_ci_high", f"{d}_n_pairs": f"regret_{tag}_n_pairs"}
        out = out.merge(frame[["config_id", *cols]].rename(columns=cols), on="config_id")
    out["train_tokens_per_trial"] = base["train_tokens_per_trial"].to_numpy()
    out["eval_tokens_per_trial"] = base["eval_tokens_per_trial"].to_numpy()
    out["finding_tokens"] = [finding.get(str(a), 0.0) for a in out["arm"]]
    out["total_tokens_per_run"] = (
        out["train_tokens_per_trial"].fillna(0)
        + out["eval_tokens_per_trial"].fillna(0)
        + out["finding_tokens"]
    )
    # The best static mixture: the swarm arm with the lower mean (higher for a 'max' metric).
    static = out[out["arm"].isin([SWARM_BEST, SWARM_TOP])].sort_values(f"{metric}_mean")
    headroom = None
    ref_arm = reference_arm(res)
    if not static.empty and ref_arm is not None:
        best_static = str(static.iloc[0]["arm"])
        tag = "best" if best_static == SWARM_BEST else "top"
        row = out[out["arm"] == ref_arm]
        if not row.empty:
            r = row.iloc[0]
            headroom = {
                "reference": ref_arm,
                "best_static": best_static,
                "mean": float(r[f"regret_{tag}_mean"]),
                "ci_low": float(r[f"regret_{tag}_ci_low"]),
                "ci_high": float(r[f"regret_{tag}_ci_high"]),
                "n_pairs": int(r[f"regret_{tag}_n_pairs"]),
            }
    out.attrs.update({"metric": metric, "headroom": headroom, "swarm": swarm_summary(res)})
    return out


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
    column "mean [low, high] verdict"; ``arm``, ``policy``, ``config_id``, ``hparams`` and
    ``seeds`` are left out. Other columns are formatted as they are."""
    baseline = df.attrs.get("baseline") or "baseline"
    cols = list(df.columns)
    skip = {"arm", "policy", "config_id", "hparams", "seeds"} & set(cols)
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


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, cells as they are (``|`` escaped, newlines joined)."""

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
        return markdown_table(display_frame(df, digits))
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
# best configurations


def best_config(
    table: pd.DataFrame, results: Results | str, metric: str, arm: str
) -> tuple[str | None, str | None]:
    """(config_id, phase) of ``arm``'s configuration with the lowest mean ``metric``: from the
    main table's phase when the arm is in it, else from its completed trials (search phase
    first)."""
    res = _as_results(results)
    col = f"{metric}_mean"
    if not table.empty and col in table.columns:
        rows = table[(table["arm"] == arm) & table[col].notna()]
        if not rows.empty:
            return str(rows.loc[rows[col].idxmin(), "config_id"]), table.attrs.get("phase")
    done = _completed(res.trials)
    if done.empty or metric not in done.columns:
        return None, None
    rows = done[(done["arm"] == arm) & done[metric].notna()]
    for ph in ("search", *rows["phase"].dropna().unique()):
        in_phase = rows[rows["phase"] == ph]
        if not in_phase.empty:
            means = in_phase.groupby("config_id")[metric].mean()
            return str(means.idxmin()), ph
    return None, None


# --------------------------------------------------------------------------------------------
# search spaces and hyperparameter importances


#: How :func:`search_space` got its distributions.
SPACE_FROM_META = "from meta.json's search space"
SPACE_INFERRED = (
    "inferred from the observed values (meta.json records no search space: version-1 results)"
)


@dataclass
class SearchSpace:
    """The completed search-phase trials of one arm and the distributions of their varying
    hyperparameters (column name -> optuna distribution): meta.json's search space when it
    records one (``source`` says which), else inferred from the observed values. In
    ``trials``, a searched column holds the value as a point of its distribution (a category
    as its choice; a value outside the declared space as null)."""

    trials: pd.DataFrame
    distributions: dict[str, Any]
    metric: str
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it was left out
    arm: str | None = None
    source: str = SPACE_INFERRED
    notes: list[str] = field(default_factory=list)


def declared_search_space(results: Results | str, arm: str) -> dict[str, dict[str, Any]] | None:
    """meta.json's search space of ``arm`` (option -> {"type", "low", "high", "step", "log",
    "choices"}); ``{}`` for an arm it records no search for; None when meta.json records no
    search spaces at all (version-1 results)."""
    res = _as_results(results)
    spaces = (res.meta or {}).get("search_spaces")
    if not isinstance(spaces, Mapping):
        return None
    space = spaces.get(arm) or {}
    return {str(k): dict(v) for k, v in space.items() if isinstance(v, Mapping)}


def distribution(spec: Mapping[str, Any]) -> Any:
    """The optuna distribution of a search-space entry as meta.json records it:
    ``uniform`` / ``loguniform`` (float low..high), ``int`` (low..high, ``step``, ``log``),
    ``categorical`` (``choices``)."""
    import optuna.distributions as od

    kind = spec.get("type")
    if kind == "categorical":
        return od.CategoricalDistribution(list(spec["choices"]))
    log = bool(spec.get("log")) or kind == "loguniform"
    if kind in ("uniform", "loguniform"):
        step = spec.get("step")
        return od.FloatDistribution(
            float(spec["low"]),
            float(spec["high"]),
            log=log,
            step=None if log or step is None else float(step),
        )
    if kind == "int":
        step = 1 if log else int(spec.get("step") or 1)
        return od.IntDistribution(int(spec["low"]), int(spec["high"]), log=log, step=step)
    from ado_ray.study.schema import DISTRIBUTION_TYPES

    raise ValueError(
        f"search space: type {kind!r} is unknown; allowed: {', '.join(DISTRIBUTION_TYPES)}"
    )


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _same_choice(choice: Any, value: Any) -> bool:
    """Whether a recorded value is the categorical ``choice``. A column that mixed types was
    stored as strings (bools as ``true``/``false``), so a string also matches its JSON form."""
    if isinstance(value, str) and not isinstance(choice, str):
        return value == json.dumps(choice) or value == str(choice)
    if isinstance(choice, bool) or isinstance(value, bool):  # True == 1 must not match
        return isinstance(choice, bool) and isinstance(value, bool) and choice == value
    return bool(choice == value)


def _point(dist: Any, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` is a point of ``dist``, the value as that point)."""
    import optuna.distributions as od

    value = _py(value)
    if isinstance(dist, od.CategoricalDistribution):
        for choice in dist.choices:
            if _same_choice(choice, value):
                return True, choice
        return False, None
    if isinstance(value, (bool, str)):
        return False, None
    x = float(value)
    if not dist.low <= x <= dist.high:
        return False, None
    if isinstance(dist, od.IntDistribution):
        ok = x.is_integer() and (int(x) - dist.low) % dist.step == 0
        return ok, int(x) if ok else None
    if dist.step is not None:
        k = (x - dist.low) / dist.step
        if abs(k - round(k)) > 1e-8:
            return False, None
    return True, x


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


def _inferred_distribution(res: Results, col: str, values: pd.Series, uniq: list[Any]) -> Any:
    """Version-1 fallback: floats -> FloatDistribution(min, max) (log scale when positive and
    spanning >= 100x), ints -> IntDistribution, strings and bools -> categorical."""
    import optuna.distributions as od

    kind = _column_kind(res, col, values)
    if kind == "categorical":
        choices = tuple(sorted((_py(v) for v in uniq), key=lambda v: (str(type(v)), str(v))))
        return od.CategoricalDistribution(choices)
    if kind == "int":
        lo, hi = int(min(uniq)), int(max(uniq))
        return od.IntDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
    lo, hi = float(min(uniq)), float(max(uniq))
    return od.FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)


def search_space(
    results: Results | str,
    metric: str = "val_loss_balanced",
    arm: str | None = None,
    phase: str = "search",
) -> SearchSpace:
    """The completed, metric-bearing trials of ``arm`` (default: the first of
    :func:`searched_arms`) in ``phase`` and the distributions of its searched hyperparameters.

    The distributions are meta.json's ``search_spaces[arm]`` (what the sweep sampled from);
    recorded values outside them are left out (with a note). Results without search spaces
    (schema version 1) fall back to inferring them from the observed values. Hyperparameters
    constant across the trials are skipped (nothing to rank)."""
    res = _as_results(results)
    if arm is None:
        arms = searched_arms(res, phase)
        arm = arms[0] if arms else None
    t = _completed(res.trials)
    if not t.empty:
        t = t[(t["arm"] == arm) & (t["phase"] == phase)]
        t = t[t[metric].notna() & np.isfinite(t[metric].astype(float))]
    t = t.copy()
    dists: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    declared = None if arm is None else declared_search_space(res, arm)
    if declared is None:
        source = SPACE_INFERRED
        candidates = {c: None for c in t.columns if c.startswith(HP_PREFIX)}
    else:
        source = SPACE_FROM_META
        candidates = {hp_column(name): spec for name, spec in declared.items()}
    for col, spec in candidates.items():
        if col not in t.columns or t[col].isna().all():
            if spec is not None:
                skipped[col] = "not recorded by any trial"
            continue
        values = t[col].dropna()
        if spec is not None:
            try:
                dist = distribution(spec)
            except (KeyError, TypeError, ValueError) as exc:
                skipped[col] = f"unreadable search space in meta.json ({exc})"
                continue
            points = [_point(dist, v) if _notnull(v) else (True, None) for v in t[col]]
            outside = sum(not ok for ok, _ in points)
            if outside:
                notes.append(
                    f"{arm}: {outside} recorded value(s) of {col[len(HP_PREFIX) :]} lie outside "
                    "the declared search space; left out"
                )
            t[col] = pd.Series([p if ok else None for ok, p in points], index=t.index, dtype=object)
            values = t[col].dropna()
        uniq = list(dict.fromkeys(_py(v) for v in values.tolist()))
        if len(uniq) < 2:
            skipped[col] = "constant"
            continue
        dists[col] = dist if spec is not None else _inferred_distribution(res, col, values, uniq)
    return SearchSpace(
        trials=t,
        distributions=dists,
        metric=metric,
        skipped=skipped,
        arm=arm,
        source=source,
        notes=notes,
    )


def _param_value(dist: Any, value: Any) -> Any:
    import optuna.distributions as od

    value = _py(value)
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
    arm: str | None = None,
    phase: str = "search",
    direction: str = "minimize",
) -> tuple[dict[str, float] | None, str]:
    """Optuna hyperparameter importances of ``arm`` (default: the first of
    :func:`searched_arms`) over ``phase``: an in-memory study built from trials.parquet and the
    search space of :func:`search_space` (no Optuna storage needed). Returns (importances by
    hyperparameter name without ``hp_``, normalised to sum 1, or None; a message saying what
    was done or why not)."""
    import optuna

    space = search_space(results, metric, arm, phase)
    arm = space.arm
    if arm is None:
        return None, "hyperparameter importances need a searched arm; no arm has a search"
    n = len(space.trials)
    if n < 2:
        return (
            None,
            f"hyperparameter importances need >= 2 completed {arm} trials in phase {phase!r} "
            f"with {metric}; found {n}",
        )
    if not space.distributions:
        return (
            None,
            f"hyperparameter importances need a varying {arm} hyperparameter in phase "
            f"{phase!r}; none varies across the {n} trials",
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
        f"{name} over {n} completed {arm} trials of phase {phase!r}, target {metric} "
        f"({direction}); distributions {space.source}"
    )
    if n < FEW_TRIALS_FOR_IMPORTANCES:
        msg += (
            f". With fewer than {FEW_TRIALS_FOR_IMPORTANCES} trials the ranking is noisy: read it "
            "as a hint, not a finding"
        )
    return imp, msg + "; failed and pruned trials are not counted"


# The report moved to ado_ray.report (it draws the plots, which use this module). Transitional
# lazy re-export for callers still importing it from here; a module-level import would make
# analysis depend on report again.
_MOVED_TO_REPORT = frozenset({"analyze", "AnalysisReport", "default_out_dir"})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_REPORT:
        from ado_ray import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMPUTE_COLUMNS",
    "REFERENCE_POLICY",
    "SearchSpace",
    "arm_policies",
    "best_config",
    "declared_search_space",
    "display_frame",
    "distribution",
    "format_table",
    "hp_importances",
    "main_table",
    "markdown_table",
    "mean_ci",
    "reference_arm",
    "search_space",
    "searched_arms",
]
