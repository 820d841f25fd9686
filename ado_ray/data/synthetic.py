"""Synthetic corpora with known entropy: the offline, ground-truth testbed.

Every domain is a generative process over tokens ``0..vocab_size-1`` whose next-token
entropy is computable exactly. A sequence is ``x_0 .. x_{L-1}`` (``L = seq_len``). A causal
LM trained on it predicts ``x_i`` from ``x_{<i}`` for ``i = 1 .. L-1``; its expected loss per
predicted token can never be below

    floor = (1 / (L-1)) * sum_{i=1}^{L-1} H(X_i | X_{<i})        (nats per predicted token)

and this ``floor`` is what ``Corpus.entropy_rate[k]`` reports (exactly, not asymptotically:
e.g. the first tokens of a Markov chain of order k > 1 and the copy domain's random prefix
are accounted for position by position). ``Corpus.metadata["position_entropy"][name]`` holds
the L-1 terms ``H(X_i | X_{<i})`` and ``metadata["asymptotic_entropy_rate"][name]`` the
process's entropy rate in the limit of long sequences (equal to the floor for i.i.d. kinds).
:func:`loss_floor` recomputes the floor for a domain specification.

Domain sets (the ``domains`` option: a list of names and dicts, or a set's name):

``default`` (:data:`DEFAULT_DOMAINS`): a testbed with headroom
    Calibrated for the quickstart's budget (vocab 64, ``seq_len`` 64, tiny GPT-2, 300 steps of
    16 sequences; ``benchmarks/testbed_headroom.py``). The structured domains live on disjoint
    token ranges, so the model can tell them apart and a domain's loss depends mostly on its
    own share of the data; the noise spans the whole vocabulary.

    - ``fast``: order-1 chain on the first 1/8 of the vocabulary, 2 successors per token. Near
      its floor within ~50 steps at a 20% share: a small share is enough.
    - ``slow``: copy with period 6 on the last 5/8 (``x_i = x_{i-6}``). A positional skill
      learned late and abruptly: at a 20% share the copy is only starting to be learned after
      300 steps (a quarter of the gap to the floor closed); at 40-50% it is learned by ~150.
      Most of the headroom.
    - ``shared_a``, ``shared_b``: order-1 chains on the same quarter of the vocabulary (4
      successors). ``shared_b`` uses ``shared_a``'s transition table except in a quarter of
      its rows, with 10% noise: training on ``shared_a`` alone closes most of ``shared_b``'s
      gap (transfer).
    - ``noise``: i.i.d. uniform over the whole vocabulary: nothing to learn (its loss stays
      near log V given a small share; with none, the model's predictions from the other
      domains cost it over a nat).

``classic`` (:data:`CLASSIC_DOMAINS`): ``markov1``, ``markov2``, ``copy``, ``zipf``, ``uniform``
    The previous default, unchanged (same tokens for the same options). Within the
    quickstart's budget only ``markov1`` and ``zipf`` learn, so no reweighting helps much.

Kinds (built-in names in :data:`BUILTIN_DOMAINS`):

``markov``  (``markov1``, ``markov2``, ``markov3``, ``fast``, ``shared_a``, ``shared_b``)
    Order-``order`` Markov chain. Each of the ``V**order`` contexts has ``support`` distinct
    random successors with Dirichlet(``concentration``) probabilities; with probability
    ``noise`` the next token is instead uniform over the vocabulary (which makes the chain
    ergodic). The first ``order`` tokens are drawn from the chain's stationary distribution
    over contexts (power iteration); the floor is computed exactly from that start
    distribution by propagating it through the chain, so it is exact even where the power
    iteration is not fully converged. ``markov1`` has low entropy and is learned fast;
    ``markov2``/``markov3`` need two/three tokens of context: conditioned on the last token
    alone their next token is close to uniform, so they are learned slowly.
    ``table: <domain name>`` draws the transition table (successors and probabilities) from
    that domain's process stream instead of this domain's own, so two domains with the same
    ``order``, ``support``, ``concentration`` and token range share their table exactly (the
    named domain need not be in the corpus); ``private`` (in [0, 1], needs ``table``) then
    replaces that fraction of the rows (contexts, chosen at random) with this domain's own.
    The floor is exact for any table, shared or not.
``copy``  (``copy``, ``slow``)
    Induction: the first ``m`` tokens are i.i.d. uniform, the rest repeat them
    (``x_i = x_{i mod m}``), with ``m = period`` if given, else
    ``round(prefix_fraction * L)``. ``H(X_i | X_{<i}) = log V`` for ``1 <= i < m`` and 0
    afterwards, so ``floor = (m-1) * log V / (L-1)``: the prefix's entropy spread over all L-1
    predicted tokens (the first token is never predicted).
``zipf``  (``zipf``)
    I.i.d. unigram with ``p(rank r) ∝ (r+1)^-exponent`` over a seeded random permutation of
    the vocabulary. floor = H(p).
``uniform``  (``uniform``, ``noise``)
    I.i.d. uniform tokens. floor = log V.

Every kind also takes ``tokens: [start, stop]``: the domain uses only tokens
``start .. stop-1`` (ints are token ids, floats in [0, 1] fractions of ``vocab_size``), and
``V`` above is ``stop - start``: the process is built over its own range and shifted, so its
floor is that of the same process over a ``stop - start`` vocabulary.

Determinism: a domain's process depends only on ``(seed, domain name, kind parameters,
vocab_size, seq_len)`` (a shared ``table`` is drawn from the named domain's stream, which
depends on the same five things for that name); its train and validation sequences come from
two further independent streams. Changing the domain list or sizes does not change other
domains.
"""

