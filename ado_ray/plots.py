"""The analysis plots, drawn with matplotlib's object API (no pyplot, no global backend change:
figures render through Agg whatever backend the caller uses) and saved as PNG through
:mod:`ado_ray.storage`, so they can land on any URI.

Each ``plot_*`` returns ``(figure, caption)``, or ``(None, reason)`` when the results hold
nothing to draw. The plots draw what the writer recorded: the count unit and sequence length
of the scaling-law plot come from the trial's policy options (``hp_`` columns) and meta.json,
the search plots' axes from meta.json's search spaces (:func:`ado_ray.analysis.search_space`).
Only version-1 results, which lack them, get a clearly labelled approximation.

Imports :mod:`ado_ray.analysis` (tables, search spaces), never the other way round.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ado_ray import storage
from ado_ray.analysis import SPACE_FROM_META, arm_policies, search_space
from ado_ray.results import HP_PREFIX, Results

#: Values of ``hp_count_mode`` meaning "each law is indexed by its own domain's sequences".
OWN_COUNT_MODES = frozenset({"own", "domain", "per_domain", "own_domain"})
#: Where version-1 results may name the sequence length in their study file (the fallback).
_SEQ_LEN_KEYS = ("seq_len", "sequence_length", "context_length", "block_size", "n_ctx")
#: The diagnostics of a fitted scaling law L(n) = eps + beta * n^-alpha (ADO's), per domain,
#: and the step it was fitted at (optional: without it, the last step the law was recorded).
LAW_NAMES: tuple[str, ...] = ("law_eps", "law_beta", "law_alpha")
LAW_FIT_STEP = "law_fit_step"


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
    res: Results,
    table: pd.DataFrame,
    best_configs: Mapping[str, tuple[str | None, str | None]],
) -> tuple[Figure | None, str]:
    """Stacked mixture weights over training steps, one panel per configuration, in arm order:
    for each searched arm (a key of ``best_configs``: arm -> (config_id, phase)) its best
    configuration, for every other arm each of its configurations in the main table; one
    common seed."""
    phase = table.attrs.get("phase")
    order = list(arm_policies(res))
    in_table = list(dict.fromkeys(table["arm"])) if not table.empty else []
    panels: list[tuple[str, pd.DataFrame]] = []  # (label, candidate trials)
    for arm in [*order, *[a for a in in_table if a not in order]]:
        if arm in best_configs:
            cid, best_phase = best_configs[arm]
            if cid is not None:
                label = next(
                    (r.label for r in table.itertuples() if r.config_id == cid),
                    f"{arm}#{cid[:6]}",
                )
                panels.append((f"{label} (best)", _trials_of(res, cid, best_phase)))
            continue
        for r in table.itertuples():
            if r.arm == arm:
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
        "Sampling weight of each domain at each training step (stacked): the best configuration "
        f"of each searched arm and the configurations of the other arms, seed {seed}."
    )
    return fig, caption


# --------------------------------------------------------------------------------------------
# (2) validation curves


def plot_val_curves(res: Results, table: pd.DataFrame) -> tuple[Figure | None, str]:
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


def _positive_int(value: Any) -> int | None:
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        if pd.isna(value) or value <= 0:
            return None
    except (TypeError, ValueError):
        return None
    return int(value)


def is_version_1(res: Results, trial: pd.Series | None = None) -> bool:
    """Whether the trial (else the results) was written with schema version 1, which records
    no policy count options or sequence length for the plots to read."""
    version = None if trial is None else trial.get("schema_version")
    if version is None or pd.isna(version):
        version = res.schema_version
    return version is not None and int(version) == 1


def _study_file_seq_len(study_yaml: str | None) -> int | None:
    """Version-1 fallback: the first seq_len-like key anywhere in the study file."""
    if not study_yaml:
        return None
    try:
        import yaml

        doc = yaml.safe_load(study_yaml)
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


def seq_len_of(res: Results, trial: pd.Series | None = None) -> int | None:
    """The sequence length a trial trained with, as recorded: its policy's ``seq_len`` option
    (``hp_seq_len``), else meta.json's ``seq_len``, else the trial's ``seq_len`` column. Only
    for version-1 results, the study file's first seq_len-like key as a last resort."""
    if trial is not None:
        found = _positive_int(trial.get(f"{HP_PREFIX}seq_len"))
        if found:
            return found
    found = _positive_int((res.meta or {}).get("seq_len"))
    if found:
        return found
    if trial is not None:
        found = _positive_int(trial.get("seq_len"))
        if found:
            return found
    return _study_file_seq_len(res.study_yaml) if is_version_1(res, trial) else None


