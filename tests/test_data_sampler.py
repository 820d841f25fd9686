"""MixtureSampler: counts follow weights, determinism, restore, DDP sharding, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ado_ray.data import Corpus, MixtureSampler, validate_weights
from ado_ray.data.sampler import largest_remainder


def _corpus(sizes=(50, 30, 20, 7), seq_len=8) -> Corpus:
    # Row j of domain k holds the values k*1000 + j: a row identifies (domain, index).
    train = [
        (k * 1000 + np.arange(n))[:, None].repeat(seq_len, axis=1).astype(np.uint16)
        for k, n in enumerate(sizes)
    ]
    return Corpus(
        domains=[f"d{k}" for k in range(len(sizes))],
        train=train,
        val=[t[:1] for t in train],
        seq_len=seq_len,
        vocab_size=65536,
    )


def _rows(x: np.ndarray) -> list[tuple[int, int]]:
    return [(int(v) // 1000, int(v) % 1000) for v in x[:, 0]]


def test_shapes_dtypes_and_domain_ids():
    c = _corpus()
    s = MixtureSampler(c, batch_size=16, seed=0)
    x, d = s.sample([0.4, 0.3, 0.2, 0.1])
    assert x.shape == (16, 8) and x.dtype == np.int64
    assert d.shape == (16,) and d.dtype == np.int64
    assert [k for k, _ in _rows(x)] == d.tolist()
    assert s.last_counts.sum() == 16
    np.testing.assert_array_equal(np.bincount(d, minlength=4), s.last_counts)


def test_multinomial_counts_follow_weights_chi_square():
    c = _corpus()
    w = np.array([0.5, 0.25, 0.15, 0.10])
    s = MixtureSampler(c, batch_size=32, seed=1)
    steps = 400
    total = np.zeros(4)
    for _ in range(steps):
        _, d = s.sample(w)
        total += np.bincount(d, minlength=4)
    expected = w * 32 * steps
    _, p = stats.chisquare(total, expected)
    assert p > 1e-3
    # Per-batch counts are multinomial: their variance matches B w (1 - w).
    s2 = MixtureSampler(c, batch_size=32, seed=2)
    counts = np.array([s2.counts(w) for _ in range(3000)])
    np.testing.assert_allclose(counts.var(axis=0), 32 * w * (1 - w), rtol=0.15)


def test_largest_remainder_deterministic_and_tracks_weights():
    c = _corpus()
    w = np.array([0.5, 0.3, 0.19, 0.01])  # B*w_3 = 0.32 < 1
    s = MixtureSampler(c, batch_size=32, seed=0, mode="largest_remainder")
    counts = np.array([s.counts(w) for _ in range(500)])
    assert (counts.sum(axis=1) == 32).all()
    assert (np.abs(counts - 32 * w) < 1.0 + 1e-9).all()
    np.testing.assert_allclose(counts.sum(axis=0) / (32 * 500), w, atol=1e-3)
    assert counts[:, 3].sum() > 0  # a tiny weight still gets its share over time
    # independent of the seed: counts are deterministic
    s2 = MixtureSampler(c, batch_size=32, seed=99, mode="largest_remainder")
    np.testing.assert_array_equal(counts, np.array([s2.counts(w) for _ in range(500)]))
    # without carry: the plain per-batch largest remainder
    s3 = MixtureSampler(c, 32, mode="largest_remainder", carry_remainder=False)
    np.testing.assert_array_equal(s3.counts(w), [16, 10, 6, 0])
    assert largest_remainder(np.array([6.4, 6.4, 6.4, 6.4, 6.4]), 32).tolist() == [7, 7, 6, 6, 6]


def test_without_replacement_within_a_pass_and_passes():
    c = _corpus(sizes=(10, 10))
    s = MixtureSampler(c, batch_size=5, seed=0, mode="largest_remainder")
    seen = []
    for _ in range(4):  # 20 draws of domain 0 = exactly 2 passes
        x, _ = s.sample([1.0, 0.0])
        seen += [j for _, j in _rows(x)]
    assert sorted(seen[:10]) == list(range(10))
    assert sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]  # reshuffled between passes
    np.testing.assert_allclose(s.passes, [2.0, 0.0])
    s.sample([0.6, 0.4])
    np.testing.assert_allclose(s.passes, [2.3, 0.2])


def test_deterministic_given_seed_and_weights():
    c = _corpus()
    rng = np.random.default_rng(0)
    ws = rng.dirichlet(np.ones(4), size=30)
    a = MixtureSampler(c, 12, seed=5)
    b = MixtureSampler(c, 12, seed=5)
    other = MixtureSampler(c, 12, seed=6)
    diff = False
    for w in ws:
        xa, da = a.sample(w)
        xb, db = b.sample(w)
        xo, _ = other.sample(w)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(da, db)
        diff |= not np.array_equal(xa, xo)
    assert diff


@pytest.mark.parametrize("mode", ["multinomial", "largest_remainder"])
def test_restored_sampler_draws_identical_batches(mode):
    c = _corpus()
    rng = np.random.default_rng(1)
    ws = rng.dirichlet(np.ones(4), size=60)
    a = MixtureSampler(c, 16, seed=3, mode=mode)
    for w in ws[:25]:
        a.sample(w)
    state = json.loads(json.dumps(a.state_dict()))  # survives JSON
    b = MixtureSampler(c, 16, seed=3, mode=mode)
    b.load_state_dict(state)
    np.testing.assert_array_equal(a.passes, b.passes)
    for w in ws[25:]:
        xa, da = a.sample(w)
        xb, db = b.sample(w)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(a.last_counts, b.last_counts)
    assert a.step == b.step == 60


def test_load_state_dict_rejects_other_corpus_or_config():
    a = MixtureSampler(_corpus(), 16, seed=3)
    state = a.state_dict()
    with pytest.raises(ValueError, match="domain sizes"):
        MixtureSampler(_corpus(sizes=(5, 5, 5, 5)), 16, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        MixtureSampler(_corpus(), 8, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        MixtureSampler(_corpus(), 16, seed=4).load_state_dict(state)


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_shards_disjoint_and_cover_global_batch(world_size):
    c = _corpus(sizes=(400, 400, 400, 400))  # no domain wraps around within 20 steps
    rng = np.random.default_rng(2)
    ws = rng.dirichlet(np.ones(4), size=20)
    B = 16
    single = MixtureSampler(c, B, seed=7)
    ranks = [MixtureSampler(c, B, seed=7, rank=r, world_size=world_size) for r in range(world_size)]
    for w in ws:
        gx, gd = single.sample(w)
        parts = [s.sample(w) for s in ranks]
        for x, d in parts:
            assert x.shape == (B // world_size, 8) and d.shape == (B // world_size,)
        # contiguous shards of the same global batch, in rank order
        np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), gx)
        np.testing.assert_array_equal(np.concatenate([d for _, d in parts]), gd)
        rows = [r for x, _ in parts for r in _rows(x)]
        assert len(set(rows)) == len(rows)  # no sequence on two ranks
        for s in ranks:
            np.testing.assert_array_equal(s.last_counts, single.last_counts)
        np.testing.assert_array_equal(sum(s.last_local_counts for s in ranks), single.last_counts)


def test_constructor_errors():
    c = _corpus()
    with pytest.raises(ValueError, match="not divisible by world_size"):
        MixtureSampler(c, 10, world_size=4)
    with pytest.raises(ValueError, match="rank"):
        MixtureSampler(c, 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="mode"):
        MixtureSampler(c, 8, mode="stratified")
    with pytest.raises(ValueError, match="batch_size"):
        MixtureSampler(c, 0)


@pytest.mark.parametrize(
    "weights,match",
    [
        ([0.5, 0.5], "length 4"),
        ([[0.25] * 4], "length 4"),
        ([0.5, 0.5, np.nan, 0.0], "finite"),
        ([0.5, 0.5, np.inf, 0.0], "finite"),
        ([0.6, 0.6, -0.2, 0.0], "non-negative"),
        ([0.3, 0.3, 0.3, 0.3], "sum to 1"),
        (["a", "b", "c", "d"], "numeric"),
    ],
)
def test_weight_validation(weights, match):
    s = MixtureSampler(_corpus(), 8)
    with pytest.raises(ValueError, match=match):
        s.sample(weights)
    with pytest.raises(ValueError, match="weights"):
        validate_weights(weights, 4)


def test_weights_within_tolerance_accepted():
    s = MixtureSampler(_corpus(), 8)
    s.sample([0.25, 0.25, 0.25, 0.25 + 5e-7])


def test_throughput_smoke():
    # The figure lives in benchmarks/data_bench.py; here only that a large gather works.
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 50257, size=(64, 1024), dtype=np.uint16) for _ in range(22)]
    c = Corpus([f"d{k}" for k in range(22)], train, [t[:1] for t in train], 1024, 50257)
    s = MixtureSampler(c, 32, seed=0)
    x, d = s.sample(np.full(22, 1 / 22))
    for i in range(32):
        k = d[i]
        assert any(np.array_equal(x[i], row) for row in train[k])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=30).filter(
        lambda w: sum(w) > 1e-3
    ),
    st.integers(1, 512),
)
def test_largest_remainder_properties(w, total):
    w = np.asarray(w) / np.sum(w)
    c = largest_remainder(total * w, total)
    assert c.sum() == total and (c >= 0).all()
    assert (np.abs(c - total * w) < 1 + 1e-9).all()
    assert (c[w == 0] == 0).all()


def test_largest_remainder_follows_near_one_hot_phases_where_multinomial_noise_swamps_them():
    # An Aioli probe phase: 4 steps of 16 sequences on a 0.625 one-hot mixture over 5 domains.
    c = _corpus(sizes=(400,) * 5)
    w = np.full(5, 0.375 / 4)
    w[2] = 0.625
    exact = MixtureSampler(c, batch_size=16, seed=0, mode="largest_remainder")
    shares = np.array([exact.counts(w) for _ in range(4)]).sum(axis=0) / 64
    assert np.abs(shares - w).max() <= 1 / 64 + 1e-12  # within one sequence of the phase
    noisy = MixtureSampler(c, batch_size=16, seed=0, mode="multinomial")
    err = [
        np.abs(np.array([noisy.counts(w) for _ in range(4)]).sum(axis=0) / 64 - w).max()
        for _ in range(200)
    ]
    assert np.median(err) >= 3 / 64  # typically off by 3-5 sequences per phase
    assert np.mean(err) > 3 * (1 / 64)


def test_auto_picks_exact_batches_for_the_policies_that_need_them():
    from ado_ray.policies import policy_class
    from ado_ray.schema import TrainingSpec

    auto = TrainingSpec()
    assert auto.sampler == "auto"
    assert auto.sampler_mode(policy_class("aioli").needs.exact_batches) == "largest_remainder"
    assert auto.sampler_mode(policy_class("ado").needs.exact_batches) == "multinomial"
    assert TrainingSpec(sampler="multinomial").sampler_mode(True) == "multinomial"