from __future__ import annotations

import copy
import math
import zlib
from typing import Any

import numpy as np

from .corpus import Corpus, SourceSpec, register_source

BUILTIN_DOMAINS: dict[str, dict[str, Any]] = {
    # The default testbed (DEFAULT_DOMAINS); token ranges as fractions of vocab_size.
    "fast": {
        "kind": "markov",
        "tokens": [0.0, 0.125],
        "order": 1,
        "support": 2,
        "concentration": 0.5,
        "noise": 0.01,
    },
    "slow": {"kind": "copy", "tokens": [0.375, 1.0], "period": 6},
    "shared_a": {
        "kind": "markov",
        "tokens": [0.125, 0.375],
        "order": 1,
        "support": 4,
        "concentration": 1.0,
        "noise": 0.01,
    },
    "shared_b": {
        "kind": "markov",
        "tokens": [0.125, 0.375],
        "order": 1,
        "support": 4,
        "concentration": 1.0,
        "noise": 0.1,
        "table": "shared_a",
        "private": 0.25,
    },
    "noise": {"kind": "uniform"},
    # The classic set (CLASSIC_DOMAINS) and markov3.
    "markov1": {"kind": "markov", "order": 1, "support": 3, "concentration": 0.5, "noise": 0.01},
    "markov2": {"kind": "markov", "order": 2, "support": 4, "concentration": 1.0, "noise": 0.01},
    "markov3": {"kind": "markov", "order": 3, "support": 4, "concentration": 1.0, "noise": 0.01},
    "copy": {"kind": "copy", "prefix_fraction": 0.5},
    "zipf": {"kind": "zipf", "exponent": 1.1},
    "uniform": {"kind": "uniform"},
}

DEFAULT_DOMAINS: tuple[str, ...] = ("fast", "slow", "shared_a", "shared_b", "noise")
CLASSIC_DOMAINS: tuple[str, ...] = ("markov1", "markov2", "copy", "zipf", "uniform")
# Named domain lists that the ``domains`` option accepts in place of a list.
DOMAIN_SETS: dict[str, tuple[str, ...]] = {"default": DEFAULT_DOMAINS, "classic": CLASSIC_DOMAINS}