def count_convention(res: Results, trial: pd.Series) -> tuple[float, bool, str]:
    """How the trial's policy indexes its laws: (unit scale applied to cumulative sequence
    counts, whether each domain counts only its own sequences, a sentence for the caption).

    Read from the trial's policy options (``hp_count_mode`` = same_step_size / own,
    ``hp_count_unit`` = tokens_1024 / sequences) and :func:`seq_len_of`. A version-2 trial
    that lacks them raises ``ValueError`` (the plot is not drawn rather than guessed). Only for
    version-1 results, which did not record them, n is approximated as all-domain cumulative
    sequences times seq_len/1024, and the note says so."""

    def hp(name: str) -> Any:
        value = trial.get(f"{HP_PREFIX}{name}")
        return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value

    mode, unit = hp("count_mode"), hp("count_unit")
    own = isinstance(mode, str) and mode.lower() in OWN_COUNT_MODES
    seq_len = seq_len_of(res, trial)
    who = "of that domain" if own else "of all domains"
    if mode is not None and unit is not None and (unit == "sequences" or seq_len):
        if unit == "sequences":
            unit_text, scale = "sequences", 1.0
        else:
            unit_text = f"1024-token units (sequences × {seq_len}/1024)"
            scale = seq_len / 1024
        note = (
            f"n is the policy's own count (count_mode={mode}, count_unit={unit}): cumulative "
            f"sequences {who}, through each step, in {unit_text}."
        )
        return scale, own, note
    if not is_version_1(res, trial):
        missing = [n for n, v in (("count_mode", mode), ("count_unit", unit)) if v is None]
        if not missing:
            missing = ["seq_len (policy option or meta.json)"]
        raise ValueError(
            f"trial {trial.get('trial_id')} records no {', '.join(missing)}: n cannot be "
            "placed without guessing"
        )
    if unit == "sequences":
        scale, unit_text = 1.0, "sequences"
    elif seq_len:
        scale, unit_text = seq_len / 1024, f"1024-token units (sequences × {seq_len}/1024)"
    else:
        scale, unit_text = 1.0, "sequences (no seq_len known)"
    note = (
        "Approximation (version-1 results do not record the policy's count options): n = "
        f"cumulative sequences {who}, through each step, in {unit_text}"
        + (" (seq_len/1024 scaling)" if scale != 1.0 else "")
        + "; the policy's own count may differ."
    )
    return scale, own, note


def law_trials(res: Results, config_id: str | None, phase: str | None) -> pd.DataFrame:
    """The completed trials of a configuration whose diagnostics hold a fitted law
    (law_eps, law_beta and law_alpha)."""
    t = _trials_of(res, config_id, phase)
    if t.empty:
        return t
    diag = res.diagnostics_for(t["trial_id"])
    diag = diag[diag["name"].isin(LAW_NAMES) & diag["value"].notna()]
    names = diag.groupby("trial_id")["name"].agg(lambda s: set(s))
    fitted = [tid for tid, got in names.items() if set(LAW_NAMES) <= got]
    return t[t["trial_id"].isin(fitted)]


