"""Realistic synthetic results directories: written through :class:`ResultsWriter` (schema
version 2), or by hand in the version-1 layout.

Three domains (``web``, ``code``, ``books``; the entropy rate of ``books`` unknown), 200
training steps of 32 sequences of 128 tokens, evaluations every 50 steps (16 held-out sequences
per domain each).

:func:`build_results`, arms named after their policies:

- search phase: ADO configurations A (the better one) and B, seeds 100 and 101; a failed ADO
  trial (config C, error message, no metrics); one fixed-weights trial.
- confirm phase: uniform, natural and ADO config A on seeds 0, 1, 2.

ADO trials record their fitted laws as diagnostics (law_eps/law_beta/law_alpha/law_fit_step)
at every step from the first refit on, as a loop that logs ``policy.diagnostics()`` each step.

:func:`build_v1_results`: the same trials in the schema-version-1 layout (no policy or
eval_tokens columns; laws as steps columns on refit steps), one trial left unmerged in parts.

:func:`build_labelled_results`: labelled arms sharing a policy: ``ado_fast`` and ``ado_slow``
(both ADO, each with its own search), and ``base`` (uniform) unless left out.

Final validation losses are built with known per-arm offsets against uniform (plus a seed effect
shared by all arms, so paired differences are tight): ADO is better on every domain, natural is
better on ``web`` and worse on ``books``.

Run as a script to write a directory you can look at: ``python tests/fixtures_results.py DIR``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ado_ray.results import ResultsWriter, config_id, evals_table, trial_table

DOMAINS = ["web", "code", "books"]
NATURAL = np.array([0.6, 0.3, 0.1])
ENTROPY = [2.0, 1.0, None]
LAW = np.array([[2.2, 3.0, 0.30], [1.2, 2.5, 0.40], [2.6, 3.5, 0.25]])  # eps, beta, alpha
STEPS = 200
BATCH = 32
SEQ_LEN = 128
EVAL_EVERY = 50
EVAL_SEQS = 16  # held-out sequences per domain per evaluation
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
arms: {uniform: {}, natural: {}, fixed: {}, ado: {}}
"""
#: Version 1's study files listed arm names.
V1_STUDY_YAML = STUDY_YAML.replace(
    "{uniform: {}, natural: {}, fixed: {}, ado: {}}", "[uniform, natural, fixed, ado]"
)
ARMS = {"uniform": "uniform", "natural": "natural", "fixed": "fixed", "ado": "ado"}
#: What the sweep records in meta.json for the searched ado arm (gamma2 is declared but every
#: trial has 0.1, so the analysis skips it as constant).
SEARCH_SPACES = {
    "ado": {
        "gamma1": {"type": "loguniform", "low": 0.01, "high": 1.0},
        "gamma2": {"type": "uniform", "low": 0.05, "high": 0.5},
        "delta_min": {"type": "loguniform", "low": 0.001, "high": 0.1},
        "refit_every": {"type": "int", "low": 50, "high": 100, "step": 50, "log": False},
        "use_prior": {"type": "categorical", "choices": [True, False]},
    }
}


def law(n, eps, beta, alpha):
    return eps + beta * np.power(n, -alpha)


def _weights(policy: str, t: int, hp: dict | None) -> np.ndarray:
    if policy == "uniform":
        return np.full(3, 1 / 3)
    if policy == "natural":
        return NATURAL.copy()
    if policy == "fixed":
        return np.array(FIXED_WEIGHTS)
    target = np.array([0.35, 0.25, 0.40])
    speed = 0.5 if hp is ADO_B else 1.0
    frac = min(1.0, speed * t / STEPS)
    w = (1 - frac) * NATURAL + frac * target
    return w / w.sum()


