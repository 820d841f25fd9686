"""A test policy that takes held-out feedback (``needs.eval_feedback``), registered on import as
``eval_chaser`` (shared by the loop and Ray tests)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ado_ray.policies import MixturePolicy, Needs, Option, register_policy


class EvalChaser(MixturePolicy):
    """A test policy: softmax of the last held-out losses, nudged by the last train losses."""

    name = "eval_chaser"
    needs = Needs(eval_feedback=True)
    options_spec = (
        Option("temperature", 0.05, "float", "softmax temperature", low=0.0, low_open=True),
    )

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        self._resolve_options(options)
        self._temp = float(self.options["temperature"])
        self._val = np.zeros(self._k)
        self._loss = np.zeros(self._k)
        self._evals = 0
        self.log: list[tuple[str, int]] = []

    def weights(self) -> np.ndarray:
        z = (self._val + 0.1 * self._loss) / self._temp
        w = np.exp(z - z.max())
        return w / w.sum()

    def _observe(self, step, counts, losses, c_min, total) -> None:
        self._loss = np.where(np.isfinite(losses), losses, self._loss)
        self.log.append(("obs", step))

    def _observe_eval(self, step, val_losses) -> None:
        self._val = np.where(np.isfinite(val_losses), val_losses, self._val)
        self._evals += 1
        self.log.append(("eval", step))

    def diagnostics(self) -> dict[str, np.ndarray]:
        return {"last_val": self._val.copy()} if self._evals else {}

    def _state(self) -> dict[str, Any]:
        return {
            "val": self._val.copy(),
            "loss": self._loss.copy(),
            "evals": self._evals,
            "log": list(self.log),
        }

    def _load_state(self, state) -> None:
        self._val = np.array(state["val"], dtype=np.float64)
        self._loss = np.array(state["loss"], dtype=np.float64)
        self._evals = int(state["evals"])
        self.log = [tuple(e) for e in state["log"]]


register_policy("eval_chaser", EvalChaser, replace=True)


class ScheduledChaser(EvalChaser):
    """``eval_chaser`` that also asks for held-out losses every ``every`` steps."""

    name = "scheduled_chaser"
    options_spec = EvalChaser.options_spec + (
        Option("every", 3, "int", "steps between the policy's own evaluations", low=1),
    )

    def wants_eval_at(self, step: int) -> bool:
        return step > 0 and step % int(self.options["every"]) == 0


register_policy("scheduled_chaser", ScheduledChaser, replace=True)
