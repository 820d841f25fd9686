"""The swarm: the best static mixture a set of fixed-mixture runs can find (pure NumPy and
scikit-learn; no Ray).

A swarm samples ``n_mixtures`` mixtures from a Dirichlet around a centre (the natural or the
uniform mixture), always including the uniform and the natural mixtures themselves, and runs each
as a ``fixed`` trial. A regression from mixture weights to the study's metric is fitted on the
results; its held-out rank correlation (Spearman, k-fold) says how far to trust it. The proposed
optimum follows RegMix (Liu et al. 2024, arXiv 2407.01492, section 3 and their
``mixture_config/synthesize_mixture.py`` / ``regression_fitting``): score many Dirichlet
candidates with the regression and average the ``top_k`` best.

The regression is **ridge regression on the weights and their logarithms**, not RegMix's
LightGBM: a swarm here has tens of members, not RegMix's 512, and a boosted tree ensemble on
tens of points is piecewise constant and over-fits, while a low-capacity model with log terms
captures the diminishing returns of a domain's share (Data Mixing Laws, Ye et al. 2024, fit
``exp`` of a linear function of the weights, which the log features approximate locally).
``regression: lightgbm`` is available for large swarms (the package must be installed).

Deviations from RegMix, and why:
1. Candidates come from the same Dirichlet as the swarm (RegMix also samples candidates from its
   token-distribution prior) but are scored for the study's metric (RegMix: a target domain's
   loss).
2. The uniform and natural mixtures are always members: they anchor the regression where the
   baselines sit, and give the best-observed comparison a floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SwarmFit", "fit_swarm", "propose_mixture", "sample_mixtures"]

_EPS = 1e-4  # the log features' floor: a zero share is "very little", not minus infinity


def dirichlet_alpha(center: np.ndarray, concentration: float) -> np.ndarray:
    """Dirichlet parameters around ``center``: ``concentration * K * center`` (a concentration of
    1 around the uniform mixture is the flat Dirichlet), floored so every domain can appear."""
    k = center.size
    return np.maximum(concentration * k * center, 1e-3)


def sample_mixtures(
    n: int, center: Sequence[float], natural: Sequence[float], concentration: float, seed: int
) -> np.ndarray:
    """``n`` mixtures (rows summing to 1): the uniform and the natural mixtures first (the natural
    one only when it differs from the uniform), then Dirichlet draws around ``center``."""
    center = np.asarray(center, dtype=np.float64)
    center = center / center.sum()
    k = center.size
    fixed = [np.full(k, 1.0 / k)]
    nat = np.asarray(natural, dtype=np.float64)
    nat = nat / nat.sum()
    if not np.allclose(nat, fixed[0], atol=1e-9):
        fixed.append(nat)
    fixed = fixed[:n]
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(dirichlet_alpha(center, concentration), size=max(0, n - len(fixed)))
    return np.vstack([*fixed, draws]) if len(draws) else np.vstack(fixed)


def _features(w: np.ndarray) -> np.ndarray:
    return np.hstack([w, np.log(w + _EPS)])


def _model(kind: str):
    if kind == "ridge":
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    if kind == "lightgbm":
        try:
            from lightgbm import LGBMRegressor
        except ImportError:  # pragma: no cover - optional
            raise ValueError(
                "swarm.regression: 'lightgbm' needs the lightgbm package (pip install lightgbm)"
            ) from None
        return LGBMRegressor(n_estimators=200, learning_rate=0.05, min_child_samples=2, verbose=-1)
    raise ValueError(f"swarm.regression: got {kind!r}; allowed: 'ridge', 'lightgbm'")


@dataclass(frozen=True)
class SwarmFit:
    """A regression from mixture weights to the metric, with its cross-validated quality."""

    kind: str
    model: object
    # Spearman correlation of the out-of-fold predictions with the metric, pooled over the
    # folds (a fold of a small swarm holds too few mixtures to rank alone); NaN if constant.
    cv_spearman: float
    folds: int
    n: int

    def predict(self, weights: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(_features(np.atleast_2d(weights))), dtype=float)


def fit_swarm(weights: np.ndarray, metric: np.ndarray, kind: str = "ridge", folds: int = 5,
              seed: int = 0) -> SwarmFit:
    """Fit the regression on the swarm's ``weights`` (n, K) and ``metric`` (n,), and estimate its
    held-out Spearman rank correlation by ``folds``-fold cross-validation."""
    from scipy.stats import spearmanr
    from sklearn.model_selection import KFold

    w = np.asarray(weights, dtype=np.float64)
    y = np.asarray(metric, dtype=np.float64)
    keep = np.isfinite(y)
    w, y = w[keep], y[keep]
    if len(y) < 3:
        raise ValueError(f"swarm: {len(y)} finite results; at least 3 are needed for a fit")
    folds = int(min(folds, len(y)))
    held = np.full(len(y), np.nan)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(w):
        model = _model(kind).fit(_features(w[train]), y[train])
        held[test] = model.predict(_features(w[test]))
    rho = spearmanr(held, y).statistic if np.ptp(held) > 0 and np.ptp(y) > 0 else np.nan
    model = _model(kind).fit(_features(w), y)
    return SwarmFit(kind, model, float(rho), folds, int(len(y)))


def propose_mixture(
    fit: SwarmFit,
    center: Sequence[float],
    concentration: float,
    candidates: int,
    top_k: int,
    seed: int,
    lower_is_better: bool = True,
) -> np.ndarray:
    """RegMix's proposal: score ``candidates`` Dirichlet draws around ``center`` with the
    regression and average the ``top_k`` best (a smoother optimum than the single best draw)."""
    center = np.asarray(center, dtype=np.float64)
    center = center / center.sum()
    rng = np.random.default_rng(seed + 1)  # not the swarm's own draws
    cand = rng.dirichlet(dirichlet_alpha(center, concentration), size=int(candidates))
    score = fit.predict(cand)
    order = np.argsort(score if lower_is_better else -score, kind="stable")
    best = cand[order[: max(1, int(top_k))]].mean(axis=0)
    return best / best.sum()
