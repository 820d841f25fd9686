"""The analysis plots, drawn with matplotlib's object API (no pyplot, no global backend change:
figures render through Agg whatever backend the caller uses) and saved as PNG through
:mod:`ado_ray.storage`, so they can land on any URI.

Each ``plot_*`` returns ``(figure, caption)``, or ``(None, reason)`` when the results hold
nothing to draw.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ado_ray import storage
from ado_ray.results import HP_PREFIX, Results

#: Values of ``hp_count_mode`` meaning "each law is indexed by its own domain's sequences".
OWN_COUNT_MODES = frozenset({"own", "domain", "per_domain", "own_domain"})
_SEQ_LEN_KEYS = ("seq_len", "sequence_length", "context_length", "block_size", "n_ctx")


def save_png(fig: Figure, uri: str, dpi: int = 110) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    storage.write_bytes_atomic(uri, buf.getvalue())


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def _figure(n: int, max_cols: int = 4, w: float = 4.2, h: float = 3.2) -> tuple[Figure, list[Any]]:
    rows, cols = _grid(n, max_cols)
    fig = Figure(figsize=(w * cols, h * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _plain_log_ticks(ax: Any) -> None:
    """Log axis labelled at a few plain numbers, without crowded minor labels."""
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=8))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _domain_colors(domains: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(domains) <= 10 else "tab20"]
    return {d: cmap(i % cmap.N) for i, d in enumerate(domains)}


def _completed(res: Results) -> pd.DataFrame:
    t = res.trials
    return t if t.empty else t[t["status"] == "completed"]


def _trials_of(res: Results, config_id: str | None, phase: str | None) -> pd.DataFrame:
    t = _completed(res)
    if t.empty or config_id is None:
        return t.iloc[0:0]
    t = t[t["config_id"] == config_id]
    if phase is not None:
        t = t[t["phase"] == phase]
    return t


# --------------------------------------------------------------------------------------------
# (1) mixture weights


def plot_weights(
    res: Results, table: pd.DataFrame, best_config: str | None, best_phase: str | None
):
    """Stacked mixture weights over training steps, one panel per arm: the best ADO
    configuration and each baseline configuration of the main table, for one common seed."""
    phase = table.attrs.get("phase")
    panels: list[tuple[str, pd.DataFrame]] = []  # (label, candidate trials)
    if best_config is not None:
        label = next(
            (r.label for r in table.itertuples() if r.config_id == best_config),
            f"ado#{best_config[:6]}",
        )
        panels.append((f"{label} (best ADO)", _trials_of(res, best_config, best_phase)))
    for r in table.itertuples():
        if r.arm != "ado":
            panels.append((str(r.label), _trials_of(res, r.config_id, phase)))
    wanted = {tid for _, t in panels for tid in t["trial_id"]}
    steps = res.steps_for(wanted)
    with_steps = set(steps["trial_id"].unique())
    panels = [(lab, t[t["trial_id"].isin(with_steps)]) for lab, t in panels]
    panels = [(lab, t) for lab, t in panels if not t.empty]
    if not panels:
        return None, "no per-step history for the compared configurations"
    seed_hits: dict[Any, int] = {}
    for _, t in panels:
        for s in t["seed"].dropna().unique():
            seed_hits[s] = seed_hits.get(s, 0) + 1
    seed = min(seed_hits, key=lambda s: (-seed_hits[s], s)) if seed_hits else None

    domains = res.domains()
    colors = _domain_colors(domains)
    fig, axes = _figure(len(panels), max_cols=4, w=4.0, h=3.0)
    for ax, (label, t) in zip(axes, panels):
        pick = (
            t[t["seed"] == seed]
            if seed is not None and (t["seed"] == seed).any()
            else t.sort_values("seed")
        )
        row = pick.iloc[0]
        s = steps[steps["trial_id"] == row["trial_id"]]
        wide = s.pivot_table(index="step", columns="domain", values="weight", aggfunc="mean")
        wide = wide[[d for d in domains if d in wide.columns]].fillna(0.0)
        ax.stackplot(
            wide.index.to_numpy(),
            *[wide[d].to_numpy() for d in wide.columns],
            labels=list(wide.columns),
            colors=[colors[d] for d in wide.columns],
            alpha=0.85,
        )
        ax.set_ylim(0, 1)
        ax.set_xlim(wide.index.min(), wide.index.max())
        ax.set_title(
            f"{label}\nseed {int(row['seed']) if pd.notna(row['seed']) else '?'}", fontsize=9
        )
        ax.set_xlabel("step")
        ax.set_ylabel("sampling weight")
    axes[0].legend(loc="upper left", fontsize=7, ncol=min(3, len(domains)), framealpha=0.8)
    fig.suptitle("Mixture weights over training")
    caption = (
        "Sampling weight of each domain at each training step (stacked), for the best ADO "
        f"configuration and the baselines, seed {seed}."
    )
    return fig, caption


# --------------------------------------------------------------------------------------------
# (2) validation curves


def plot_val_curves(res: Results, table: pd.DataFrame):
    """Per-domain validation loss over training, a line per configuration of the main table
    (mean over its seeds), with the domain's entropy rate dashed where it is known."""
    if res.evals.empty or table.empty:
        return None, "no evaluations of completed trials"
    phase = table.attrs.get("phase")
    domains = res.domains()
    fig, axes = _figure(len(domains), max_cols=3)
    entropy = res.evals.groupby("domain")["entropy_rate"].mean()
    drawn = False
    for ax, d in zip(axes, domains):
        for r in table.itertuples():
            ids = _trials_of(res, r.config_id, phase)["trial_id"]
            ev = res.evals[res.evals["trial_id"].isin(ids) & (res.evals["domain"] == d)]
            if ev.empty:
                continue
            curve = ev.groupby("step")["val_loss"].mean()
            ax.plot(
                curve.index, curve.to_numpy(), marker="o", ms=3, label=f"{r.label} (n={r.n_seeds})"
            )
            drawn = True
        h = entropy.get(d)
        if h is not None and pd.notna(h):
            ax.axhline(float(h), ls="--", color="0.4", lw=1, label="entropy rate")
        ax.set_title(str(d))
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss (nats/token)")
    if not drawn:
        return None, "no evaluations for the compared configurations"
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Validation loss per domain ({phase} phase, mean over seeds)")
    caption = (
        "Held-out loss per domain over training steps, mean over seeds per configuration; "
        "the dashed line is the domain's entropy rate (the lowest loss reachable), where known."
    )
    return fig, caption


