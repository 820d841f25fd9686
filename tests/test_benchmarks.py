"""The GPU check's benchmark, dry-run on CPU: the same code paths as on a GPU, the same keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

KEYS = {
    "eager_tokens_per_s", "eager_mfu", "eager_batch_size", "eager_peak_memory_gib",
    "compile_tokens_per_s", "compile_mfu", "compile_batch_size", "compile_peak_memory_gib",
    "ray_vs_plain", "ado_vs_uniform", "fixed_overhead_s", "fixed_overhead_split_s",
    "micro_sweep_trials", "micro_sweep_concurrent", "micro_sweep_wall_s",
}  # fmt: skip


@pytest.mark.ray
def test_gpu_bench_dry_run_prints_every_key_in_one_json_line():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_bench.py", "--dry-run", "--reps", "1", "--steps", "2"],
        capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= set(out)
    assert out["eager_tokens_per_s"] > 0 and out["compile_tokens_per_s"] > 0
    assert out["eager_mfu"] is None  # no MFU on CPU
    assert out["micro_sweep_trials"] == 2
    for key in ("ray_vs_plain", "ado_vs_uniform", "fixed_overhead_s"):
        assert set(out[key]) == {"median", "min", "max"}
    split = out["fixed_overhead_split_s"]
    # The worker's start-up (imports, build) is part of the overhead, and so is Ray's share.
    assert 0 < split["startup"]["median"] < out["fixed_overhead_s"]["median"]
    assert split["ray"]["median"] > 0
