"""Everything a study is checked against before any compute: the corpus it names, every arm's
policy built against that corpus (at each corner of a searched arm's space), and the plan; for a
sweep also its storage (a writable directory or an object-store URI, empty unless resuming the
same study) and, on a local cluster, whether a trial's workers fit this machine.

``ado-ray validate`` prints the plan and stops here; ``ado-ray sweep`` prints it and goes on.
No Ray and no torch: a bad study is rejected, with nothing written, before Ray starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ado_ray import storage
from ado_ray.data import load_corpus
from ado_ray.distributed import placement
from ado_ray.policies import make_policy
from ado_ray.results import STUDY_FILE
from ado_ray.study import Plan, Study, load_study, plan
from ado_ray.train.config import policy_run_options, total_train_sequences

__all__ = [
    "Preflight",
    "SweepPreflight",
    "check_resume_matches",
    "check_storage",
    "prepare_sweep",
    "preflight",
    "run_options",
    "validate_before_compute",
]


def run_options(
    study: Study, label: str, options: dict[str, Any], corpus: Any, steps: int
) -> dict[str, Any]:
    """Arm ``label``'s ``options`` completed with what its policy needs from this run."""
    return policy_run_options(
        study.arm(label).policy, options, corpus, steps, int(study.training.batch_size)
    )


def validate_before_compute(study: Study, corpus: Any) -> int:
    """Every arm's policy is built once against the corpus, so a bad option (fixed weights of
    the wrong length, delta_min * K >= 1...) fails before any trial starts; for a searched arm,
    also at every corner of its space. Returns the steps of each trial."""
    steps = study.budget_steps(int(corpus.seq_len), total_train_sequences(corpus))
    for label, arm in study.arms.items():
        base = study.default_arm_options(label, steps)
        candidates = [base]
        for name, spec in arm.search.items():
            values = spec.choices if spec.type == "categorical" else (spec.low, spec.high)
            candidates += [{**base, name: v} for v in values]
        for opts in candidates:
            try:
                make_policy(
                    arm.policy, corpus.num_domains, **run_options(study, label, opts, corpus, steps)
                )
            except ValueError as exc:
                raise ValueError(f"arms.{label}: {exc}") from None
    return steps


@dataclass(frozen=True)
class Preflight:
    """A checked study with its corpus, the steps of each trial and the plan."""

    study: Study
    corpus: Any
    steps: int
    plan: Plan


def preflight(study: Study) -> Preflight:
    """Load the study's corpus, check every arm against it, and make the plan."""
    try:
        corpus = load_corpus(study.data.source, **study.data.options)
    except OSError as exc:  # offline, a missing file, a hub that does not answer
        raise ValueError(
            f"data: the {study.data.source!r} corpus could not be loaded "
            f"({type(exc).__name__}: {exc})"
        ) from None
    steps = validate_before_compute(study, corpus)
    return Preflight(study, corpus, steps, plan(study, steps, int(corpus.seq_len)))


# --------------------------------------------------------------------------------------------
# A sweep's storage, resume and resources
# --------------------------------------------------------------------------------------------

# What a resumed study may change: where and how robustly it runs, not what it measures.
RESUMABLE_CHANGES = ("storage", "resources", "description", "training.max_failures")


def _changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed_paths(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def _resumable(path: str) -> bool:
    return any(path == r or path.startswith(r + ".") for r in RESUMABLE_CHANGES)


def check_resume_matches(study: Study, results_uri: str) -> None:
    """``--resume`` must continue the same study: finished trials are kept by name, so a
    changed budget, data or search space would mix two studies in one table."""
    stored_uri = storage.join(results_uri, STUDY_FILE)
    if not storage.exists(stored_uri):
        return  # interrupted before anything was written: nothing to mix
    try:
        stored = load_study(yaml.safe_load(storage.read_text(stored_uri))).to_dict()
    except ValueError as exc:
        raise ValueError(
            f"--resume: the study stored at {stored_uri} (written by an earlier run) no longer "
            f"loads: {exc}. Start a new study under another name or --storage"
        ) from None
    changed = [p for p in _changed_paths(stored, study.to_dict()) if not _resumable(p)]
    if changed:
        shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
        raise ValueError(
            f"--resume: the study differs from the one stored at {stored_uri} in {shown}; "
            f"only {' and '.join(RESUMABLE_CHANGES)} may change on resume. Resume with the "
            "stored study file, or start a new study under another name or --storage"
        )




def check_storage(uri: str) -> None:
    """``storage`` must be an object-store URI or a local directory that exists or can be made,
    and is writable: refused here, before anything is written, rather than by a traceback."""
    if storage.scheme(uri) and storage.scheme(uri) != "file":
        return  # object stores: their own errors name the bucket, at the first write
    path = Path(storage.resolve(uri)[1])
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"is under {probe}, which is a file"
        raise ValueError(f"storage: {uri} {where}; allowed: a directory or an object-store URI")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(
            f"storage: {uri} is not writable ({probe} refuses writes); allowed: a writable "
            "directory or an object-store URI"
        )


def local_resources() -> dict[str, float]:
    """What a local Ray cluster started on this machine will have: its CPUs, and its NVIDIA
    GPUs (counted by ``nvidia-smi``, so that torch need not be imported to know)."""
    gpus = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    elif shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            gpus = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.TimeoutExpired):
            gpus = 0
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus), placement.DRIVER_RESOURCE: 1.0}


@dataclass(frozen=True)
class SweepPreflight(Preflight):
    """A :class:`Preflight` with the sweep's results URI, checked before Ray starts."""

    results_uri: str = ""


def prepare_sweep(
    study: Study, storage_uri: str | None = None, resume: bool = False, address: str | None = None
) -> SweepPreflight:
    """Every check a sweep can make before Ray starts (see the module docstring)."""
    root = storage.normalize(storage_uri or study.storage)
    check_storage(root)
    results_uri = storage.join(root, study.name)
    if not resume and storage.listdir(results_uri):
        raise ValueError(
            f"storage: {results_uri} already holds results of study {study.name!r}; pass --resume "
            "to continue it, or choose another --storage"
        )
    if resume:
        check_resume_matches(study, results_uri)
    checked = preflight(study)
    if not (address or os.environ.get("RAY_ADDRESS")):
        r = study.resources  # a local cluster is this machine: the workers must fit it
        placement.max_concurrent_trials(
            local_resources(),
            int(r.workers_per_trial),
            float(r.cpus_per_worker),
            float(r.gpus_per_worker),
            requested=r.max_concurrent_trials,
        )
    return SweepPreflight(checked.study, checked.corpus, checked.steps, checked.plan, results_uri)
