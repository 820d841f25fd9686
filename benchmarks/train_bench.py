"""Training throughput figures, printed as JSON. No asserts on wall time.

- ``ray_vs_plain``: steps/s of the loop under Ray Train (1 worker, the mixture actor) over the
  same loop in plain PyTorch in this process (target >= 0.95);
- ``ado_vs_uniform``: steps/s with the ADO policy over the uniform policy, both under Ray
  (target >= 0.99 when a step takes >= 100 ms, as on a GPU);
- ``tiny_cpu_tokens_per_s``: the tiny preset's training tokens/s on CPU (plain loop);
- on CUDA (``--gpu``): GPT-2 small tokens/s and MFU in bf16, optionally with torch.compile.

Usage: python benchmarks/train_bench.py [--steps 60] [--gpu] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from ado_ray.data import load_corpus  # noqa: E402
from ado_ray.schema import DataSpec, TrainingSpec  # noqa: E402
from ado_ray.train import TrainConfig, run_training  # noqa: E402
from ado_ray.train.model import build_model, flops_per_token  # noqa: E402

ADO = {
    "warmup_steps": 10,
    "update_interval": 10,
    "ignore_steps": 0,
    "min_fit_points": 5,
    "subsample": 1,
    "pibar_clock": "since_first_fit",
    "log_eps_min": -5.0,
}
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM


def steps_per_second(record: dict) -> float:
    s = record["summary"]
    return s["steps"] / (s["wall_seconds"] - s["time_eval_s"])


def cpu_figures(steps: int) -> dict:
    import ray

    from ado_ray.distributed.runtime import init_ray
    from ado_ray.distributed.trainer import Placement, run_trial

    data = {"seq_len": 128, "sequences_per_domain": 2000, "val_sequences_per_domain": 16}
    corpus = load_corpus("synthetic", **data)

    def config(policy: str, options: dict | None = None) -> TrainConfig:
        return TrainConfig(
            data=DataSpec("synthetic", dict(data)),
            training=TrainingSpec(
                budget={"steps": steps},
                batch_size=16,
                eval_interval=10_000,
                eval_sequences=8,
                checkpoint_interval=10_000,
            ),
            policy=policy,
            policy_options=dict(options or {}),
        )

    torch.set_num_threads(1)  # Ray workers get one thread per CPU; compare like for like
    plain = run_training(config("uniform"), corpus)
    init_ray(num_cpus=2)
    # A fresh storage path: Ray Train restores a run found under the same name and path.
    with tempfile.TemporaryDirectory(prefix="ado-bench-") as store:
        ray_uniform = run_trial(config("uniform"), "bench-uniform", store, Placement())
        ray_ado = run_trial(config("ado", ADO), "bench-ado", store, Placement())
    ray.shutdown()
    step_ms = 1000 / steps_per_second(plain)
    return {
        "tiny_step_ms_cpu": round(step_ms, 2),
        "tiny_cpu_tokens_per_s": round(plain["summary"]["tokens_per_second"]),
        "ray_vs_plain": round(steps_per_second(ray_uniform) / steps_per_second(plain), 4),
        "ado_vs_uniform": round(steps_per_second(ray_ado) / steps_per_second(ray_uniform), 4),
        "ado_policy_wait_s": round(ray_ado["summary"]["time_policy_wait_s"], 3),
        "uniform_policy_wait_s": round(ray_uniform["summary"]["time_policy_wait_s"], 3),
        "steps": steps,
    }


def gpu_figures(steps: int, compile_model: bool) -> dict:
    """GPT-2 small, bf16 autocast, batch 16 x 1024 on one GPU: tokens/s and MFU."""
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    model = build_model("small", 50257, 1024).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    fwd = torch.compile(model) if compile_model else model
    batch = torch.randint(0, 50257, (16, 1024), device=device)
    from ado_ray.train.loop import sequence_losses

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = sequence_losses(fwd, batch).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    tokens = batch.numel() / dt
    mfu = tokens * flops_per_token(model, 1024) / H100_BF16_PEAK
    return {
        "gpt2_small_tokens_per_s": round(tokens),
        "gpt2_small_mfu_vs_h100_bf16": round(mfu, 4),
        "compiled": compile_model,
        "device": torch.cuda.get_device_name(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    out = {"cpu_count": os.cpu_count(), "torch": torch.__version__}
    if args.gpu:
        out.update(gpu_figures(args.steps, args.compile))
    else:
        out.update(cpu_figures(args.steps))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
