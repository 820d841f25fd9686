"""The ``ado-ray analyze`` report: the main table, per-searched-arm importances and the plots,
written as ``table.<fmt>``, ``plots/*.png``, ``report.md`` and ``report.html``.

The top of the one-way import chain: report -> :mod:`ado_ray.plots` -> :mod:`ado_ray.analysis`
(tables and statistics). The CLI's ``ado-ray analyze`` calls :func:`analyze`; there is no
other command-line entry point.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ado_ray import plots as plots_mod
from ado_ray import storage
from ado_ray.analysis import (
    FORMATS,
    REFERENCE_POLICY,
    arm_policies,
    best_config,
    format_table,
    hp_importances,
    main_table,
    markdown_table,
    regret_table,
    searched_arms,
)
from ado_ray.results import Results, partial_reads, read_results


@dataclass
class AnalysisReport:
    table: pd.DataFrame
    #: Per searched arm (label), its hyperparameter importances; arms where none could be
    #: computed are left out (``importance_notes`` says why).
    importances: dict[str, dict[str, float]]
    plots: list[str]
    report_path: str | None
    html_path: str | None = None
    table_path: str | None = None
    table_text: str = ""
    messages: list[str] = field(default_factory=list)
    #: Per searched arm, what the importances are (evaluator, trials) or why there are none.
    importance_notes: dict[str, str] = field(default_factory=dict)
    #: The headroom and regret section (Markdown), for a study with a swarm.
    regret_text: str = ""

    @property
    def text(self) -> str:
        """The table in the requested format, then headroom and regret if the study has a swarm
        (what ``ado-ray analyze`` prints)."""
        return self.table_text + (f"\n{self.regret_text}" if self.regret_text else "")


def default_out_dir(uri: str, study: str | None) -> str:
    """``<results>/analysis`` for local results; ``./analysis-<study>`` for remote ones."""
    if storage.is_remote(uri):
        return storage.normalize(f"analysis-{study or 'study'}")
    return storage.join(storage.normalize(uri), "analysis")


def _rel(out_dir: str, target: str) -> str:
    prefix = out_dir.rstrip("/") + "/"
    if target.startswith(prefix):
        return target[len(prefix) :]
    local_target, local_out = _local_path(target), _local_path(out_dir)
    if local_target is not None and local_out is not None:
        return os.path.relpath(local_target, local_out)
    return target


def _local_path(uri: str) -> str | None:
    """The path of a local storage URI (a plain path or ``file://``), None for a remote one."""
    uri = str(uri)
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return None if storage.scheme(uri) else uri


def _shown_results(uri: str, out_dir: str) -> str:
    """How the report names the results it analyses: never by their absolute local path (the
    report is meant to be shared). Local results: their path relative to the report's directory
    (``..`` for the default ``<results>/analysis``), or their directory's name when the report is
    written to remote storage. Remote results (``s3://...``): their URI."""
    local, out = _local_path(uri), _local_path(out_dir)
    if local is None:
        return uri
    if out is None:
        return os.path.basename(local.rstrip("/")) or "."
    return os.path.relpath(local, out)


def _scrub_paths(text: str, uri: str, out_dir: str) -> str:
    """Replace the absolute local paths of the report's directory and of the results (in
    failure messages, notes, ...) with their relative forms."""
    pairs = []
    out = _local_path(out_dir)
    if out is not None and os.path.isabs(out):
        pairs.append((out.rstrip("/"), "."))
    local = _local_path(uri)
    if local is not None and os.path.isabs(local):
        pairs.append((local.rstrip("/"), _shown_results(uri, out_dir)))
    for absolute, shown in pairs:
        if absolute in ("", "/"):
            continue
        for form in (f"file://{absolute}", absolute, html.escape(absolute)):
            text = re.sub(re.escape(form) + r"(?![\w.-])", lambda _m, s=shown: s, text)
    return text


def plot_file(kind: str, arm: str | None = None) -> str:
    """The PNG name of a plot: ``<kind>.png``, or ``<kind>-<arm>.png`` for a per-arm plot (the
    arm label with characters unsafe in a file name replaced by ``_``)."""
    if arm is None:
        return f"{kind}.png"
    return f"{kind}-{re.sub(r'[^A-Za-z0-9._-]', '_', arm)}.png"


def _trial_summary(res: Results) -> pd.DataFrame:
    trials = res.trials
    if trials.empty:
        return pd.DataFrame(columns=["phase", "arm", "policy", "status", "trials"])
    rank = {arm: i for i, arm in enumerate(arm_policies(res))}
    t = trials.fillna({"phase": "?", "arm": "?", "policy": "?", "status": "?"})
    counts = t.groupby(["phase", "arm", "policy", "status"]).size().reset_index(name="trials")
    counts["_r"] = counts["arm"].map(lambda a: rank.get(a, len(rank)))
    return counts.sort_values(["phase", "_r", "arm", "status"]).drop(columns="_r")


def _split_table(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(aggregates + compute + differences, per-domain losses, configurations) views of the
    main table."""
    dom_cols = [c for c in table.columns if c.startswith("val_loss__")]
    agg = table.drop(columns=dom_cols)
    agg = agg[[c for c in agg.columns if c not in ("hparams",)]]
    dom = table[["label", "n_seeds", *dom_cols]]
    cfg = table[["label", "arm", "policy", "config_id", "hparams", "n_seeds", "seeds"]]
    for part in (agg, dom):
        part.attrs.update(table.attrs)
    return agg, dom, cfg


def analyze(
    uri: str,
    out_dir: str | None = None,
    fmt: str = "markdown",
    *,
    metric: str = "val_loss_balanced",
    baseline: str | None = None,
    phase: str = "confirm",
    make_plots: bool = True,
    allow_partial: bool = False,
    _skipped: list[str] | None = None,
) -> AnalysisReport:
    """Analyse the results at ``uri``; write the table (``table.md``/``.csv``/``.json`` per
    ``fmt``), ``plots/*.png``, ``report.md`` and ``report.html`` to ``out_dir`` (any storage
    URI; default :func:`default_out_dir`). ``baseline``: the arm the paired differences are
    taken against (default: the first arm running the uniform policy). ``allow_partial``: an
    unreadable results file is skipped, and the report says which, instead of failing."""
    if allow_partial:
        with partial_reads() as skipped:
            report = analyze(uri, out_dir, fmt, metric=metric, baseline=baseline, phase=phase,
                             make_plots=make_plots, _skipped=skipped)
        return report
    if fmt not in FORMATS and fmt != "md":
        raise ValueError(f"unknown table format {fmt!r}; use one of {FORMATS}")
    res = read_results(uri, with_steps=False)  # plots read the history of the trials they draw
    out_dir = storage.normalize(out_dir) if out_dir else default_out_dir(res.uri, res.study)
    messages: list[str] = []
    if plots_mod.is_version_1(res):
        messages.append(
            "schema version 1 results: each arm's policy is its name, the law columns of the "
            "steps read as diagnostics, no evaluation tokens were recorded, and the search "
            "spaces are inferred from the observed values"
        )
    table = main_table(res, phase=phase, baseline=baseline)
    messages += table.attrs.get("notes", [])

    searched = searched_arms(res)
    importances: dict[str, dict[str, float]] = {}
    imp_notes: dict[str, str] = {}
    for arm in searched:
        imp, msg = hp_importances(res, metric=metric, arm=arm)
        imp_notes[arm] = msg
        if imp is not None:
            importances[arm] = imp
        else:
            messages.append(f"{arm}: {msg}")

    table_text = format_table(table, fmt)
    ext = {"markdown": "md", "md": "md", "csv": "csv", "json": "json", "html": "html"}[fmt]
    table_path = storage.join(out_dir, f"table.{ext}")
    storage.write_text_atomic(table_path, table_text)

    figures: list[tuple[str, str, str]] = []  # (uri, title, caption)
    if make_plots:
        best = {arm: best_config(table, res, metric, arm) for arm in arm_policies(res)}
        builds: list[tuple[str, str, Callable[[], tuple[object, str]]]] = [
            (
                plot_file("weights"),
                "Mixture weights",
                lambda: plots_mod.plot_weights(res, table, {a: best[a] for a in searched}),
            ),
            (
                plot_file("val_loss"),
                "Validation loss per domain",
                lambda: plots_mod.plot_val_curves(res, table),
            ),
        ]
        for arm, (cid, ph) in best.items():  # any arm whose policy records a fitted law
            if not plots_mod.law_trials(res, cid, ph).empty:
                builds.append(
                    (
                        plot_file("scaling_laws", arm),
                        f"Fitted scaling laws: {arm} (best configuration)",
                        lambda arm=arm, cid=cid, ph=ph: plots_mod.plot_scaling_laws(
                            res, cid, ph, metric, arm
                        ),
                    )
                )
        if (res.trials["phase"] == "swarm").any() if not res.trials.empty else False:
            builds.append(
                (
                    plot_file("swarm"),
                    "Swarm: the metric against the mixture",
                    lambda: plots_mod.plot_swarm(res, metric),
                )
            )
        for arm in searched:
            builds.append(
                (
                    plot_file("search", arm),
                    f"Search: {arm}",
                    lambda arm=arm: plots_mod.plot_search(res, metric, arm),
                )
            )
        for name, title, build in builds:
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

    regret_md, regret_html, _ = _regret_section(res, metric)
    if _skipped:  # --allow-partial: what could not be read (filled as the files were read)
        messages += [f"partial analysis: skipped {m}" for m in _skipped]
    md, page = _render_report(
        res, table, searched, importances, imp_notes, figures, messages, out_dir,
        (regret_md, regret_html),
    )
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
        messages=messages,
        importance_notes=imp_notes,
        regret_text="\n".join(regret_md),
    )


def _intro(table: pd.DataFrame) -> str:
    phase = table.attrs.get("phase")
    baseline = table.attrs.get("baseline")
    text = (
        f"Phase **{phase}**, completed trials only. Mean ± half-width of the 95% t-interval over "
        "seeds (n/a with one seed). "
    )
    if baseline is not None:
        text += (
            f"Δ = arm − {baseline} (the reference arm), paired by seed, with its 95% t-interval; "
            "'better' when the interval lies below 0 (lower loss); n = the seeds paired. "
            "The intervals are not corrected for comparing several configurations. "
        )
    else:
        text += (
            f"No arm runs the {REFERENCE_POLICY} policy, so there is no reference arm and no "
            "paired difference (Δ) column. "
        )
    return text + (
        "train_tokens_per_trial and eval_tokens_per_trial: training and held-out evaluation "
        "tokens per trial (mean over the configuration's completed trials), each arm's compute; "
        "mfu: model FLOPs utilisation on CUDA (n/a on CPU)."
    )


def _render_report(
    res: Results,
    table: pd.DataFrame,
    searched: list[str],
    importances: dict[str, dict[str, float]],
    imp_notes: dict[str, str],
    figures: list[tuple[str, str, str]],
    messages: list[str],
    out_dir: str,
    regret: tuple[list[str], list[str]] = ([], []),
) -> tuple[str, str]:
    study = res.study or "study"
    meta = res.meta or {}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    head = (
        f"Results: `{_shown_results(res.uri, out_dir)}` · "
        f"schema version {meta.get('schema_version', '?')} · "
        f"package {meta.get('package_version', '?')} · analysed {now}"
    )
    intro = _intro(table)
    agg, dom, cfg = _split_table(table)
    summary = _trial_summary(res)
    failed = _failed(res.trials)

    def imp_frame(arm: str) -> pd.DataFrame | None:
        imp = importances.get(arm)
        if not imp:
            return None
        return pd.DataFrame({"hyperparameter": list(imp), "importance": list(imp.values())})

    md: list[str] = [f"# Analysis of study `{study}`", "", head, ""]
    md += [
        "## Trials",
        "",
        markdown_table(summary.astype(str)) if not summary.empty else "No trials recorded.\n",
    ]
    if failed is not None:
        md += ["Failed or interrupted trials:", "", markdown_table(failed)]
    md += ["## Main comparison", "", intro, ""]
    md += [
        format_table(agg, "markdown") if not table.empty else "No completed trials to compare.\n"
    ]
    if not table.empty:
        md += ["### Final validation loss per domain", "", format_table(dom, "markdown")]
        md += ["### Configurations", "", markdown_table(cfg.astype(str))]
    if not searched:
        md += ["## Hyperparameter importances", "", "No arm has a hyperparameter search.", ""]
    for arm in searched:
        md += [f"## Hyperparameter importances: {arm} (search phase)", "", imp_notes[arm] + ".", ""]
        frame = imp_frame(arm)
        if frame is not None:
            md += [format_table(frame, "markdown")]
    regret_md, regret_html = regret
    md += regret_md
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
        body += [
            "<p>Failed or interrupted trials:</p>",
            failed.to_html(index=False, border=0, classes="table"),
        ]
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
    if not searched:
        body += [
            "<h2>Hyperparameter importances</h2>",
            "<p>No arm has a hyperparameter search.</p>",
        ]
    for arm in searched:
        body += [
            f"<h2>Hyperparameter importances: {e(arm)} (search phase)</h2>",
            f"<p>{e(imp_notes[arm])}.</p>",
        ]
        frame = imp_frame(arm)
        if frame is not None:
            body += [format_table(frame, "html")]
    body += regret_html
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
    return _scrub_paths("\n".join(md), res.uri, out_dir), _scrub_paths(page, res.uri, out_dir)


def _failed(trials: pd.DataFrame) -> pd.DataFrame | None:
    """The trials that ended on an error, their own (failed) or the cluster's (interrupted),
    with the error's last line."""
    if trials.empty:
        return None
    bad = trials[trials["status"].isin(["failed", "interrupted"])]
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
            "status": bad["status"].astype(str),
            "error": errors,
        }
    )


__all__ = ["AnalysisReport", "analyze", "default_out_dir", "plot_file"]


def _regret_section(res: Results, metric: str) -> tuple[list[str], list[str], str | None]:
    """Markdown and HTML of the headroom and regret section (a study with a swarm), and a
    one-line summary for the notes; empty without a swarm."""
    table = regret_table(res, metric)
    if table is None or table.empty:
        return [], [], None
    head = table.attrs.get("headroom")
    swarm = table.attrs.get("swarm") or {}

    def ci(r: pd.Series, tag: str) -> str:
        m = r[f"regret_{tag}_mean"]
        if not np.isfinite(m):
            return "n/a"
        return (
            f"{m:+.4f} [{r[f'regret_{tag}_ci_low']:+.4f}, {r[f'regret_{tag}_ci_high']:+.4f}] "
            f"(n={int(r[f'regret_{tag}_n_pairs'])})"
        )

    rows = pd.DataFrame(
        {
            "arm": table["label"],
            metric: [f"{m:.4f} ± {h:.4f}" for m, h in zip(table[f"{metric}_mean"],
                                                         table[f"{metric}_ci95"])],
            "regret vs swarm_best": [ci(r, "best") for _, r in table.iterrows()],
            "regret vs swarm_top": [ci(r, "top") for _, r in table.iterrows()],
            "train tokens / run": table["train_tokens_per_trial"].map(_tokens),
            "eval tokens / run": table["eval_tokens_per_trial"].map(_tokens),
            "tokens to find the mixture": table["finding_tokens"].map(_tokens),
            "total tokens / run": table["total_tokens_per_run"].map(_tokens),
        }
    )
    lines = [
        "## Headroom and regret",
        "",
        "Regret is an arm's metric minus the best static mixture's, paired by seed (95% CI): "
        "`swarm_best` is the mixture the swarm's regression proposes, `swarm_top` the best swarm "
        "member observed, both confirmed on every seed. Negative regret beats that mixture. An "
        "arm's total compute adds what it spent to find its mixture (the swarm, or its search).",
        "",
    ]
    summary = None
    if head is not None:
        summary = (
            f"headroom ({head['reference']} minus {head['best_static']}): {head['mean']:+.4f} "
            f"[{head['ci_low']:+.4f}, {head['ci_high']:+.4f}] (n={head['n_pairs']})"
        )
        lines += [f"**Headroom**: {summary}.", ""]
    if swarm:
        lines += [
            f"Swarm: {swarm.get('n_mixtures')} mixtures, {swarm.get('regression')} regression, "
            f"held-out Spearman rank correlation {swarm.get('cv_spearman', float('nan')):.2f} "
            f"({swarm.get('folds')}-fold).",
            "",
        ]
    lines += [markdown_table(rows)]
    body = [f"<h2>Headroom and regret</h2><p>{html.escape(lines[2])}</p>"]
    if summary:
        body.append(f"<p><b>Headroom</b>: {html.escape(summary)}.</p>")
    body.append(rows.to_html(index=False, border=0, classes="table"))
    return lines, body, summary


def _tokens(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:,.0f}"
