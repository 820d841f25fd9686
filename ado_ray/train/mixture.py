"""The mixture controller: a policy behind a fixed step lag, plus the trial's history.

The weights used at step ``t`` are the policy's weights after it has observed steps
``0 .. t - lag`` (before any observation for ``t < lag``). They are a pure function of the
observations, so a run is reproducible however long a refit takes: the Ray actor
(:mod:`ado_ray.distributed.actor`) applies observations in a background thread, and a worker
waits only when the actor is more than ``lag`` steps behind. In plain Python,
:class:`LocalMixture` applies them in-line.

The controller is also the trial's record keeper: per step the weights used, the counts and the
per-domain train losses, the fitted laws at each refit, the evaluations and a summary. It all goes
into checkpoints, so a resumed or restored trial keeps a complete, de-duplicated history.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ado_ray.policies import MixturePolicy


class MixtureController:
    """A policy, the step lag and the history. Not thread-safe; see ``ado_ray.distributed``."""

    def __init__(self, policy: MixturePolicy, lag: int = 1):
        if int(lag) < 1:
            raise ValueError(f"training.mixture_lag={lag} is out of range: allowed >= 1")
        self.policy = policy
        self.lag = int(lag)
        self.num_domains = policy.num_domains
        self._initial = np.array(policy.weights(), dtype=np.float64)
        self._after: dict[int, np.ndarray] = {}  # step -> weights after observing that step
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.last_observed = -1  # the last step handed to the policy
        self.last_received = -1  # the last step received (pending or applied)
        self._hist: dict[str, list] = {"step": [], "weights": [], "counts": [], "train_loss": []}
        self._laws: dict[int, np.ndarray] = {}
        self.evals: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}

    # -- observations ---------------------------------------------------------------------
    def observe(self, step: int, counts: Any, losses: Any) -> bool:
        """Queue step ``step``'s statistics. Steps already received are ignored (replays after
        a worker restart); returns whether the step was taken."""
        step = int(step)
        if step <= self.last_received:
            return False
        if step != self.last_received + 1:
            raise ValueError(
                f"observations must arrive in order: got step {step} after {self.last_received}"
            )
        # Copies: callers may reuse their buffers for the next step.
        counts = np.array(counts, dtype=np.float64).reshape(-1)
        losses = np.array(losses, dtype=np.float64).reshape(-1)
        self._pending.append((step, counts, losses))
        self.last_received = step
        return True

    def process(self, upto: int | None = None) -> int:
        """Hand queued observations with step <= ``upto`` (all if None) to the policy."""
        done = 0
        while self._pending and (upto is None or self._pending[0][0] <= upto):
            step, counts, losses = self._pending.pop(0)
            self._apply(step, counts, losses)
            done += 1
        return done

    def _apply(self, step: int, counts: np.ndarray, losses: np.ndarray) -> None:
        used = self._weights_at(step)
        self.policy.observe(step, counts, losses)
        self.last_observed = step
        self._after[step] = np.array(self.policy.weights(), dtype=np.float64)
        # Keep only what a step still to come may need.
        for old in [s for s in self._after if s < step - self.lag - 64]:
            del self._after[old]
        h = self._hist
        h["step"].append(step)
        h["weights"].append(used)
        h["counts"].append(counts)
        h["train_loss"].append(np.where(counts > 0, losses, np.nan))
        if self.policy.last_fit_step == step:
            laws = self.policy.fitted_laws()
            if laws is not None:
                self._laws[step] = np.array(laws, dtype=np.float64)

    # -- weights ----------------------------------------------------------------------------
    def ready(self, step: int) -> bool:
        """Whether the weights for ``step`` are known (observations up to step - lag applied)."""
        return step - self.lag <= self.last_observed

    def _weights_at(self, step: int) -> np.ndarray:
        source = step - self.lag
        if source < 0:
            return self._initial
        if source not in self._after:
            raise RuntimeError(
                f"weights for step {step} need the policy after step {source}, which is "
                f"{'not yet observed' if source > self.last_observed else 'no longer kept'}"
            )
        return self._after[source]

    def weights_for(self, step: int) -> np.ndarray:
        """The weights to use at ``step``, applying queued observations as needed."""
        self.process(upto=int(step) - self.lag)
        return self._weights_at(int(step)).copy()

    # -- records ----------------------------------------------------------------------------
    def record_eval(self, row: dict[str, Any]) -> None:
        """Record an evaluation (keyed by step, so a replayed one replaces the first)."""
        self.evals = [e for e in self.evals if e["step"] != row["step"]] + [row]

    def set_summary(self, summary: dict[str, Any]) -> None:
        self.summary = dict(summary)

    def history(self) -> list[dict[str, Any]]:
        """Per applied step: step, weights used, counts, train_loss (NaN where count 0), law."""
        self.process()
        return _history_rows(self._hist, self._laws)

    def export(self) -> dict[str, Any]:
        """Everything the results need: history, evaluations, summary, resolved options."""
        return {
            "steps": self.history(),
            "evals": sorted(self.evals, key=lambda e: e["step"]),
            "summary": dict(self.summary),
            "policy_options": dict(self.policy.options),
        }

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Exact state after every received observation has been applied."""
        self.process()
        h = self._hist
        return {
            "lag": self.lag,
            "policy": self.policy.state_dict(),
            "initial": self._initial.copy(),
            "after": {int(k): v.copy() for k, v in self._after.items()},
            "last_observed": self.last_observed,
            "hist": {
                "step": np.asarray(h["step"], dtype=np.int64),
                "weights": np.asarray(h["weights"]).reshape(-1, self.num_domains),
                "counts": np.asarray(h["counts"]).reshape(-1, self.num_domains),
                "train_loss": np.asarray(h["train_loss"]).reshape(-1, self.num_domains),
            },
            "laws": {int(k): v.copy() for k, v in self._laws.items()},
            "evals": [dict(e) for e in self.evals],
            "summary": dict(self.summary),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lag = int(state["lag"])
        self.policy.load_state_dict(state["policy"])
        self._initial = np.array(state["initial"], dtype=np.float64)
        self._after = {int(k): np.array(v) for k, v in state["after"].items()}
        self._pending = []
        self.last_observed = self.last_received = int(state["last_observed"])
        h = state["hist"]
        self._hist = {
            "step": [int(s) for s in h["step"]],
            "weights": list(np.array(h["weights"], dtype=np.float64)),
            "counts": list(np.array(h["counts"], dtype=np.float64)),
            "train_loss": list(np.array(h["train_loss"], dtype=np.float64)),
        }
        self._laws = {int(k): np.array(v) for k, v in state["laws"].items()}
        self.evals = [dict(e) for e in state["evals"]]
        self.summary = dict(state["summary"])


def _history_rows(hist: dict[str, Any], laws: dict[int, np.ndarray]) -> list[dict[str, Any]]:
    return [
        {
            "step": int(step),
            "weights": np.asarray(hist["weights"][i], dtype=np.float64).tolist(),
            "counts": np.asarray(hist["counts"][i]).astype(np.int64).tolist(),
            "train_loss": np.asarray(hist["train_loss"][i], dtype=np.float64).tolist(),
            "law": np.asarray(laws[int(step)]).tolist() if int(step) in laws else None,
        }
        for i, step in enumerate(hist["step"])
    ]


def history_from_state(state: dict[str, Any]) -> dict[str, Any]:
    """The ``steps``, ``evals`` and ``summary`` of :meth:`MixtureController.export`, read from a
    saved :meth:`~MixtureController.state_dict` alone (no policy needed): the history of a trial
    that was stopped before it could export, up to its last checkpoint."""
    laws = {int(k): np.asarray(v) for k, v in state["laws"].items()}
    return {
        "steps": _history_rows(state["hist"], laws),
        "evals": sorted((dict(e) for e in state["evals"]), key=lambda e: e["step"]),
        "summary": dict(state["summary"]),
    }


class LocalMixture:
    """The in-process mixture client of the plain-Python loop: a controller applied in-line.

    The Ray client (``ado_ray.distributed.actor.RayMixture``) has the same methods.
    """

    def __init__(self, controller: MixtureController):
        self.controller = controller
        self._lock = threading.Lock()

    def weights(self, step: int) -> np.ndarray:
        with self._lock:
            return self.controller.weights_for(step)

    def observe(self, step: int, counts: Any, losses: Any) -> None:
        with self._lock:
            self.controller.observe(step, counts, losses)

    def record_eval(self, row: dict[str, Any]) -> None:
        self.controller.record_eval(row)

    def set_summary(self, summary: dict[str, Any]) -> None:
        self.controller.set_summary(summary)

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self._lock:
            self.controller.load_state_dict(state)

    def export(self) -> dict[str, Any]:
        return self.controller.export()
