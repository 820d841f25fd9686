"""What a sweep shows while it runs: one line per running trial, one per study, one per finished
trial; and where everything else goes (a log file under the results directory).

On a terminal the lines are redrawn in place (``rich``); elsewhere (a pipe, CI, a log) each event
is one plain line. A running trial reads ``confirm  ado_fast#7b41b0 s1  step 150/300  train 2.31
val_loss_balanced 3.42  10.7k tok/s  ETA 0:14``; the study line counts trials done, running,
queued and failed per phase, with the study's ETA.

:class:`CapturedOutput` sends the process's own stdout and stderr, file descriptors 1 and 2
(Ray's worker logs, Tune's tables, C++ warnings, Python logging) to the log file, and keeps a
handle on the real terminal for the progress lines; with ``verbose`` the log is also copied to
the terminal.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from ray import tune

__all__ = ["CapturedOutput", "StudyProgress", "TrialInfo"]


@dataclass
class TrialInfo:
    """One trial as the progress lines show it."""

    label: str  # arm#config s<seed>
    phase: str
    total_steps: int
    step: int = 0
    train_loss: float | None = None
    metric: float | None = None
    tokens_per_s: float | None = None
    started: float = field(default_factory=time.monotonic)
    status: str = "running"

    def eta_s(self) -> float | None:
        elapsed = time.monotonic() - self.started
        if self.step <= 0 or elapsed <= 0:
            return None
        return elapsed / self.step * max(self.total_steps - self.step, 0)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


class StudyProgress(tune.Callback):
    """A Tune callback that keeps the sweep's progress lines up to date.

    ``planned``: phase -> trials planned (from the study's plan); ``describe``: a Tune trial's
    config -> (phase, label, total steps); ``metric``: the study's metric; ``out``: where the
    lines go (the real terminal); ``live``: redraw in place (a TTY) or print events."""

    def __init__(
        self,
        planned: dict[str, int],
        describe: Callable[[dict[str, Any]], tuple[str, str, int]],
        metric: str,
        out: IO[str],
        live: bool | None = None,
    ) -> None:
        self.planned = dict(planned)
        self.describe = describe
        self.metric = metric
        self.out = out
        self.live = out.isatty() if live is None else live
        self.trials: dict[str, TrialInfo] = {}
        self.finished: dict[str, dict[str, int]] = {}
        self.durations: list[float] = []
        self.peak_running = 0  # trials seen running at once: the slots the study's ETA divides by
        self._lock = threading.Lock()
        self._live: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; the terminal, the lock and the
        # live display stay behind (a restored experiment prints plain lines to stdout).
        state = dict(self.__dict__)
        state.update(out=None, _lock=None, _live=None, live=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("peak_running", len(self.trials))  # pickled by an older version
        self.out = sys.stdout
        self._lock = threading.Lock()

    # -- Tune's hooks (they run in the driver process) -----------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        phase, label, total = self.describe(trial.config or {})
        with self._lock:
            self.trials[trial.trial_id] = TrialInfo(label, phase, total)
            self.peak_running = max(self.peak_running, len(self.trials))
        self._show(None)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        t = self.trials.get(trial.trial_id)
        if t is None:
            return
        t.step = int(result.get("step", t.step) or 0)
        t.train_loss = result.get("train_loss", t.train_loss)
        t.metric = result.get(self.metric, t.metric)
        t.tokens_per_s = result.get("tokens_per_second", t.tokens_per_s)
        self._show(None)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "done")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "failed")

    # -- rendering -----------------------------------------------------------------------------
    def _finish(self, trial: Any, status: str) -> None:
        t = self.trials.pop(trial.trial_id, None)
        if t is None:
            return
        took = time.monotonic() - t.started
        if status == "done":
            self.durations.append(took)
        counts = self.finished.setdefault(t.phase, {"done": 0, "failed": 0})
        counts[status] += 1
        line = (
            f"{status:<6} {t.phase:<8} {t.label:<24} {self.metric} {_num(t.metric, 4)}  "
            f"steps {t.step}/{t.total_steps}  {_clock(took)}"
        )
        self._show(line)

    def study_line(self) -> str:
        parts = []
        eta_trials = 0
        for phase, planned in self.planned.items():
            fin = self.finished.get(phase, {"done": 0, "failed": 0})
            running = sum(1 for t in self.trials.values() if t.phase == phase)
            done, failed = fin["done"], fin["failed"]
            queued = max(planned - done - failed - running, 0)
            eta_trials += queued + running
            parts.append(
                f"{phase} {done + failed}/{planned} done ({failed} failed), {running} running, "
                f"{queued} queued"
            )
        eta = None
        if self.durations:
            per = sorted(self.durations)[len(self.durations) // 2]
            # The most trials seen running at once, not those running now (just after one
            # ends, its slot is empty for a moment), and no more slots than trials left.
            at_once = max(min(self.peak_running, eta_trials), 1)
            eta = per * eta_trials / at_once
        return "study: " + "; ".join(parts) + f"; ETA {_clock(eta)}"

    def totals(self) -> str:
        """``7/9 trials done, 2 running, ETA 0:40`` over every phase."""
        planned = sum(self.planned.values())
        done = sum(c["done"] + c["failed"] for c in self.finished.values())
        failed = sum(c["failed"] for c in self.finished.values())
        extra = f" ({failed} failed)" if failed else ""
        eta = self.study_line().rsplit("ETA ", 1)[-1]
        return f"{done}/{planned} trials done{extra}, {len(self.trials)} running, ETA {eta}"

    def trial_line(self, t: TrialInfo) -> str:
        rate = "-" if t.tokens_per_s is None else f"{t.tokens_per_s / 1000:.1f}k tok/s"
        return (
            f"  {t.phase:<8} {t.label:<24} step {t.step}/{t.total_steps}  "
            f"train {_num(t.train_loss)}  {self.metric} {_num(t.metric, 4)}  {rate}  "
            f"ETA {_clock(t.eta_s())}"
        )

    def _show(self, event: str | None) -> None:
        with self._lock:
            if self.live:
                self._redraw(event)
            elif event is not None:  # plain: one line per finished trial, with the totals
                print(f"{event}   [{self.totals()}]", file=self.out, flush=True)

    def _redraw(self, event: str | None) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.text import Text

        if self._live is None:
            console = Console(file=self.out)
            self._live = Live(console=console, refresh_per_second=4, transient=True)
            self._live.start()
        if event is not None:
            self._live.console.print(event)
        lines = [Text(self.study_line(), style="bold")]
        lines += [Text(self.trial_line(t)) for t in self.trials.values()]
        self._live.update(Group(*lines))

    def close(self) -> None:
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None


class CapturedOutput:
    """Send file descriptors 1 and 2 to ``log_path`` for the duration (everything Ray, Tune and
    the workers print), keeping ``terminal``: a text stream on the real stdout, for the progress
    lines. With ``verbose`` the captured output is also copied to the terminal."""

    def __init__(self, log_path: str, verbose: bool = False) -> None:
        self.log_path = log_path
        self.verbose = verbose
        self.terminal: IO[str] = sys.stdout
        self._saved: list[int] = []
        self._thread: threading.Thread | None = None
        self._pipe_w: int | None = None

    def __enter__(self) -> CapturedOutput:
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = [os.dup(1), os.dup(2)]
        self.terminal = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - closed in __exit__
        self._log = log
        if self.verbose:
            r, w = os.pipe()
            self._pipe_w = w
            term_fd = self._saved[0]

            def copy() -> None:
                with os.fdopen(r, "rb", buffering=0) as src:
                    while chunk := src.read(65536):
                        log.write(chunk)
                        os.write(term_fd, chunk)

            self._thread = threading.Thread(target=copy, daemon=True)
            self._thread.start()
            target = w
        else:
            target = log.fileno()
        os.dup2(target, 1)
        os.dup2(target, 2)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        if self._pipe_w is not None:
            os.close(self._pipe_w)
            if self._thread is not None:
                self._thread.join(timeout=5)
        for fd in self._saved:
            os.close(fd)
        self.terminal.flush()
        self._log.close()
