"""One trial under Ray Train: a ``TorchTrainer`` running the plain loop on N workers.

The trial's driver (a Tune function trainable, or the ``ado-ray train`` process) calls
:func:`run_trial`. It creates the mixture actor, runs ``TorchTrainer.fit()``, and returns the
trial's record from the actor. Workers checkpoint the model, optimiser, scheduler, sampler and the
actor's state through ``ray.train.report``; after a worker failure (``FailureConfig``) or a Tune
restore they resume from the last checkpoint with the weights and batches they would have had.
See ``docs/architecture.md`` for how the driver, the workers and the mixture actor fit together.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch

from ado_ray import storage
from ado_ray.data import load_corpus
from ado_ray.distributed.actor import NAMESPACE, RayMixture, actor_name, create_mixture_actor
from ado_ray.distributed.janitor import cleaner_callback
from ado_ray.distributed.relay import ReportRelay, fit_relaying
from ado_ray.distributed.torch_backend import TorchConfig
from ado_ray.policies import make_policy, register_policy, registered_policies
from ado_ray.train.config import TrainConfig, resolve_policy_options
from ado_ray.train.mixture import history_from_state

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"
MIXTURE_FILE = "mixture.pt"


class TrialFailed(RuntimeError):
    """A trial that failed past its retries; ``partial`` holds the record it had so far.
    ``infrastructure``: the cause was a lost worker, actor or node, not the trial's own
    error, so the trial is worth running again (from its checkpoint) on ``--resume``."""

    def __init__(self, message: str, partial: dict[str, Any], infrastructure: bool = False):
        super().__init__(message)
        self.partial = partial
        self.infrastructure = infrastructure

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray pickles a Tune trial's exception to the driver; the default rebuilds it from the
        # message alone, which fails on the required ``partial``.
        return (type(self), (str(self), self.partial, self.infrastructure))


try:
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback as _DatasetsCallback
except ImportError:  # another Ray: its default callbacks are left as they are
    _DatasetsCallback = None


class TorchTrainer(ray.train.torch.TorchTrainer):
    """Ray Train's ``TorchTrainer``, less two processes per run that our runs do not need, and
    with a :class:`~ado_ray.distributed.torch_backend.TorchConfig` that keeps torch out of
    Train's controller.

    - Ray Train 2.60 adds a ``DatasetsCallback`` to every run, which starts a ``DatasetManager``
      actor and ships a Ray Data context to each worker, before the workers may start the
      training function. Our runs feed their batches from the mixture sampler, never from Ray
      Data, so a run without ``datasets`` leaves that callback out.
    - Ray's placement-group cleaner, a detached actor per run, gives way to the sweep's one
      janitor, or to none when the job's own driver runs the trial
      (:func:`~ado_ray.distributed.janitor.cleaner_callback`).

    ``_create_default_callbacks`` is a private method of Ray's; should it change, the trainer
    keeps whatever Ray builds."""

    def __init__(
        self, *args: Any, torch_config: Any = None, janitor: str | None = None, **kwargs: Any
    ):
        self.janitor = janitor  # the name of the sweep's placement-group janitor, if any
        super().__init__(*args, torch_config=torch_config or TorchConfig(), **kwargs)

    def _create_default_callbacks(self) -> list[Any]:
        callbacks = cleaner_callback(super()._create_default_callbacks(), self.janitor)
        if getattr(self, "datasets", None) or _DatasetsCallback is None:
            return callbacks
        return [cb for cb in callbacks if not isinstance(cb, _DatasetsCallback)]


DIVERGED = "diverged"  # the summary key a worker sets when the loss went non-finite


@dataclass
class Placement:
    """The worker group of one trial."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 1

    def scaling_config(self) -> ray.train.ScalingConfig:
        resources: dict[str, float] = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources["GPU"] = self.gpus_per_worker or 1.0
        return ray.train.ScalingConfig(
            num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=resources
        )


class _TracedMixture(RayMixture):
    """The actor's client, logging the weights this rank uses, for checking ranks agree."""

    def __init__(self, actor: Any, rank: int, lag: int, path: Path):
        super().__init__(actor, rank, lag=lag)
        self.path = path

    def weights(self, step: int) -> Any:
        w = super().weights(step)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "weights": w.tolist()}) + "\n")
        return w


