"""Synthetic corpora: exact entropy rates, determinism, options and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ado_ray.data import DEFAULT_DOMAINS, build_process, load_corpus, loss_floor
from ado_ray.data.synthetic import MarkovProcess


def _plugin_conditional_entropy(seqs: np.ndarray, order: int, vocab: int, start: int) -> float:
    """Plug-in H(X_i | previous `order` tokens) pooled over positions >= start."""
    seqs = seqs.astype(np.int64)
    ctx = np.zeros(seqs.shape[0], dtype=np.int64)
    keys = []
    for i in range(seqs.shape[1]):
        if i >= start:
            keys.append(ctx * vocab + seqs[:, i])
        ctx = (ctx * vocab + seqs[:, i]) % vocab**order
    joint = np.bincount(np.concatenate(keys), minlength=vocab ** (order + 1)).astype(float)
    joint = joint.reshape(vocab**order, vocab)
    marg = joint.sum(axis=1, keepdims=True)
    p = joint / joint.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(joint > 0, joint / np.where(marg > 0, marg, 1), 1.0)
    return float(-(p * np.log(cond)).sum())


def _plugin_entropy(tokens: np.ndarray, vocab: int) -> float:
    p = np.bincount(tokens.ravel().astype(np.int64), minlength=vocab) / tokens.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def big():
    return load_corpus("synthetic", vocab_size=64, seq_len=128, sequences_per_domain=20000, seed=3)


def test_default_corpus_layout(big):
    assert big.domains == list(DEFAULT_DOMAINS)
    assert big.num_domains == 5
    assert big.seq_len == 128 and big.vocab_size == 64
    for tr, va in zip(big.train, big.val, strict=True):
        assert tr.shape == (20000, 128) and va.shape == (256, 128)
        assert np.issubdtype(tr.dtype, np.integer)
        assert tr.min() >= 0 and tr.max() < 64
    np.testing.assert_array_equal(big.token_counts(), np.full(5, 20000 * 128))
    np.testing.assert_allclose(big.natural_weights(), np.full(5, 0.2))
    assert all(isinstance(e, float) for e in big.entropy_rate)
    # A range of learnability, ordered as documented.
    assert big.entropy_rate == sorted(big.entropy_rate)
    assert big.entropy_rate[-1] == pytest.approx(math.log(64))


@pytest.mark.parametrize("k", range(5))
def test_nll_under_true_model_matches_entropy_rate(big, k):
    name = big.domains[k]
    proc = build_process(name, 64, 128, seed=3)
    nll = proc.nll(big.train[k])
    assert np.all(np.isfinite(nll))
    assert nll.mean() == pytest.approx(big.entropy_rate[k], rel=0.02)
    # Per position too (catches a wrong treatment of the first tokens).
    pos = np.asarray(big.metadata["position_entropy"][name])
    assert pos.shape == (127,)
    assert pos.mean() == pytest.approx(big.entropy_rate[k], rel=1e-12)
    np.testing.assert_allclose(nll.mean(axis=0)[:4], pos[:4], rtol=0.05, atol=0.02)


def test_plugin_estimates_match(big):
    rates = dict(zip(big.domains, big.entropy_rate, strict=True))
    tr = dict(zip(big.domains, big.train, strict=True))
    # markov1: plug-in conditional entropy given the previous token (stationary start).
    h1 = _plugin_conditional_entropy(tr["markov1"], 1, 64, start=1)
    assert h1 == pytest.approx(rates["markov1"], rel=0.02)
    # i.i.d. domains: plug-in unigram entropy.
    assert _plugin_entropy(tr["uniform"][:, 1:], 64) == pytest.approx(rates["uniform"], rel=0.02)
    assert _plugin_entropy(tr["zipf"][:, 1:], 64) == pytest.approx(rates["zipf"], rel=0.02)
    # copy: second half repeats the first; the first half is uniform.
    c = tr["copy"]
    np.testing.assert_array_equal(c[:, 64:], c[:, :64])
    assert _plugin_entropy(c[:, :64], 64) == pytest.approx(math.log(64), rel=0.02)
    assert rates["copy"] == pytest.approx(63 * math.log(64) / 127, rel=1e-12)


def test_markov2_needs_context(big):
    rates = dict(zip(big.domains, big.entropy_rate, strict=True))
    m2 = big.train[big.domains.index("markov2")]
    h2 = _plugin_conditional_entropy(m2, 2, 64, start=2)
    # Pooled over positions 2..127, where the full order-2 context is known.
    expected = float(np.mean(big.metadata["position_entropy"]["markov2"][1:]))
    assert h2 == pytest.approx(expected, rel=0.02)
    h_last_only = _plugin_conditional_entropy(m2, 1, 64, start=2)
    assert h_last_only > 2.5 * rates["markov2"]  # one token of context is far from enough


def test_markov3_exact_floor_small_vocab():
    proc = build_process("markov3", vocab_size=16, seq_len=32, seed=1)
    x = proc.sample(60000, np.random.default_rng(9))
    pos = proc.position_entropy()
    assert pos.shape == (31,)
    assert pos[0] > pos[2] and pos[1] > pos[2]  # the first tokens lack a full context
    assert proc.nll(x).mean() == pytest.approx(proc.loss_floor(), rel=0.02)
    assert proc.loss_floor() == pytest.approx(loss_floor("markov3", 16, 32, seed=1))


def test_nonstationary_start_is_still_exact():
    # A few power iterations only: p0 is not stationary; the floor must stay exact.
    proc = build_process({"kind": "markov", "order": 2, "support": 2, "noise": 0.0}, 8, 24, 5)
    proc.p0 = np.full(proc.num_contexts, 1.0 / proc.num_contexts)
    proc.p0_cdf = np.cumsum(proc.p0)
    proc._pos_entropy = None
    x = proc.sample(100000, np.random.default_rng(0))
    np.testing.assert_allclose(
        proc.nll(x).mean(axis=0), proc.position_entropy(), rtol=0.03, atol=0.01
    )


def test_deterministic_and_seeded():
    a = load_corpus("synthetic", sequences_per_domain=64, val_sequences_per_domain=8, seed=1)
    b = load_corpus("synthetic", sequences_per_domain=64, val_sequences_per_domain=8, seed=1)
    c = load_corpus("synthetic", sequences_per_domain=64, val_sequences_per_domain=8, seed=2)
    for x, y, z in zip(a.train, b.train, c.train, strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)
    for x, y in zip(a.val, b.val, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.entropy_rate == b.entropy_rate
    # train and validation come from different streams
    assert not np.array_equal(a.train[4][:8], a.val[4])
    # a domain does not depend on which other domains are present
    d = load_corpus(
        "synthetic", domains=["zipf"], sequences_per_domain=64, val_sequences_per_domain=8, seed=1
    )
    np.testing.assert_array_equal(d.train[0], a.train[a.domains.index("zipf")])


def test_options_sizes_and_custom_domains():
    c = load_corpus(
        "synthetic",
        vocab_size=32,
        seq_len=16,
        domains=["markov1", {"kind": "zipf", "name": "flat_zipf", "exponent": 0.5}, "uniform"],
        sequences_per_domain=100,
        domain_sizes=[1, 2, 1],
        val_sequences_per_domain=10,
    )
    assert c.domains == ["markov1", "flat_zipf", "uniform"]
    assert [t.shape[0] for t in c.train] == [75, 150, 75]
    np.testing.assert_allclose(c.natural_weights(), [0.25, 0.5, 0.25])
    assert c.entropy_rate[1] < math.log(32)
    c2 = load_corpus("synthetic", vocab_size=32, seq_len=16, sequences_per_domain=[3, 4, 5, 6, 7])
    assert [t.shape[0] for t in c2.train] == [3, 4, 5, 6, 7]


def test_generation_is_vectorised():
    # 50k sequences of 128 tokens in seconds, not minutes (generous bound, shared CI).
    import time

    proc = build_process("markov2", 64, 128, 0)
    t = time.perf_counter()
    x = proc.sample(50000, np.random.default_rng(0))
    assert x.shape == (50000, 128)
    assert time.perf_counter() - t < 30


def test_errors():
    with pytest.raises(ValueError, match="unknown synthetic domain 'nope'"):
        load_corpus("synthetic", domains=["nope"])
    with pytest.raises(ValueError, match="unknown parameter"):
        load_corpus("synthetic", domains=[{"kind": "zipf", "order": 2}])
    with pytest.raises(ValueError, match="'kind' must be one of"):
        load_corpus("synthetic", domains=[{"kind": "bogus"}])
    with pytest.raises(ValueError, match="duplicate"):
        load_corpus("synthetic", domains=["zipf", "zipf"])
    with pytest.raises(ValueError, match="domain 'uniform' is empty"):
        load_corpus("synthetic", domains=["zipf", "uniform"], domain_sizes=[1, 0])
    with pytest.raises(ValueError, match="vocab_size"):
        load_corpus("synthetic", vocab_size=1)
    with pytest.raises(ValueError, match="contexts exceeds"):
        load_corpus("synthetic", vocab_size=512, domains=["markov3"])


def test_markov_successors_distinct():
    proc = build_process("markov2", 64, 16, 0)
    assert isinstance(proc, MarkovProcess)
    s = np.sort(proc.succ, axis=1)
    assert not (s[:, 1:] == s[:, :-1]).any()
    np.testing.assert_allclose(proc.q.sum(axis=1), 1.0)
    np.testing.assert_allclose(proc.p0.sum(), 1.0)
