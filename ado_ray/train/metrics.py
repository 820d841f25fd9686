"""Aggregate evaluation metrics over domains (pure NumPy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES = (
    "val_loss_balanced",
    "val_loss_natural",
    "val_ppl_balanced",
    "val_ppl_natural",
    "excess_loss_balanced",
)


def aggregate(
    val_losses: Sequence[float],
    natural_weights: Sequence[float],
    entropy_rates: Sequence[float | None] | None = None,
) -> dict[str, float | None]:
    """The study's aggregate metrics from per-domain held-out losses (nats per token).

    - ``val_loss_balanced``: every domain counts equally (ADO's "unweighted" metric);
    - ``val_loss_natural``: domains weighted by their share of the training tokens;
    - ``val_ppl_*``: ``exp`` of the matching mean loss (a geometric mean of perplexities);
    - ``excess_loss_balanced``: the balanced mean of loss minus the true entropy rate, for
      corpora that know it (synthetic), else None.
    """
    losses = np.asarray(val_losses, dtype=np.float64)
    nat = np.asarray(natural_weights, dtype=np.float64)
    nat = nat / nat.sum()
    balanced = float(losses.mean())
    natural = float(np.dot(nat, losses))
    out: dict[str, float | None] = {
        "val_loss_balanced": balanced,
        "val_loss_natural": natural,
        "val_ppl_balanced": float(np.exp(balanced)),
        "val_ppl_natural": float(np.exp(natural)),
        "excess_loss_balanced": None,
    }
    if entropy_rates is not None and all(h is not None for h in entropy_rates):
        floor = np.asarray(entropy_rates, dtype=np.float64)
        out["excess_loss_balanced"] = float((losses - floor).mean())
    return out