_KIND_PARAMS: dict[str, dict[str, Any]] = {
    "markov": {
        "order": 1,
        "support": 4,
        "concentration": 1.0,
        "noise": 0.01,
        "table": None,
        "private": 0.0,
    },
    "copy": {"prefix_fraction": 0.5, "period": None},
    "zipf": {"exponent": 1.1},
    "uniform": {},
}

# Parameters every kind accepts.
_COMMON_PARAMS: dict[str, Any] = {"tokens": None}

# Largest number of contexts (V ** order) a markov domain may have.
MAX_CONTEXTS = 1 << 22

_PROCESS, _TRAIN, _VAL = 0, 1, 2


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every id in ``[0, vocab_size)`` (at least uint16)."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=axis)


class Process:
    """A generative process over token sequences of length ``seq_len``."""

    kind = ""

    def __init__(self, name: str, vocab_size: int, seq_len: int, rng: np.random.Generator):
        self.name = name
        self.vocab_size = int(vocab_size)
        self.seq_len = int(seq_len)
        self.dtype = token_dtype(self.vocab_size)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def position_entropy(self) -> np.ndarray:
        """``H(X_i | X_{<i})`` for ``i = 1 .. seq_len-1`` (nats), exactly."""
        raise NotImplementedError  # pragma: no cover

    def nll(self, seqs: np.ndarray) -> np.ndarray:
        """``-log p(x_i | x_{<i})`` under the true process, shape ``[n, seq_len-1]``."""
        raise NotImplementedError  # pragma: no cover

    @property
    def asymptotic_rate(self) -> float:
        raise NotImplementedError  # pragma: no cover

    def loss_floor(self) -> float:
        """Exact lower bound on expected next-token loss, averaged over positions 1..L-1."""
        return float(self.position_entropy().mean())


class UniformProcess(Process):
    kind = "uniform"

    def sample(self, n, rng):
        return rng.integers(0, self.vocab_size, size=(n, self.seq_len), dtype=self.dtype)

    def position_entropy(self):
        return np.full(self.seq_len - 1, math.log(self.vocab_size))

    def nll(self, seqs):
        return np.full((seqs.shape[0], self.seq_len - 1), math.log(self.vocab_size))

    @property
    def asymptotic_rate(self):
        return math.log(self.vocab_size)


class ZipfProcess(Process):
    kind = "zipf"

    def __init__(self, name, vocab_size, seq_len, rng, exponent: float = 1.1):
        super().__init__(name, vocab_size, seq_len, rng)
        if not (math.isfinite(exponent) and exponent >= 0):
            raise ValueError(f"domain {name!r}: zipf exponent must be >= 0, got {exponent}")
        ranks = np.arange(1, self.vocab_size + 1, dtype=np.float64)
        p_rank = ranks ** (-float(exponent))
        p_rank /= p_rank.sum()
        self.token_of_rank = rng.permutation(self.vocab_size)
        self.p = np.empty(self.vocab_size)
        self.p[self.token_of_rank] = p_rank
        self.cdf = np.cumsum(self.p)
        self.cdf[-1] = 1.0
        self.h = float(_entropy(self.p))

    def sample(self, n, rng):
        u = rng.random((n, self.seq_len))
        return (
            np.searchsorted(self.cdf, u, side="right")
            .clip(max=self.vocab_size - 1)
            .astype(self.dtype)
        )

    def position_entropy(self):
        return np.full(self.seq_len - 1, self.h)

    def nll(self, seqs):
        return -np.log(self.p[np.asarray(seqs, dtype=np.int64)[:, 1:]])

    @property
    def asymptotic_rate(self):
        return self.h


