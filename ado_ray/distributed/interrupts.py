"""Stopping a sweep on a signal without corrupting it.

The first SIGINT (Ctrl-C) or SIGTERM (what ``ray job stop`` and schedulers send) asks Ray Tune to
stop gracefully, with SIGUSR1, the stop signal Tune itself listens to: running trials are stopped,
the experiment state is saved, and ``tuner.fit()`` returns. The sweep then marks nothing done and
records nothing as pruned, and raises :class:`StudyInterrupted`; ``ado-ray sweep`` exits with
128 + the signal's number (130 for SIGINT, 143 for SIGTERM) and says how to resume. A second
signal exits at once.

Tune's own SIGINT handler is turned off (``TUNE_DISABLE_SIGINT_HANDLER``): it would swallow the
signal and let the caller carry on as if the phase had completed.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["StopSignals", "StudyIncomplete", "StudyInterrupted"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StudyInterrupted(Exception):
    """The sweep stopped on a signal; ``--resume`` continues it."""

    def __init__(self, signum: int, results_uri: str | None = None):
        self.signum = int(signum)
        self.results_uri = results_uri
        name = signal.Signals(self.signum).name
        super().__init__(f"interrupted by {name}: rerun with --resume to continue the study")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StudyIncomplete(Exception):
    """The sweep ended, but some planned trials did not finish (interrupted, lost or missing)."""

    exit_code = 3

    def __init__(self, finished: int, planned: int, results_uri: str):
        self.finished, self.planned, self.results_uri = finished, planned, results_uri
        super().__init__(
            f"incomplete: {finished} of {planned} trials; rerun with --resume ({results_uri})"
        )


class StopSignals:
    """A context that turns the first SIGINT/SIGTERM into a graceful Tune stop (see the module
    docstring). ``received`` is the first signal's number, or None; :meth:`check` raises
    :class:`StudyInterrupted` once one arrived. Outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._env: str | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            os._exit(128 + signum)  # the second signal: at once
        self.received = signum
        # Inside tuner.fit() Tune listens to SIGUSR1 for a graceful stop; outside it, SIGUSR1's
        # default would kill the process, and the sweep checks ``received`` between phases.
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is not None and signal.getsignal(usr1) not in (signal.SIG_DFL, signal.SIG_IGN):
            os.kill(os.getpid(), usr1)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    def check(self, results_uri: str | None = None) -> None:
        if self.received is not None:
            raise StudyInterrupted(self.received, results_uri)
