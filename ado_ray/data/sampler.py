"""The mixture sampler: sampling weights -> a batch of sequences and their domain ids.

Each call to :meth:`MixtureSampler.sample` draws one *global* batch of ``batch_size``
sequences:

1. per-domain counts from the weights: ``multinomial`` (random) or ``largest_remainder``
   (deterministic apportionment of ``batch_size * w`` plus the residual carried over from
   earlier batches, so that long-run counts track the weights even when
   ``batch_size * w_k < 1``; ``carry_remainder=False`` gives plain per-batch largest
   remainder, ties to the lower domain index);
2. within each domain, the next sequences of a shuffled order, without replacement; when a
   domain is exhausted it is reshuffled (permutation ``k`` of epoch ``e`` comes from
   ``(seed, k, e)``) and its pass counter moves on;
3. the global batch's rows are shuffled, so that every rank's shard mixes domains.

Under data parallelism every rank runs the same sampler (same seed, same weight sequence),
hence computes the same global batch, and gathers only its contiguous shard of
``batch_size // world_size`` rows: rank r gets rows ``[r*b, (r+1)*b)``. The shards are
disjoint and cover the global batch. Only the shard's rows are read from memory.

Everything is a pure function of ``seed`` and the sequence of weights. :meth:`state_dict`
is small and JSON-serialisable (positions, epochs, counters, the ``numpy`` generator
state), and a sampler restored with :meth:`load_state_dict` draws identical batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MODES = ("multinomial", "largest_remainder")
_STATE_VERSION = 1
_SALT = 0xAD0


def validate_weights(weights: Any, num_domains: int, tol: float = 1e-6) -> np.ndarray:
    """The weights as a float64 K-vector summing to 1; ValueError naming any problem."""
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"weights must be numeric, got {weights!r}") from None
    if w.shape != (num_domains,):
        raise ValueError(
            f"weights must be a vector of length {num_domains} (one per domain), "
            f"got shape {w.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite, got {w.tolist()}")
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative, got {w.tolist()}")
    total = float(w.sum())
    if abs(total - 1.0) > tol:
        raise ValueError(f"weights must sum to 1 (within {tol:g}), got sum {total!r}")
    return w / total


def largest_remainder(quota: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` nearest to the non-negative ``quota`` (sum total)."""
    base = np.floor(quota).astype(np.int64)
    short = int(total - base.sum())
    if short > 0:
        rem = quota - base
        order = np.lexsort((np.arange(quota.size), -rem))  # largest remainder, then lower index
        base[order[:short]] += 1
    elif short < 0:  # only from rounding noise; take from the smallest remainders
        rem = quota - base
        order = np.lexsort((np.arange(quota.size), rem))
        order = order[base[order] > 0]
        base[order[:-short]] -= 1
    return base


