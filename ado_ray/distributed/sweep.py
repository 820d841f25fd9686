"""A whole study on Ray Tune + Optuna: a search per searched arm, then the confirm phase.

Each Tune trial is a *driver* function that builds a Ray Train run (:func:`run_trial`) and, when
the run ends, writes the trial's results part. Drivers ask for the ``trial_driver`` custom
resource and no CPU, so on a 2-CPU laptop trials queue for worker CPUs instead of deadlocking
(see ``docs/architecture.md``, sections 2 and 6).

- **Search**: each searched arm gets its own Optuna study (TPE by default) over its search space,
  define-by-run, with its own sample budget; the arm's defaults (scaled to the run's length where
  the policy declares so) are enqueued first; an optional ASHA scheduler stops poor trials at
  evaluation rounds.
- **Confirm**: the best ``top_k`` configurations of each searched arm and every other arm, each on
  every seed, with the same budget. Trial names are deterministic (arm, config, seed), so a
  resumed study skips the trials already recorded and resumes an interrupted one from its Train
  checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import logging
import math
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import ray
from ray import tune

from ado_ray import __version__, storage
from ado_ray.data import load_corpus
from ado_ray.distributed import placement
from ado_ray.distributed.interrupts import StopSignals, StudyIncomplete
from ado_ray.distributed.janitor import start_janitor
from ado_ray.distributed.progress import StudyProgress
from ado_ray.distributed.runtime import init_ray
from ado_ray.distributed.trainer import (
    Placement,
    TrialFailed,
    describe_failure,
    history_from_checkpoint,
    run_trial,
)
from ado_ray.policies import policy_class, register_policy, registered_policies
from ado_ray.preflight import SweepPreflight, prepare_sweep
from ado_ray.results import (
    FINISHED_STATUSES,
    SEARCH_FINAL_STATUSES,
    ResultsWriter,
    config_id,
    read_meta,
    read_results,
)
from ado_ray.schema import Budget, RunConfig
from ado_ray.study import Study, dump_study, load_study
from ado_ray.study.schema import SWARM_ARMS
from ado_ray.swarm import fit_swarm, propose_mixture, sample_mixtures
from ado_ray.train.config import run_total_steps

log = logging.getLogger(__name__)


SWARM_FILE = "swarm.json"


def _search_done(label: str) -> str:
    """The marker file written when arm ``label``'s search phase has completed."""
    return f"search_done-{label}.json"


def _eval_rounds(steps: int, eval_interval: int) -> int:
    """The evaluation rounds (reports) of a run of ``steps``: ASHA's time unit."""
    return math.ceil(steps / eval_interval)


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