# --------------------------------------------------------------------------------------------
# (3) scaling laws


def seq_len_of(res: Results, trial: pd.Series | None = None) -> int | None:
    """The sequence length: the trial's ``seq_len`` column, else meta.json's, else the study
    file's (first key among seq_len / sequence_length / context_length / block_size / n_ctx)."""
    if trial is not None:
        value = trial.get("seq_len")
        if value is not None and pd.notna(value) and value > 0:
            return int(value)
    meta = res.meta or {}
    for key in _SEQ_LEN_KEYS:
        if isinstance(meta.get(key), (int, float)) and meta[key] > 0:
            return int(meta[key])
    if not res.study_yaml:
        return None
    try:
        import yaml

        doc = yaml.safe_load(res.study_yaml)
    except Exception:
        return None

    def find(node: Any) -> int | None:
        if isinstance(node, dict):
            for key in _SEQ_LEN_KEYS:
                value = node.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
            for value in node.values():
                found = find(value)
                if found:
                    return found
        elif isinstance(node, list):
            for value in node:
                found = find(value)
                if found:
                    return found
        return None

    return find(doc)


def count_convention(res: Results, trial: pd.Series) -> tuple[float, bool, str]:
    """How the trial's ADO policy indexes its laws: (unit scale applied to cumulative sequence
    counts, whether each domain counts only its own sequences, a sentence for the caption).

    The policy's options are in the trial's hyperparameters (``hp_count_mode`` =
    same_step_size / own, ``hp_count_unit`` = tokens_1024 / sequences, ``hp_seq_len``). Where
    they are missing, n is approximated as all-domain cumulative sequences times seq_len/1024
    (seq_len from the trial, meta.json or the study file), else in sequences."""

    def hp(name: str) -> Any:
        value = trial.get(f"{HP_PREFIX}{name}")
        return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value

    mode, unit = hp("count_mode"), hp("count_unit")
    own = isinstance(mode, str) and mode.lower() in OWN_COUNT_MODES
    seq_len = hp("seq_len")
    seq_len = int(seq_len) if seq_len is not None else seq_len_of(res, trial)
    who = "of that domain" if own else "of all domains"
    if unit == "sequences":
        scale, unit_text = 1.0, "sequences"
    elif seq_len:
        scale, unit_text = seq_len / 1024, f"1024-token units (sequences × {seq_len}/1024)"
    else:
        scale, unit_text = 1.0, "sequences (no seq_len known)"
    if mode is not None and unit is not None and (unit == "sequences" or seq_len):
        note = (
            f"n is the policy's own count (count_mode={mode}, count_unit={unit}): cumulative "
            f"sequences {who}, through each step, in {unit_text}."
        )
    else:
        note = (
            f"Approximation (the trial does not record the policy's count options): n = cumulative "
            f"sequences {who}, through each step, in {unit_text}"
            + (" (seq_len/1024 scaling)" if scale != 1.0 else "")
            + "; the policy's own count may differ."
        )
    return scale, own, note


