"""Benchmark the policies: ADO's refit time and every policy's per-step cost. Prints JSON.

    taskset -c 0 python benchmarks/policy_bench.py [--domains 22] [--steps 60000]

* ``refit_s``: wall time of one ADO refit (smoothing, subsampling, fitting all
  domains) over ``--steps`` recorded steps, median over ``--repeats``; the
  policy has the authors' defaults (ignore 1000 steps, subsample 10).
* ``step_us``: one ``observe`` + ``weights`` call after the first fit (no refit
  in the measured steps), median over ``--step-samples`` steps.
* ``per_policy_step_us``: for every built-in policy, the median cost of one step (``observe`` +
  ``weights``, plus ``observe_eval`` on the steps the policy takes held-out losses, amortised into
  them), measured in alternation across the policies, step by step, after a warm-up. Target:
  at most 50 us each for 22 domains.
* ``coarse_vs_full``: the price of the coarse stages. The same series fitted
  with stage 2 on *all* points (no coarsening after the screen): the largest
  relative excess of our objective over that reference, the largest
  differences in eps (relative) and alpha, and in the forecast learning-speed
  shares (-dL/dn at the end, normalised over domains: what ADO acts on).
  Skip with ``--no-accuracy``.

Synthetic data: 22 domains with power-law losses in the number of sequences
seen (batch 256), multiplicative noise, one flat domain; the batch of each step
is a multinomial draw from the policy's weights. No assertions on wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from ado_ray.policies import complete_options, make_policy, policy_class, policy_names
from ado_ray.policies.scaling_law import fit_scaling_laws, law_objective


def _trace(k: int, steps: int, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    eps = rng.uniform(1.7, 3.5, k)
    beta = rng.uniform(2.0, 60.0, k)
    alpha = rng.uniform(0.1, 0.6, k)
    n = np.arange(1, steps + 1, dtype=np.float64)[:, None] * batch
    loss = (eps + beta * n**-alpha) * np.exp(rng.normal(0.0, 0.03, (steps, k)))
    loss[:, 0] = 3.0 * np.exp(rng.normal(0.0, 0.03, steps))  # a flat domain
    prior = rng.dirichlet(np.full(k, 2.0))
    counts = rng.multinomial(batch, prior, size=steps).astype(np.float64)
    return prior, counts, np.where(counts > 0, loss, np.nan)


def _coarse_vs_full(policy, steps: int) -> dict:
    """Fit the policy's own fit series with and without coarsening; compare."""
    series = {}

    def capture(n, losses, **kwargs):
        series.update(n=n, losses=losses, kwargs=kwargs)
        return fit_scaling_laws(n, losses, **kwargs)

    import ado_ray.policies.ado as ado_module

    original = ado_module.fit_scaling_laws
    ado_module.fit_scaling_laws = capture
    try:
        policy._fit(steps)
    finally:
        ado_module.fit_scaling_laws = original
    n, losses, kw = series["n"], series["losses"], series["kwargs"]
    fast = fit_scaling_laws(n, losses, **kw)
    t0 = time.perf_counter()
    full = fit_scaling_laws(n, losses, **kw, fit_points=10**9, max_iter=200)
    full_s = time.perf_counter() - t0
    bounds = kw["bounds"]
    j_fast = law_objective(fast.log_params, n, losses, bounds=bounds)
    j_full = law_objective(full.log_params, n, losses, bounds=bounds)
    lf, lr = fast.laws(), full.laws()
    n_end = float(np.max(n))

    def shares(laws):  # the forecast -dL/dn at the end, normalised over domains
        speed = np.maximum(laws[:, 2], 0.05) * laws[:, 1] * n_end ** -laws[:, 2] / n_end
        return speed / speed.sum()

    return {
        "max_rel_objective_excess": float(np.max((j_fast - j_full) / j_full)),
        "max_rel_eps_diff": float(np.max(np.abs(lf[:, 0] - lr[:, 0]) / lr[:, 0])),
        "max_alpha_diff": float(np.max(np.abs(lf[:, 2] - lr[:, 2]))),
        "max_forecast_share_diff": float(np.max(np.abs(shares(lf) - shares(lr)))),
        "reference_fit_s": round(full_s, 3),
    }