def _hparams(policy: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options that describe the policy, not the run (those the runner fills in are left
    out: they are the same for every arm)."""
    context = policy_class(policy).needs.context_options()
    return {k: v for k, v in options.items() if k not in context}


def _driver(
    config: dict[str, Any],
    study_dict: dict,
    results_uri: str,
    ray_storage: str,
    policies: dict[str, type] | None = None,
    janitor: str | None = None,
) -> None:
    """The Tune trial: one Ray Train run, then its results part. ``janitor``: the name of the
    sweep's placement-group janitor (:mod:`ado_ray.distributed.janitor`)."""
    for name, cls in (policies or {}).items():  # the caller's in-process registrations
        register_policy(name, cls, replace=True)
    study = load_study(study_dict)
    config = config.get("spec", config)  # confirm trials carry their whole spec
    phase = config["phase"]
    label = config["arm"]
    seed = int(config["seed"])
    if phase == "search":
        sampled = {k: config[k] for k in study.search_space(label) if k in config}
        options = study.arm_options(label, sampled)
        trial_name = f"search-{label}-{tune.get_context().get_trial_id()}"
    else:
        options = dict(config["options"])
        trial_name = config["trial_name"]
    cfg = _run_config(study, config, label, options, seed)
    policy = cfg.policy
    record: dict[str, Any] = {
        "trial_id": trial_name,
        "arm": label,
        "policy": policy,
        "phase": phase,
        "seed": seed,
        "config_id": config_id(label, _hparams(policy, options)),
        "started_at": _now(),
        "package_version": __version__,
    }
    total_steps: int | None = None
    last: list[dict[str, Any]] = []

    def relay(metrics: dict[str, Any]) -> None:
        # The run's last report waits until the trial is recorded: a scheduler may stop the
        # trial on it (ASHA does at max_t), and a stopped driver is killed.
        if total_steps is not None and int(metrics.get("step", -1)) >= total_steps:
            last.append(metrics)
        else:
            tune.report(metrics)

    error: BaseException | None = None
    try:
        corpus = load_corpus(cfg.data.source, **cfg.data.options)
        total_steps = run_total_steps(cfg, corpus)
        out = run_trial(
            cfg,
            trial_name,
            ray_storage,
            _placement(study),
            corpus=corpus,
            on_report=relay,
            janitor=janitor,
        )
        record["status"] = "completed"
    except TrialFailed as exc:
        out, error = exc.partial, exc
        # A lost worker or node is not the trial's fault: --resume runs it again.
        record.update(status="interrupted" if exc.infrastructure else "failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. the actor died: no history to keep
        # Not the trial's own failure: recorded, and run again (from its checkpoint) on resume.
        out, error = {}, exc
        record.update(status="interrupted", error=describe_failure(exc))
    resolved = dict(out.get("policy_options") or options)
    metrics = {
        k: v for k, v in (out.get("summary") or {}).items() if not isinstance(v, (dict, list))
    }
    if out.get("steps") and "steps" not in metrics:  # stopped early: what its history shows
        done = len(out["steps"])
        seq_len = int(out.get("seq_len") or 0)
        metrics.update(steps=done, tokens_seen=done * cfg.training.batch_size * seq_len)
    record.update(
        hparams=_hparams(policy, resolved),
        domains=out.get("domains"),
        finished_at=_now(),
        metrics=metrics,
    )
    writer = ResultsWriter(results_uri, study.name)
    writer.add_trial(record, out.get("steps"), out.get("evals"))
    if error is not None:
        raise error  # not after a last report: a scheduler's stop would swallow the error
    if not last:  # total_steps is known: without it, the corpus failed and error was raised
        # A run resumed after its end reports nothing: Tune gets its final round from the record.
        rounds = _eval_rounds(total_steps, cfg.training.eval_interval)
        last.append({**metrics, "step": total_steps, "eval_round": rounds})
    tune.report(last[-1])


def _run_config(
    study: Study, spec: dict[str, Any], label: str, options: dict[str, Any], seed: int
) -> RunConfig:
    """A trial's run: a study arm's, or (swarm members and the swarm's confirmed mixtures) the
    policy and step budget its spec carries."""
    if label in study.arms:
        cfg = study.run_config(label, options, seed)
    else:
        cfg = RunConfig(
            data=copy.deepcopy(study.data),
            model=copy.deepcopy(study.model),
            training=copy.deepcopy(study.training),
            policy=spec["policy"],
            policy_options=dict(options),
            arm=label,
            seed=seed,
        )
    if spec.get("steps") is not None:  # a shorter proxy run (swarm.budget_fraction)
        cfg.training = dataclasses.replace(cfg.training, budget=Budget("steps", int(spec["steps"])))
    return cfg


def _policy_of(study: Study, label: str, spec: dict[str, Any]) -> str:
    return study.arms[label].policy if label in study.arms else spec["policy"]


class _SearchSpace:
    """Optuna's define-by-run space over one arm's search space. A class, not a closure: Tune
    pickles it into the experiment checkpoint that ``--resume`` restores."""

    def __init__(self, study_dict: dict[str, Any], label: str, seed: int):
        self.study_dict, self.label, self.seed = study_dict, label, seed
        self._study: Study | None = None

    def __call__(self, trial: Any) -> dict[str, Any]:
        if self._study is None:
            self._study = load_study(self.study_dict)
        for name, spec in self._study.search_space(self.label).items():
            spec.suggest(trial, name)
        return {"phase": "search", "arm": self.label, "seed": self.seed}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_study": None}


class TrialNamer:
    """Tune trial names and directories that say what runs: ``phase-label-config-s<seed>``
    (a search trial adds Tune's trial id, which its results ``trial_id`` also carries). A class,
    not a closure: Tune pickles it into the experiment checkpoint."""

    def __init__(self, study_dict: dict[str, Any]):
        self.study_dict = study_dict
        self._study: Study | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"study_dict": self.study_dict, "_study": None}

    def describe(self, config: dict[str, Any]) -> tuple[str, str, int | None]:
        """(phase, ``label#config s<seed>``, steps or None for the study's budget)."""
        if self._study is None:
            self._study = load_study(self.study_dict)
        spec = config.get("spec", config)
        phase, label, seed = spec.get("phase", "?"), spec.get("arm", "?"), spec.get("seed")
        if phase == "search" and label in self._study.arms:
            sampled = {k: spec[k] for k in self._study.search_space(label) if k in spec}
            options = self._study.arm_options(label, sampled)
        else:
            options = spec.get("options") or {}
        policy = _policy_of(self._study, label, spec) if label in self._study.arms or spec.get(
            "policy"
        ) else "fixed"
        cid = config_id(label, _hparams(policy, options))[:6]
        return phase, f"{label}#{cid} s{seed}", spec.get("steps")

    def __call__(self, trial: Any) -> str:
        phase, text, _ = self.describe(trial.config or {})
        label, rest = text.split("#", 1)
        cid, seed = rest.split(" ")
        name = f"{phase}-{label}-{cid}-{seed}"
        return f"{name}-{trial.trial_id}" if phase == "search" else name


def _trial_dirname(trial: Any) -> str:
    # Tune's default from Optuna configs grows to ~200 characters; the search keeps Tune's id.
    cfg = trial.config or {}
    spec = cfg.get("spec", cfg)
    if spec.get("trial_name"):
        return spec["trial_name"]
    return f"search-{spec.get('arm', 'arm')}-{trial.trial_id}"


def _sampler(study: Study) -> Any:
    import optuna

    s = study.search
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.sampler == "gp":
        return optuna.samplers.GPSampler(seed=s.seed)
    if s.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s.seed)
    # Parallel, conditional search: multivariate TPE with the constant liar (see
    # docs/architecture.md, section 6, "Parallel search").
    return optuna.samplers.TPESampler(
        seed=s.seed, multivariate=True, group=True, constant_liar=True
    )