class CopyProcess(Process):
    kind = "copy"

    def __init__(
        self,
        name,
        vocab_size,
        seq_len,
        rng,
        prefix_fraction: float = 0.5,
        period: int | None = None,
    ):
        super().__init__(name, vocab_size, seq_len, rng)
        if not 0 < prefix_fraction <= 1:
            raise ValueError(
                f"domain {name!r}: copy prefix_fraction must lie in (0, 1], got {prefix_fraction}"
            )
        if period is not None:
            if isinstance(period, bool) or int(period) != period or period < 1:
                raise ValueError(f"domain {name!r}: copy period must be an integer >= 1")
            self.prefix_len = int(min(self.seq_len, period))
        else:
            self.prefix_len = int(min(self.seq_len, max(1, round(prefix_fraction * self.seq_len))))

    def sample(self, n, rng):
        m = self.prefix_len
        prefix = rng.integers(0, self.vocab_size, size=(n, m), dtype=self.dtype)
        reps = -(-self.seq_len // m)
        return np.ascontiguousarray(np.tile(prefix, (1, reps))[:, : self.seq_len])

    def position_entropy(self):
        pos = np.arange(1, self.seq_len)
        return np.where(pos < self.prefix_len, math.log(self.vocab_size), 0.0)

    def nll(self, seqs):
        seqs = np.asarray(seqs, dtype=np.int64)
        pos = np.arange(1, self.seq_len)
        expected = seqs[:, pos % self.prefix_len]
        copied = pos >= self.prefix_len
        out = np.where(copied, 0.0, math.log(self.vocab_size))
        out = np.broadcast_to(out, expected.shape).copy()
        # A token that breaks the copy is impossible under the process.
        out[:, copied] = np.where(expected[:, copied] == seqs[:, 1:][:, copied], 0.0, np.inf)
        return out

    @property
    def asymptotic_rate(self):
        return self.loss_floor()


class MarkovProcess(Process):
    """Order-k Markov chain with sparse random transitions plus a uniform noise component."""

    kind = "markov"

    def __init__(
        self,
        name,
        vocab_size,
        seq_len,
        rng,
        order: int = 1,
        support: int = 4,
        concentration: float = 1.0,
        noise: float = 0.01,
        table: str | None = None,
        private: float = 0.0,
        table_rng: np.random.Generator | None = None,
    ):
        super().__init__(name, vocab_size, seq_len, rng)
        V = self.vocab_size
        if int(order) != order or order < 1:
            raise ValueError(f"domain {name!r}: markov order must be an integer >= 1")
        if int(support) != support or not 1 <= support <= V:
            raise ValueError(f"domain {name!r}: markov support must be in 1..{V}, got {support}")
        if not (concentration > 0 and math.isfinite(concentration)):
            raise ValueError(f"domain {name!r}: markov concentration must be > 0")
        if not 0 <= noise <= 1:
            raise ValueError(f"domain {name!r}: markov noise must be in [0, 1], got {noise}")
        if table is not None and not (isinstance(table, str) and table):
            raise ValueError(f"domain {name!r}: markov table must be a domain name, got {table!r}")
        if not (isinstance(private, (int, float)) and 0 <= private <= 1):
            raise ValueError(f"domain {name!r}: markov private must be in [0, 1], got {private}")
        own_table = table is None or table == name
        if private > 0 and own_table:
            raise ValueError(
                f"domain {name!r}: markov private > 0 needs a 'table' (another domain's name)"
            )
        self.order, self.support = int(order), int(support)
        self.concentration, self.noise = float(concentration), float(noise)
        self.table, self.private = (None if own_table else table), float(private)
        k, S = self.order, self.support
        if V**k > MAX_CONTEXTS:
            raise ValueError(
                f"domain {name!r}: vocab_size**order = {V}**{k} contexts exceeds {MAX_CONTEXTS}"
            )
        C = self.num_contexts = V**k
        if self.table is None:
            self.succ, self.q = self._draw_table(rng, C, V, S, self.concentration)
        else:
            # The table of domain `table` (drawn from that domain's process stream, so equal to
            # its table when order, support and concentration match), with a `private` fraction
            # of its rows replaced by rows of this domain's own table.
            if table_rng is None:
                raise ValueError(f"domain {name!r}: a shared markov table needs table_rng")
            self.succ, self.q = self._draw_table(table_rng, C, V, S, self.concentration)
            n_own = int(round(self.private * C))
            if n_own:
                own_succ, own_q = self._draw_table(rng, C, V, S, self.concentration)
                rows = rng.permutation(C)[:n_own]
                self.succ[rows], self.q[rows] = own_succ[rows], own_q[rows]
        self.cdf = np.cumsum(self.q, axis=1)
        self.cdf[:, -1] = 1.0
        eps = self.noise
        r = (1.0 - eps) * self.q + eps / V  # probability of each listed successor
        h = _entropy(r, axis=1)
        if eps > 0 and V > S:
            h = h + (V - S) * (-(eps / V) * math.log(eps / V))
        self.h = h  # exact next-token entropy of every context
        self.dest = (np.arange(C, dtype=np.int64)[:, None] * V + self.succ) % C
        self.p0 = self._stationary()
        self.p0_cdf = np.cumsum(self.p0)
        self.p0_cdf[-1] = 1.0
        self._pos_entropy: np.ndarray | None = None

    @classmethod
    def _draw_table(cls, rng, C, V, S, concentration):
        """Sparse transition table: ``S`` distinct successors per context and their
        Dirichlet(``concentration``) probabilities, shapes ``[C, S]``."""
        succ = cls._distinct_successors(rng, C, V, S)
        g = rng.standard_gamma(concentration, size=(C, S))
        sums = g.sum(axis=1, keepdims=True)
        bad = sums[:, 0] <= 0
        g[bad], sums[bad] = 1.0, S
        return succ, g / sums

    @staticmethod
    def _distinct_successors(rng, C, V, S):
        if S == V:
            return np.tile(np.arange(V, dtype=np.int64), (C, 1))
        if 2 * S > V:
            return np.argsort(rng.random((C, V)), axis=1)[:, :S].astype(np.int64)
        succ = rng.integers(0, V, size=(C, S), dtype=np.int64)
        while True:
            s = np.sort(succ, axis=1)
            dup = (s[:, 1:] == s[:, :-1]).any(axis=1)
            if not dup.any():
                return succ
            succ[dup] = rng.integers(0, V, size=(int(dup.sum()), S), dtype=np.int64)

    def _step(self, p: np.ndarray) -> np.ndarray:
        """Propagate a distribution over contexts by one token."""
        V, C, eps = self.vocab_size, self.num_contexts, self.noise
        out = np.bincount(
            self.dest.ravel(), weights=(p[:, None] * ((1.0 - eps) * self.q)).ravel(), minlength=C
        )
        if eps > 0:
            suffix_mass = p.reshape(V, C // V).sum(axis=0)
            out += np.repeat(suffix_mass * (eps / V), V)
        return out

    def _stationary(self, tol: float = 1e-12, max_iter: int | None = None) -> np.ndarray:
        C = self.num_contexts
        if max_iter is None:
            max_iter = max(50, min(2000, int(2e8 // (C * self.support + C))))
        p = np.full(C, 1.0 / C)
        for _ in range(max_iter):
            nxt = self._step(p)
            nxt /= nxt.sum()
            done = np.abs(nxt - p).sum() < tol
            p = nxt
            if done:
                break
        return p

    def _prefix_marginal(self, n_tokens: int) -> np.ndarray:
        """Distribution of (x_0 .. x_{n_tokens-1}) under the start distribution p0."""
        V, k = self.vocab_size, self.order
        return self.p0.reshape(V**n_tokens, V ** (k - n_tokens)).sum(axis=1)

    def position_entropy(self):
        if self._pos_entropy is None:
            L, k = self.seq_len, self.order
            out = []
            prev_h = float(_entropy(self._prefix_marginal(1)))
            for i in range(1, min(k, L)):
                joint_h = float(_entropy(self._prefix_marginal(i + 1)))
                out.append(joint_h - prev_h)
                prev_h = joint_h
            p = self.p0
            for i in range(k, L):
                if i > k:
                    p = self._step(p)
                out.append(float(p @ self.h))
            self._pos_entropy = np.asarray(out, dtype=np.float64)
        return self._pos_entropy

    @property
    def asymptotic_rate(self):
        return float(self.p0 @ self.h)

    def sample(self, n, rng):
        V, k, L, C, eps = self.vocab_size, self.order, self.seq_len, self.num_contexts, self.noise
        out = np.empty((n, L), dtype=self.dtype)
        ctx = np.searchsorted(self.p0_cdf, rng.random(n), side="right").clip(max=C - 1)
        first = min(k, L)
        for j in range(first):
            out[:, j] = (ctx // V ** (k - 1 - j)) % V
        S = self.support
        for i in range(k, L):
            u = rng.random(n)
            j = (u[:, None] >= self.cdf[ctx]).sum(axis=1)
            np.minimum(j, S - 1, out=j)
            tok = self.succ[ctx, j]
            if eps > 0:
                noisy = np.flatnonzero(rng.random(n) < eps)
                tok[noisy] = rng.integers(0, V, size=noisy.size)
            out[:, i] = tok
            ctx = (ctx * V + tok) % C
        return out

    def nll(self, seqs):
        seqs = np.asarray(seqs, dtype=np.int64)
        V, k, L, C, eps = self.vocab_size, self.order, self.seq_len, self.num_contexts, self.noise
        n = seqs.shape[0]
        out = np.empty((n, L - 1))
        prefix = np.zeros(n, dtype=np.int64)
        prev_logp = None
        for i in range(min(k, L)):
            prefix = prefix * V + seqs[:, i]
            logp = np.log(self._prefix_marginal(i + 1)[prefix])
            if i >= 1:
                out[:, i - 1] = prev_logp - logp
            prev_logp = logp
        ctx = prefix
        for i in range(k, L):
            tok = seqs[:, i]
            match = self.succ[ctx] == tok[:, None]
            prob = eps / V + (1.0 - eps) * (self.q[ctx] * match).sum(axis=1)
            out[:, i - 1] = -np.log(prob)
            ctx = (ctx * V + tok) % C
        return out


class SubVocabProcess(Process):
    """A process confined to the token range ``[start, start + inner.vocab_size)``.

    ``inner`` is built over its own ``stop - start`` tokens (so its entropies are unchanged);
    its tokens are shifted by ``start``. Other attributes are the inner process's.
    """

    def __init__(self, inner: Process, start: int, vocab_size: int):
        self.inner, self.start = inner, int(start)
        self.name, self.kind, self.seq_len = inner.name, inner.kind, inner.seq_len
        self.vocab_size = int(vocab_size)
        self.dtype = token_dtype(self.vocab_size)

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (e.g. while unpickling)
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @property
    def stop(self) -> int:
        return self.start + self.inner.vocab_size

    def sample(self, n, rng):
        out = self.inner.sample(n, rng).astype(self.dtype)
        out += self.dtype.type(self.start)
        return out

    def position_entropy(self):
        return self.inner.position_entropy()

    def nll(self, seqs):
        seqs = np.asarray(seqs, dtype=np.int64)
        local = seqs - self.start
        outside = (local < 0) | (local >= self.inner.vocab_size)
        out = self.inner.nll(np.clip(local, 0, self.inner.vocab_size - 1))
        out[outside[:, 1:]] = np.inf  # a token outside the range is impossible
        out[outside[:, 0]] = np.inf
        return out

    @property
    def asymptotic_rate(self):
        return self.inner.asymptotic_rate


_KIND_CLASSES: dict[str, type[Process]] = {
    "markov": MarkovProcess,
    "copy": CopyProcess,
    "zipf": ZipfProcess,
    "uniform": UniformProcess,
}


def normalize_domain_spec(spec: str | dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(name, kind, params)`` for a built-in name or a dict with ``kind`` (and ``name``)."""
    if isinstance(spec, str):
        if spec not in BUILTIN_DOMAINS:
            raise ValueError(
                f"unknown synthetic domain {spec!r}; built-in domains: {sorted(BUILTIN_DOMAINS)} "
                f"(or give a dict with 'kind' in {sorted(_KIND_CLASSES)})"
            )
        params = copy.deepcopy(BUILTIN_DOMAINS[spec])
        kind = params.pop("kind")
        return spec, kind, {**_KIND_PARAMS[kind], **_COMMON_PARAMS, **params}
    if not isinstance(spec, dict):
        raise ValueError(f"a synthetic domain must be a name or a dict, got {spec!r}")
    params = copy.deepcopy(spec)
    kind = params.pop("kind", None)
    if kind in BUILTIN_DOMAINS and kind not in _KIND_CLASSES:
        base = copy.deepcopy(BUILTIN_DOMAINS[kind])
        kind = base.pop("kind")
        params = {**base, **params}
    if kind not in _KIND_CLASSES:
        raise ValueError(
            f"synthetic domain {spec!r}: 'kind' must be one of {sorted(_KIND_CLASSES)} "
            f"or a built-in name {sorted(BUILTIN_DOMAINS)}"
        )
    name = params.pop("name", None) or (
        spec.get("kind") if isinstance(spec.get("kind"), str) else kind
    )
    allowed = {**_KIND_PARAMS[kind], **_COMMON_PARAMS}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"synthetic domain {name!r}: unknown parameter(s) {unknown} for kind {kind!r}; "
            f"allowed: {sorted(allowed)}"
        )
    return str(name), kind, {**allowed, **params}


def _rng(seed: int, name: str, purpose: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), purpose])


def build_process(
    spec: str | dict[str, Any], vocab_size: int = 64, seq_len: int = 128, seed: int = 0
) -> Process:
    """The generative process of one synthetic domain (same as inside ``load_corpus``)."""
    name, kind, params = normalize_domain_spec(spec)
    start, stop = _token_range(name, params.pop("tokens"), vocab_size)
    extra = {}
    if kind == "markov" and isinstance(params.get("table"), str) and params["table"] != name:
        extra["table_rng"] = _rng(seed, params["table"], _PROCESS)
    proc = _KIND_CLASSES[kind](
        name, stop - start, seq_len, _rng(seed, name, _PROCESS), **params, **extra
    )
    if (start, stop) == (0, vocab_size):
        return proc
    return SubVocabProcess(proc, start, vocab_size)


def _token_range(name: str, tokens: Any, vocab_size: int) -> tuple[int, int]:
    """``(start, stop)`` of a domain's ``tokens`` option (None: the whole vocabulary).

    An int entry is a token id; a float entry in [0, 1] a fraction of ``vocab_size`` (rounded).
    """
    if tokens is None:
        return 0, int(vocab_size)
    msg = (
        f"domain {name!r}: tokens must be [start, stop) (token ids, or fractions of vocab_size "
        f"as floats in [0, 1]) with 0 <= start < stop <= vocab_size = {vocab_size}; got {tokens!r}"
    )
    if not isinstance(tokens, (list, tuple)) or len(tokens) != 2:
        raise ValueError(msg)
    ends = []
    for t in tokens:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            ends.append(int(t))
        elif isinstance(t, (float, np.floating)) and 0.0 <= t <= 1.0:
            ends.append(int(round(float(t) * vocab_size)))
        else:
            raise ValueError(msg)
    start, stop = ends
    if not 0 <= start < stop <= vocab_size:
        raise ValueError(msg + f" (start, stop = {start}, {stop})")
    return start, stop


def loss_floor(
    spec: str | dict[str, Any], vocab_size: int = 64, seq_len: int = 128, seed: int = 0
) -> float:
    """Exact minimum expected next-token loss (nats per predicted token, positions 1..L-1)."""
    return build_process(spec, vocab_size, seq_len, seed).loss_floor()


def _sizes(
    n_domains: int, sequences_per_domain: int | list[int], domain_sizes: list[float] | None
) -> list[int]:
    if isinstance(sequences_per_domain, (list, tuple)):
        if domain_sizes is not None:
            raise ValueError("give either a list sequences_per_domain or domain_sizes, not both")
        if len(sequences_per_domain) != n_domains:
            raise ValueError(
                f"sequences_per_domain has {len(sequences_per_domain)} entries for "
                f"{n_domains} domains"
            )
        return [int(n) for n in sequences_per_domain]
    total = int(sequences_per_domain) * n_domains
    if domain_sizes is None:
        return [int(sequences_per_domain)] * n_domains
    sizes = np.asarray(domain_sizes, dtype=np.float64)
    if sizes.shape != (n_domains,) or not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise ValueError(
            f"domain_sizes must be {n_domains} finite non-negative numbers, got {domain_sizes}"
        )
    if sizes.sum() <= 0:
        raise ValueError("domain_sizes must not all be zero")
    return [int(round(x)) for x in total * sizes / sizes.sum()]


def build_synthetic(
    *,
    vocab_size: int = 64,
    seq_len: int = 128,
    domains: str | list[str | dict[str, Any]] | None = None,
    sequences_per_domain: int | list[int] = 2048,
    val_sequences_per_domain: int = 256,
    domain_sizes: list[float] | None = None,
    seed: int = 0,
) -> Corpus:
    """Synthetic corpus (see the module docstring for kinds and the entropy definition).

    ``domains``: a list of built-in names (:data:`BUILTIN_DOMAINS`) and dicts (``kind``,
    ``name`` and the kind's parameters), or the name of a set in :data:`DOMAIN_SETS`
    (``"default"``, the same as None: :data:`DEFAULT_DOMAINS`; ``"classic"``:
    :data:`CLASSIC_DOMAINS`). ``domain_sizes`` are relative train sizes; the total stays
    ``sequences_per_domain * num_domains``. ``sequences_per_domain`` may instead be a list of
    per-domain counts.
    """
    if int(vocab_size) != vocab_size or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    if int(seq_len) != seq_len or seq_len < 2:
        raise ValueError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    if int(val_sequences_per_domain) != val_sequences_per_domain or val_sequences_per_domain < 1:
        raise ValueError(f"val_sequences_per_domain must be >= 1, got {val_sequences_per_domain}")
    if domains is None:
        domains = "default"
    if isinstance(domains, str):
        if domains not in DOMAIN_SETS:
            raise ValueError(
                f"unknown synthetic domain set {domains!r}; named sets: {sorted(DOMAIN_SETS)} "
                "(or give a list of domain names and dicts)"
            )
        domains = list(DOMAIN_SETS[domains])
    specs = list(domains)
    if not specs:
        raise ValueError("domains must name at least one synthetic domain")
    procs = [build_process(s, vocab_size, seq_len, seed) for s in specs]
    names = [p.name for p in procs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate synthetic domain name(s) {dup}; give dicts a 'name'")
    counts = _sizes(len(procs), sequences_per_domain, domain_sizes)
    train, val = [], []
    for proc, n in zip(procs, counts, strict=True):
        if n < 1:
            raise ValueError(
                f"domain {proc.name!r} is empty: it gets {n} training sequences; "
                "raise sequences_per_domain or its domain_sizes entry"
            )
        train.append(proc.sample(n, _rng(seed, proc.name, _TRAIN)))
        val.append(proc.sample(int(val_sequences_per_domain), _rng(seed, proc.name, _VAL)))
    return Corpus(
        domains=names,
        train=train,
        val=val,
        seq_len=int(seq_len),
        vocab_size=int(vocab_size),
        entropy_rate=[p.loss_floor() for p in procs],
        metadata={
            "kinds": {p.name: p.kind for p in procs},
            "specs": {p.name: normalize_domain_spec(s)[2] for p, s in zip(procs, specs)},
            "asymptotic_entropy_rate": {p.name: float(p.asymptotic_rate) for p in procs},
            "position_entropy": {p.name: p.position_entropy().tolist() for p in procs},
            "entropy_definition": "mean over predicted positions 1..seq_len-1 of "
            "H(x_i | x_<i), nats per predicted token",
        },
    )


register_source(SourceSpec(name="synthetic", build=build_synthetic, cache_default=False))