def per_policy_step_us(
    prior: np.ndarray, counts: np.ndarray, losses: np.ndarray, warm: int, samples: int
) -> dict[str, float]:
    """Median per-step cost of every built-in policy, timed in alternation step by step."""
    k = prior.size
    names = [n for n in policy_names() if policy_class(n).__module__.startswith("ado_ray.")]
    policies = {}
    for name in names:
        opts = {"weights": list(prior)} if name == "fixed" else {}
        opts = complete_options(
            name, opts, token_counts=prior * 1e9, seq_len=1024, total_tokens=int(5e9)
        )
        if name == "ado":
            opts["update_interval"] = 10**9  # the refit is timed apart (refit_s)
        policies[name] = make_policy(name, k, **opts)
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = {n: [] for n in names}

    def step(p, t: int) -> None:
        if p.wants_eval_feedback and (p.wants_eval_at(t) or t % 100 == 0):
            p.observe_eval(t, 2.0 + rng.random(k))
        p.observe(t, counts[t], losses[t])
        p.weights()

    for t in range(warm):
        for p in policies.values():
            step(p, t)
    for t in range(warm, warm + samples):
        for name, p in policies.items():  # interleaved: every policy sees the same machine state
            t0 = time.perf_counter()
            step(p, t)
            times[name].append(time.perf_counter() - t0)
    return {n: round(statistics.median(v) * 1e6, 2) for n, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=22)
    ap.add_argument("--steps", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--step-samples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-accuracy", action="store_true", help="skip the coarse-vs-full check")
    args = ap.parse_args(argv)
    k, steps = args.domains, args.steps

    prior, counts, losses = _trace(k, steps, args.batch, args.seed)
    # Refit: record `steps` steps with refits pushed past the end, then time refits.
    policy = make_policy("ado", k, prior=prior, update_interval=10**9, warmup_steps=steps)
    for t in range(steps):
        policy.observe(t, counts[t], losses[t])
    refit_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ok = policy._refit(steps - 1)  # the refit observe() runs when one is due
        refit_times.append(time.perf_counter() - t0)
    assert ok, "refit produced no finite law"
    accuracy = None if args.no_accuracy else _coarse_vs_full(policy, steps)

    # Per-step cost after the first fit (authors' defaults, no refit while timing).
    policy = make_policy("ado", k, prior=prior, update_interval=10**9)
    warm = 2000
    for t in range(warm):
        policy.observe(t, counts[t], losses[t])
        policy.weights()
    assert policy.last_fit_step is not None
    samples = min(args.step_samples, steps - warm)
    step_times = []
    for t in range(warm, warm + samples):
        c, loss = counts[t], losses[t]
        t0 = time.perf_counter()
        policy.observe(t, c, loss)
        policy.weights()
        step_times.append(time.perf_counter() - t0)

    per_policy = per_policy_step_us(prior, counts, losses, warm, samples)
    result = {
        "benchmark": "policy_bench",
        "domains": k,
        "steps": steps,
        "fit_points_per_domain": len(range(1000, steps, 10)),
        "refit_s_median": round(statistics.median(refit_times), 4),
        "refit_s_min": round(min(refit_times), 4),
        "refit_repeats": args.repeats,
        "step_us_median": round(statistics.median(step_times) * 1e6, 2),
        "step_us_p90": round(float(np.percentile(step_times, 90)) * 1e6, 2),
        "step_samples": samples,
        "per_policy_step_us": per_policy,
        "per_policy_max_us": max(per_policy.values()),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "coarse_vs_full": accuracy,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