def _trainable(study: Study, results_uri: str, ray_storage: str, janitor: str | None) -> Any:
    fn = tune.with_parameters(
        _driver,
        study_dict=study.to_dict(),
        results_uri=results_uri,
        ray_storage=ray_storage,
        janitor=janitor,
        # Only the in-process registrations the study uses: another one may live in a module
        # the drivers cannot import.
        policies={
            n: c
            for n, c in registered_policies().items()
            if n in {arm.policy for arm in study.arms.values()}
        },
    )
    return tune.with_resources(fn, placement.driver_resources())


@dataclasses.dataclass(frozen=True)
class _Phases:
    """What every phase of one sweep shares: its Tune experiments' settings and trainable."""

    study: Study
    results_uri: str
    ray_storage: str
    steps: int
    conc: int  # trials at once
    resume: bool
    stop: StopSignals
    callbacks: list[Any]
    trainable: Any  # built once (it ships the study to the object store once)

    def tune_config(self, **kw: Any) -> tune.TuneConfig:
        return tune.TuneConfig(
            max_concurrent_trials=self.conc,
            trial_name_creator=TrialNamer(self.study.to_dict()),
            trial_dirname_creator=_trial_dirname,
            **kw,
        )

    def run_config(self, name: str) -> tune.RunConfig:
        return tune.RunConfig(
            name=name,
            storage_path=self.ray_storage,
            failure_config=tune.FailureConfig(max_failures=0),  # Train retries; failure is final
            verbose=0,  # the progress lines (ado_ray.distributed.progress) say what runs
            callbacks=self.callbacks,
        )


