"""Headroom of the synthetic testbed: how much the best static mixture beats uniform.

A testbed on which no mixture beats uniform cannot tell mixing methods apart. This benchmark
trains the quickstart's model and budget (tiny GPT-2, 300 steps of 16 x 64 tokens, lr 1e-3,
20 warmup steps; plain loop, no Ray) with the ``fixed`` policy on the uniform mixture and on a
few candidate static mixtures (or a Dirichlet swarm around uniform), on several seeds, runs
interleaved (the mixtures' order rotates from seed to seed), and reports:

- ``uniform``: mean balanced held-out loss (``val_loss_balanced``) over seeds and the 95% t-CI
  half-width of that mean (the seed noise);
- every mixture's mean and median, and its difference to uniform paired by seed, with a 95% t-CI;
- ``best``: the mixture with the lowest mean; ``headroom`` = uniform's mean minus the best's
  (positive: the best static mixture is better), its paired 95% CI, and ``headroom_over_noise``
  = headroom / uniform's CI half-width (the testbed's target is >= 3);
- per-domain losses (uniform: at step 0 and at the end, with the floor and the fraction of the
  gap to the floor closed), and wall times.

The best mixture is picked on the same seeds it is scored on, which flatters it slightly when
there are many candidates; ``tests/test_testbed.py`` confirms the default candidate on fresh
seeds.

One JSON object per run, then one summary JSON line last.

Usage: python benchmarks/testbed_headroom.py [--seeds 0 1 2] [--steps 300] [--swarm 0]
       [--domains default|classic|JSON] [--mixtures JSON] [--eval-sequences 128]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from ado_ray.analysis import mean_ci  # noqa: E402
from ado_ray.data import load_corpus  # noqa: E402
from ado_ray.data.synthetic import DOMAIN_SETS  # noqa: E402
from ado_ray.schema import DataSpec, ModelSpec, TrainingSpec  # noqa: E402
from ado_ray.train import TrainConfig, run_training  # noqa: E402

# Candidate static mixtures over the default domains (fast, slow, shared_a, shared_b, noise).
# "best" is the one tests/test_testbed.py checks against uniform (on fresh seeds).
CANDIDATES: dict[str, list[float]] = {
    "uniform": [0.2, 0.2, 0.2, 0.2, 0.2],
    "best": [0.06, 0.5, 0.18, 0.14, 0.12],  # little on fast and noise, half on slow
    "slow_x2": [0.08, 0.4, 0.2, 0.2, 0.12],
    "a_over_b": [0.08, 0.4, 0.3, 0.1, 0.12],  # lean on the transfer from shared_a
    "no_b": [0.1, 0.4, 0.3, 0.0, 0.2],  # transfer: shared_b learned from shared_a alone
    "no_noise": [0.25, 0.25, 0.25, 0.25, 0.0],  # noise needs a small share, not none
}


def run_config(
    weights: list[float],
    seed: int,
    data: dict,
    steps: int = 300,
    eval_sequences: int = 128,
    eval_interval: int | None = None,
) -> TrainConfig:
    """The quickstart's run with the ``fixed`` policy on ``weights`` (evaluations every
    ``eval_interval`` steps, default a third of the run)."""
    return TrainConfig(
        data=DataSpec("synthetic", dict(data)),
        model=ModelSpec(preset="tiny"),
        training=TrainingSpec(
            budget={"steps": steps},
            batch_size=16,
            lr=1e-3,
            lr_warmup_steps=20,
            eval_interval=eval_interval or max(1, steps // 3),
            eval_sequences=eval_sequences,
            checkpoint_interval=10 * steps,
        ),
        policy="fixed",
        policy_options={"weights": [float(w) for w in weights]},
        seed=seed,
    )


def paired(diffs: list[float]) -> dict:
    mean, half, n = mean_ci(diffs)
    return {"mean": mean, "ci": [mean - half, mean + half], "ci_half_width": half, "n": n}


def run_grid(
    mixtures: dict[str, list[float]],
    seeds: list[int],
    data: dict,
    steps: int,
    eval_sequences: int,
    log=print,
) -> tuple[object, list[dict]]:
    """Every mixture on every seed, interleaved; one record per run."""
    corpus = load_corpus("synthetic", **data)
    names = list(mixtures)
    rows = []
    for i, seed in enumerate(seeds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            cfg = run_config(mixtures[name], seed, data, steps, eval_sequences)
            t0 = time.perf_counter()
            rec = run_training(cfg, corpus)
            row = {
                "mixture": name,
                "seed": seed,
                "weights": [round(float(w), 4) for w in mixtures[name]],
                "val_loss_balanced": rec["summary"]["val_loss_balanced"],
                "val_loss_first": rec["evals"][0]["val_loss"],
                "val_loss": rec["evals"][-1]["val_loss"],
                "wall_s": round(time.perf_counter() - t0, 2),
            }
            rows.append(row)
            log(json.dumps(row))
    return corpus, rows


def gap_closed(first: np.ndarray, last: np.ndarray, floor: np.ndarray) -> list[float | None]:
    """Share of each domain's gap to its floor closed from ``first`` to ``last``; None where
    the start is within 0.1 nats of the floor (the noise: nothing to close)."""
    gap = first - floor
    return [
        round(float((f - la) / g), 3) if g > 0.1 else None
        for f, la, g in zip(first, last, gap, strict=True)
    ]


def summarise(corpus, rows: list[dict], mixtures: dict[str, list[float]]) -> dict:
    by = {(r["mixture"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    floor = np.asarray(corpus.entropy_rate, dtype=np.float64)
    uni = [by["uniform", s]["val_loss_balanced"] for s in seeds]
    u_mean, u_half, _ = mean_ci(uni)
    table = []
    for name, w in mixtures.items():
        vals = [by[name, s]["val_loss_balanced"] for s in seeds]
        first_m = np.mean([by[name, s]["val_loss_first"] for s in seeds], axis=0)
        per_domain = np.mean([by[name, s]["val_loss"] for s in seeds], axis=0)
        entry = {
            "mixture": name,
            "weights": [round(float(x), 4) for x in w],
            "mean": float(np.mean(vals)),
            "median": float(np.median(vals)),
            "minus_uniform": paired([v - u for v, u in zip(vals, uni, strict=True)]),
            "val_loss_by_domain": [round(float(x), 4) for x in per_domain],
        }
        # Transfer: how much of its gap a domain with no share of the data closed.
        closed_m = gap_closed(first_m, per_domain, floor)
        unseen = {corpus.domains[k]: closed_m[k] for k in range(len(w)) if w[k] == 0}
        if unseen:
            entry["gap_closed_without_data"] = unseen
        table.append(entry)
    best = min((t for t in table if t["mixture"] != "uniform"), key=lambda t: t["mean"])
    d = best["minus_uniform"]
    headroom = -d["mean"]
    first = np.mean([by["uniform", s]["val_loss_first"] for s in seeds], axis=0)
    last = np.mean([by["uniform", s]["val_loss"] for s in seeds], axis=0)
    walls = [r["wall_s"] for r in rows]
    return {
        "domains": corpus.domains,
        "entropy_rate": [round(float(x), 4) for x in floor],
        "seeds": seeds,
        "uniform": {
            "mean": u_mean,
            "median": float(np.median(uni)),
            "ci_half_width": u_half,
            "values": uni,
            "val_loss_step0": [round(float(x), 4) for x in first],
            "val_loss_end": [round(float(x), 4) for x in last],
            "gap_closed": gap_closed(first, last, floor),
        },
        "mixtures": table,
        "best": {
            "mixture": best["mixture"],
            "weights": best["weights"],
            "mean": best["mean"],
            "headroom": headroom,
            "headroom_ci": [-d["ci"][1], -d["ci"][0]],
            "paired_ci_half_width": d["ci_half_width"],
            "headroom_over_noise": headroom / u_half if u_half and math.isfinite(u_half) else None,
        },
        "wall_s": {
            "per_run_median": float(np.median(walls)),
            "per_run_mean": float(np.mean(walls)),
            "total": float(np.sum(walls)),
            "runs": len(walls),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-sequences", type=int, default=128)
    ap.add_argument(
        "--domains", default="default", help="'default', 'classic' or a JSON list of domains"
    )
    ap.add_argument("--domain-sizes", default=None, help="JSON list of relative train sizes")
    ap.add_argument(
        "--mixtures",
        default=None,
        help="JSON object {name: weights}; default: the candidates above (default domains) or "
        "uniform only (other domains; add --swarm)",
    )
    ap.add_argument("--swarm", type=int, default=0, help="add N Dirichlet mixtures around uniform")
    ap.add_argument("--concentration", type=float, default=1.0)
    ap.add_argument("--swarm-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    domains = args.domains if args.domains in ("default", "classic") else json.loads(args.domains)
    data: dict = {"seq_len": 64, "domains": domains}
    if args.domain_sizes:
        data["domain_sizes"] = json.loads(args.domain_sizes)
    k = len(DOMAIN_SETS[domains]) if isinstance(domains, str) else len(domains)
    if args.mixtures:
        mixtures = {"uniform": [1.0 / k] * k, **json.loads(args.mixtures)}
    elif domains == "default":
        mixtures = dict(CANDIDATES)
    else:
        mixtures = {"uniform": [1.0 / k] * k}
    if args.swarm:
        from ado_ray.swarm import sample_mixtures

        draws = sample_mixtures(
            args.swarm + 1, [1.0] * k, [1.0] * k, args.concentration, args.swarm_seed
        )[1:]
        mixtures.update({f"swarm{i}": list(map(float, w)) for i, w in enumerate(draws)})
    if len(mixtures) < 2:
        ap.error("give at least one mixture besides uniform (--mixtures or --swarm)")

    t0 = time.perf_counter()
    corpus, rows = run_grid(mixtures, args.seeds, data, args.steps, args.eval_sequences)
    out = summarise(corpus, rows, mixtures)
    out["steps"] = args.steps
    out["eval_sequences"] = args.eval_sequences
    out["wall_s"]["elapsed"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
