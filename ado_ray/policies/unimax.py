"""``unimax``: the UniMax rule (Chung et al., "UniMax: Fairer and More Effective Language Sampling
for Large-Scale Multilingual Pretraining", ICLR 2023, arXiv 2304.09151, Algorithm 1).

Spread the run's token budget uniformly over the domains, but give no domain more than
``max_epochs`` passes over its data; what a capped domain cannot take goes, uniformly, to the
others. Algorithm 1 does it in one pass over the domains in increasing order of size: with B
the budget not yet allocated and m the domains not yet visited, the next (smallest) domain k
gets

    U_k = min(B / m, max_epochs * n_k),    then B <- B - U_k, m <- m - 1,

and the sampling weights are U / sum(U). Once one domain takes the uniform share B / m, every
larger domain takes the same share. Here n_k is domain k's training tokens
(``domain_tokens``, which the runner fills in with the corpus' token counts) and the budget is
the run's training tokens (``total_tokens``, which the runner fills in: steps x batch size x
sequence length). Both are required; give them directly when building the policy in Python.

**Budget beyond capacity.** When ``total_tokens`` exceeds ``max_epochs * sum(n)``, every
domain is capped and Algorithm 1 leaves budget unallocated; normalising U then gives weights
proportional to the caps, i.e. to n: the natural proportions, and the run repeats every domain
about total_tokens / sum(n) times, more than ``max_epochs``. We keep that (it is what the
algorithm's normalisation gives) and report the expected epochs in ``diagnostics()``.

``max_epochs`` (N in the paper; default 1.0, at most one pass over any domain's data): the
paper's Algorithm 1 takes N as an input. I could not check its recommended value against the
paper's text in this session (only its abstract was available); the default is the
no-repetition setting, and the search space spans 0.5 to 16 epochs (Muennighoff et al. 2023,
arXiv 2305.16264, find up to about 4 repeats nearly as useful as fresh data).

Weights are fixed: ``observe`` is checked and counted but changes nothing. ``diagnostics()``:
``unimax_tokens`` (each domain's planned tokens, weight x total_tokens) and ``unimax_epochs``
(planned tokens / domain tokens; 0 for a domain without tokens).

Differences from the source: the paper counts characters of languages; we count tokens of
domains (the rule is the same). The paper does not say how to order domains of equal size;
the result does not depend on it (equal sizes get equal allocations). A domain with no tokens
gets weight 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import MixturePolicy
from .options import Needs, Option

__all__ = ["UnimaxPolicy", "unimax_allocation"]


def unimax_allocation(
    domain_tokens: Sequence[float] | np.ndarray, budget: float, max_epochs: float
) -> np.ndarray:
    """Algorithm 1's allocation U (tokens per domain, in the input's order): domains in
    increasing size order each take min(remaining budget / remaining domains,
    max_epochs * size). Sums to ``budget`` unless the budget exceeds the total capacity."""
    n = np.asarray(domain_tokens, dtype=np.float64)
    out = np.zeros(n.size)
    left = float(budget)
    m = n.size
    for i in np.argsort(n, kind="stable").tolist():
        share = left / m
        cap = max_epochs * float(n[i])
        u = cap if share > cap else share
        out[i] = u
        left -= u
        m -= 1
    return out


class UnimaxPolicy(MixturePolicy):
    """UniMax: the token budget spread uniformly over domains, each at most max_epochs passes.

    Chung et al. 2023, Algorithm 1. Needs ``total_tokens`` and ``domain_tokens`` (the runner
    supplies them); see the module docstring."""

    name = "unimax"
    options_spec = (
        Option(
            "max_epochs",
            1.0,
            "float",
            "at most this many passes over any domain's data (N)",
            low=0.0,
            low_open=True,
        ),
        Option("total_tokens", None, "int", "the run's training tokens (the budget)", low=1),
        Option("domain_tokens", None, "weights", "each domain's training tokens"),
    )
    needs = Needs(run_budget=True)
    search_space = {"max_epochs": {"type": "loguniform", "low": 0.5, "high": 16.0}}

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        self._resolve_options(options)
        o = self._resolved
        missing = [n for n in ("total_tokens", "domain_tokens") if o[n] is None]
        if missing:
            raise ValueError(
                f"policy 'unimax' needs {' and '.join(f'{n}=' for n in missing)}: the run's "
                "training tokens (total_tokens, an integer >= 1) and each domain's training "
                "tokens (domain_tokens, one non-negative number per domain); the runner "
                "supplies both"
            )
        sizes = np.asarray(o["domain_tokens"], dtype=np.float64)
        if sizes.shape != (self._k,):
            raise ValueError(
                f"domain_tokens has {sizes.size} entries: expected {self._k} (one per domain)"
            )
        if not sizes.sum() > 0.0:
            raise ValueError(
                f"domain_tokens={o['domain_tokens']!r} is not allowed: allowed non-negative "
                "numbers, not all zero"
            )
        self._sizes = sizes
        self._total = float(o["total_tokens"])
        u = unimax_allocation(sizes, self._total, float(o["max_epochs"]))
        self._w = u / u.sum()

    def weights(self) -> np.ndarray:
        return self._w.copy()

    def diagnostics(self) -> dict[str, np.ndarray]:
        """``unimax_tokens`` (planned tokens per domain) and ``unimax_epochs`` (planned passes
        over each domain's data)."""
        tokens = self._w * self._total
        epochs = np.divide(tokens, self._sizes, out=np.zeros(self._k), where=self._sizes > 0)
        return {"unimax_tokens": tokens, "unimax_epochs": epochs}