def _load_state(checkpoint: ray.train.Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as path:
        return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs."""
    started = time.perf_counter()  # the loop's import counts as the trial's start-up
    # Imported here: the loop pulls in transformers, which the trial's driver does not need.
    from ado_ray.train.loop import Runtime, run_training

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    for name, cls in (config.get("policies") or {}).items():  # the driver's registrations
        register_policy(name, cls, replace=True)
    cfg = TrainConfig.from_dict(config["train"])
    actor = ray.get_actor(config["actor_name"], namespace=NAMESPACE)
    state = _load_state(ray.train.get_checkpoint())

    def report(metrics: dict[str, Any], ckpt_state: dict[str, Any] | None) -> None:
        if ckpt_state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(ckpt_state, Path(tmp) / STATE_FILE)
            # The history alone as well: small, for reading a stopped trial's record.
            torch.save(ckpt_state.get("mixture"), Path(tmp) / MIXTURE_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    on_step = None
    crash = config.get("crash_at_step")
    if crash is not None:
        marker = Path(config["crash_marker"])

        def on_step(step: int) -> None:
            # Fault injection for the tests: one worker dies once, mid-run.
            if step == crash and rank == world - 1 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)

    lag = cfg.training.mixture_lag
    trace_dir = config.get("trace_dir")
    if trace_dir:
        # Diagnostics: every rank appends (step, weights) as it uses them.
        mixture: RayMixture = _TracedMixture(
            actor, rank, lag, Path(trace_dir) / f"rank{rank}.jsonl"
        )
    else:
        mixture = RayMixture(actor, rank, lag=lag)
    runtime = Runtime(
        rank=rank,
        world_size=world,
        device=ray.train.torch.get_device(),
        prepare_model=ray.train.torch.prepare_model if world > 1 else None,
        report=report,
        resume_state=state,
        on_step=on_step,
        started_at=started,
    )
    try:
        run_training(cfg, mixture=mixture, runtime=runtime)
    except FloatingPointError as exc:
        # Divergence is deterministic: a retry from the last checkpoint would replay the same
        # steps into the same NaN. End the run cleanly (every rank sees the all-reduced NaN at
        # the same step) and let the driver record the trial as failed.
        if rank == 0:
            mixture.set_summary({DIVERGED: f"{type(exc).__name__}: {exc}"})


def run_trial(
    cfg: TrainConfig,
    trial_name: str,
    storage_path: str,
    placement: Placement | None = None,
    callbacks: list[Any] | None = None,
    corpus: Any | None = None,
    crash_at_step: int | None = None,
    crash_marker: str | None = None,
    trace_dir: str | None = None,
    on_report: Callable[[dict[str, Any]], None] | None = None,
    janitor: str | None = None,
) -> dict[str, Any]:
    """Run one trial on Ray Train and return its record (steps, evals, summary, options).

    ``on_report`` is given the metrics of each of the run's reports (one per evaluation round),
    in the calling thread, while the run goes on (the sweep passes ``tune.report``, holding
    back the last round until the trial is recorded).

    ``janitor``: the name of the sweep's placement-group janitor, which frees the run's
    placement group should its driver be killed (:mod:`ado_ray.distributed.janitor`).

    Raises ``ray.train.TrainingFailedError`` (or the loop's own error) when the run fails past
    its retries. The Train run is named ``train-{trial_name}`` under ``storage_path``, so a
    restarted driver finds its checkpoints.
    """
    placement = placement or Placement()
    corpus = corpus if corpus is not None else load_corpus(cfg.data.source, **cfg.data.options)
    options = resolve_policy_options(cfg, corpus)
    # A bad option fails here, in the driver, before any process is started for the trial. The
    # actor then starts while Ray Train starts its controller and workers: nobody waits on it.
    make_policy(cfg.policy, corpus.num_domains, **options)
    actor = create_mixture_actor(
        trial_name,
        cfg.policy,
        corpus.num_domains,
        options,
        cfg.training.mixture_lag,
        num_workers=placement.num_workers,
    )
    backend = "nccl" if placement.use_gpu else "gloo"
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": cfg.to_dict(),
            "actor_name": actor_name(trial_name),
            # A policy registered in this process only (not installed) must reach the workers,
            # which ask it for their sampler and evaluation schedule.
            "policies": {n: c for n, c in registered_policies().items() if n == cfg.policy},
            "crash_at_step": crash_at_step,
            "crash_marker": crash_marker,
            "trace_dir": trace_dir,
        },
        torch_config=TorchConfig(backend=backend),
        scaling_config=placement.scaling_config(),
        janitor=janitor,
        run_config=ray.train.RunConfig(
            name=f"train-{trial_name}",
            storage_path=storage.normalize(storage_path),
            failure_config=ray.train.FailureConfig(max_failures=placement.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[*(callbacks or []), *([ReportRelay(actor)] if on_report else [])],
        ),
    )
    failure: BaseException | None = None
    try:
        if on_report is None:
            trainer.fit()
        else:
            fit_relaying(trainer, actor, on_report)
    except Exception as exc:  # TrainingFailedError wraps the worker's own exception
        failure = exc
    record = ray.get(actor.export.remote())
    record["domains"] = list(corpus.domains)
    record["entropy_rate"] = list(corpus.entropy_rate)
    record["seq_len"] = int(corpus.seq_len)
    # The driver's handles (its own, and the trainer's report relay) were the actor's only
    # owners: the actor goes with them.
    del trainer, actor
    if failure is not None:
        raise TrialFailed(
            describe_failure(failure), record, infrastructure=is_infrastructure(failure)
        ) from failure
    diverged = (record.get("summary") or {}).pop(DIVERGED, None)
    if diverged is not None:
        raise TrialFailed(diverged, record)
    return record


def root_cause(exc: BaseException) -> BaseException:
    """The root cause of a Train failure: the failing worker's own exception.

    Train V2 raises ``WorkerGroupError`` (the workers' exceptions in ``worker_failures``, by
    rank) or ``ControllerError`` (``controller_failure``); a worker's exception arrives as a
    ``RayTaskError`` whose ``cause`` is the original, and a worker process that died as a
    ``WorkerHealthCheckFailedError`` whose ``health_check_failure`` is the ``ActorDiedError``."""
    cause: BaseException = exc
    for _ in range(16):  # a chain, not a cycle; bounded anyway
        failures = getattr(cause, "worker_failures", None)
        if failures:
            nxt = failures[min(failures)]
        else:
            nxt = (
                getattr(cause, "controller_failure", None)
                or getattr(cause, "health_check_failure", None)
                or getattr(cause, "cause", None)
            )
        if not isinstance(nxt, BaseException):
            nxt = cause.__cause__
        if nxt is None or nxt is cause:
            break
        cause = nxt
    return cause


#: Root causes that are the cluster's doing, not the trial's: a worker process or its node died.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
)


def is_infrastructure(exc: BaseException) -> bool:
    """Whether a Train failure's root cause is a lost worker, actor or node."""
    return isinstance(root_cause(exc), INFRASTRUCTURE_ERRORS)


def describe_failure(exc: BaseException) -> str:
    """The root cause of a Train failure, in one line (see :func:`root_cause`)."""
    cause = root_cause(exc)
    text = str(cause).strip()
    head = text.splitlines()[0] if text else ""
    return f"{type(cause).__name__}: {head}" if head else type(cause).__name__


def history_from_checkpoint(storage_path: str, trial_name: str) -> dict[str, Any] | None:
    """The history (``steps``, ``evals``, ``summary``) saved in a trial's last Train checkpoint,
    or None without one. For trials stopped from outside (an ASHA prune stops the driver, and
    the actor that held the live history goes with it)."""
    root = storage.join(storage.normalize(storage_path), f"train-{trial_name}")
    if not storage.exists(root):
        return None
    names = sorted(n for n in storage.listdir(root) if n.startswith("checkpoint_"))
    for name in reversed(names):  # the newest first; one cut off mid-write has no state file
        uri = storage.join(root, name, MIXTURE_FILE)
        if not storage.exists(uri):
            continue
        try:
            mixture = torch.load(io.BytesIO(storage.read_bytes(uri)), weights_only=False)
        except Exception as exc:  # noqa: BLE001 - cut off mid-copy: try the one before
            log.warning("skipping unreadable checkpoint %s: %s", uri, exc)
            continue
        return None if mixture is None else history_from_state(mixture)
    return None