class MixtureSampler:
    """Draw mixed batches of training sequences from a :class:`Corpus`.

    Args:
        corpus: anything with ``train`` (list of ``[n_k, seq_len]`` integer arrays).
        batch_size: the *global* batch size (all ranks together).
        seed: the seed of every random choice.
        rank, world_size: this rank's shard of the global batch.
        mode: ``"multinomial"`` or ``"largest_remainder"``.
        carry_remainder: in ``largest_remainder`` mode, carry the rounding residual across
            batches (default True).
    """

    def __init__(
        self,
        corpus: Any,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mode: str = "multinomial",
        carry_remainder: bool = True,
    ):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(world_size) != world_size or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if int(rank) != rank or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        if batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by world_size {world_size}: "
                "every rank must get the same number of sequences"
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._data = [a if isinstance(a, np.ndarray) else np.asarray(a) for a in corpus.train]
        if not self._data:
            raise ValueError("corpus has no domains")
        self.seq_len = int(self._data[0].shape[1])
        names = list(getattr(corpus, "domains", range(len(self._data))))
        for name, a in zip(names, self._data, strict=True):
            if a.ndim != 2 or a.shape[1] != self.seq_len:
                raise ValueError(f"domain {name!r}: train sequences have shape {a.shape}")
            if a.shape[0] == 0:
                raise ValueError(f"domain {name!r} has no training sequence")
        self.num_domains = len(self._data)
        self.num_sequences = np.array([a.shape[0] for a in self._data], dtype=np.int64)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.local_batch_size = self.batch_size // self.world_size
        self.mode = mode
        self.carry_remainder = bool(carry_remainder)
        self._rng = np.random.default_rng([self.seed, _SALT])
        self._epoch = np.zeros(self.num_domains, dtype=np.int64)
        self._pos = np.zeros(self.num_domains, dtype=np.int64)
        self._consumed = np.zeros(self.num_domains, dtype=np.int64)
        self._carry = np.zeros(self.num_domains, dtype=np.float64)
        self._perms: list[np.ndarray | None] = [None] * self.num_domains
        self.step = 0
        self.last_counts: np.ndarray | None = None
        self.last_local_counts: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------

    @property
    def passes(self) -> np.ndarray:
        """Epochs consumed per domain (float64): sequences drawn / sequences in the domain."""
        return self._consumed / self.num_sequences

    @property
    def consumed(self) -> np.ndarray:
        """Sequences drawn per domain so far (global, all ranks), int64."""
        return self._consumed.copy()

    def _perm(self, k: int) -> np.ndarray:
        perm = self._perms[k]
        if perm is None:
            rng = np.random.default_rng([self.seed, _SALT, k, int(self._epoch[k])])
            perm = self._perms[k] = rng.permutation(int(self.num_sequences[k]))
        return perm

    def _take(self, k: int, count: int, out: np.ndarray) -> None:
        n = int(self.num_sequences[k])
        filled = 0
        while filled < count:
            if self._pos[k] >= n:
                self._epoch[k] += 1
                self._pos[k] = 0
                self._perms[k] = None
            pos = int(self._pos[k])
            t = min(count - filled, n - pos)
            out[filled : filled + t] = self._perm(k)[pos : pos + t]
            self._pos[k] = pos + t
            filled += t
        self._consumed[k] += count

    def counts(self, weights: Any) -> np.ndarray:
        """Per-domain counts of the next global batch (advances the sampler's RNG/carry)."""
        w = validate_weights(weights, self.num_domains)
        B = self.batch_size
        if self.mode == "multinomial":
            return self._rng.multinomial(B, w).astype(np.int64)
        if not self.carry_remainder:
            return largest_remainder(B * w, B)
        target = B * w + self._carry
        quota = np.where(w > 0, np.clip(target, 0.0, None), 0.0)
        s = quota.sum()
        quota = quota * (B / s) if s > 0 else B * w
        c = largest_remainder(quota, B)
        self._carry = np.where(w > 0, target - c, 0.0)
        return c

    def sample(self, weights: Any) -> tuple[np.ndarray, np.ndarray]:
        """This rank's shard of the next global batch.

        Returns ``(input_ids, domain_ids)``, both int64, shapes
        ``[batch_size // world_size, seq_len]`` and ``[batch_size // world_size]``.
        """
        counts = self.counts(weights)
        B = self.batch_size
        dom = np.repeat(np.arange(self.num_domains, dtype=np.int64), counts)
        idx = np.empty(B, dtype=np.int64)
        off = 0
        for k in np.flatnonzero(counts):
            c = int(counts[k])
            self._take(int(k), c, idx[off : off + c])
            off += c
        order = self._rng.permutation(B)
        lo = self.rank * self.local_batch_size
        sel = order[lo : lo + self.local_batch_size]
        local_dom, local_idx = dom[sel], idx[sel]
        out = np.empty((self.local_batch_size, self.seq_len), dtype=np.int64)
        local_counts = np.bincount(local_dom, minlength=self.num_domains)
        for k in np.flatnonzero(local_counts):
            rows = np.flatnonzero(local_dom == k)
            out[rows] = self._data[k][local_idx[rows]]
        self.step += 1
        self.last_counts = counts
        self.last_local_counts = local_counts
        return out, local_dom

    # ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state; restores to draw identical batches."""
        return {
            "version": _STATE_VERSION,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "mode": self.mode,
            "carry_remainder": self.carry_remainder,
            "num_sequences": self.num_sequences.tolist(),
            "rng": self._rng.bit_generator.state,
            "epoch": self._epoch.tolist(),
            "pos": self._pos.tolist(),
            "consumed": self._consumed.tolist(),
            "carry": self._carry.tolist(),
            "step": self.step,
            "last_counts": None if self.last_counts is None else self.last_counts.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported sampler state version {state.get('version')!r}")
        for key in ("seed", "batch_size", "mode", "carry_remainder"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]!r}, this sampler has "
                    f"{getattr(self, key)!r}"
                )
        if list(state["num_sequences"]) != self.num_sequences.tolist():
            raise ValueError(
                "sampler state was saved for a corpus with different domain sizes "
                f"{state['num_sequences']} (this corpus: {self.num_sequences.tolist()})"
            )
        self._rng.bit_generator.state = state["rng"]
        self._epoch = np.array(state["epoch"], dtype=np.int64)
        self._pos = np.array(state["pos"], dtype=np.int64)
        self._consumed = np.array(state["consumed"], dtype=np.int64)
        self._carry = np.array(state["carry"], dtype=np.float64)
        self._perms = [None] * self.num_domains
        self.step = int(state["step"])
        lc = state.get("last_counts")
        self.last_counts = None if lc is None else np.array(lc, dtype=np.int64)
        self.last_local_counts = None