def plot_scaling_laws(res: Results, best_config: str | None, best_phase: str | None, metric: str):
    """Observed per-domain training loss of the best ADO trial against the count n, with the
    law L(n) = eps + beta * n^-alpha of the last refit overlaid."""
    if best_config is None:
        return None, "no completed ADO trial"
    t = _trials_of(res, best_config, best_phase)
    steps = res.steps_for(t["trial_id"])
    if steps.empty:
        return None, "no per-step history for the best ADO configuration"
    fitted = steps[steps["law_eps"].notna()]["trial_id"].unique()
    cand = t[t["trial_id"].isin(fitted)]
    if cand.empty:
        return None, "no fitted laws recorded for the best ADO configuration"
    trial = cand.sort_values(metric).iloc[0]
    s = steps[steps["trial_id"] == trial["trial_id"]].sort_values(["step", "domain_index"])

    n_scale, own, n_note = count_convention(res, trial)
    unit_short = "1024-token seqs" if n_scale != 1.0 else "sequences"
    counts = s.pivot_table(index="step", columns="domain", values="count", aggfunc="sum").fillna(
        0.0
    )
    cum_own = counts.cumsum()
    cum_total = counts.sum(axis=1).cumsum()

    domains = [d for d in res.domains() if d in counts.columns]
    colors = _domain_colors(domains)
    fig, axes = _figure(len(domains), max_cols=3)
    for ax, d in zip(axes, domains):
        sd = s[s["domain"] == d].set_index("step")
        n_all = (cum_own[d] if own else cum_total) * n_scale
        obs = sd["train_loss"].dropna()
        n_obs = n_all.reindex(obs.index)
        ok = (n_obs > 0).to_numpy()
        ax.scatter(
            n_obs[ok], obs[ok], s=5, alpha=0.35, color=colors[d], label="observed train loss"
        )
        laws = sd[sd["law_eps"].notna()]
        if not laws.empty:
            last_step = laws.index.max()
            eps, beta, alpha = (
                float(laws.loc[last_step, c]) for c in ("law_eps", "law_beta", "law_alpha")
            )
            positive = n_all[n_all > 0]
            if not positive.empty:
                grid = np.geomspace(float(positive.min()), float(positive.max()), 200)
                ax.plot(
                    grid,
                    eps + beta * grid ** (-alpha),
                    color="k",
                    lw=1.5,
                    label=f"law @ step {last_step}",
                )
                ax.axhline(eps, color="k", ls=":", lw=0.8, label=f"eps = {eps:.3g}")
                if last_step in n_all.index and n_all[last_step] > 0:
                    ax.axvline(float(n_all[last_step]), color="0.5", ls="--", lw=0.8)
            ax.set_title(f"{d}: eps={eps:.3g}, beta={beta:.3g}, alpha={alpha:.3g}", fontsize=9)
        else:
            ax.set_title(f"{d}: no law fitted", fontsize=9)
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel(f"n ({'own' if own else 'all-domain'} {unit_short}, cumulative)")
        ax.set_ylabel("train loss")
        ax.legend(fontsize=7)
    fig.suptitle(f"Scaling-law fits of trial {trial['trial_id']} (seed {trial['seed']})")
    caption = (
        "Observed per-domain training loss against n, with the law L(n) = eps + beta·n^(−alpha) of "
        f"the last refit (solid; dashed vertical line: n at that refit). {n_note}"
    )
    return fig, caption


