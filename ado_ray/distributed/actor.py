"""The per-trial mixture actor: a :class:`MixtureController` behind a Ray actor.

One actor per trial, named ``ado-{trial}`` in the ``ado-ray`` namespace, so every Train worker
finds it with ``ray.get_actor``. The trial's driver creates it with ``num_cpus=0`` and keeps the
handle for the whole ``fit()``. It is not detached: it shares the trial's fate, and goes when the
driver does (see ``docs/architecture.md``).

Events (step observations and, for a policy that takes them, held-out evaluations) are applied
by a background thread as soon as they arrive, so a refit overlaps training; a request for step
``t``'s weights waits only until the events up to step ``t - lag`` are applied. Calls to a
threaded actor may run in any order, so events go through a small reorder buffer: the
observation of step ``t`` by step, and the evaluation after ``d`` steps before the observation
of step ``d``. The client sends an evaluation synchronously, so it is always in the buffer
before the next step's observation is sent.

The actor is also the trial's mailbox for Ray Train's reports: the controller posts each one
(:class:`~ado_ray.distributed.relay.ReportRelay`) and the trial's driver, blocked on
:meth:`MixtureService.take_reports`, passes it on to Tune. One call per report, where Tune's own
relay adds an actor per trial that the driver polls five times a second.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import ray

from ado_ray.policies import MixturePolicy, make_policy, register_policy, registered_policies
from ado_ray.train.mixture import MixtureController

NAMESPACE = "ado-ray"
WAIT_TIMEOUT_S = 600.0


def actor_name(trial_name: str) -> str:
    return f"ado-{trial_name}"


class MixtureService:
    """The thread-safe core of the actor; plain Python, so it is testable without Ray."""

    def __init__(
        self,
        policy: str,
        num_domains: int,
        options: dict[str, Any],
        lag: int,
        policies: dict[str, type[MixturePolicy]] | None = None,
    ):
        for name, cls in (policies or {}).items():  # the driver's in-process registrations
            register_policy(name, cls, replace=True)
        self._spec = (policy, num_domains, dict(options), lag)
        self._cond = threading.Condition()
        self._inbox: dict[int, tuple[Any, Any, bool]] = {}  # step -> observation
        self._eval_inbox: dict[int, Any] = {}  # steps done -> val losses
        self._reset()
        self._mail = threading.Condition()  # Train's reports: not behind the policy's lock
        self._reports: list[dict[str, Any]] = []
        self._reports_ended = False
        self._worker = threading.Thread(target=self._drain, daemon=True)
        self._worker.start()

    def _reset(self) -> None:
        policy, k, options, lag = self._spec
        self.ctl = MixtureController(make_policy(policy, k, **options), lag=lag)
        self._inbox.clear()
        self._eval_inbox.clear()

    def reset(self) -> None:
        """Back to the untrained state: a run that restarts from step 0 without a checkpoint."""
        with self._cond:
            self._reset()
            self._cond.notify_all()

    def observe(self, step: int, counts: Any, losses: Any, eval_follows: bool = False) -> None:
        with self._cond:
            if step > self.ctl.last_received:
                self._inbox[int(step)] = (counts, losses, bool(eval_follows))
            self._deliver()
            self._cond.notify_all()

    def observe_eval(self, step: int, val_losses: Any) -> None:
        with self._cond:
            if step > self.ctl.last_eval:
                self._eval_inbox[int(step)] = val_losses
            self._deliver()
            self._cond.notify_all()

    def _deliver(self) -> None:
        """Hand the controller every buffered event that is next in order."""
        ctl = self.ctl
        stale = ctl.last_eval if ctl.feedback else ctl.last_received
        for old in [d for d in self._eval_inbox if d <= stale]:
            del self._eval_inbox[old]  # replays (or, without feedback, nothing to wait for)
        while True:
            nxt = ctl.last_received + 1
            if nxt in self._eval_inbox:  # the evaluation after nxt steps comes before step nxt
                ctl.observe_eval(nxt, self._eval_inbox.pop(nxt))
            elif nxt in self._inbox:
                ctl.observe(nxt, *self._inbox.pop(nxt))
            else:
                return

    def _drain(self) -> None:
        # Apply events eagerly, one step at a time, so refits overlap training.
        while True:
            with self._cond:
                while not self.ctl.process(upto=self.ctl.last_observed + 1):
                    self._cond.wait()
                self._cond.notify_all()

    def weights_for(self, step: int) -> np.ndarray:
        with self._cond:
            source = step - self.ctl.lag
            ok = self._cond.wait_for(
                lambda: self.ctl.received_through() >= source, timeout=WAIT_TIMEOUT_S
            )
            if not ok:
                raise TimeoutError(
                    f"the weights of step {step} need the events up to step {source}, but "
                    f"only those up to step {self.ctl.received_through()} arrived in "
                    f"{WAIT_TIMEOUT_S} s"
                )
            return self.ctl.weights_for(step)

    def observe_then_weights(
        self, step: int, counts: Any, losses: Any, eval_follows: bool, upcoming: int
    ) -> np.ndarray:
        """Step ``step``'s observation, then the weights of step ``upcoming``: a lead worker's
        one call per step (half the calls of an observation and a request apart)."""
        self.observe(step, counts, losses, eval_follows)
        return self.weights_for(upcoming)

    def record_eval(self, row: dict[str, Any]) -> None:
        with self._cond:
            self.ctl.record_eval(row)

    def set_summary(self, summary: dict[str, Any]) -> None:
        with self._cond:
            self.ctl.set_summary(summary)

    def state_dict(self) -> dict[str, Any]:
        with self._cond:
            return self.ctl.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self._cond:
            self._inbox.clear()
            self._eval_inbox.clear()
            self.ctl.load_state_dict(state)
            self._cond.notify_all()

    def export(self) -> dict[str, Any]:
        with self._cond:
            return self.ctl.export()

    def last_observed(self) -> int:
        with self._cond:
            return self.ctl.last_observed

    def post_report(self, metrics: dict[str, Any]) -> None:
        """A report of Ray Train's controller, for the trial's driver."""
        with self._mail:
            self._reports.append(metrics)
            self._mail.notify_all()

    def end_reports(self) -> None:
        """The run is over: no report follows."""
        with self._mail:
            self._reports_ended = True
            self._mail.notify_all()

    def take_reports(self, timeout: float) -> tuple[list[dict[str, Any]], bool]:
        """The reports posted since the last call, waiting up to ``timeout`` seconds for one,
        and whether the run is over (then nothing follows them)."""
        with self._mail:
            self._mail.wait_for(lambda: self._reports or self._reports_ended, timeout=timeout)
            out, self._reports = self._reports, []
            return out, self._reports_ended


MixtureActor = ray.remote(num_cpus=0)(MixtureService)


def create_mixture_actor(
    trial_name: str,
    policy: str,
    num_domains: int,
    options: dict[str, Any],
    lag: int,
    num_workers: int = 1,
) -> Any:
    """Create (or find, after a driver restart) the trial's actor. A policy registered in this
    process (:func:`ado_ray.policies.register_policy`) is registered in the actor's too."""
    shipped = {n: c for n, c in registered_policies().items() if n == policy}
    # Each worker may hold lag + 1 waiting weight requests; leave threads for observations too.
    return MixtureActor.options(
        name=actor_name(trial_name),
        namespace=NAMESPACE,
        get_if_exists=True,
        max_concurrency=(lag + 3) * num_workers + 8,
    ).remote(policy, num_domains, options, lag, shipped)


