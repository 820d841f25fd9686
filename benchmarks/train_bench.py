"""Training throughput figures; the last line printed is one JSON object. No asserts on time.

CPU (default): ``--reps`` repetitions (at least 5), each running, in alternation, the plain loop
(uniform), and under Ray Train (1 worker, the mixture actor) the uniform, ADO, ODM and Aioli
policies. Reported as medians with [min, max] spreads over the repetitions:

- ``ray_vs_plain``: steady-state steps/s under Ray over the plain loop (target >= 0.95);
- ``<policy>_vs_uniform``: steady-state steps/s of each adaptive policy over uniform, both under
  Ray (targets: ADO >= 0.98; ODM and Aioli within 1%);
- steady state: between the first evaluation (after ``--warmup`` steps) and the last, from the
  training time each evaluation records, so start-up, compilation and evaluation are excluded;
- ``fixed_overhead_s``: a Ray trial's wall time in the driver minus its own training and
  evaluation time: worker group, actor, process group, checkpoints and reports (target <= 8 s);
  ``fixed_overhead_split_s`` splits it into ``startup`` (the record's ``time_startup_s``: the
  training function's imports and build before its first step) and ``ray`` (the rest: Ray's
  processes before the function starts, and the end of ``fit()``);
- ``trials_per_minute``: Ray trials of this size finished per minute, one at a time;
- ``tiny_cpu_tokens_per_s``: the tiny preset's training tokens/s in the plain loop.

On CUDA (``--gpu``): GPT-2 small tokens/s and MFU in bf16, optionally with torch.compile.

Usage: python benchmarks/train_bench.py [--steps 80] [--warmup 20] [--reps 5] [--gpu] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from ado_ray.data import load_corpus  # noqa: E402
from ado_ray.schema import DataSpec, ModelSpec, TrainingSpec  # noqa: E402
from ado_ray.train import Runtime, TrainConfig, run_training  # noqa: E402
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


def steady_steps_per_second(record: dict) -> float:
    """Steps/s between the first evaluation after step 0 and the last one (training time)."""
    evals = sorted(record["evals"], key=lambda e: e["step"])
    first = next(e for e in evals if e["step"] > 0)
    last = evals[-1]
    return (last["step"] - first["step"]) / (last["train_wall_s"] - first["train_wall_s"])


def _spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


POLICIES = {"uniform": {}, "ado": ADO, "odm": {}, "aioli": {"lp_rounds": 1, "lp_steps": 2,
                                                             "mix_steps": 20, "signal": "train"}}


def cpu_figures(steps: int, warmup: int, reps: int) -> dict:
    return ray_figures(steps, warmup, reps)


def ray_figures(
    steps: int,
    warmup: int,
    reps: int,
    policies: tuple[str, ...] = tuple(POLICIES),
    gpu: bool = False,
    model: ModelSpec | None = None,
    batch_size: int = 16,
    seq_len: int = 128,
) -> dict:
    """Plain loop against Ray Train, and each policy against uniform under Ray, interleaved
    over ``reps`` repetitions (on one GPU with ``gpu``)."""
    import ray

    from ado_ray.distributed.runtime import init_ray
    from ado_ray.distributed.trainer import Placement, run_trial

    data = {"seq_len": seq_len, "sequences_per_domain": 2000, "val_sequences_per_domain": 16}
    corpus = load_corpus("synthetic", **data)
    device = torch.device("cuda" if gpu else "cpu")
    placement = Placement(use_gpu=gpu, gpus_per_worker=1.0 if gpu else 0.0)

    def config(policy: str) -> TrainConfig:
        return TrainConfig(
            data=DataSpec("synthetic", dict(data)),
            model=model or ModelSpec(),
            training=TrainingSpec(
                budget={"steps": steps},
                batch_size=batch_size,
                eval_interval=warmup,  # evaluations mark the steady-state window
                eval_sequences=8,
                checkpoint_interval=steps,
            ),
            policy=policy,
            policy_options=dict(POLICIES[policy]),
        )

    if not gpu:
        torch.set_num_threads(1)  # Ray workers get one thread per CPU; compare like for like
    init_ray(num_cpus=os.cpu_count() if gpu else 2)
    plain_rates: list[float] = []
    plain_tps: list[float] = []
    rates: dict[str, list[float]] = {p: [] for p in policies}
    overhead: list[float] = []
    startup: list[float] = []
    walls: list[float] = []
    # A fresh storage path: Ray Train restores a run found under the same name and path.
    with tempfile.TemporaryDirectory(prefix="ado-bench-") as store:
        for rep in range(reps):  # interleaved: every variant sees the same machine drift
            plain = run_training(config("uniform"), corpus, runtime=Runtime(device=device))
            plain_rates.append(steady_steps_per_second(plain))
            plain_tps.append(plain["summary"]["tokens_per_second"])
            for policy in policies:
                t0 = time.perf_counter()
                rec = run_trial(config(policy), f"bench-{policy}-{rep}", store, placement)
                wall = time.perf_counter() - t0
                s = rec["summary"]
                rates[policy].append(steady_steps_per_second(rec))
                overhead.append(wall - s["wall_seconds"])
                startup.append(s["time_startup_s"])
                walls.append(wall)
    ray.shutdown()
    uni = rates["uniform"]
    out = {
        "steps": steps,
        "warmup": warmup,
        "reps": reps,
        "tiny_step_ms_cpu": round(1000 / statistics.median(plain_rates), 2),
        "tiny_cpu_tokens_per_s": round(statistics.median(plain_tps)),
        "ray_vs_plain": _spread([u / p for u, p in zip(uni, plain_rates)]),
        "fixed_overhead_s": _spread(overhead),
        "fixed_overhead_split_s": {
            "ray": _spread([o - u for o, u in zip(overhead, startup)]),
            "startup": _spread(startup),
        },
        "trials_per_minute": round(60 / statistics.median(walls), 2),
    }
    for policy in policies:
        if policy != "uniform":
            out[f"{policy}_vs_uniform"] = _spread(
                [r / u for r, u in zip(rates[policy], uni)]
            )
    return out


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
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    out = {"cpu_count": os.cpu_count(), "torch": torch.__version__}
    if args.gpu:
        out.update(gpu_figures(args.steps, args.compile))
    else:
        out.update(cpu_figures(args.steps, args.warmup, args.reps))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
