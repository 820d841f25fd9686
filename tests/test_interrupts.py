"""Signals stop a sweep without corrupting it: the first SIGINT or SIGTERM stops gracefully, marks
nothing done, exits 128 + signal and says how to resume; ``--resume`` then completes the study
with the results an uninterrupted run gives. Each case runs the real CLI in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ado_ray.results import read_results

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("ado-ray"))

pytestmark = pytest.mark.ray


def _write_study(storage: Path, name: str, body: dict) -> Path:
    """Write study ``name`` (one seed, one trial at a time, results under ``storage``) with the
    data, model, training, arms and search of ``body``; return its YAML path."""
    study = {
        "name": name,
        **body,
        "seeds": [0],
        "resources": {"max_concurrent_trials": 1},
        "storage": str(storage),
    }
    path = storage.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _study(storage: Path, name: str) -> Path:
    body = {
        "data": {
            "source": "synthetic",
            "options": {"seq_len": 32, "sequences_per_domain": 300, "val_sequences_per_domain": 32},
        },
        "model": {"preset": "tiny", "overrides": {"n_layer": 1, "n_embd": 32, "n_head": 2}},
        "training": {
            "budget": {"steps": 24},
            "batch_size": 8,
            "eval_interval": 8,
            "checkpoint_interval": 8,
            "eval_sequences": 16,
            "lr_warmup_steps": 2,
        },
        "arms": {
            "uniform": {},
            "ado": {
                "options": {
                    "warmup_steps": 4,
                    "update_interval": 4,
                    "ignore_steps": 0,
                    "subsample": 1,
                    "min_fit_points": 4,
                    "log_eps_min": -5.0,
                },
                "search": {"gamma1": {"type": "loguniform", "low": 0.05, "high": 0.5}},
            },
        },
        "search": {"sampler": "random", "num_samples": 2, "top_k": 1},
    }
    return _write_study(storage, name, body)


def _sweep(path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [CLI, "sweep", str(path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def _wait_for(pred, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the sweep to get there")


def _table(uri: str) -> pd.DataFrame:
    t = read_results(uri, with_steps=False).trials
    t = t[t.status == "completed"].sort_values(["phase", "arm", "seed", "config_id"])
    return t[["phase", "arm", "seed", "config_id", "val_loss_balanced"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("reference")
    path = _study(root / "store", "irq")
    proc = _sweep(path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    return _table(str(root / "store" / "irq"))


def _parts(uri: Path, phase: str) -> list[Path]:
    return list((uri / "parts").glob(f"{phase}-*.trials.parquet")) if uri.exists() else []


@pytest.mark.parametrize(
    "sig, phase",
    [(signal.SIGINT, "search"), (signal.SIGTERM, "confirm")],
    ids=["sigint-during-search", "sigterm-during-confirm"],
)
def test_a_signal_stops_gracefully_and_resume_completes_the_study(tmp_path, reference, sig, phase):
    path = _study(tmp_path / "store", "irq")
    uri = tmp_path / "store" / "irq"
    proc = _sweep(path)
    if phase == "search":  # the first search trial has started training
        _wait_for(lambda: any((uri / "ray" / "search-ado").glob("*/")), 300)
        time.sleep(8)
    else:  # the search is done and the confirm phase has started
        _wait_for(lambda: (uri / "search_done-ado.json").exists(), 600)
        time.sleep(8)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 128 + sig, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"interrupted by {signal.Signals(sig).name}") and "--resume" in last
    # Ray's own actors may log their shutdown; the sweep itself prints no traceback.
    ours = [ln for ln in out.splitlines() if "Traceback" in ln and "pid=" not in ln]
    assert not ours, out[-3000:]
    if phase == "search":
        assert not (uri / "search_done-ado.json").exists(), "an interrupted phase is not done"
        assert not _parts(uri, "confirm"), "the confirm phase did not start"
    recorded = read_results(str(uri), with_steps=False).trials
    assert "pruned" not in set(recorded.status), "nothing is recorded as pruned by an interrupt"
    resumed = _sweep(path, "--resume")
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-3000:]
    got = _table(str(uri))
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-5)


# -- a lost worker ---------------------------------------------------------------------------


def _one_trial_study(storage: Path, name: str) -> Path:
    """One uniform trial, long enough to lose its worker twice while it trains."""
    body = {
        "data": {
            "source": "synthetic",
            "options": {"seq_len": 64, "sequences_per_domain": 300, "val_sequences_per_domain": 16},
        },
        "model": {"preset": "tiny"},
        "training": {
            "budget": {"steps": 400},
            "batch_size": 16,
            "eval_interval": 50,
            "checkpoint_interval": 50,
            "eval_sequences": 16,
            "lr_warmup_steps": 2,
            "max_failures": 1,
        },
        "arms": {"uniform": {}},
    }
    return _write_study(storage, name, body)


def _train_worker(root: int) -> int | None:
    """The pid of a Ray Train worker among the descendants of process ``root`` (from /proc)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            commands[int(entry)] = (
                Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            )
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    workers = [p for p in family if commands.get(p, "").startswith("ray::RayTrainWorker")]
    return workers[0] if workers else None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds Ray's workers in /proc")
def test_a_trial_that_loses_its_worker_twice_is_incomplete_and_resume_completes_it(tmp_path):
    ref = _sweep(_one_trial_study(tmp_path / "ref", "lost"))
    out, _ = ref.communicate(timeout=900)
    assert ref.returncode == 0, out[-3000:]
    reference = _table(str(tmp_path / "ref" / "lost"))

    path = _one_trial_study(tmp_path / "store", "lost")
    uri = tmp_path / "store" / "lost"
    proc = _sweep(path)
    seen: set[str] = set()
    killed: list[int] = []

    def training() -> bool:
        # A checkpoint this worker wrote: it is training (a worker lost while it starts up is
        # replaced without counting as a failure).
        new = {p.name for p in (uri / "ray").glob("train-*/checkpoint_*")} - seen
        pid = _train_worker(proc.pid)
        return bool(new) and pid is not None and pid not in killed

    for _ in range(2):  # Train restarts the worker once (max_failures: 1); the second loss is final
        _wait_for(training, 600)
        seen |= {p.name for p in (uri / "ray").glob("train-*/checkpoint_*")}
        pid = _train_worker(proc.pid)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 3, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("incomplete: 0 of 1 trials") and "--resume" in last, last
    recorded = read_results(str(uri), with_steps=False).trials
    assert list(recorded.status) == ["interrupted"], recorded.T
    assert recorded.steps.iloc[0] >= 50, "the steps its history holds are kept"
    resumed = _sweep(path, "--resume")
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-3000:]
    pd.testing.assert_frame_equal(_table(str(uri)), reference, check_exact=False, rtol=1e-5)
