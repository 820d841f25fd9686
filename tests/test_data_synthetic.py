"""Synthetic corpora: exact entropy rates, determinism, options and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ado_ray.data import DEFAULT_DOMAINS, build_process, load_corpus, loss_floor
from ado_ray.data.synthetic import CLASSIC_DOMAINS, MarkovProcess, SubVocabProcess


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
    """The classic domain set (the default before the headroom testbed)."""
    return load_corpus(
        "synthetic",
        vocab_size=64,
        seq_len=128,
        domains="classic",
        sequences_per_domain=20000,
        seed=3,
    )


@pytest.fixture(scope="module")
def testbed():
    """The default domain set at the quickstart's sequence length."""
    return load_corpus("synthetic", vocab_size=64, seq_len=64, sequences_per_domain=20000, seed=3)


def test_classic_corpus_layout(big):
    assert big.domains == list(CLASSIC_DOMAINS)
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


@pytest.mark.parametrize("corpus_name", ["big", "testbed"])
@pytest.mark.parametrize("k", range(5))
def test_nll_under_true_model_matches_entropy_rate(request, corpus_name, k):
    corpus = request.getfixturevalue(corpus_name)
    name = corpus.domains[k]
    L = corpus.seq_len
    proc = build_process(name, 64, L, seed=3)
    nll = proc.nll(corpus.train[k])
    assert np.all(np.isfinite(nll))
    assert nll.mean() == pytest.approx(corpus.entropy_rate[k], rel=0.02)
    # Per position too (catches a wrong treatment of the first tokens).
    pos = np.asarray(corpus.metadata["position_entropy"][name])
    assert pos.shape == (L - 1,)
    assert pos.mean() == pytest.approx(corpus.entropy_rate[k], rel=1e-12)
    np.testing.assert_allclose(nll.mean(axis=0)[:8], pos[:8], rtol=0.05, atol=0.02)


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


