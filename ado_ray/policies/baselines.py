"""Baseline policies: ``uniform``, ``natural`` and ``fixed`` weights.

They ignore the observations (which are still checked, and counted in
``steps_observed``) and always answer the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MixturePolicy, check_distribution
from .options import REQUIRED, Needs, Option

__all__ = ["FixedPolicy", "NaturalPolicy", "UniformPolicy"]


class _ConstantPolicy(MixturePolicy):
    _w: np.ndarray

    def weights(self) -> np.ndarray:
        return self._w.copy()


class UniformPolicy(_ConstantPolicy):
    """Every domain 1/K (stratified sampling)."""

    name = "uniform"

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        self._resolve_options(options)
        self._resolved = {}
        self._w = np.full(self._k, 1.0 / self._k)


class NaturalPolicy(_ConstantPolicy):
    """The natural proportions: each domain's share of the training tokens.

    ``prior=`` (a distribution) or ``token_counts=`` (per-domain token counts, normalised);
    ``options`` reports ``prior``."""

    name = "natural"
    needs = Needs(prior=True)

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        self._w = self._resolve_options(options, prior_required=True)


class FixedPolicy(_ConstantPolicy):
    """Given weights, the same at every step."""

    name = "fixed"
    options_spec = (
        Option("weights", REQUIRED, "distribution", "the sampling weights, one per domain"),
    )

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        self._resolve_options(options)
        self._w = check_distribution("weights", options["weights"], self._k)
        self._resolved = {"weights": self._w.tolist()}
