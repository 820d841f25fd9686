"""Ray Train's reports to a Tune trial, through the trial's mixture actor.

Tune's own ``TuneReportCallback`` starts a queue actor per trial, which the trial's driver polls
five times a second. Here Train's controller posts each report to the mixture actor, which the
trial already has (:class:`ReportRelay`), and the driver takes them in a blocking call
(:func:`fit_relaying`). This module imports no torch: it is unpickled in Train's controller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ray
from ray.train import UserCallback


class ReportRelay(UserCallback):
    """Posts each of Ray Train's reports to the trial's mixture actor, where the trial's driver
    takes them (:func:`~ado_ray.distributed.trainer.run_trial`'s ``on_report``). Runs in
    Train's controller. What Tune's ``TuneReportCallback`` does, without its queue actor and
    the driver's polling of it."""

    def __init__(self, actor: Any):
        self.actor = actor

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any | None
    ) -> None:
        # Synchronous: every report has landed before fit() returns. Rank 0's metrics, as
        # Tune's callback sends.
        ray.get(self.actor.post_report.remote(dict(metrics[0])))


#: How long the driver waits on the actor for a report before it looks at the run again.
RELAY_WAIT_S = 30.0


def fit_relaying(trainer: Any, actor: Any, on_report: Callable[[dict[str, Any]], None]) -> None:
    """``trainer.fit()`` in a helper thread while this thread hands each report to
    ``on_report`` (for Tune, ``tune.report`` in the trial's own thread). Re-raises what fit()
    raised."""
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
        finally:
            try:
                actor.end_reports.remote()
            except Exception:  # noqa: BLE001 - the actor is gone: the loop below sees it
                pass

    thread = threading.Thread(target=fit, name="train-fit", daemon=True)
    thread.start()
    try:
        while True:
            # Once fit() has returned, every report is posted: one last look without waiting.
            running = thread.is_alive()
            try:
                reports, ended = ray.get(
                    actor.take_reports.remote(RELAY_WAIT_S if running else 0.0)
                )
            except ray.exceptions.RayActorError:
                break  # the actor died: fit() fails, or has failed, on its own
            for metrics in reports:
                on_report(metrics)
            if ended or not running:
                break
    except Exception:
        # on_report failed. Nothing stops a fit() from here: let the run end before raising,
        # so that no training outlives this call (a reused driver runs the next trial).
        thread.join()
        raise
    thread.join()
    if failure:
        raise failure[0]
