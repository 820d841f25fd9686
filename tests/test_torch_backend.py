"""The torch-free TorchConfig: the same process group as Ray's, and no torch in the controller."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from ado_ray.distributed import torch_backend
from ado_ray.distributed.torch_backend import TorchConfig


def test_the_modules_train_s_controller_unpickles_import_no_torch():
    code = (
        "import pickle, sys\n"
        "import ado_ray.distributed.janitor, ado_ray.distributed.relay\n"
        "from ado_ray.distributed.torch_backend import TorchConfig\n"
        "cfg = pickle.loads(pickle.dumps(TorchConfig(backend='gloo')))\n"
        "cfg.backend_cls(); cfg.framework; cfg.to_dict()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_our_backend_for_env_gloo_and_nccl_ray_s_for_the_rest():
    from ray.train.torch.config import TorchConfigContextManager
    from ray.train.torch.config import _TorchBackend as RayBackend

    assert TorchConfig(backend="gloo").backend_cls is torch_backend._TorchBackend
    assert TorchConfig(backend="nccl").backend_cls is torch_backend._TorchBackend
    assert TorchConfig(backend="gloo", init_method="tcp").backend_cls is RayBackend
    assert TorchConfig(backend="tpu_dist").backend_cls is RayBackend
    assert TorchConfig(backend="cpu:gloo,cuda:nccl").backend_cls is RayBackend
    assert TorchConfig().train_func_context is TorchConfigContextManager
    assert TorchConfig(backend="gloo", timeout_s=60).to_dict() == {
        "backend": "gloo",
        "init_method": "env",
        "timeout_s": 60,
    }
    assert torch_backend._TorchBackend.share_cuda_visible_devices


def test_a_ray_function_travels_by_name_and_runs_ray_s_code():
    fn = pickle.loads(pickle.dumps(torch_backend._RayTorchFunction("_is_backend_nccl")))
    assert fn.__name__ == "_is_backend_nccl"  # Train names the worker's task after it
    assert fn("nccl") is True and fn("cpu:gloo,cuda:nccl") is True and fn("gloo") is False


@pytest.mark.ray
def test_two_workers_get_a_working_process_group_from_a_torch_free_controller(
    ray_cluster, tmp_path
):
    import ray.train
    from ray.train.v2._internal.execution.callback import ControllerCallback

    from ado_ray.distributed.trainer import TorchTrainer

    out = tmp_path / "out"
    out.mkdir()

    class Probe(ControllerCallback):  # runs in Train's controller
        def after_controller_start(self, train_run_context):
            import sys

            (out / "controller.json").write_text(json.dumps("torch" in sys.modules))

    def train_fn(config):
        import os

        import torch
        import torch.distributed as dist

        rank = dist.get_rank()
        t = torch.tensor([float(rank + 1)])
        dist.all_reduce(t)
        env = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR")}
        info = {"sum": t.item(), "backend": dist.get_backend(), "world": dist.get_world_size()}
        (out / f"rank{rank}.json").write_text(json.dumps({**info, "env": env}))

    TorchTrainer(
        train_fn,
        scaling_config=ray.train.ScalingConfig(num_workers=2),
        run_config=ray.train.RunConfig(
            name="torch-backend", storage_path=str(tmp_path / "store"), callbacks=[Probe()]
        ),
    ).fit()
    assert json.loads((out / "controller.json").read_text()) is False
    for rank in (0, 1):
        got = json.loads((out / f"rank{rank}.json").read_text())
        assert got["sum"] == 3.0 and got["backend"] == "gloo" and got["world"] == 2
        assert got["env"]["RANK"] == str(rank) and got["env"]["WORLD_SIZE"] == "2"
        assert got["env"]["LOCAL_RANK"] == str(rank) and got["env"]["MASTER_ADDR"]