# --------------------------------------------------------------------------------------------
# (4) search


def plot_search(res: Results, metric: str, arm: str = "ado", phase: str = "search"):
    """The search phase: the metric against each varying hyperparameter (a slice plot), the best
    configuration highlighted."""
    from ado_ray.analysis import search_space

    space = search_space(res, metric, arm, phase)
    t = space.trials
    if t.empty:
        return None, f"no completed {arm} trials in phase {phase!r}"
    best_cid = t.groupby("config_id")[metric].mean().idxmin()
    best = (t["config_id"] == best_cid).to_numpy()
    y = t[metric].astype(float).to_numpy()
    cols = list(space.distributions)
    if not cols:
        fig, axes = _figure(1)
        ax = axes[0]
        ax.scatter(np.arange(len(y)), y, c=np.where(best, "C3", "C0"))
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        fig.suptitle(f"{arm} search: {metric} per trial (no varying hyperparameter)")
        return fig, f"{metric} of each completed {arm} search trial; red: best configuration."
    fig, axes = _figure(len(cols), max_cols=4, w=3.6, h=3.0)
    rng = np.random.default_rng(0)
    for ax, col in zip(axes, cols):
        dist = space.distributions[col]
        values = t[col]
        has = values.notna().to_numpy()
        if hasattr(dist, "choices"):
            choices = list(dist.choices)
            index = {c: i for i, c in enumerate(choices)}
            x = np.array(
                [
                    index.get(v.item() if isinstance(v, np.generic) else v, np.nan) if h else np.nan
                    for v, h in zip(values, has)
                ],
                dtype=float,
            )
            x = x + rng.uniform(-0.12, 0.12, len(x))
        else:
            x = values.astype(float).to_numpy()
            if getattr(dist, "log", False):
                ax.set_xscale("log")
                _plain_log_ticks(ax)
        ax.scatter(x[has & ~best], y[has & ~best], s=22, alpha=0.7, color="C0", label="trial")
        ax.scatter(x[has & best], y[has & best], s=40, marker="*", color="C3", label="best config")
        if hasattr(dist, "choices"):
            ax.set_xticks(list(range(len(dist.choices))))
            ax.set_xticklabels([str(c) for c in dist.choices])
            ax.set_xlim(-0.5, len(dist.choices) - 0.5)
        ax.set_xlabel(col[len(HP_PREFIX) :])
        ax.set_ylabel(metric)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{arm} search ({len(t)} completed trials): {metric} against each hyperparameter")
    caption = (
        f"Slice plot of the {arm} search phase: {metric} of every completed trial against each "
        "hyperparameter that varies; stars mark the configuration with the lowest mean."
    )
    return fig, caption