def plot_scaling_laws(
    res: Results,
    best_config: str | None,
    best_phase: str | None,
    metric: str,
    arm: str | None = None,
) -> tuple[Figure | None, str]:
    """Observed per-domain training loss of the best trial of a configuration (an arm's best)
    against the count n, with the law L(n) = eps + beta * n^-alpha of its last refit overlaid,
    read from its law_eps/law_beta/law_alpha diagnostics (those ADO records)."""
    who = arm or "the arm"
    if best_config is None:
        return None, f"no completed trial of {who}"
    cand = law_trials(res, best_config, best_phase)
    if cand.empty:
        return None, f"no law diagnostics ({'/'.join(LAW_NAMES)}) for {who}'s best configuration"
    trial = cand.sort_values(metric).iloc[0]
    tid = trial["trial_id"]
    try:
        n_scale, own, n_note = count_convention(res, trial)
    except ValueError as exc:
        return None, str(exc)
    s = res.steps_for([tid]).sort_values(["step", "domain_index"])
    if s.empty:
        return None, f"no per-step history for trial {tid}"
    diag = res.diagnostics_for([tid])
    diag = diag[diag["name"].isin([*LAW_NAMES, LAW_FIT_STEP])]
    laws = diag.pivot_table(
        index=["domain", "step"], columns="name", values="value", aggfunc="first", dropna=False
    )

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
        ld = laws.xs(d, level="domain") if d in laws.index.get_level_values("domain") else None
        if ld is not None:
            ld = ld[ld.reindex(columns=list(LAW_NAMES)).notna().all(axis=1)]
        if ld is not None and not ld.empty:
            last_step = ld.index.max()
            eps, beta, alpha = (float(ld.loc[last_step, c]) for c in LAW_NAMES)
            fit_step = last_step
            if LAW_FIT_STEP in ld.columns and pd.notna(ld.loc[last_step, LAW_FIT_STEP]):
                fit_step = int(ld.loc[last_step, LAW_FIT_STEP])  # recorded each step: when fit
            positive = n_all[n_all > 0]
            if not positive.empty:
                grid = np.geomspace(float(positive.min()), float(positive.max()), 200)
                ax.plot(
                    grid,
                    eps + beta * grid ** (-alpha),
                    color="k",
                    lw=1.5,
                    label=f"law fitted @ step {fit_step}",
                )
                ax.axhline(eps, color="k", ls=":", lw=0.8, label=f"eps = {eps:.3g}")
                if fit_step in n_all.index and n_all[fit_step] > 0:
                    ax.axvline(float(n_all[fit_step]), color="0.5", ls="--", lw=0.8)
            ax.set_title(f"{d}: eps={eps:.3g}, beta={beta:.3g}, alpha={alpha:.3g}", fontsize=9)
        else:
            ax.set_title(f"{d}: no law fitted", fontsize=9)
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel(f"n ({'own' if own else 'all-domain'} {unit_short}, cumulative)")
        ax.set_ylabel("train loss")
        ax.legend(fontsize=7)
    fig.suptitle(f"Scaling-law fits of {who} trial {tid} (seed {trial['seed']})")
    caption = (
        f"{who}'s best configuration: observed per-domain training loss against n, with the law "
        "L(n) = eps + beta·n^(−alpha) of the last refit (solid; dashed vertical line: n at that "
        f"refit), from the trial's law diagnostics. {n_note}"
    )
    return fig, caption


# --------------------------------------------------------------------------------------------
# (4) search


def plot_search(
    res: Results, metric: str, arm: str, phase: str = "search"
) -> tuple[Figure | None, str]:
    """A searched arm's search phase: the metric against each varying hyperparameter (a slice
    plot) over the axes of its declared search space, the best configuration highlighted."""
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
    declared = space.source == SPACE_FROM_META
    fig, axes = _figure(len(cols), max_cols=4, w=3.6, h=3.0)
    rng = np.random.default_rng(0)
    for ax, col in zip(axes, cols):
        dist = space.distributions[col]
        values = t[col]
        has = values.notna().to_numpy()
        if hasattr(dist, "choices"):
            choices = list(dist.choices)
            x = np.array(
                [_choice_index(choices, v) if h else np.nan for v, h in zip(values, has)],
                dtype=float,
            )
            x = x + rng.uniform(-0.12, 0.12, len(x))
        else:
            x = values.astype(float).to_numpy()
            if getattr(dist, "log", False):
                ax.set_xscale("log")
                _plain_log_ticks(ax)
            if declared:  # the whole declared range: where in it the search went
                ax.set_xlim(*_padded(float(dist.low), float(dist.high), dist.log))
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
        "hyperparameter that varies; stars mark the configuration with the lowest mean. Axes: "
        + (
            "the declared search space (meta.json)."
            if declared
            else "the observed range (version-1 results record no search space)."
        )
    )
    return fig, caption