@pytest.mark.parametrize("domains", ["default", "classic"])
def test_deterministic_and_seeded(domains):
    opts = dict(domains=domains, sequences_per_domain=64, val_sequences_per_domain=8)
    a = load_corpus("synthetic", seed=1, **opts)
    b = load_corpus("synthetic", seed=1, **opts)
    c = load_corpus("synthetic", seed=2, **opts)
    for x, y, z in zip(a.train, b.train, c.train, strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)
    for x, y in zip(a.val, b.val, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.entropy_rate == b.entropy_rate
    # train and validation come from different streams
    assert not np.array_equal(a.train[4][:8], a.val[4])
    # a domain does not depend on which other domains are present (a shared table neither:
    # shared_b draws shared_a's table from shared_a's stream, present or not)
    for name in a.domains[1::2]:
        opts["domains"] = [name]
        d = load_corpus("synthetic", seed=1, **opts)
        np.testing.assert_array_equal(d.train[0], a.train[a.domains.index(name)])
        np.testing.assert_array_equal(d.val[0], a.val[a.domains.index(name)])
        assert d.entropy_rate[0] == a.entropy_rate[a.domains.index(name)]


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


# --------------------------------------------------------------------------------------------
# The default testbed: token ranges, shared tables, the copy period, named domain sets


def test_default_corpus_layout(testbed):
    assert list(DEFAULT_DOMAINS) == ["fast", "slow", "shared_a", "shared_b", "noise"]
    assert testbed.domains == list(DEFAULT_DOMAINS)
    assert testbed.metadata["kinds"] == {
        "fast": "markov",
        "slow": "copy",
        "shared_a": "markov",
        "shared_b": "markov",
        "noise": "uniform",
    }
    ranges = {n: (int(t.min()), int(t.max()) + 1) for n, t in zip(testbed.domains, testbed.train)}
    # Disjoint ranges for the structured domains (shared_a and shared_b share theirs); noise
    # spans the whole vocabulary.
    assert ranges == {
        "fast": (0, 8),
        "slow": (24, 64),
        "shared_a": (8, 24),
        "shared_b": (8, 24),
        "noise": (0, 64),
    }
    rates = dict(zip(testbed.domains, testbed.entropy_rate, strict=True))
    assert rates["slow"] == pytest.approx(5 * math.log(40) / 63, rel=1e-12)  # period 6
    assert rates["noise"] == pytest.approx(math.log(64), rel=1e-12)
    assert rates["fast"] < rates["slow"] < rates["shared_a"] < rates["shared_b"] < rates["noise"]
    # The metadata (specs included) is JSON: the token cache stores it.
    import json

    json.dumps(testbed.metadata)


def test_testbed_plugin_estimates_match(testbed):
    """Every default domain's floor against an estimate that does not use the process."""
    rates = dict(zip(testbed.domains, testbed.entropy_rate, strict=True))
    tr = dict(zip(testbed.domains, testbed.train, strict=True))
    # Order-1 chains with a stationary start: H(X_i | X_{i-1}) is the same at every position.
    for name in ("fast", "shared_a", "shared_b"):
        h = _plugin_conditional_entropy(tr[name], 1, 64, start=1)
        assert h == pytest.approx(rates[name], rel=0.02), name
    # copy, period 6, on 40 tokens: the rest repeats the uniform prefix.
    c = tr["slow"].astype(np.int64)
    np.testing.assert_array_equal(c[:, 6:], c[:, :-6])
    assert _plugin_entropy(c[:, :6] - 24, 40) == pytest.approx(math.log(40), rel=0.01)
    assert _plugin_entropy(tr["noise"][:, 1:], 64) == pytest.approx(rates["noise"], rel=0.01)


def test_shared_table():
    a = build_process("shared_a", 64, 64, seed=5)
    b = build_process("shared_b", 64, 64, seed=5)
    assert isinstance(a, SubVocabProcess) and isinstance(a.inner, MarkovProcess)
    assert (a.start, a.stop) == (b.start, b.stop) == (8, 24)
    same = (a.succ == b.succ).all(axis=1) & np.isclose(a.q, b.q).all(axis=1)
    assert same.sum() == 16 - 4  # private: 0.25 of 16 contexts are shared_b's own
    assert b.noise == 0.1 and a.noise == 0.01
    # Without private rows, the same parameters give the same table, hence the same floor.
    twin = {"kind": "shared_a", "name": "twin", "table": "shared_a"}
    t = build_process(twin, 64, 64, seed=5)
    np.testing.assert_array_equal(t.succ, a.succ)
    np.testing.assert_array_equal(t.q, a.q)
    assert t.loss_floor() == a.loss_floor()
    # A domain named as its own table is a plain domain.
    own = build_process({"kind": "shared_a", "table": "shared_a"}, 64, 64, seed=5)
    np.testing.assert_array_equal(
        own.sample(8, np.random.default_rng(0)), a.sample(8, np.random.default_rng(0))
    )
    # Another seed, another table.
    assert not np.array_equal(build_process("shared_a", 64, 64, seed=6).succ, a.succ)


def test_shared_table_with_private_rows_is_exact():
    # An order-2 chain sharing most of another's table, on a small vocabulary: the stationary
    # start and the floor follow the final table.
    base = {"kind": "markov", "order": 2, "support": 3, "concentration": 0.5, "noise": 0.05}
    proc = build_process({**base, "name": "b", "table": "a", "private": 0.4}, 8, 24, seed=2)
    other = build_process({**base, "name": "a"}, 8, 24, seed=2)
    shared = (proc.succ == other.succ).all(axis=1)
    assert shared.sum() == 64 - round(0.4 * 64)
    x = proc.sample(100000, np.random.default_rng(1))
    np.testing.assert_allclose(
        proc.nll(x).mean(axis=0), proc.position_entropy(), rtol=0.03, atol=0.01
    )
    assert proc.nll(x).mean() == pytest.approx(proc.loss_floor(), rel=0.01)


def test_token_ranges():
    spec = {"kind": "markov", "name": "m", "support": 3, "noise": 0.1}
    sub = build_process({**spec, "tokens": [16, 32]}, 64, 32, seed=4)
    frac = build_process({**spec, "tokens": [0.25, 0.5]}, 64, 32, seed=4)
    alone = build_process(spec, 16, 32, seed=4)
    x = sub.sample(500, np.random.default_rng(0))
    assert x.dtype == np.uint16 and x.min() >= 16 and x.max() < 32
    np.testing.assert_array_equal(x, frac.sample(500, np.random.default_rng(0)))
    # The same process as over a 16-token vocabulary, shifted: same floor, same likelihoods.
    np.testing.assert_array_equal(x - 16, alone.sample(500, np.random.default_rng(0)))
    assert sub.loss_floor() == alone.loss_floor()
    np.testing.assert_allclose(sub.nll(x), alone.nll(x.astype(np.int64) - 16))
    assert sub.asymptotic_rate == alone.asymptotic_rate
    # A token outside the range is impossible.
    y = x[:2].astype(np.int64)
    y[0, 5] = 40
    y[1, 0] = 3
    nll = sub.nll(y)
    assert np.isinf(nll[0, 4]) and np.isfinite(nll[0, :4]).all() and np.isinf(nll[1]).all()
    # Every kind accepts a range; i.i.d. kinds' floors follow the range's size.
    assert loss_floor({"kind": "uniform", "tokens": [0, 10]}, 64, 16) == pytest.approx(math.log(10))
    assert loss_floor({"kind": "copy", "tokens": [0.5, 1.0], "period": 4}, 64, 16) == (
        pytest.approx(3 * math.log(32) / 15)
    )
    z = build_process({"kind": "zipf", "tokens": [60, 64]}, 64, 16).sample(
        100, np.random.default_rng(0)
    )
    assert set(np.unique(z)) <= {60, 61, 62, 63}
    for bad in ([5, 5], [0, 65], [0.5], ["a", 3], [True, 3], [-0.1, 1.0], [0.5, 1.5], 7):
        with pytest.raises(ValueError, match="tokens must be"):
            build_process({"kind": "uniform", "tokens": bad}, 64, 16)


def test_copy_period():
    p = build_process({"kind": "copy", "period": 6}, 64, 64)
    assert p.prefix_len == 6
    assert p.loss_floor() == pytest.approx(5 * math.log(64) / 63, rel=1e-12)
    x = p.sample(1000, np.random.default_rng(0))
    np.testing.assert_array_equal(x[:, 6:], x[:, :-6])
    assert np.isfinite(p.nll(x)).all()
    assert p.nll(x).mean() == pytest.approx(p.loss_floor(), rel=0.02)
    # The period is in tokens, whatever the length (prefix_fraction is a share of it).
    assert build_process({"kind": "copy", "period": 6}, 64, 128).prefix_len == 6
    assert build_process({"kind": "copy", "period": 100}, 64, 16).prefix_len == 16
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="copy period"):
            build_process({"kind": "copy", "period": bad}, 64, 16)


