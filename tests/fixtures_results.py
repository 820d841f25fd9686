"""A realistic synthetic results directory, written through :class:`ResultsWriter`.

Three domains (``web``, ``code``, ``books``; the entropy rate of ``books`` unknown), 200
training steps of 32 sequences of 128 tokens, evaluations every 50 steps.

- search phase: ADO configurations A (the better one) and B, seeds 100 and 101; a failed ADO
  trial (config C, error message, no metrics); one fixed-weights trial.
- confirm phase: uniform, natural and ADO config A on seeds 0, 1, 2.

Final validation losses are built with known per-arm offsets against uniform (plus a seed effect
shared by all arms, so paired differences are tight): ADO is better on every domain, natural is
better on ``web`` and worse on ``books``.

Run as a script to write a directory you can look at: ``python tests/fixtures_results.py DIR``.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import zlib

import numpy as np

from ado_ray.results import ResultsWriter, config_id

DOMAINS = ["web", "code", "books"]
NATURAL = np.array([0.6, 0.3, 0.1])
ENTROPY = [2.0, 1.0, None]
LAW = np.array([[2.2, 3.0, 0.30], [1.2, 2.5, 0.40], [2.6, 3.5, 0.25]])  # eps, beta, alpha
STEPS = 200
BATCH = 32
SEQ_LEN = 128
EVAL_EVERY = 50
STUDY = "fixture-study"

#: Final-loss offsets against uniform, per domain, reached linearly over training.
OFFSETS = {
    "uniform": np.zeros(3),
    "natural": np.array([-0.03, 0.02, 0.08]),
    "fixed": np.array([0.01, 0.0, 0.03]),
    "ado": np.array([-0.02, -0.03, -0.02]),
}
ADO_A = {
    "gamma1": 0.1,
    "gamma2": 0.1,
    "delta_min": 0.01,
    "count_mode": "same_step_size",
    "count_unit": "tokens_1024",
    "refit_every": 50,
    "use_prior": True,
}
ADO_B = {
    "gamma1": 0.3,
    "gamma2": 0.1,
    "delta_min": 0.05,
    "count_mode": "same_step_size",
    "count_unit": "tokens_1024",
    "refit_every": 100,
    "use_prior": False,
}
ADO_C = {
    "gamma1": 0.5,
    "gamma2": 0.1,
    "delta_min": 0.02,
    "count_mode": "own",
    "refit_every": 50,
    "use_prior": True,
}
#: Extra offset of ADO config B over A (B is worse).
B_PENALTY = 0.015
FIXED_WEIGHTS = [0.5, 0.2, 0.3]

STUDY_YAML = """\
name: fixture-study
model: {preset: tiny, seq_len: 128}
train: {steps: 200, batch_size: 32}
arms: [uniform, natural, fixed, ado]
"""


def law(n, eps, beta, alpha):
    return eps + beta * np.power(n, -alpha)


def _weights(arm: str, t: int, hp: dict | None) -> np.ndarray:
    if arm == "uniform":
        return np.full(3, 1 / 3)
    if arm == "natural":
        return NATURAL.copy()
    if arm == "fixed":
        return np.array(FIXED_WEIGHTS)
    target = np.array([0.35, 0.25, 0.40])
    speed = 0.5 if hp is ADO_B else 1.0
    frac = min(1.0, speed * t / STEPS)
    w = (1 - frac) * NATURAL + frac * target
    return w / w.sum()


def make_trial(arm, phase, seed, hp, *, fail=False, t0=None):
    """One trial's (record, steps, evals) in the training loop's wide form."""
    key = repr((arm, phase, seed, sorted((hp or {}).items())))
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    seed_effect = np.random.default_rng(seed).normal(0, 0.01)
    offsets = OFFSETS[arm] + (B_PENALTY if hp is ADO_B else 0.0)
    hparams = {} if hp is None else dict(hp)
    if arm == "fixed":
        hparams = {"weights": FIXED_WEIGHTS}
    cid = config_id(arm, hparams)
    trial_id = f"{phase}-{arm}-{cid[:6]}-s{seed}"
    t0 = t0 or dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    record = {
        "trial_id": trial_id,
        "arm": arm,
        "phase": phase,
        "config_id": cid,
        "seed": seed,
        "status": "failed" if fail else "completed",
        "error": "RuntimeError: CUDA out of memory (synthetic)" if fail else None,
        "domains": DOMAINS,
        "hparams": hparams,
        "started_at": t0,
        "finished_at": t0 + dt.timedelta(seconds=61),
    }
    if fail:
        record["metrics"] = {}
        return record, None, None

    steps, evals = [], []
    cum = 0
    refit = (hp or {}).get("refit_every", 50)
    for t in range(STEPS):
        w = _weights(arm, t, hp)
        counts = rng.multinomial(BATCH, w)
        cum += BATCH
        n = cum * SEQ_LEN / 1024
        losses = law(n, LAW[:, 0], LAW[:, 1], LAW[:, 2]) + rng.normal(0, 0.03, 3)
        losses = np.where(counts > 0, losses, np.nan)
        row = {
            "step": t,
            "weights": w.tolist(),
            "counts": counts.tolist(),
            "train_loss": losses.tolist(),
            "law": None,
        }
        if arm == "ado" and t > 0 and t % refit == 0:
            row["law"] = (LAW * (1 + rng.normal(0, 0.02, LAW.shape))).tolist()
        steps.append(row)
        if (t + 1) % EVAL_EVERY == 0:
            n_eval = (t + 1) * BATCH * SEQ_LEN / 1024
            frac = (t + 1) / STEPS
            val = (
                law(n_eval, LAW[:, 0], LAW[:, 1], LAW[:, 2]) + 0.05 + frac * (offsets + seed_effect)
            )
            val = val + rng.normal(0, 0.003, 3)
            evals.append(
                {
                    "step": t + 1,
                    "tokens_seen": (t + 1) * BATCH * SEQ_LEN,
                    "val_loss": val.tolist(),
                    "entropy_rate": ENTROPY,
                }
            )
    final = np.array(evals[-1]["val_loss"])
    wall = 60.0 * (1.1 if arm == "ado" else 1.0) + rng.normal(0, 0.5)
    tokens = STEPS * BATCH * SEQ_LEN
    record["metrics"] = {
        "val_loss_balanced": float(final.mean()),
        "val_loss_natural": float(NATURAL @ final),
        "val_ppl_balanced": math.exp(float(final.mean())),
        "val_ppl_natural": math.exp(float(NATURAL @ final)),
        "excess_loss_balanced": None,  # books has no known entropy rate
        "tokens_seen": tokens,
        "steps": STEPS,
        "wall_seconds": wall,
        "tokens_per_second": tokens / wall,
        "time_data_s": 0.1 * wall,
        "time_compute_s": 0.85 * wall,
        "time_policy_wait_s": 0.01 * wall if arm == "ado" else None,
        "time_eval_s": 0.04 * wall,
        "final_train_loss": float(np.nanmean(steps[-1]["train_loss"])),
        "seq_len": SEQ_LEN,
    }
    return record, steps, evals


def trial_specs():
    """(arm, phase, seed, hp, fail) of every trial in the fixture."""
    specs = []
    for hp in (ADO_A, ADO_B):
        for seed in (100, 101):
            specs.append(("ado", "search", seed, hp, False))
    specs.append(("ado", "search", 100, ADO_C, True))
    specs.append(("fixed", "search", 100, None, False))
    for arm in ("uniform", "natural", "ado"):
        for seed in (0, 1, 2):
            specs.append((arm, "confirm", seed, ADO_A if arm == "ado" else None, False))
    return specs


def build_results(uri: str, *, merge: bool = True) -> dict:
    """Write the fixture study under ``uri``; returns {trial_id: (record, steps, evals)}."""
    writer = ResultsWriter(uri, STUDY)
    writer.write_meta(STUDY_YAML, "0.1.0", extra={"seq_len": SEQ_LEN})
    out = {}
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for i, (arm, phase, seed, hp, fail) in enumerate(trial_specs()):
        record, steps, evals = make_trial(
            arm, phase, seed, hp, fail=fail, t0=t0 + dt.timedelta(minutes=i)
        )
        writer.add_trial(record, steps, evals)
        out[record["trial_id"]] = (record, steps, evals)
    if merge:
        writer.merge()
    return out


if __name__ == "__main__":
    build_results(sys.argv[1] if len(sys.argv) > 1 else "fixture-results")
