"""Ray Train's torch process group, set up without importing torch in Train's controller.

Ray's ``TorchConfig`` is defined in ``ray/train/torch/config.py``, which imports torch at the
top. Train's controller unpickles the run's backend config (its callbacks and run context hold
it), so every run's controller imported torch: 2-3 s of CPU per trial, spent before the
controller starts the workers (measured on 2 cores: ``docs/architecture.md``). The controller
only orchestrates; what needs torch runs on the workers.

:class:`TorchConfig` is a drop-in for Ray's (the same fields, passed as ``torch_config=``), defined
in this torch-free module. For our runs (a gloo or NCCL process group initialised from
environment variables) its backend takes the steps of Ray's ``_TorchBackend`` (ray 2.60,
``ray/train/torch/config.py``, ``on_start`` and ``on_shutdown``) and calls Ray's own worker-side
functions (``_set_torch_distributed_env_vars``, ``_setup_torch_process_group``, ``_shutdown_torch``)
by name, so the workers run Ray's code. Deviations, and why:

- Any other backend (``tpu_dist``, ``hccl``, a comma-separated list) or ``init_method="tcp"``
  gets Ray's own backend, and with it torch in the controller: we run neither, and Ray's TPU
  multi-slice set-up is not worth copying for them.
- ``on_start`` does not check ``torch.distributed.is_available()`` in the controller: the
  workers' ``init_process_group`` fails with its own error if it is not.
- ``on_training_start`` is empty: Ray's sets the distributed variables only for Train V1's
  worker group, and this project runs Train V2.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import ray
from ray._common.utils import env_integer
from ray.train.backend import Backend, BackendConfig
from ray.train.constants import (
    DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
    TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
)

log = logging.getLogger(__name__)

#: The backends whose process group this module sets up itself; others get Ray's backend.
OWN_BACKENDS = ("gloo", "nccl")
_RAY_TORCH_CONFIG = "ray.train.torch.config"


class _RayTorchFunction:
    """A function of Ray's torch config module, pickled by name and looked up where it runs
    (a worker, which has torch), not where it is sent from (the controller)."""

    def __init__(self, name: str):
        self.__name__ = name  # Train names a worker's task after the function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(_RAY_TORCH_CONFIG), self.__name__)(*args, **kwargs)


def _set_master(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)


class _TorchBackend(Backend):
    """Ray's ``_TorchBackend`` for a gloo or NCCL group with ``init_method="env"``."""

    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        from ray.train._internal.utils import get_address_and_port

        addr, port = worker_group.execute_single(0, get_address_and_port)
        worker_group.execute(_set_master, addr=addr, port=port)
        # LOCAL_RANK and the other variables torch.distributed reads, before the group starts.
        worker_group.execute(_RayTorchFunction("_set_torch_distributed_env_vars"))
        setup = _RayTorchFunction("_setup_torch_process_group")
        size = len(worker_group)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    setup,
                    backend=backend_config.backend,
                    world_rank=rank,
                    world_size=size,
                    init_method="env://",
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(size)
            ]
        )

    def on_shutdown(self, worker_group: Any, backend_config: TorchConfig) -> None:
        from ray.exceptions import GetTimeoutError

        futures = worker_group.execute_async(
            _RayTorchFunction("_shutdown_torch"), destroy_process_group=len(worker_group) > 1
        )
        timeout_s = env_integer(
            TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
        )
        try:
            ray.get(futures, timeout=timeout_s)
        except GetTimeoutError:
            log.warning("torch process group shutdown timed out after %d seconds", timeout_s)


@dataclass
class TorchConfig(BackendConfig):
    """Ray's ``ray.train.torch.TorchConfig``, without torch in Train's controller.

    ``backend``: None picks NCCL with GPUs, else gloo (as Ray's ``TorchTrainer`` does);
    ``init_method``: ``"env"`` or ``"tcp"``; ``timeout_s``: for process group operations."""

    backend: str | None = None
    init_method: str = "env"
    timeout_s: int = 1800

    def _own(self) -> bool:
        return self.backend in OWN_BACKENDS and self.init_method == "env"

    @property
    def backend_cls(self) -> type[Backend]:
        if self._own():
            return _TorchBackend
        return importlib.import_module(_RAY_TORCH_CONFIG)._TorchBackend

    @property
    def train_func_context(self) -> Any:
        # Used where the training function is built and run (the driver, the workers).
        return importlib.import_module(_RAY_TORCH_CONFIG).TorchConfigContextManager

    @property
    def framework(self) -> Any:
        from ray.train.v2._internal.util import TrainingFramework

        return TrainingFramework.TORCH

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