def test_named_domain_sets():
    from ado_ray.data import source_options

    assert source_options("synthetic")["domains"] is None  # None: the "default" set
    opts = dict(seq_len=16, sequences_per_domain=4, val_sequences_per_domain=2)
    d = load_corpus("synthetic", **opts)
    assert d.domains == list(DEFAULT_DOMAINS)
    assert load_corpus("synthetic", domains="default", **opts).domains == list(DEFAULT_DOMAINS)
    c = load_corpus("synthetic", domains="classic", **opts)
    assert c.domains == list(CLASSIC_DOMAINS)
    explicit = load_corpus("synthetic", domains=list(CLASSIC_DOMAINS), **opts)
    for x, y in zip(c.train, explicit.train, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="unknown synthetic domain set 'fancy'"):
        load_corpus("synthetic", domains="fancy", **opts)
    # Default domains at other vocabulary sizes: the ranges scale with vocab_size.
    small = [build_process(n, 32, 16) for n in DEFAULT_DOMAINS[:4]]
    assert [(p.start, p.stop) for p in small] == [(0, 4), (12, 32), (4, 12), (4, 12)]
    assert load_corpus("synthetic", vocab_size=32, **opts).num_domains == 5


def test_shared_and_private_errors():
    with pytest.raises(ValueError, match="private > 0 needs a 'table'"):
        build_process({"kind": "markov", "private": 0.5}, 16, 8)
    with pytest.raises(ValueError, match="private must be in"):
        build_process({"kind": "markov", "table": "x", "private": 1.5}, 16, 8)
    with pytest.raises(ValueError, match="table must be a domain name"):
        build_process({"kind": "markov", "table": 3}, 16, 8)
    with pytest.raises(ValueError, match="unknown parameter"):
        build_process({"kind": "zipf", "table": "x"}, 16, 8)