def make_trial(arm, phase, seed, hp, *, fail=False, t0=None, policy=None, offset=0.0):
    """One trial's (record, steps, evals) in the training loop's wide form. ``arm`` is the
    label; ``policy`` (default: the label) decides the weights and the loss offsets;
    ``offset`` is added to the final losses."""
    policy = policy or arm
    key = repr((arm, phase, seed, sorted((hp or {}).items())))
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    seed_effect = np.random.default_rng(seed).normal(0, 0.01)
    offsets = OFFSETS[policy] + (B_PENALTY if hp is ADO_B else 0.0) + offset
    hparams = {} if hp is None else dict(hp)
    if policy == "fixed":
        hparams = {"weights": FIXED_WEIGHTS}
    cid = config_id(arm, hparams)
    trial_id = f"{phase}-{arm}-{cid[:6]}-s{seed}"
    t0 = t0 or dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    record = {
        "trial_id": trial_id,
        "arm": arm,
        "policy": policy,
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
    fitted, fit_step = None, None
    for t in range(STEPS):
        w = _weights(policy, t, hp)
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
            "diagnostics": None,
        }
        if policy == "ado" and t > 0 and t % refit == 0:
            fitted, fit_step = LAW * (1 + rng.normal(0, 0.02, LAW.shape)), t
        if fitted is not None:  # the latest law, from the first refit on
            row["diagnostics"] = {
                "law_eps": fitted[:, 0].tolist(),
                "law_beta": fitted[:, 1].tolist(),
                "law_alpha": fitted[:, 2].tolist(),
                "law_fit_step": [float(fit_step)] * 3,
            }
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
    wall = 60.0 * (1.1 if policy == "ado" else 1.0) + rng.normal(0, 0.5)
    tokens = STEPS * BATCH * SEQ_LEN
    record["metrics"] = {
        "val_loss_balanced": float(final.mean()),
        "val_loss_natural": float(NATURAL @ final),
        "val_ppl_balanced": math.exp(float(final.mean())),
        "val_ppl_natural": math.exp(float(NATURAL @ final)),
        "excess_loss_balanced": None,  # books has no known entropy rate
        "tokens_seen": tokens,
        "eval_tokens": len(evals) * len(DOMAINS) * EVAL_SEQS * SEQ_LEN,
        "steps": STEPS,
        "wall_seconds": wall,
        "tokens_per_second": tokens / wall,
        "time_data_s": 0.1 * wall,
        "time_compute_s": 0.85 * wall,
        "time_policy_wait_s": 0.01 * wall if policy == "ado" else None,
        "time_eval_s": 0.04 * wall,
        "time_startup_s": 3.5,
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


def meta_extra(arms: dict, search_spaces: dict) -> dict:
    """meta.json's extras, as the sweep writes them."""
    return {
        "seq_len": SEQ_LEN,
        "total_steps": STEPS,
        "domains": DOMAINS,
        "arms": arms,
        "search_spaces": search_spaces,
    }


def build_results(uri: str, *, merge: bool = True) -> dict:
    """Write the fixture study under ``uri``; returns {trial_id: (record, steps, evals)}."""
    writer = ResultsWriter(uri, STUDY)
    writer.write_meta(STUDY_YAML, "0.1.0", extra=meta_extra(ARMS, SEARCH_SPACES))
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


# --------------------------------------------------------------------------------------------
# schema version 1, written by hand

#: trials.parquet columns of schema version 1 (hp_<name> columns follow).
V1_TRIALS_COLUMNS = (
    "schema_version",
    "study",
    "trial_id",
    "arm",
    "phase",
    "config_id",
    "seed",
    "status",
    "error",
    "val_loss_balanced",
    "val_loss_natural",
    "val_ppl_balanced",
    "val_ppl_natural",
    "excess_loss_balanced",
    "final_train_loss",
    "tokens_seen",
    "steps",
    "seq_len",
    "wall_seconds",
    "tokens_per_second",
    "time_data_s",
    "time_compute_s",
    "time_policy_wait_s",
    "time_eval_s",
    "num_domains",
    "domains",
    "package_version",
    "started_at",
    "finished_at",
)
V1_STEPS_SCHEMA = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("domain_index", pa.int32(), nullable=False),
        pa.field("weight", pa.float64()),
        pa.field("count", pa.int64()),
        pa.field("train_loss", pa.float64()),
        pa.field("law_eps", pa.float64()),
        pa.field("law_beta", pa.float64()),
        pa.field("law_alpha", pa.float64()),
    ]
)


def v1_trials_table(record: dict) -> pa.Table:
    """A trial's version-1 row: the version-1 columns, schema_version 1."""
    row = trial_table({k: v for k, v in record.items() if k != "policy"}, STUDY, "0.0.9")
    hp = [c for c in row.column_names if c.startswith("hp_")]
    row = row.select([*V1_TRIALS_COLUMNS, *hp])
    return row.set_column(0, "schema_version", pa.array([1], type=pa.int32()))


def v1_steps_table(trial_id: str, steps: list) -> pa.Table:
    """Version-1 steps rows: the law set on refit steps only (law_fit_step == step)."""
    cols: dict = {name: [] for name in V1_STEPS_SCHEMA.names}
    for row in steps:
        diag = row.get("diagnostics") or {}
        refit = bool(diag) and diag["law_fit_step"][0] == row["step"]
        for i, domain in enumerate(DOMAINS):
            count = int(row["counts"][i])
            loss = float(row["train_loss"][i])
            cols["trial_id"].append(trial_id)
            cols["step"].append(row["step"])
            cols["domain"].append(domain)
            cols["domain_index"].append(i)
            cols["weight"].append(float(row["weights"][i]))
            cols["count"].append(count)
            cols["train_loss"].append(None if count == 0 or math.isnan(loss) else loss)
            for name in ("law_eps", "law_beta", "law_alpha"):
                cols[name].append(float(diag[name][i]) if refit else None)
    return pa.Table.from_pydict(cols, schema=V1_STEPS_SCHEMA)


