"""GPT-2 training with a mixture policy in the loop (plain Python, no Ray)."""

from ado_ray.train.config import TrainConfig
from ado_ray.train.loop import Runtime, evaluate, run_training, serialise_state
from ado_ray.train.metrics import METRIC_NAMES, aggregate
from ado_ray.train.mixture import LocalMixture, MixtureController
from ado_ray.train.model import PRESETS, build_model

__all__ = [
    "METRIC_NAMES",
    "PRESETS",
    "LocalMixture",
    "MixtureController",
    "Runtime",
    "TrainConfig",
    "aggregate",
    "build_model",
    "evaluate",
    "run_training",
    "serialise_state",
]