def _run_search(run: _Phases, label: str) -> None:
    """Arm ``label``'s search: its own Optuna study and Tune experiment (``search-<label>``).
    Interrupted (``run.stop``), it marks nothing done and records nothing: ``--resume``
    restores the experiment and runs its unfinished trials."""
    from ray.tune.search.optuna import OptunaSearch

    study, steps = run.study, run.steps
    path = storage.join(run.ray_storage, f"search-{label}")
    if run.resume and tune.Tuner.can_restore(path):
        log.info("resuming the search of arm %s from %s", label, path)
        tuner = tune.Tuner.restore(
            path, trainable=run.trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        space = _SearchSpace(study.to_dict(), label, study.search_seeds[0])
        first = study.default_config(label, steps)
        points = [first] if study.search.enqueue_defaults and first else None
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
            rounds = _eval_rounds(steps, study.training.eval_interval)
            scheduler = tune.schedulers.ASHAScheduler(
                time_attr="eval_round",
                max_t=rounds,
                grace_period=min(int(sch.grace_period), rounds),
                reduction_factor=sch.reduction_factor,
            )
        tuner = tune.Tuner(
            run.trainable,
            tune_config=run.tune_config(
                metric=study.metric,
                mode=study.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=study.num_samples(label),
                # A trial's driver imports Tune, Train and torch: seconds of CPU that a reused
                # driver pays once per phase. Not with an early-stopping scheduler, whose
                # stopped trials' drivers are better replaced.
                reuse_actors=scheduler is None,
            ),
            run_config=run.run_config(f"search-{label}"),
        )
    grid = tuner.fit()
    if run.stop.received is not None:
        return
    _record_stopped(study, run.results_uri, run.ray_storage, grid, "search", label)
    storage.write_text_atomic(storage.join(run.results_uri, _search_done(label)), "{}\n")


#: A stopped trial's last report key -> its results column.
_STOPPED_METRICS = {
    "val_loss_balanced": "val_loss_balanced",
    "val_loss_natural": "val_loss_natural",
    "tokens_seen": "tokens_seen",
    "eval_tokens": "eval_tokens",
    "tokens_per_second": "tokens_per_second",
    "step": "steps",
}


def _record_stopped(
    study: Study,
    results_uri: str,
    ray_storage: str,
    grid: Any,
    phase: str,
    label: str | None = None,
) -> None:
    """Record the trials that never reached their own results write: those a scheduler stopped
    (pruned, with their last reported metrics), and those whose driver died (failed). Their
    history is what their last checkpoint holds. ``label``: the searched arm (search phase)."""
    writer = ResultsWriter(results_uri, study.name)
    recorded = writer.recorded_statuses()
    done = {tid for tid, st in recorded.items() if st in FINISHED_STATUSES}
    domains = (read_meta(results_uri) or {}).get("domains")
    for result in grid:
        cfg = result.config or {}
        if phase == "search":
            name = result.path.rstrip("/").rsplit("/", 1)[-1] if result.path else None
            if name is None or label is None:
                continue
            arm, seed = label, cfg.get("seed")
            sampled = {k: cfg[k] for k in study.search_space(label) if k in cfg}
            options = study.arm_options(label, sampled)
            policy = study.arm(label).policy
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
            policy = _policy_of(study, arm, spec)
        if name in done or (phase != "search" and result.error is None):
            continue
        if result.error is not None and name in recorded:
            # The driver recorded the trial itself (interrupted, with its history) and then
            # raised: that record stands.
            continue
        # Its driver died: not the trial's own failure. --resume runs it again, unless it was a
        # search's (final: the restored search does not rerun an errored trial).
        status = "pruned" if result.error is None else "interrupted"
        metrics = result.metrics or {}
        saved = history_from_checkpoint(ray_storage, name) if domains else None
        saved = saved or {}
        writer.add_trial(
            {
                "trial_id": name,
                "arm": arm,
                "policy": policy,
                "phase": phase,
                "seed": seed,
                "config_id": config_id(arm, _hparams(policy, options)),
                "status": status,
                "error": None if result.error is None else describe_failure(result.error),
                "hparams": _hparams(policy, options),
                "metrics": {
                    column: metrics[key]
                    for key, column in _STOPPED_METRICS.items()
                    if key in metrics
                },
                "domains": domains,
            },
            saved.get("steps"),
            saved.get("evals"),
        )


def _typed(option: Any, value: Any) -> Any:
    """A hyperparameter read back from Parquet, in its option's type. A column shared by two
    policies whose options share a name but not a type (ADO's bool ``smoothing``, ODM's float)
    is stored as strings."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, str):
        if option.type == "bool":
            value = {"true": True, "false": False}.get(value.lower(), value)
        elif option.type in ("int", "float"):
            value = float(value)
    if option.type == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    return option.check(value)


def best_configs(study: Study, results_uri: str) -> dict[str, list[dict[str, Any]]]:
    """Each searched arm's top ``top_k`` distinct configurations, as full policy options."""
    searched = study.searched_arms()
    if not searched:
        return {}
    trials = read_results(results_uri, with_steps=False).trials
    out: dict[str, list[dict[str, Any]]] = {}
    for label in searched:
        ok = trials[
            (trials.phase == "search") & (trials.status == "completed") & (trials.arm == label)
        ]
        ok = ok[np.isfinite(ok[study.metric].astype(float))]
        ok = ok.sort_values(study.metric, ascending=study.mode == "min")
        ok = ok.drop_duplicates("config_id")
        configs = []
        declared = policy_class(study.arm(label).policy).user_options()
        for _, row in ok.head(int(study.search.top_k)).iterrows():
            sampled = {
                name: _typed(declared[name], row[f"hp_{name}"])
                for name in study.search_space(label)
            }
            configs.append(study.arm_options(label, sampled))
        out[label] = configs
    return out


def _run_grid(run: _Phases, specs: list[dict[str, Any]], phase: str) -> None:
    """Run fixed trial ``specs`` (a grid: no search) as one Tune experiment of ``phase``."""
    attempt = sum(1 for n in storage.listdir(run.ray_storage) if n.startswith(phase))
    tuner = tune.Tuner(
        run.trainable,
        param_space={"spec": tune.grid_search(specs)},
        # One driver per slot for the whole phase (see _run_search).
        tune_config=run.tune_config(reuse_actors=True),
        run_config=run.run_config(f"{phase}-{attempt}"),
    )
    grid = tuner.fit()
    if run.stop.received is None:
        _record_stopped(run.study, run.results_uri, run.ray_storage, grid, phase)


def _spec(
    phase: str, label: str, policy: str, seed: int, options: dict[str, Any], steps: int | None
) -> dict[str, Any]:
    cid = config_id(label, _hparams(policy, options))
    return {
        "phase": phase,
        "arm": label,
        "policy": policy,
        "seed": int(seed),
        "options": options,
        "steps": steps,
        # The swarm phase's trials have the arm "swarm" too: the name says it once.
        "trial_name": f"{phase}-{cid}-s{seed}"
        if label == phase
        else f"{phase}-{label}-{cid}-s{seed}",
    }


def swarm_specs(study: Study, corpus: Any, steps: int) -> list[dict[str, Any]]:
    """The swarm's trials: its mixtures (uniform and natural first) on every swarm seed."""
    sw = study.swarm
    if sw is None:
        return []
    natural = np.asarray(corpus.natural_weights(), dtype=np.float64)
    center = natural if sw.center == "natural" else np.full(natural.size, 1.0 / natural.size)
    mixtures = sample_mixtures(sw.n_mixtures, center, natural, sw.concentration, sw.seed)
    proxy = study.swarm_steps(steps)
    return [
        _spec("swarm", "swarm", "fixed", seed, {"weights": [float(x) for x in w]}, proxy)
        for seed in study.swarm_seeds
        for w in mixtures
    ]


def fit_swarm_results(study: Study, results_uri: str, corpus: Any) -> dict[str, Any]:
    """Fit the swarm's regression on its completed trials (the metric averaged over seeds per
    mixture), propose the best static mixture, and save both with the regression's quality to
    ``swarm.json``. Returns what was saved."""
    sw = study.swarm
    assert sw is not None
    trials = read_results(results_uri, with_steps=False).trials
    done = trials[(trials.phase == "swarm") & (trials.status == "completed")]
    done = done[np.isfinite(done[study.metric].astype(float))]
    by_mix = done.groupby("config_id").agg(metric=(study.metric, "mean"), w=("hp_weights", "first"))
    weights = np.array([json.loads(w) if isinstance(w, str) else list(w) for w in by_mix.w])
    metric = by_mix.metric.to_numpy(dtype=np.float64)
    fit = fit_swarm(weights, metric, kind=sw.regression, folds=sw.folds, seed=sw.seed)
    natural = np.asarray(corpus.natural_weights(), dtype=np.float64)
    center = natural if sw.center == "natural" else np.full(natural.size, 1.0 / natural.size)
    lower = study.mode == "min"
    best = propose_mixture(
        fit, center, sw.concentration, sw.candidates, sw.top_k, sw.seed, lower_is_better=lower
    )
    top = weights[int(np.argmin(metric) if lower else np.argmax(metric))]
    out = {
        "regression": sw.regression,
        "cv_spearman": fit.cv_spearman,
        "folds": fit.folds,
        "n_mixtures": fit.n,
        "swarm_tokens": int(done.tokens_seen.sum()),
        "swarm_eval_tokens": int(done.eval_tokens.fillna(0).sum()),
        "swarm_best": [float(x) for x in best],
        "swarm_top": [float(x) for x in top / top.sum()],
    }
    storage.write_text_atomic(storage.join(results_uri, SWARM_FILE), json.dumps(out, indent=1))
    return out


def _confirm_specs(
    study: Study,
    steps: int,
    configs: dict[str, list[dict[str, Any]]],
    swarm: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    specs = [
        _spec("confirm", t.arm, study.arm(t.arm).policy, t.seed, t.policy_options, None)
        for t in study.confirm_trials(configs, steps)
    ]
    if swarm is not None:  # the swarm's mixtures, confirmed like every arm
        for seed in study.seeds:
            for label in SWARM_ARMS:
                specs.append(
                    _spec("confirm", label, "fixed", seed, {"weights": swarm[label]}, None)
                )
    return specs


def study_meta(study: Study, corpus: Any, steps: int) -> dict[str, Any]:
    """What meta.json records of a study besides its file: the run's shape, every arm's policy
    (the swarm's too) and the search space of each arm the search phase tunes."""
    return {
        "seq_len": int(corpus.seq_len),
        "total_steps": steps,
        "domains": list(corpus.domains),
        "arms": {
            **{label: arm.policy for label, arm in study.arms.items()},
            **({lb: "fixed" for lb in SWARM_ARMS} if study.swarm is not None else {}),
        },
        "search_spaces": {
            label: {k: v.to_dict() for k, v in study.search_space(label).items()}
            for label in study.searched_arms()
        },
    }


def _pending(specs: list[dict[str, Any]], done: set[str]) -> list[dict[str, Any]]:
    return [sp for sp in specs if sp["trial_name"] not in done]


def run_sweep(
    study: Study | str,
    storage_uri: str | None = None,
    resume: bool = False,
    address: str | None = None,
    announce: Callable[[str], None] | None = None,
    checked: SweepPreflight | None = None,
    progress_out: IO[str] | None = None,
) -> str:
    """Run (or, with ``resume``, continue) a whole study; returns its results URI.

    Everything is checked before Ray starts (:func:`~ado_ray.preflight.prepare_sweep`; pass its
    result as ``checked`` when the caller already ran it). ``announce`` is given the study's plan
    (text) once it is checked. Raises :class:`StudyInterrupted` on a signal and
    :class:`StudyIncomplete` when some planned trials did not finish. ``progress_out``: where
    the progress lines go (see :mod:`ado_ray.distributed.progress`); None shows none."""
    if checked is None:
        checked = prepare_sweep(load_study(study), storage_uri, resume, address)
    study, results_uri = checked.study, checked.results_uri
    corpus, steps = checked.corpus, checked.steps
    if announce is not None:
        announce(checked.plan.text())
    resources = init_ray(address)
    # Frees a stopped trial's placement group; this frame's handle keeps it for the sweep.
    janitor_handle, janitor = start_janitor()  # noqa: F841
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
    writer.write_meta(dump_study(study), __version__, extra=study_meta(study, corpus, steps))
    ray_storage = storage.join(results_uri, "ray")
    planned: list[str] = []
    callbacks: list[Any] = []
    progress = None
    if progress_out is not None:
        per_phase: dict[str, int] = {}
        for p in checked.plan.phases:
            per_phase[p.phase] = per_phase.get(p.phase, 0) + p.trials
        namer = TrialNamer(study.to_dict())

        def describe(config: dict[str, Any]) -> tuple[str, str, int]:
            phase, label, trial_steps = namer.describe(config)
            return phase, label, int(trial_steps or steps)

        progress = StudyProgress(per_phase, describe, study.metric, progress_out)
        callbacks.append(progress)
    try:
        return _run_phases(
            study,
            checked,
            results_uri,
            ray_storage,
            writer,
            conc,
            resume,
            callbacks,
            planned,
            # Built once for every phase (it ships the study to the object store once).
            _trainable(study, results_uri, ray_storage, janitor),
        )
    finally:
        if progress is not None:
            progress.close()


def _run_phases(
    study: Study,
    checked: SweepPreflight,
    results_uri: str,
    ray_storage: str,
    writer: ResultsWriter,
    conc: int,
    resume: bool,
    callbacks: list[Any],
    planned: list[str],
    trainable: Any,
) -> str:
    corpus, steps = checked.corpus, checked.steps
    with StopSignals() as stop:
        run = _Phases(
            study, results_uri, ray_storage, steps, conc, resume, stop, callbacks, trainable
        )

        def run_specs(specs: list[dict[str, Any]], phase: str) -> None:
            """Plan ``specs`` and run those not recorded yet as one grid experiment."""
            planned.extend(sp["trial_name"] for sp in specs)
            todo = _pending(specs, writer.finished_trial_ids())
            if todo:
                _run_grid(run, todo, phase)
            else:
                log.info("%s phase: every trial is already recorded", phase)
            writer.merge()
            stop.check(results_uri)

        swarm = None
        if study.swarm is not None:
            specs = swarm_specs(study, corpus, steps)
            run_specs(specs, "swarm")
            # Fitted on all the swarm's trials or not yet: a fit on some of them would propose
            # another mixture than the resumed study's, and both would stay in the results.
            lost = {sp["trial_name"] for sp in specs} - writer.finished_trial_ids()
            if lost:
                log.warning(
                    "swarm: %d of its %d trials did not finish; its mixtures are fitted and "
                    "confirmed once --resume has run them",
                    len(lost),
                    len(specs),
                )
            else:
                swarm = fit_swarm_results(study, results_uri, corpus)
        for label in study.searched_arms():
            if not storage.exists(storage.join(results_uri, _search_done(label))):
                _run_search(run, label)
                writer.merge()
                stop.check(results_uri)
        run_specs(_confirm_specs(study, steps, best_configs(study, results_uri), swarm), "confirm")
    finished = _finished_trials(study, results_uri, planned)
    total = len(planned) + sum(study.num_samples(label) for label in study.searched_arms())
    if finished < total:
        raise StudyIncomplete(finished, total, results_uri)
    return results_uri


def _finished_trials(study: Study, results_uri: str, names: list[str]) -> int:
    """Planned trials that finished: search trials up to each arm's budget, and the swarm's
    and confirm phase's trials by name. A search's trials are final once it ends, interrupted
    ones too (Train has retried them, and Optuna has moved on: a lost sample)."""
    trials = read_results(results_uri, with_steps=False).trials
    search = trials[
        (trials.phase == "search") & trials.status.isin(sorted(SEARCH_FINAL_STATUSES))
    ]
    done = trials[trials.status.isin(sorted(FINISHED_STATUSES))]
    count = sum(
        min(int((search.arm == label).sum()), study.num_samples(label))
        for label in study.searched_arms()
    )
    return count + int(done.trial_id.isin(names).sum())
