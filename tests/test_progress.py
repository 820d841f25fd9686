"""The sweep's progress lines (plain mode, as in a pipe or CI), driven through Tune's hooks."""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

from ado_ray.distributed.progress import StudyProgress


def _progress() -> tuple[StudyProgress, io.StringIO]:
    out = io.StringIO()

    def describe(config: dict) -> tuple[str, str, int]:
        return config["phase"], f"{config['arm']}#abc123 s{config['seed']}", 300

    return StudyProgress({"confirm": 6}, describe, "val_loss_balanced", out, live=False), out


def _trial(tid: str, arm: str, seed: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"phase": "confirm", "arm": arm, "seed": seed})


def test_a_finished_trial_leaves_one_line_with_its_label_metric_and_steps():
    p, out = _progress()
    a = _trial("t1", "uniform", 0)
    p.on_trial_start(0, [], a)
    p.on_trial_result(0, [], a, {"step": 300, "val_loss_balanced": 2.12345, "train_loss": 2.0})
    p.on_trial_complete(0, [], a)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("done   confirm  uniform#abc123 s0")
    assert "val_loss_balanced 2.1235" in lines[0] and "steps 300/300" in lines[0]
    assert "1/6 trials done, 0 running" in lines[0]


def test_the_study_eta_counts_the_trials_that_run_at_once():
    # Two slots: after the first trial (60 s) ends, 5 trials are left (1 running, 4 queued),
    # which two slots finish in about 5 x 60 / 2 = 150 s, although only one runs right then.
    p, out = _progress()
    a, b = _trial("t1", "uniform", 0), _trial("t2", "uniform", 1)
    p.on_trial_start(0, [], a)
    p.on_trial_start(0, [], b)
    p.trials["t1"].started = time.monotonic() - 60
    p.on_trial_complete(0, [], a)
    assert out.getvalue().rstrip().endswith("[1/6 trials done, 1 running, ETA 2:30]")


def test_near_the_end_the_eta_counts_no_more_slots_than_trials_left():
    p, out = _progress()
    trials = [_trial(f"t{i}", "uniform", i) for i in range(3)]
    for t in trials:
        p.on_trial_start(0, [], t)
    for t in trials[:2]:
        p.trials[t.trial_id].started = time.monotonic() - 60
        p.on_trial_complete(0, [], t)
    # Four trials left (one running) on three slots: 4 x 60 / 3 s.
    assert out.getvalue().rstrip().endswith("[2/6 trials done, 1 running, ETA 1:20]")
    # One trial left: one trial's time, although three slots were busy.
    p.planned = {"confirm": 3}
    assert p.study_line().endswith("ETA 1:00")


def test_a_progress_pickled_by_an_older_version_restores():
    # Tune keeps its callbacks in the experiment state that --resume restores.
    p, _ = _progress()
    state = p.__getstate__()
    del state["peak_running"]
    restored = StudyProgress.__new__(StudyProgress)
    restored.__setstate__(state)
    restored.on_trial_start(0, [], _trial("t1", "uniform", 0))
    assert restored.peak_running == 1
