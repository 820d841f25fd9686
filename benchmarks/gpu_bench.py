"""The one-shot GPU check's figures, as one JSON line (the last line printed). No asserts.

On a CUDA machine (``scripts/gpu_check.sh`` runs it):

- GPT-2 small, bf16 autocast, context 1024: training tokens/s and MFU, eager and with
  ``torch.compile``, at the largest batch (of 64, 32, 16, 8) that fits, with its peak memory
  (targets: MFU >= 40% compiled on H100/H200; llm.c reaches 40.5%);
- plain loop against Ray Train on one GPU, and ADO against uniform under Ray, as steady-state
  ratios over interleaved repetitions (targets: >= 0.97 and >= 0.995), and the fixed overhead per
  trial (target <= 10 s), split as in ``train_bench.py``;
- a 2-trial micro-sweep with 0.5 GPU per trial: whether the two trials ran at the same time on
  the one GPU (fractional packing works).

``--dry-run`` runs the same code paths on CPU with the tiny preset and prints the same keys.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from train_bench import ray_figures  # noqa: E402

from ado_ray.schema import ModelSpec  # noqa: E402
from ado_ray.train.loop import device_plan, peak_flops, sequence_losses  # noqa: E402
from ado_ray.train.model import build_model, flops_per_token  # noqa: E402


def _speed_at(
    device: torch.device, preset: str, seq_len: int, vocab: int, steps: int, compiled: bool,
    batch: int,
) -> dict:
    plan = device_plan(device, "bf16")
    torch.manual_seed(0)
    model = build_model(preset, vocab, seq_len).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=plan.fused_adamw or None)
    fwd = torch.compile(model, dynamic=False) if compiled else model
    ids = torch.randint(0, vocab, (batch, seq_len), device=device)
    cuda = device.type == "cuda"

    def step() -> None:
        with plan.autocast():
            loss = sequence_losses(fwd, ids).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(3):  # compile and warm up
        step()
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    tokens = batch * seq_len * steps / (time.perf_counter() - t0)
    peak = peak_flops(device)
    mfu = tokens * flops_per_token(model, seq_len) / peak if peak else None
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return {
        "tokens_per_s": round(tokens),
        "mfu": None if mfu is None else round(mfu, 4),
        "batch_size": batch,
        "peak_memory_gib": None if mem is None else round(mem, 2),
    }


def model_speed(
    device: torch.device, preset: str, seq_len: int, vocab: int, steps: int, compiled: bool
) -> dict:
    """Training tokens/s, MFU and peak memory of ``preset`` at the largest batch that fits."""
    for batch in (64, 32, 16, 8) if device.type == "cuda" else (4,):
        try:
            return _speed_at(device, preset, seq_len, vocab, steps, compiled, batch)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
    raise RuntimeError("no batch size fits")


def micro_sweep(gpu: bool, store: str) -> dict:
    """Two trials at 0.5 GPU each (CPU in the dry run): did they overlap in time?"""
    from ado_ray.distributed.sweep import run_sweep
    from ado_ray.results import read_results
    from ado_ray.study import load_study

    study = load_study(
        {
            "name": "gpu_pack",
            "data": {
                "source": "synthetic",
                "options": {"seq_len": 64, "sequences_per_domain": 400,
                            "val_sequences_per_domain": 16},
            },
            "model": {"preset": "tiny"},
            "training": {"budget": {"steps": 40}, "batch_size": 16, "eval_interval": 40,
                         "eval_sequences": 8},
            "arms": {"uniform": {}, "natural": {}},
            "seeds": [0],
            "resources": {"gpus_per_worker": 0.5 if gpu else 0, "cpus_per_worker": 1},
            "storage": store,
        }
    )
    t0 = time.perf_counter()
    uri = run_sweep(study)
    wall = time.perf_counter() - t0
    t = read_results(uri, with_steps=False).trials
    overlap = bool(t.started_at.max() < t.finished_at.min()) if len(t) == 2 else False
    return {"micro_sweep_trials": int(len(t)), "micro_sweep_concurrent": overlap,
            "micro_sweep_wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny preset, same keys")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args(argv)
    gpu = not args.dry_run
    if gpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run on CPU")
    device = torch.device("cuda" if gpu else "cpu")
    preset, seq_len, vocab = ("small", 1024, 50257) if gpu else ("tiny", 64, 256)
    steps = args.steps or (20 if gpu else 3)
    out: dict = {
        "device": torch.cuda.get_device_name(device) if gpu else "cpu (dry run)",
        "torch": torch.__version__,
        "preset": preset,
        "seq_len": seq_len,
    }
    for compiled in (False, True):
        tag = "compile" if compiled else "eager"
        fig = model_speed(device, preset, seq_len, vocab, steps, compiled)
        out.update({f"{tag}_{k}": v for k, v in fig.items()})
    reps = args.reps or (5 if gpu else 2)
    ray_steps = 200 if gpu else 24
    ratios = ray_figures(
        ray_steps,
        ray_steps // 4,
        reps,
        policies=("uniform", "ado"),
        gpu=gpu,
        model=ModelSpec(preset=preset),
        batch_size=32 if gpu else 8,
        seq_len=seq_len,
    )
    out.update(
        ray_vs_plain=ratios["ray_vs_plain"],
        ado_vs_uniform=ratios["ado_vs_uniform"],
        fixed_overhead_s=ratios["fixed_overhead_s"],
        fixed_overhead_split_s=ratios["fixed_overhead_split_s"],
    )
    with tempfile.TemporaryDirectory(prefix="ado-gpu-bench-") as store:
        out.update(micro_sweep(gpu, store))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
