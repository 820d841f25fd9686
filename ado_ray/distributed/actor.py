"""The per-trial mixture actor: a :class:`MixtureController` behind a Ray actor.

One actor per trial, named ``ado-{trial}`` in the ``ado-ray`` namespace, so every Train worker
finds it with ``ray.get_actor``. The trial's driver creates it (``num_cpus=0``, not detached:
RAY_NOTES.md) and keeps the handle for the whole ``fit()``, so the actor shares the trial's fate.

Observations are applied by a background thread as soon as they arrive, so a refit overlaps
training; a request for step ``t``'s weights waits only until the observations up to
``t - lag`` are applied. Calls to a threaded actor may run out of order, so observations go
through a small reorder buffer keyed by step.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import ray

from ado_ray.policies import make_policy
from ado_ray.train.mixture import MixtureController

NAMESPACE = "ado-ray"
WAIT_TIMEOUT_S = 600.0


def actor_name(trial_name: str) -> str:
    return f"ado-{trial_name}"


class MixtureService:
    """The thread-safe core of the actor; plain Python, so it is testable without Ray."""

    def __init__(self, policy: str, num_domains: int, options: dict[str, Any], lag: int):
        self._spec = (policy, num_domains, dict(options), lag)
        self._cond = threading.Condition()
        self._inbox: dict[int, tuple[Any, Any]] = {}
        self._reset()
        self._worker = threading.Thread(target=self._drain, daemon=True)
        self._worker.start()

    def _reset(self) -> None:
        policy, k, options, lag = self._spec
        self.ctl = MixtureController(make_policy(policy, k, **options), lag=lag)
        self._inbox.clear()

    def reset(self) -> None:
        """Back to the untrained state: a run that restarts from step 0 without a checkpoint."""
        with self._cond:
            self._reset()
            self._cond.notify_all()

    def observe(self, step: int, counts: Any, losses: Any) -> None:
        with self._cond:
            if step > self.ctl.last_received:
                self._inbox[int(step)] = (counts, losses)
            while self.ctl.last_received + 1 in self._inbox:
                nxt = self.ctl.last_received + 1
                self.ctl.observe(nxt, *self._inbox.pop(nxt))
            self._cond.notify_all()

    def _drain(self) -> None:
        # Apply observations eagerly, one at a time, so refits overlap training.
        while True:
            with self._cond:
                while not self.ctl.process(upto=self.ctl.last_observed + 1):
                    self._cond.wait()
                self._cond.notify_all()

    def weights_for(self, step: int) -> np.ndarray:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self.ctl.last_received >= step - self.ctl.lag, timeout=WAIT_TIMEOUT_S
            )
            if not ok:
                raise TimeoutError(
                    f"the weights of step {step} need observations up to step "
                    f"{step - self.ctl.lag}, but none after step {self.ctl.last_received} "
                    f"arrived in {WAIT_TIMEOUT_S} s"
                )
            return self.ctl.weights_for(step)

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
            self.ctl.load_state_dict(state)
            self._cond.notify_all()

    def export(self) -> dict[str, Any]:
        with self._cond:
            return self.ctl.export()

    def last_observed(self) -> int:
        with self._cond:
            return self.ctl.last_observed


MixtureActor = ray.remote(num_cpus=0)(MixtureService)


def create_mixture_actor(
    trial_name: str,
    policy: str,
    num_domains: int,
    options: dict[str, Any],
    lag: int,
    num_workers: int = 1,
) -> Any:
    """Create (or find, after a driver restart) the trial's actor."""
    # Each worker may hold lag + 1 waiting weight requests; leave threads for observations too.
    return MixtureActor.options(
        name=actor_name(trial_name),
        namespace=NAMESPACE,
        get_if_exists=True,
        max_concurrency=(lag + 3) * num_workers + 8,
    ).remote(policy, num_domains, options, lag)


class RayMixture:
    """The workers' client of the actor, with the methods of ``LocalMixture``.

    Every rank asks the actor for the weights of each step: they are a pure function of the
    step, so all ranks get the same ones without a broadcast. The weights of step ``t + lag``
    depend only on observations up to ``t``, so they are requested as soon as step ``t`` is
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

    def observe(self, step: int, counts: Any, losses: Any) -> None:
        self._track(self.actor.observe.remote(int(step), np.asarray(counts), np.asarray(losses)))
        self.prefetch(step + 1)

    def prefetch(self, step: int) -> None:
        """Request the weights of steps ``step .. step + lag - 1`` (those not yet requested):
        called after step ``step - 1``, whose observation is all the last of them needs."""
        for s in range(step, step + self.lag):
            if s not in self._prefetch:
                self._prefetch[s] = self.actor.weights_for.remote(s)

    def reset(self) -> None:
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
        ray.get(self.actor.load_state_dict.remote(state))

    def export(self) -> dict[str, Any]:
        self._sync()
        return ray.get(self.actor.export.remote())
