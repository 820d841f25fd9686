"""GPT-2 training with a mixture policy in the loop (plain Python, no Ray).

Names are imported lazily, so ``ado_ray.train.config`` (torch-free) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "ado_ray.train.config",
    "Runtime": "ado_ray.train.loop",
    "evaluate": "ado_ray.train.loop",
    "run_training": "ado_ray.train.loop",
    "serialise_state": "ado_ray.train.loop",
    "METRIC_NAMES": "ado_ray.train.metrics",
    "aggregate": "ado_ray.train.metrics",
    "LocalMixture": "ado_ray.train.mixture",
    "MixtureClient": "ado_ray.train.mixture",
    "TrainState": "ado_ray.train.loop",
    "resolve_policy_options": "ado_ray.train.config",
    "MixtureController": "ado_ray.train.mixture",
    "PRESETS": "ado_ray.train.model",
    "build_model": "ado_ray.train.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
