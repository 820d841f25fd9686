"""Baseline policies: ``uniform``, ``natural`` and ``fixed`` weights.

They ignore the observations (which are still checked, and counted in
``steps_observed``) and always answer the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MixturePolicy, check_distribution, check_options, resolve_prior

__all__ = ["FixedPolicy", "NaturalPolicy", "UniformPolicy"]


class _ConstantPolicy(MixturePolicy):
    _w: np.ndarray

    def weights(self) -> np.ndarray:
        return self._w.copy()


class UniformPolicy(_ConstantPolicy):
    """Every domain 1/K. No options."""

    name = "uniform"

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        check_options(self.name, options, ())
        self._w = np.full(self._k, 1.0 / self._k)


class NaturalPolicy(_ConstantPolicy):
    """The natural proportions: ``prior=`` (a distribution) or ``token_counts=``
    (per-domain token counts, normalised). ``options`` reports ``prior``."""

    name = "natural"

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        check_options(self.name, options, ("prior", "token_counts"))
        self._w = resolve_prior(dict(options), self._k, required=True, policy=self.name)
        self._resolved = {"prior": self._w.tolist()}


class FixedPolicy(_ConstantPolicy):
    """Given weights: ``weights=`` (a distribution, required)."""

    name = "fixed"

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        check_options(self.name, options, ("weights",))
        if "weights" not in options:
            raise ValueError("policy 'fixed' needs weights= (a distribution over the domains)")
        self._w = check_distribution("weights", options["weights"], self._k)
        self._resolved = {"weights": self._w.tolist()}
