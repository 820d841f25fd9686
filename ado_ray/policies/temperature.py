"""``temperature``: temperature sampling over the domains' token counts, p_k ~ n_k^(1/T).

The rule of multilingual pretraining: Arivazhagan et al. 2019, "Massively Multilingual Neural
Machine Translation in the Wild" (arXiv 1907.05019, sampling with a temperature T over the
languages' data sizes), and Conneau et al. 2020, "Unsupervised Cross-lingual Representation
Learning at Scale" (XLM-R, ACL 2020, q_i ~ p_i^alpha with alpha = 1/T; alpha = 0.3 there).
T = 1 is the natural proportions; T < 1 sharpens them; large T tends to uniform. Held et al.
2025, "Optimizing Pretraining Data Mixtures with LLM-Estimated Utility" (arXiv 2501.11747),
motivate it as a baseline: among nine mixing methods, such token-count heuristics beat manual
and learned mixes.

Weights are fixed: ``observe`` is checked and counted but changes nothing.

Options: ``temperature`` T > 0 (default 1.0: natural); ``delta_min``, a floor on every weight
(default 0.0), applied exactly by water-filling (``floor_clip``: the weights above the floor
keep their ratios); ``prior=`` (a distribution) or ``token_counts=`` (the runner's corpus token
counts, normalised). At T = 1 and no floor the weights are the prior bitwise (the ``natural``
policy's weights).

Differences from the sources: none in the rule. ``delta_min`` is ours (the sources have no
floor); a ``delta_min`` of 1/K or more gives uniform weights rather than an error, since no
distribution can give every domain more than 1/K. A domain with no tokens gets weight 0 (or
the floor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MixturePolicy, floor_clip
from .options import Needs, Option

__all__ = ["TemperaturePolicy", "temperature_weights"]


def temperature_weights(prior: np.ndarray, temperature: float) -> np.ndarray:
    """p ~ prior^(1/temperature), normalised (computed in log space: no underflow at small T).

    ``prior`` is non-negative with a positive sum; at ``temperature == 1`` it is returned
    unchanged (as float64)."""
    mu = np.asarray(prior, dtype=np.float64)
    if temperature == 1.0:
        return mu
    with np.errstate(divide="ignore"):
        z = np.log(mu)
    z *= 1.0 / temperature
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum()
    return z


class TemperaturePolicy(MixturePolicy):
    """Temperature sampling: p_k proportional to n_k^(1/T) over the domains' token counts.

    ``prior=`` (a distribution) or ``token_counts=`` (normalised) is required; see the module
    docstring."""

    name = "temperature"
    options_spec = (
        Option(
            "temperature",
            1.0,
            "float",
            "T: p ~ n^(1/T); 1 is natural, large T tends to uniform",
            low=0.0,
            low_open=True,
        ),
        Option(
            "delta_min",
            0.0,
            "float",
            "weight floor per domain (>= 1/K: uniform)",
            low=0.0,
            high=1.0,
            high_open=True,
        ),
    )
    needs = Needs(prior=True)
    search_space = {"temperature": {"type": "loguniform", "low": 0.5, "high": 10.0}}

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        mu = self._resolve_options(options, prior_required=True)
        assert mu is not None
        o = self._resolved
        w = temperature_weights(mu, float(o["temperature"]))
        floor = float(o["delta_min"])
        if floor * self._k >= 1.0:
            w = np.full(self._k, 1.0 / self._k)
        else:
            w = floor_clip(w, floor)
        self._w = w

    def weights(self) -> np.ndarray:
        return self._w.copy()