def _choice_index(choices: list[Any], value: Any) -> float:
    value = value.item() if isinstance(value, np.generic) else value
    for i, c in enumerate(choices):
        if c is value or (type(c) is type(value) and c == value):
            return float(i)
    return float("nan")


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    if log and low > 0:
        pad = (high / low) ** 0.04
        return low / pad, high * pad
    pad = 0.04 * (high - low) or 0.5
    return low - pad, high + pad


def plot_swarm(res: Results, metric: str) -> tuple[Figure | None, str]:
    """The swarm: the metric against the mixture. Three domains: a ternary plot of the members
    (colour: the metric) with the proposed and best observed mixtures marked. More: the
    regression's partial dependence on each domain's share (that share moved from 0 to 1, the
    others kept in the proportions of the swarm's mean mixture)."""
    from ado_ray.analysis import SWARM_BEST, SWARM_TOP, swarm_summary
    from ado_ray.swarm import fit_swarm

    t = res.trials
    done = t[(t["phase"] == "swarm") & (t["status"] == "completed")] if not t.empty else t
    if done.empty or "hp_weights" not in done:
        return None, "no completed swarm trials"
    by_mix = done.groupby("config_id").agg(y=(metric, "mean"), w=("hp_weights", "first"))
    w = np.array([json.loads(x) if isinstance(x, str) else list(x) for x in by_mix["w"]])
    y = by_mix["y"].to_numpy(dtype=float)
    summary = swarm_summary(res) or {}
    k = w.shape[1]
    domains = res.domains() or [f"domain {i}" for i in range(k)]
    if k == 3:
        fig = Figure(figsize=(5.2, 4.6))
        ax = fig.add_subplot()
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
        xy = w @ corners
        ax.plot(*np.vstack([corners, corners[:1]]).T, color="0.6", lw=1)
        for i, name in enumerate(domains[:3]):
            ax.annotate(name, corners[i], ha="center", va="top" if i < 2 else "bottom")
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="viridis_r", s=40, edgecolor="k", lw=0.4)
        fig.colorbar(sc, ax=ax, label=metric)
        for key, marker in ((SWARM_BEST, "*"), (SWARM_TOP, "X")):
            if key in summary:
                p = np.asarray(summary[key]) @ corners
                ax.scatter(*p, marker=marker, s=180, color="red", label=key, zorder=3)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(loc="upper right", fontsize=8)
        return fig, f"{len(y)} swarm mixtures on the simplex, coloured by {metric}"
    fit = fit_swarm(w, y, kind=str(summary.get("regression", "ridge")))
    mean = w.mean(axis=0)
    grid = np.linspace(0.0, 1.0, 41)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    colors = _domain_colors(list(domains))
    for i, name in enumerate(domains[:k]):
        rest = np.delete(mean, i)
        rest = rest / rest.sum() if rest.sum() > 0 else np.full(k - 1, 1.0 / (k - 1))
        mixes = np.array([np.insert((1 - g) * rest, i, g) for g in grid])
        ax.plot(grid, fit.predict(mixes), label=name, color=colors.get(name))
        ax.scatter(w[:, i], y, s=8, color=colors.get(name), alpha=0.4)
    ax.set_xlabel("share of the domain")
    ax.set_ylabel(f"predicted {metric}")
    ax.legend(fontsize=8, ncol=2)
    rho = summary.get("cv_spearman", fit.cv_spearman)
    return fig, (
        f"partial dependence of the swarm regression ({fit.kind}; held-out Spearman "
        f"{rho:.2f}); dots: the {len(y)} swarm mixtures"
    )
