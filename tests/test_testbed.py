"""The default synthetic testbed has headroom; its floors are exact; the classic set is intact.

The headroom test trains the quickstart's model and budget (tiny GPT-2, 300 steps of 16 x 64
tokens) with fixed mixtures, as ``benchmarks/testbed_headroom.py`` does, on seeds that the
benchmark's candidates were not chosen on. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from ado_ray.analysis import mean_ci
from ado_ray.data import DEFAULT_DOMAINS, build_process, load_corpus
from ado_ray.data.synthetic import CLASSIC_DOMAINS

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "testbed_headroom", ROOT / "benchmarks" / "testbed_headroom.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------------
# fast: the floors and the classic set


@pytest.mark.parametrize("name", DEFAULT_DOMAINS)
def test_default_floor_matches_monte_carlo(name):
    """The exact floor against the mean true-process log-loss of fresh samples."""
    corpus = load_corpus(
        "synthetic", seq_len=64, domains=[name], sequences_per_domain=1, val_sequences_per_domain=1
    )
    proc = build_process(name, 64, 64, seed=0)
    assert corpus.entropy_rate[0] == proc.loss_floor()
    x = proc.sample(20000, np.random.default_rng(11))
    nll = proc.nll(x)
    assert np.isfinite(nll).all()
    sem = nll.mean(axis=1).std() / math.sqrt(len(x))
    assert abs(nll.mean() - proc.loss_floor()) < 4 * sem + 1e-9
    pos = proc.position_entropy()
    np.testing.assert_allclose(nll.mean(axis=0), pos, rtol=0.05, atol=0.03)


# sha256 of the classic corpus's train and val tokens (uint16, domain by domain), recorded
# with the code before the default changed: load_corpus("synthetic", seq_len=64,
# sequences_per_domain=32, val_sequences_per_domain=8, seed=s) when markov1..uniform was the
# default.
CLASSIC_SHA256 = {
    0: "db03f5bc48995c0e5a6e3cb7916c8ed0a58e85493fbe789e56b10fd1399ffeb8",
    3: "50fdd9fb6ca3dc9aeb2a3e9740808bce5c16fdf18405358b8155e9f70b533da4",
}
CLASSIC_RATES_SEED0 = [
    0.7443781080669197,
    1.2082991025438587,
    2.0464345330817433,
    3.185218548589449,
    4.158883083359673,
]


@pytest.mark.parametrize("seed", sorted(CLASSIC_SHA256))
@pytest.mark.parametrize("domains", ["classic", list(CLASSIC_DOMAINS)])
def test_classic_set_unchanged(seed, domains):
    c = load_corpus(
        "synthetic",
        seq_len=64,
        domains=domains,
        sequences_per_domain=32,
        val_sequences_per_domain=8,
        seed=seed,
    )
    assert c.domains == ["markov1", "markov2", "copy", "zipf", "uniform"]
    h = hashlib.sha256()
    for t, v in zip(c.train, c.val, strict=True):
        h.update(np.ascontiguousarray(t, dtype=np.uint16).tobytes())
        h.update(np.ascontiguousarray(v, dtype=np.uint16).tobytes())
    assert h.hexdigest() == CLASSIC_SHA256[seed]
    if seed == 0:
        assert c.entropy_rate == pytest.approx(CLASSIC_RATES_SEED0, rel=1e-12)


# --------------------------------------------------------------------------------------------
# slow (about a minute): headroom, learning rates, transfer


def test_best_static_mixture_beats_uniform():
    from ado_ray.train import run_training

    bench = _bench()
    data = {"seq_len": 64}
    corpus = load_corpus("synthetic", **data)
    floor = np.asarray(corpus.entropy_rate)
    mixtures = {"uniform": bench.CANDIDATES["uniform"], "best": bench.CANDIDATES["best"]}
    seeds = [3, 4, 5]  # not the benchmark's 0, 1, 2, on which "best" was picked

    def run(weights, seed):
        cfg = bench.run_config(weights, seed, data, eval_sequences=64, eval_interval=300)
        rec = run_training(cfg, corpus)
        return rec["summary"]["val_loss_balanced"], rec["evals"][0], rec["evals"][-1]

    out = {}
    for i, seed in enumerate(seeds):  # interleaved, the order alternating
        for name in list(mixtures)[:: 1 if i % 2 == 0 else -1]:
            out[name, seed] = run(mixtures[name], seed)
    uni = [out["uniform", s][0] for s in seeds]
    diff = [out["best", s][0] - out["uniform", s][0] for s in seeds]
    mean, half, _ = mean_ci(diff)
    # The benchmark measured 0.54 (95% CI 0.49..0.58) on seeds 0-2; uniform's seed noise
    # (CI half-width of its mean) was 0.06.
    assert mean + half < 0, f"headroom {-mean:.3f} +- {half:.3f}; uniform {uni}"

    # Under uniform every domain but the noise learns, at clearly different rates.
    first = np.mean([out["uniform", s][1]["val_loss"] for s in seeds], axis=0)
    last = np.mean([out["uniform", s][2]["val_loss"] for s in seeds], axis=0)
    closed = dict(zip(corpus.domains, (first - last) / (first - floor), strict=True))
    assert closed["fast"] > 0.9 and closed["shared_a"] > 0.8 and closed["shared_b"] > 0.8
    assert 0.05 < closed["slow"] < 0.6, closed
    assert abs(last[4] - floor[4]) < 0.2  # the noise stays near log V

    # Transfer: with no shared_b data at all, training on shared_a closes most of its gap.
    _, ev0, ev1 = run(bench.CANDIDATES["no_b"], seeds[0])
    k = corpus.domains.index("shared_b")
    assert (ev0["val_loss"][k] - ev1["val_loss"][k]) / (ev0["val_loss"][k] - floor[k]) > 0.5