class RayMixture:
    """The workers' :class:`~ado_ray.train.mixture.MixtureClient` of the actor.

    Every rank asks the actor for the weights of each step: they are a pure function of the
    step, so all ranks get the same ones without a broadcast. The weights of step ``t + lag``
    depend only on the events up to step ``t``, so they are requested as soon as step ``t`` is
    done: with ``lag >= 2`` the answer is in hand before it is needed, and a worker waits on
    the actor only when the actor falls behind.
    """

    def __init__(self, actor: Any, rank: int = 0, lag: int = 1):
        self.actor = actor
        self.rank = rank
        self.lag = int(lag)
        self._prefetch: dict[int, Any] = {}
        self._sent: list[Any] = []  # observe/record_eval calls not yet known to have landed

    def weights(self, step: int) -> np.ndarray:
        ref = self._prefetch.pop(step, None)
        if ref is None:
            ref = self.actor.weights_for.remote(step)
        for old in [s for s in self._prefetch if s < step]:
            del self._prefetch[old]  # a replay after a restore: those answers are not needed
        return np.asarray(ray.get(ref), dtype=np.float64)

    def observe(self, step: int, counts: Any, losses: Any, eval_follows: bool = False) -> None:
        """Send step ``step``'s observation, with the request for the weights of step
        ``step + lag`` (which need it) in the same call."""
        args = (int(step), np.asarray(counts), np.asarray(losses), bool(eval_follows))
        upcoming = step + self.lag
        self._ask(range(step + 1, upcoming))  # normally asked already
        if upcoming in self._prefetch:
            self._track(self.actor.observe.remote(*args))
            return
        ref = self.actor.observe_then_weights.remote(*args, upcoming)
        self._prefetch[upcoming] = ref
        self._track(ref)

    def observe_eval(self, step: int, val_losses: Any) -> None:
        """Synchronous: the evaluation after ``step`` steps is in the actor's buffer before the
        observation of step ``step`` is sent (one round trip per evaluation)."""
        ray.get(self.actor.observe_eval.remote(int(step), np.asarray(val_losses)))

    def prefetch(self, step: int) -> None:
        """Request the weights of steps ``step .. step + lag - 1`` (those not yet requested):
        called after step ``step - 1``, whose events are all the last of them needs."""
        self._ask(range(step, step + self.lag))

    def _ask(self, steps: range) -> None:
        for s in steps:
            if s not in self._prefetch:
                self._prefetch[s] = self.actor.weights_for.remote(s)

    def reset(self) -> None:
        self._prefetch.clear()
        ray.get(self.actor.reset.remote())

    def record_eval(self, row: dict[str, Any]) -> None:
        self._track(self.actor.record_eval.remote(row))

    def _track(self, ref: Any) -> None:
        self._sent.append(ref)
        if len(self._sent) >= 256:  # forget the calls that have landed; keep the list short
            _, self._sent = ray.wait(self._sent, num_returns=len(self._sent), timeout=0)

    def _sync(self) -> None:
        """Wait until every observation and evaluation sent has landed. A threaded actor runs
        calls in any order: without this, a checkpoint's state could miss its own step, and a
        run resumed from it would never send that step again."""
        if self._sent:
            ray.get(self._sent)
            self._sent.clear()

    def set_summary(self, summary: dict[str, Any]) -> None:
        self._sync()
        ray.get(self.actor.set_summary.remote(summary))

    def state_dict(self) -> dict[str, Any]:
        self._sync()
        return ray.get(self.actor.state_dict.remote())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._prefetch.clear()
        ray.get(self.actor.load_state_dict.remote(state))

    def export(self) -> dict[str, Any]:
        self._sync()
        return ray.get(self.actor.export.remote())