def build_v1_results(root: str, *, unmerged: int = 1) -> dict:
    """The fixture's trials in the version-1 layout under the local directory ``root``: merged
    files plus the last ``unmerged`` trials only as parts. Returns {trial_id: (record, steps,
    evals)}."""
    os.makedirs(os.path.join(root, "parts"), exist_ok=True)
    out = {}
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for i, (arm, phase, seed, hp, fail) in enumerate(trial_specs()):
        record, steps, evals = make_trial(
            arm, phase, seed, hp, fail=fail, t0=t0 + dt.timedelta(minutes=i)
        )
        out[record["trial_id"]] = (record, steps, evals)
    ids = list(out)
    merged, parts = ids[: len(ids) - unmerged], ids[len(ids) - unmerged :]

    def tables(tid):
        record, steps, evals = out[tid]
        trials = v1_trials_table(record)
        return (
            trials,
            v1_steps_table(tid, steps) if steps else None,
            evals_table(tid, DOMAINS, evals) if evals else None,
        )

    built = {tid: tables(tid) for tid in ids}
    hp_names = sorted(
        {c for tid in merged for c in built[tid][0].column_names if c.startswith("hp_")}
    )
    trials = []
    for tid in sorted(merged):
        t = built[tid][0]
        for c in hp_names:  # every merged row has every hp column (null where absent)
            if c not in t.column_names:
                t = t.append_column(c, pa.nulls(1))
        trials.append(t.select([*V1_TRIALS_COLUMNS, *hp_names]))
    pq.write_table(
        pa.concat_tables(trials, promote_options="permissive"), os.path.join(root, "trials.parquet")
    )
    for kind, index in (("steps", 1), ("evals", 2)):
        rows = [built[tid][index] for tid in sorted(merged) if built[tid][index] is not None]
        pq.write_table(pa.concat_tables(rows), os.path.join(root, f"{kind}.parquet"))
    for tid in parts:
        for kind, table in zip(("trials", "steps", "evals"), built[tid]):
            if table is not None:
                pq.write_table(table, os.path.join(root, "parts", f"{tid}.{kind}.parquet"))
    meta = {
        "study": STUDY,
        "schema_version": 1,
        "package_version": "0.0.9",
        "created_at": "2025-01-01T00:00:00+00:00",
        "seq_len": SEQ_LEN,
    }
    with open(os.path.join(root, "meta.json"), "w") as f:
        json.dump(meta, f)
    with open(os.path.join(root, "VERSION"), "w") as f:
        f.write("1\n")
    with open(os.path.join(root, "study.yaml"), "w") as f:
        f.write(V1_STUDY_YAML)
    return out


# --------------------------------------------------------------------------------------------
# labelled arms

#: (label, policy), in the study's order: the reference (uniform) arm is not the first.
LABELLED_ARMS = {"ado_fast": "ado", "base": "uniform", "ado_slow": "ado"}
LABELLED_SPACES = {
    "ado_fast": {"gamma1": {"type": "loguniform", "low": 0.01, "high": 1.0}},
    "ado_slow": {"delta_min": {"type": "uniform", "low": 0.0, "high": 0.05}},
}
FAST_GAMMA1 = (0.05, 0.2, 0.6)
SLOW_DELTA_MIN = (0.005, 0.02, 0.04)
#: ado_slow's extra final loss over ado_fast.
SLOW_PENALTY = 0.01


def build_labelled_results(uri: str, *, with_uniform: bool = True) -> dict:
    """Two searched ADO arms (3 configurations each) and, if ``with_uniform``, a uniform arm
    ``base``; confirm: each arm's first configuration on seeds 0, 1, 2."""
    arms = {a: p for a, p in LABELLED_ARMS.items() if with_uniform or p != "uniform"}
    writer = ResultsWriter(uri, "labelled")
    writer.write_meta("name: labelled\n", "0.2.0", extra=meta_extra(arms, LABELLED_SPACES))
    fast = [{**ADO_A, "gamma1": g} for g in FAST_GAMMA1]
    slow = [{**ADO_A, "delta_min": d} for d in SLOW_DELTA_MIN]
    specs = []  # (arm, phase, seed, hp, offset)
    for i, hp in enumerate(fast):
        specs.append(("ado_fast", "search", 100, hp, 0.01 * i))
    for i, hp in enumerate(slow):
        specs.append(("ado_slow", "search", 100, hp, SLOW_PENALTY + 0.01 * i))
    for seed in (0, 1, 2):
        if with_uniform:
            specs.append(("base", "confirm", seed, None, 0.0))
        specs.append(("ado_fast", "confirm", seed, fast[0], 0.0))
        specs.append(("ado_slow", "confirm", seed, slow[0], SLOW_PENALTY))
    out = {}
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for i, (arm, phase, seed, hp, offset) in enumerate(specs):
        record, steps, evals = make_trial(
            arm,
            phase,
            seed,
            hp,
            t0=t0 + dt.timedelta(minutes=i),
            policy=arms[arm],
            offset=offset,
        )
        writer.add_trial(record, steps, evals)
        out[record["trial_id"]] = (record, steps, evals)
    writer.merge()
    return out


if __name__ == "__main__":
    build_results(sys.argv[1] if len(sys.argv) > 1 else "fixture-results")
