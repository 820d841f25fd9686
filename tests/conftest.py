"""Shared test fixtures. Ray-level tests share ONE local cluster for the whole session."""

from __future__ import annotations

import os
import tempfile

# Tests must not write the user's Ray auth token, nor reach any hub.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ADO_RAY_CACHE", tempfile.mkdtemp(prefix="ado-ray-test-cache-"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (with the dashboard, which ASHA's cleanup needs) for all tests."""
    import ray

    from ado_ray.distributed.runtime import init_ray

    init_ray(num_cpus=2, trial_drivers=4)
    yield ray
    ray.shutdown()
