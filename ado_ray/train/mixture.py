"""The mixture controller: a policy behind a fixed step lag, plus the trial's history.

A trial feeds its policy two kinds of event, in this order:

- ``observe(t, counts, losses)`` after training step ``t``: the per-domain sequence counts of the
  global batch and the per-domain mean training losses;
- ``observe_eval(d, val_losses)`` after a held-out evaluation made when ``d`` steps are done,
  for a policy that wants it (:attr:`~ado_ray.policies.MixturePolicy.wants_eval_feedback`). It
  falls between ``observe(d - 1)`` and ``observe(d)``; the evaluation before training is
  ``observe_eval(0, ...)``. The observation of step ``d - 1`` announces it
  (``eval_follows=True``), so the controller knows to wait for it.

The weights used at step ``t`` are the policy's weights after it has taken every event up to
and including step ``t - lag``: the observations of steps ``0 .. t - lag`` and the evaluations
made after ``1 .. t - lag + 1`` steps. The first ``lag`` steps use the policy's initial weights
(the step-0 evaluation reaches them from step ``lag`` on). The weights are thus a pure function
of the observations and evaluations, whatever their timing: the Ray actor
(:mod:`ado_ray.distributed.actor`) applies events in a background thread, and a worker waits
only when the actor is more than ``lag`` steps behind. In plain Python, :class:`LocalMixture`
applies them in-line.

The controller is also the trial's record keeper: per step the weights used, the counts, the
per-domain train losses and the policy's diagnostics whenever they change (ADO: its fitted laws,
at each refit); the evaluations; and a summary. It all goes into checkpoints, so a resumed or
restored trial keeps a complete, de-duplicated history. See ``docs/architecture.md`` for how
the pieces fit together.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ado_ray.policies import MixturePolicy

__all__ = [
    "STATE_VERSION",
    "LocalMixture",
    "MixtureClient",
    "MixtureController",
    "history_from_state",
]

#: The layout of :meth:`MixtureController.state_dict`. Version 1 (no ``version`` key) kept ADO's
#: fitted laws as ``laws``; version 2 keeps generic ``diagnostics`` and the evaluation feedback.
STATE_VERSION = 2

# Version-1 ``laws`` rows are (eps, beta, alpha): their names as diagnostics.
_V1_LAW_NAMES = ("law_eps", "law_beta", "law_alpha")


@runtime_checkable
class MixtureClient(Protocol):
    """What the training loop asks of a mixture: :class:`LocalMixture` in-process, the Ray
    actor's client (``ado_ray.distributed.actor.RayMixture``) under Ray Train.

    Only rank 0 sends events (``observe``, ``observe_eval``, ``record_eval``, ``set_summary``)
    and touches the state; every rank asks for weights.
    """

    def weights(self, step: int) -> np.ndarray:
        """The weights of step ``step`` (blocks until the events they depend on are in)."""
        ...

    def prefetch(self, step: int) -> None:
        """A hint that ``step`` and the next ``lag - 1`` steps' weights will be asked for."""
        ...

    def observe(self, step: int, counts: Any, losses: Any, eval_follows: bool = False) -> None:
        """Step ``step``'s statistics; ``eval_follows``: an evaluation is made after it."""
        ...

    def observe_eval(self, step: int, val_losses: Any) -> None:
        """Per-domain held-out losses measured after ``step`` training steps."""
        ...

    def record_eval(self, row: dict[str, Any]) -> None:
        """Keep an evaluation row for the results."""
        ...

    def set_summary(self, summary: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export(self) -> dict[str, Any]:
        """The trial's record: ``steps``, ``evals``, ``summary``, ``policy_options``."""
        ...

    def reset(self) -> None:
        """Back to a fresh policy and an empty history (a restart from step 0)."""
        ...


def _same_diagnostics(a: Mapping[str, np.ndarray] | None, b: Mapping[str, np.ndarray]) -> bool:
    if a is None:
        return not b
    if a.keys() != b.keys():
        return False
    return all(np.array_equal(a[n], b[n], equal_nan=True) for n in a)


class MixtureController:
    """A policy, the step lag and the history. Not thread-safe; see ``ado_ray.distributed``.

    Events must be received in order (:meth:`observe`, :meth:`observe_eval`); replays of events
    already received are ignored, so a worker that restarts from a checkpoint may resend them.
    """

    def __init__(self, policy: MixturePolicy, lag: int = 1):
        if int(lag) < 1:
            raise ValueError(f"training.mixture_lag={lag} is out of range: allowed >= 1")
        self.policy = policy
        self.lag = int(lag)
        self.num_domains = policy.num_domains
        self._fresh_state()

    def _fresh_state(self) -> None:
        self.feedback = bool(self.policy.wants_eval_feedback)
        self._initial = np.array(self.policy.weights(), dtype=np.float64)
        # step -> weights after observing that step (and the evaluation that follows it, if any)
        self._after: dict[int, np.ndarray] = {}
        # ("obs", step, counts, losses, eval_follows) or ("eval", step, val_losses), in order
        self._pending: list[tuple[Any, ...]] = []
        self.last_observed = -1  # the last step handed to the policy
        self.last_received = -1  # the last step received (pending or applied)
        self.last_eval = -1  # the step of the last evaluation received (feedback policies)
        self._eval_due: int | None = None  # an evaluation announced, not yet received
        self._eval_open: int | None = None  # an evaluation announced, not yet applied
        self._hist: dict[str, list] = {"step": [], "weights": [], "counts": [], "train_loss": []}
        self._diag: dict[int, dict[str, np.ndarray]] = {}
        self._last_diag: dict[str, np.ndarray] | None = None
        self.evals: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}

    def reset(self) -> None:
        """A fresh policy (same class, K and options) and an empty history."""
        if self.last_received < 0 and self.last_eval < 0 and not self.evals:
            return  # nothing received yet: already fresh
        p = self.policy
        self.policy = type(p)(p.num_domains, **p.options)
        self._fresh_state()

    # -- events -----------------------------------------------------------------------------
    def observe(self, step: int, counts: Any, losses: Any, eval_follows: bool = False) -> bool:
        """Queue step ``step``'s statistics. ``eval_follows``: an evaluation is made after this
        step (the weights after it wait for that evaluation, for a policy that takes feedback).
        Steps already received are ignored (replays after a worker restart); returns whether
        the step was taken."""
        step = int(step)
        if step <= self.last_received:
            return False
        if step != self.last_received + 1:
            raise ValueError(
                f"observations must arrive in order: got step {step} after {self.last_received}"
            )
        if self._eval_due is not None:
            raise ValueError(
                f"observe({step}) before the evaluation after {self._eval_due} steps, which "
                f"observe({step - 1}, eval_follows=True) announced"
            )
        # Copies: callers may reuse their buffers for the next step.
        counts = np.array(counts, dtype=np.float64).reshape(-1)
        losses = np.array(losses, dtype=np.float64).reshape(-1)
        follows = bool(eval_follows) and self.feedback
        self._pending.append(("obs", step, counts, losses, follows))
        self.last_received = step
        if follows:
            self._eval_due = step + 1
        return True

    def observe_eval(self, step: int, val_losses: Any) -> bool:
        """Queue the held-out losses of an evaluation made after ``step`` training steps: it must
        come after ``observe(step - 1, ..., eval_follows=True)`` (or first, for ``step`` 0) and
        before ``observe(step)``. Ignored (False) for a policy that does not take feedback, and
        for an evaluation already received."""
        step = int(step)
        if not self.feedback or step <= self.last_eval:
            return False
        if step == 0 and self.last_received < 0:
            pass  # before training: weights of steps >= lag see it
        elif self._eval_due != step:
            expected = (
                f"the evaluation after {self._eval_due} steps"
                if self._eval_due is not None
                else f"observe({self.last_received + 1}) (no evaluation was announced)"
            )
            raise ValueError(
                f"observe_eval({step}) out of order: expected {expected}; an evaluation after "
                f"step t-1 is announced by observe(t - 1, eval_follows=True)"
            )
        val = np.array(val_losses, dtype=np.float64).reshape(-1)
        if val.shape != (self.num_domains,):
            raise ValueError(f"val_losses has shape {val.shape}: expected ({self.num_domains},)")
        self._pending.append(("eval", step, val))
        self.last_eval = step
        self._eval_due = None
        return True

    def received_through(self) -> int:
        """The last step whose events are all received (its evaluation too, if announced)."""
        return self.last_received - (1 if self._eval_due is not None else 0)

    def process(self, upto: int | None = None) -> int:
        """Hand queued events up to and including step ``upto`` (all if None) to the policy:
        the observation of each step, then the evaluation after it. Returns how many."""
        done = 0
        while self._pending:
            event = self._pending[0]
            # An evaluation after d steps belongs to step d - 1.
            position = event[1] if event[0] == "obs" else event[1] - 1
            if upto is not None and position > upto:
                break
            self._pending.pop(0)
            if event[0] == "obs":
                self._apply(*event[1:])
            else:
                self._apply_eval(*event[1:])
            done += 1
        return done

    def _apply(self, step: int, counts: np.ndarray, losses: np.ndarray, follows: bool) -> None:
        used = self._weights_at(step)
        self.policy.observe(step, counts, losses)
        self.last_observed = step
        self._after[step] = np.array(self.policy.weights(), dtype=np.float64)
        if follows:
            self._eval_open = step + 1
        # Keep only what a step still to come may need.
        for old in [s for s in self._after if s < step - self.lag - 64]:
            del self._after[old]
        h = self._hist
        h["step"].append(step)
        h["weights"].append(used)
        h["counts"].append(counts)
        h["train_loss"].append(np.where(counts > 0, losses, np.nan))
        self._note_diagnostics(step)

    def _apply_eval(self, step: int, val: np.ndarray) -> None:
        self.policy.observe_eval(step, val)
        self._eval_open = None
        if step >= 1:
            # The weights after step - 1 are those after this evaluation too.
            self._after[step - 1] = np.array(self.policy.weights(), dtype=np.float64)
            self._note_diagnostics(step - 1)

    def _note_diagnostics(self, step: int) -> None:
        """Record the policy's diagnostics at ``step`` when they differ from the last ones."""
        diag = {
            str(n): np.array(v, dtype=np.float64).reshape(-1)
            for n, v in self.policy.diagnostics().items()
        }
        if _same_diagnostics(self._last_diag, diag):
            return
        self._last_diag = diag
        if diag:
            self._diag[step] = diag
        else:
            self._diag.pop(step, None)

    # -- weights ----------------------------------------------------------------------------
    def ready(self, step: int) -> bool:
        """Whether the weights for ``step`` are known (events up to step - lag applied)."""
        source = int(step) - self.lag
        if source < 0:
            return True
        return source < self.last_observed or (
            source == self.last_observed and self._eval_open is None
        )

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
        """The weights to use at ``step``, applying queued events as needed."""
        step = int(step)
        self.process(upto=step - self.lag)
        if not self.ready(step):
            source = step - self.lag
            if source > self.last_observed:
                raise RuntimeError(
                    f"weights for step {step} need the policy after step {source}, which is "
                    "not yet observed"
                )
            raise RuntimeError(
                f"weights for step {step} need the evaluation after {source + 1} steps, "
                "which was announced but not received"
            )
        return self._weights_at(step).copy()

    # -- records ----------------------------------------------------------------------------
    def record_eval(self, row: dict[str, Any]) -> None:
        """Record an evaluation (keyed by step, so a replayed one replaces the first)."""
        self.evals = [e for e in self.evals if e["step"] != row["step"]] + [row]

    def set_summary(self, summary: dict[str, Any]) -> None:
        self.summary = dict(summary)

    def history(self) -> list[dict[str, Any]]:
        """Per applied step: step, weights used, counts, train_loss (NaN where count 0), and
        the policy's diagnostics where they changed at that step (else None)."""
        self.process()
        return _history_rows(self._hist, self._diag)

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
        """Exact state after every received event has been applied (layout version 2)."""
        self.process()
        h = self._hist
        return {
            "version": STATE_VERSION,
            "lag": self.lag,
            "policy": self.policy.state_dict(),
            "initial": self._initial.copy(),
            "after": {int(k): v.copy() for k, v in self._after.items()},
            "last_observed": self.last_observed,
            "last_eval": self.last_eval,
            "eval_due": self._eval_due,
            "hist": {
                "step": np.asarray(h["step"], dtype=np.int64),
                "weights": np.asarray(h["weights"]).reshape(-1, self.num_domains),
                "counts": np.asarray(h["counts"]).reshape(-1, self.num_domains),
                "train_loss": np.asarray(h["train_loss"]).reshape(-1, self.num_domains),
            },
            "diagnostics": {
                int(s): {n: v.copy() for n, v in d.items()} for s, d in self._diag.items()
            },
            "evals": [dict(e) for e in self.evals],
            "summary": dict(self.summary),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (version 2, or version 1 with ADO's ``laws``)."""
        version = int(state.get("version", 1))
        if version not in (1, STATE_VERSION):
            raise ValueError(f"mixture state version {version} is not supported")
        self.lag = int(state["lag"])
        self.policy.load_state_dict(state["policy"])
        self.feedback = bool(self.policy.wants_eval_feedback)
        self._initial = np.array(state["initial"], dtype=np.float64)
        self._after = {int(k): np.array(v) for k, v in state["after"].items()}
        self._pending = []
        self.last_observed = self.last_received = int(state["last_observed"])
        self.last_eval = int(state.get("last_eval", -1))
        due = state.get("eval_due")
        self._eval_due = self._eval_open = None if due is None else int(due)
        h = state["hist"]
        self._hist = {
            "step": [int(s) for s in h["step"]],
            "weights": list(np.array(h["weights"], dtype=np.float64)),
            "counts": list(np.array(h["counts"], dtype=np.float64)),
            "train_loss": list(np.array(h["train_loss"], dtype=np.float64)),
        }
        self._diag = _diagnostics_of(state)
        self._last_diag = self._diag[max(self._diag)] if self._diag else None
        if version == 1 and self._last_diag is not None:
            # Version 1 kept only the laws: if the policy reports more, but the same laws, take
            # its report as the last one, so a resumed run records no spurious change.
            now = {
                str(n): np.array(v, dtype=np.float64).reshape(-1)
                for n, v in self.policy.diagnostics().items()
            }
            last = self._last_diag
            if all(n in now and np.array_equal(now[n], v, equal_nan=True) for n, v in last.items()):
                self._last_diag = now
        self.evals = [dict(e) for e in state["evals"]]
        self.summary = dict(state["summary"])


def _diagnostics_of(state: Mapping[str, Any]) -> dict[int, dict[str, np.ndarray]]:
    """step -> {name: K values} of a saved state, of either layout version."""
    if "diagnostics" in state:
        return {
            int(s): {str(n): np.array(v, dtype=np.float64) for n, v in d.items()}
            for s, d in state["diagnostics"].items()
        }
    out: dict[int, dict[str, np.ndarray]] = {}
    for s, law in (state.get("laws") or {}).items():
        law = np.asarray(law, dtype=np.float64).reshape(-1, 3)
        out[int(s)] = {name: law[:, i].copy() for i, name in enumerate(_V1_LAW_NAMES)}
        # Version 1 recorded the laws at the step they were fitted.
        out[int(s)]["law_fit_step"] = np.full(len(law), float(s))
    return out


def _history_rows(
    hist: Mapping[str, Any], diag: Mapping[int, Mapping[str, np.ndarray]]
) -> list[dict[str, Any]]:
    rows = []
    for i, step in enumerate(hist["step"]):
        d = diag.get(int(step))
        rows.append(
            {
                "step": int(step),
                "weights": np.asarray(hist["weights"][i], dtype=np.float64).tolist(),
                "counts": np.asarray(hist["counts"][i]).astype(np.int64).tolist(),
                "train_loss": np.asarray(hist["train_loss"][i], dtype=np.float64).tolist(),
                "diagnostics": (
                    None
                    if d is None
                    else {n: np.asarray(v, dtype=np.float64).tolist() for n, v in d.items()}
                ),
            }
        )
    return rows


def history_from_state(state: dict[str, Any]) -> dict[str, Any]:
    """The ``steps``, ``evals`` and ``summary`` of :meth:`MixtureController.export`, read from a
    saved :meth:`~MixtureController.state_dict` alone (no policy needed; either layout version):
    the history of a trial that was stopped before it could export, up to its last checkpoint."""
    return {
        "steps": _history_rows(state["hist"], _diagnostics_of(state)),
        "evals": sorted((dict(e) for e in state["evals"]), key=lambda e: e["step"]),
        "summary": dict(state["summary"]),
    }


class LocalMixture:
    """The in-process :class:`MixtureClient` of the plain-Python loop: a controller applied
    in-line (events are applied when the weights that depend on them are asked for)."""

    def __init__(self, controller: MixtureController):
        self.controller = controller
        self._lock = threading.Lock()

    def weights(self, step: int) -> np.ndarray:
        with self._lock:
            return self.controller.weights_for(step)

    def prefetch(self, step: int) -> None:
        """Nothing to fetch in-process."""

    def observe(self, step: int, counts: Any, losses: Any, eval_follows: bool = False) -> None:
        with self._lock:
            self.controller.observe(step, counts, losses, eval_follows=eval_follows)

    def observe_eval(self, step: int, val_losses: Any) -> None:
        with self._lock:
            self.controller.observe_eval(step, val_losses)

    def record_eval(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.controller.record_eval(row)

    def set_summary(self, summary: dict[str, Any]) -> None:
        with self._lock:
            self.controller.set_summary(summary)

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self._lock:
            self.controller.load_state_dict(state)

    def export(self) -> dict[str, Any]:
        with self._lock:
            return self.controller.export()

    def reset(self) -> None:
        with self._lock:
            self.controller.reset()
