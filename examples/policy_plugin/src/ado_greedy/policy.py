"""``example_greedy``: sample more from the domains whose recent training loss is highest.

A deliberately small, complete :class:`~ado_ray.policies.MixturePolicy`, written as a template for
your own policy. Per domain ``k`` it keeps the last ``window`` training losses it observed and
answers

    m_k = mean of domain k's last ``window`` losses
    w   = floor_clip(softmax(m / temperature), delta_min)

- A domain missing from a batch (count 0, or a non-finite loss) records nothing that step: it
  keeps its previous losses.
- Before any domain has a loss the weights are uniform. A domain without a loss yet, while others
  have one, takes the mean of the others' ``m_k`` (neutral: neither favoured nor starved).
- ``temperature`` -> infinity gives uniform weights; ``temperature`` -> 0 puts all the mass
  (less the floors) on the domain with the highest recent loss.

Time convention (as every ado-ray policy): ``observe(step=t, ...)`` records step ``t``;
``weights()`` then answers the weights for step ``t + 1``.

The state (the ring buffer of recent losses and the number of losses each domain has recorded)
round-trips exactly through ``state_dict`` / ``load_state_dict``: a restored policy answers
bit-identical weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ado_ray.policies import MixturePolicy, Option, floor_clip

__all__ = ["ExampleGreedyPolicy"]


class ExampleGreedyPolicy(MixturePolicy):
    """Softmax of each domain's mean recent training loss over a temperature, floored.

    Options: ``temperature`` (> 0, default 1.0), ``window`` (losses kept per domain, >= 1,
    default 20), ``delta_min`` (the floor of every weight, in [0, 1/K), default 0.01).
    """

    #: The registered name; it must equal the entry-point name in ``pyproject.toml``.
    name = "example_greedy"
    #: The options, declared once: ``make_policy``, the study validator, the search-space checks
    #: and the CLI all read them from here.
    options_spec = (
        Option(
            "temperature",
            1.0,
            "float",
            "softmax temperature on the mean recent losses (large: near uniform)",
            low=0.0,
            low_open=True,
        ),
        Option("window", 20, "int", "training losses kept per domain for the mean", low=1),
        Option(
            "delta_min",
            0.01,
            "float",
            "floor of every weight (must also be below 1/K)",
            low=0.0,
            high=1.0,
            high_open=True,
        ),
    )
    #: The space a study searches with ``search: default``.
    search_space = {"temperature": {"type": "loguniform", "low": 0.05, "high": 5.0}}

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        self._resolve_options(options)
        o = self._resolved
        k = self._k
        if not o["delta_min"] < 1.0 / k:
            raise ValueError(
                f"delta_min={o['delta_min']!r} is out of range: allowed [0, 1/K) = [0, {1.0 / k!r})"
                f" for K={k} domains"
            )
        self._temperature: float = float(o["temperature"])
        self._window: int = int(o["window"])
        self._delta: float = float(o["delta_min"])
        # Ring buffer: row (n_k % window) is where domain k's next loss goes. Rows a domain has
        # not written yet hold 0.0, so the column sum is the sum of its recorded losses.
        self._recent = np.zeros((self._window, k), dtype=np.float64)
        self._num_losses = np.zeros(k, dtype=np.int64)

    # -- the policy ----------------------------------------------------------

    def _recent_means(self) -> np.ndarray:
        """Each domain's mean recent loss; NaN for a domain without a loss yet."""
        n = np.minimum(self._num_losses, self._window)
        total = self._recent.sum(axis=0)
        out = np.full(self._k, np.nan)
        seen = n > 0
        out[seen] = total[seen] / n[seen]
        return out

    def weights(self) -> np.ndarray:
        """Sampling weights (float64, length K, sums to 1) for step ``steps_observed``."""
        means = self._recent_means()
        seen = np.isfinite(means)
        if not seen.any():
            return np.full(self._k, 1.0 / self._k)
        if not seen.all():
            means[~seen] = means[seen].mean()
        z = means / self._temperature
        z -= z.max()
        e = np.exp(z)
        w = e / e.sum()
        return floor_clip(w, self._delta)

    def _observe(
        self, step: int, counts: np.ndarray, losses: np.ndarray, c_min: float, total: float
    ) -> None:
        present = (counts > 0) & np.isfinite(losses)
        if not present.any():
            return
        idx = np.flatnonzero(present)
        rows = self._num_losses[idx] % self._window
        self._recent[rows, idx] = losses[idx]
        self._num_losses[idx] += 1

    def diagnostics(self) -> dict[str, np.ndarray]:
        """``recent_loss`` (NaN before a domain's first loss) and ``num_losses`` per domain."""
        return {
            "recent_loss": self._recent_means(),
            "num_losses": self._num_losses.astype(np.float64),
        }

    # -- state ---------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"recent_losses": self._recent.copy(), "num_losses": self._num_losses.copy()}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        shape = (self._window, self._k)
        try:
            recent = np.array(state["recent_losses"], dtype=np.float64)
            num = np.array(state["num_losses"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a valid {self.name} state: {err}") from None
        if recent.shape != shape or num.shape != (self._k,):
            raise ValueError(
                f"not a valid {self.name} state: recent_losses has shape {recent.shape} "
                f"(expected {shape}), num_losses {num.shape} (expected ({self._k},))"
            )
        if (num < 0).any() or not np.isfinite(recent).all():
            raise ValueError(f"not a valid {self.name} state: bad num_losses or recent_losses")
        self._recent = recent
        self._num_losses = num
