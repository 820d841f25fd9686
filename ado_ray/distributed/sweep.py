"""A whole study on Ray Tune + Optuna: the ADO search, then the confirm phase against baselines.

Each Tune trial is a *driver* function that builds a Ray Train run (:func:`run_trial`) and, when
the run ends, writes the trial's results part. Drivers ask for the ``trial_driver`` custom
resource and no CPU, so on a 2-CPU laptop trials queue for worker CPUs instead of deadlocking
(RAY_NOTES.md).

- **Search**: Optuna (TPE by default) samples ADO's options define-by-run; the paper's defaults
  are enqueued first; an optional ASHA scheduler stops poor trials at evaluation rounds.
- **Confirm**: the best ``top_k`` ADO configurations and every baseline, each on every seed, with
  the same budget. Trial names are deterministic (arm, config, seed), so a resumed study skips the
  trials already recorded and resumes an interrupted one from its Train checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from typing import Any

import numpy as np
import ray
from ray import tune

from ado_ray import __version__, storage
from ado_ray.data import load_corpus
from ado_ray.distributed import placement
from ado_ray.distributed.runtime import init_ray
from ado_ray.distributed.trainer import (
    Placement,
    TrialFailed,
    describe_failure,
    history_from_checkpoint,
    run_trial,
)
from ado_ray.policies import make_policy
from ado_ray.results import STUDY_FILE, ResultsWriter, config_id, read_meta, read_results
from ado_ray.study import Study, dump_study, load_study
from ado_ray.train.config import TrainConfig
from ado_ray.train.loop import policy_options_for

log = logging.getLogger(__name__)

SEARCH_DONE = "search_done.json"
# Options that describe the corpus rather than the policy: not hyperparameters.
_NOT_HPARAMS = ("token_counts", "seq_len")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _placement(study: Study) -> Placement:
    r = study.resources
    return Placement(
        num_workers=int(r.workers_per_trial),
        use_gpu=float(r.gpus_per_worker) > 0,
        cpus_per_worker=float(r.cpus_per_worker),
        gpus_per_worker=float(r.gpus_per_worker),
        max_failures=int(study.training.max_failures),
    )


def _hparams(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _NOT_HPARAMS}


def validate_before_compute(study: Study, corpus: Any) -> int:
    """Every arm's policy is built once against the corpus, so a bad option (fixed weights of
    the wrong length, delta_min * K >= 1...) fails before any trial starts. Returns the steps."""
    total_seqs = int(sum(len(t) for t in corpus.train))
    steps = study.budget_steps(int(corpus.seq_len), total_seqs)
    candidates = [(arm, opts) for arm, opts in study.baseline_arms()]
    if study.ado is not None:
        candidates.append(("ado", study.default_ado_options(steps)))
        for name, spec in study.search_space().items():
            for bound in (getattr(spec, "low", None), getattr(spec, "high", None)):
                if bound is not None:  # the corners of the space must be valid policies too
                    candidates.append(("ado", {**study.default_ado_options(steps), name: bound}))
    for arm, opts in candidates:
        cfg = TrainConfig(**study.trial_config(arm, opts, study.seeds[0]))
        try:
            make_policy(arm, corpus.num_domains, **policy_options_for(cfg, corpus))
        except ValueError as exc:
            raise ValueError(f"arms.{arm}: {exc}") from None
    return steps


def _driver(config: dict[str, Any], study_dict: dict, results_uri: str, ray_storage: str) -> None:
    """The Tune trial: one Ray Train run, then its results part."""
    study = load_study(study_dict)
    config = config.get("spec", config)  # confirm trials carry their whole spec
    phase = config.get("phase", "search")
    arm = config.get("arm", "ado")
    seed = int(config["seed"])
    if phase == "search":
        sampled = {k: config[k] for k in study.search_space() if k in config}
        options = study.ado_options(sampled)
        trial_name = f"search-{tune.get_context().get_trial_id()}"
    else:
        options = dict(config["options"])
        trial_name = config["trial_name"]
    cfg = TrainConfig(**study.trial_config(arm, options, seed))
    from ray.tune.integration.ray_train import TuneReportCallback

    record: dict[str, Any] = {
        "trial_id": trial_name,
        "arm": arm,
        "phase": phase,
        "seed": seed,
        "config_id": config_id(arm, _hparams(options)),
        "started_at": _now(),
        "package_version": __version__,
    }
    error: BaseException | None = None
    try:
        out = run_trial(
            cfg, trial_name, ray_storage, _placement(study), callbacks=[TuneReportCallback()]
        )
        record["status"] = "completed"
    except TrialFailed as exc:
        out, error = exc.partial, exc
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. the actor died: no history to keep
        # Not the trial's own failure: recorded, and run again (from its checkpoint) on resume.
        out, error = {}, exc
        record.update(status="interrupted", error=describe_failure(exc))
    resolved = dict(out.get("policy_options") or options)
    record.update(
        hparams=_hparams(resolved),
        domains=out.get("domains"),
        finished_at=_now(),
        metrics={
            k: v for k, v in (out.get("summary") or {}).items() if not isinstance(v, (dict, list))
        },
    )
    writer = ResultsWriter(results_uri, study.name)
    writer.add_trial(record, out.get("steps"), out.get("evals"))
    if error is not None:
        raise error


class _SearchSpace:
    """Optuna's define-by-run space over ADO's options. A class, not a closure: Tune pickles it
    into the experiment checkpoint that ``--resume`` restores."""

    def __init__(self, study_dict: dict[str, Any], seed: int):
        self.study_dict, self.seed = study_dict, seed
        self._study: Study | None = None

    def __call__(self, trial: Any) -> dict[str, Any]:
        if self._study is None:
            self._study = load_study(self.study_dict)
        self._study.suggest(trial)
        return {"phase": "search", "arm": "ado", "seed": self.seed}

    def __getstate__(self) -> dict[str, Any]:
        return {"study_dict": self.study_dict, "seed": self.seed, "_study": None}


def _trial_dirname(trial: Any) -> str:
    # Short, deterministic trial directories (Optuna configs make Tune's default ~200 chars).
    return trial.trial_id


def _sampler(study: Study) -> Any:
    import optuna

    s = study.search
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "gp":
        return optuna.samplers.GPSampler(seed=s.seed)
    if s.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s.seed)
    # Parallel, conditional search: multivariate TPE with the constant liar (RAY_NOTES.md).
    return optuna.samplers.TPESampler(
        seed=s.seed, multivariate=True, group=True, constant_liar=True
    )


def _tune_run_config(name: str, ray_storage: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=ray_storage,
        failure_config=tune.FailureConfig(max_failures=0),  # Train retries; a failure is final
        verbose=1,
    )


def _trainable(study: Study, results_uri: str, ray_storage: str) -> Any:
    fn = tune.with_parameters(
        _driver, study_dict=study.to_dict(), results_uri=results_uri, ray_storage=ray_storage
    )
    return tune.with_resources(fn, placement.driver_resources())


def _run_search(
    study: Study, results_uri: str, ray_storage: str, steps: int, conc: int, resume: bool
) -> None:
    from ray.tune.search.optuna import OptunaSearch

    trainable = _trainable(study, results_uri, ray_storage)
    path = storage.join(ray_storage, "search")
    if resume and tune.Tuner.can_restore(path):
        log.info("resuming the search phase from %s", path)
        tuner = tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        space = _SearchSpace(study.to_dict(), study.search_seeds[0])
        points = [study.paper_defaults(steps)] if study.search.enqueue_defaults else None
        searcher = OptunaSearch(
            space=space,
            metric=study.metric,
            mode=study.mode,
            sampler=_sampler(study),
            points_to_evaluate=points,
        )
        scheduler = None
        if study.search.scheduler is not None:
            sch = study.search.scheduler
            rounds = math.ceil(steps / study.training.eval_interval)
            scheduler = tune.schedulers.ASHAScheduler(
                time_attr="eval_round",
                max_t=rounds,
                grace_period=min(int(sch.grace_period), rounds),
                reduction_factor=sch.reduction_factor,
            )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=study.metric,
                mode=study.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=int(study.search.num_samples),
                max_concurrent_trials=conc,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=_tune_run_config("search", ray_storage),
        )
    grid = tuner.fit()
    _record_stopped(study, results_uri, ray_storage, grid, "search")
    storage.write_text_atomic(storage.join(results_uri, SEARCH_DONE), "{}\n")


def _record_stopped(
    study: Study, results_uri: str, ray_storage: str, grid: Any, phase: str
) -> None:
    """Record the trials that never reached their own results write: those a scheduler stopped
    (pruned, with their last reported metrics), and those whose driver died (failed). Their
    history is what their last checkpoint holds."""
    writer = ResultsWriter(results_uri, study.name)
    done = writer.finished_trial_ids()
    domains = (read_meta(results_uri) or {}).get("domains")
    for result in grid:
        cfg = result.config or {}
        if phase == "search":
            trial_id = result.path.rstrip("/").rsplit("/", 1)[-1] if result.path else None
            if trial_id is None:
                continue
            name, arm, seed = f"search-{trial_id}", "ado", cfg.get("seed")
            options = study.ado_options({k: cfg[k] for k in study.search_space() if k in cfg})
        else:
            spec = cfg.get("spec") or {}
            if "trial_name" not in spec:
                continue
            name, arm, seed, options = (
                spec["trial_name"],
                spec["arm"],
                spec["seed"],
                spec["options"],
            )
        if name in done or (phase != "search" and result.error is None):
            continue
        # A search trial Tune reports errored is final (the restored search will not rerun
        # it); a confirm trial whose driver died is run again by --resume.
        if result.error is None:
            status = "pruned"
        else:
            status = "failed" if phase == "search" else "interrupted"
        metrics = result.metrics or {}
        saved = history_from_checkpoint(ray_storage, name) if domains else None
        saved = saved or {}
        writer.add_trial(
            {
                "trial_id": name,
                "arm": arm,
                "phase": phase,
                "seed": seed,
                "config_id": config_id(arm, _hparams(options)),
                "status": status,
                "error": None if result.error is None else describe_failure(result.error),
                "hparams": _hparams(options),
                "metrics": {
                    k: metrics.get(k)
                    for k in (
                        "val_loss_balanced",
                        "val_loss_natural",
                        "tokens_seen",
                        "tokens_per_second",
                    )
                    if k in metrics
                },
                "domains": domains,
            },
            saved.get("steps"),
            saved.get("evals"),
        )


def best_ado_configs(study: Study, results_uri: str) -> list[dict[str, Any]]:
    """The top ``top_k`` distinct ADO configurations of the search, as full policy options."""
    if not study.has_search:
        return []
    trials = read_results(results_uri).trials
    ok = trials[(trials.phase == "search") & (trials.status == "completed")]
    ok = ok[np.isfinite(ok[study.metric].astype(float))]
    ok = ok.sort_values(study.metric, ascending=study.mode == "min").drop_duplicates("config_id")
    configs = []
    space = study.search_space()
    for _, row in ok.head(int(study.search.top_k)).iterrows():
        sampled = {}
        for name, spec in space.items():
            value = row[f"hp_{name}"]
            sampled[name] = (
                int(value)
                if spec.type == "int"
                else (value.item() if hasattr(value, "item") else value)
            )
        configs.append(study.ado_options(sampled))
    return configs


def _run_confirm(
    study: Study,
    results_uri: str,
    ray_storage: str,
    steps: int,
    conc: int,
    configs: list[dict[str, Any]],
) -> None:
    writer = ResultsWriter(results_uri, study.name)
    done = writer.finished_trial_ids()
    specs = []
    ado_configs = configs or ([study.default_ado_options(steps)] if study.ado else [])
    for trial in study.confirm_trials(ado_configs):
        cid = config_id(trial.arm, _hparams(trial.policy_options))
        name = f"confirm-{trial.arm}-{cid}-s{trial.seed}"
        if name in done:
            continue
        specs.append(
            {
                "phase": "confirm",
                "arm": trial.arm,
                "seed": trial.seed,
                "options": trial.policy_options,
                "trial_name": name,
            }
        )
    if not specs:
        log.info("confirm phase: every trial is already recorded")
        return
    attempt = sum(1 for n in storage.listdir(ray_storage) if n.startswith("confirm"))
    tuner = tune.Tuner(
        _trainable(study, results_uri, ray_storage),
        param_space={"spec": tune.grid_search(specs)},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=conc, trial_dirname_creator=_trial_dirname
        ),
        run_config=_tune_run_config(f"confirm-{attempt}", ray_storage),
    )
    _record_stopped(study, results_uri, ray_storage, tuner.fit(), "confirm")


# What a resumed study may change: where and how robustly it runs, not what it measures.
RESUMABLE_CHANGES = ("storage", "resources", "description", "training.max_failures")


def _changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed_paths(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def _resumable(path: str) -> bool:
    return any(path == r or path.startswith(r + ".") for r in RESUMABLE_CHANGES)


def check_resume_matches(study: Study, results_uri: str) -> None:
    """``--resume`` must continue the same study: finished trials are kept by name, so a
    changed budget, data or search space would mix two studies in one table."""
    stored_uri = storage.join(results_uri, STUDY_FILE)
    if not storage.exists(stored_uri):
        return  # interrupted before anything was written: nothing to mix
    import yaml

    try:
        stored = load_study(yaml.safe_load(storage.read_text(stored_uri))).to_dict()
    except ValueError as exc:
        raise ValueError(
            f"--resume: the study stored at {stored_uri} (written by an earlier run) no longer "
            f"loads: {exc}. Start a new study under another name or --storage"
        ) from None
    changed = [p for p in _changed_paths(stored, study.to_dict()) if not _resumable(p)]
    if changed:
        shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
        raise ValueError(
            f"--resume: the study differs from the one stored at {stored_uri} in {shown}; "
            f"only {' and '.join(RESUMABLE_CHANGES)} may change on resume. Resume with the "
            "stored study file, or start a new study under another name or --storage"
        )


def run_sweep(
    study: Study | str,
    storage_uri: str | None = None,
    resume: bool = False,
    address: str | None = None,
) -> str:
    """Run (or, with ``resume``, continue) a whole study; returns its results URI."""
    study = load_study(study)
    root = storage.normalize(storage_uri or study.storage)
    results_uri = storage.join(root, study.name)
    if not resume and storage.listdir(results_uri):
        raise ValueError(
            f"storage: {results_uri} already holds results of study {study.name!r}; pass --resume "
            "to continue it, or choose another --storage"
        )
    if resume:
        check_resume_matches(study, results_uri)
    corpus = load_corpus(study.data.source, **study.data.options)
    steps = validate_before_compute(study, corpus)
    resources = init_ray(address)
    # Plan for what the autoscaler can add, not just the nodes up now (a fresh cluster is its head).
    cap = placement.plan_capacity(resources, ray.nodes(), placement.load_autoscaler_config())
    placement.require_driver_resource(cap.total)
    storage.require_shared_storage(results_uri, cap.max_nodes)
    writer = ResultsWriter(results_uri, study.name)  # the first write: everything is checked
    r = study.resources
    conc = placement.max_concurrent_trials(
        cap.total,
        int(r.workers_per_trial),
        float(r.cpus_per_worker),
        float(r.gpus_per_worker),
        requested=r.max_concurrent_trials,
        node_resources=cap.nodes,
    )
    log.info("study %s: %d steps per trial, up to %d trials at once", study.name, steps, conc)
    writer.write_meta(
        dump_study(study),
        __version__,
        extra={
            "seq_len": int(corpus.seq_len),
            "total_steps": steps,
            "domains": list(corpus.domains),
        },
    )
    ray_storage = storage.join(results_uri, "ray")
    if study.has_search and not storage.exists(storage.join(results_uri, SEARCH_DONE)):
        _run_search(study, results_uri, ray_storage, steps, conc, resume)
        writer.merge()
    configs = best_ado_configs(study, results_uri)
    _run_confirm(study, results_uri, ray_storage, steps, conc, configs)
    writer.merge()
    return results_uri
