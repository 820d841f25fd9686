"""The per-domain power-law fitter of ADO (ado_ray.policies.scaling_law)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import savgol_filter

from ado_ray.policies.scaling_law import (
    START_GRID,
    LawBounds,
    fit_scaling_laws,
    law_objective,
    predict_loss,
    smooth_at,
)

LOOSE = LawBounds(alpha_max=0.8, alpha_min=0.001, log_beta_max=10.0, log_eps_min=-3.0)

# (eps, beta, alpha); the reducible part stays above 10% of the loss on the window below.
KNOWN = [
    (2.0, 60.0, 0.3),
    (1.8, 20.0, 0.25),
    (3.0, 200.0, 0.35),
    (0.5, 8.0, 0.3),  # eps below the default log_eps_min bound (1.65)
    (0.2, 2.0, 0.15),
    (2.5, 8000.0, 0.6),
    (4.0, 30.0, 0.12),
]


def _window(points: int = 600) -> np.ndarray:
    """n in 1024-token sequences: steps 1000..60000 of batch 256, subsampled."""
    return np.linspace(1000, 60000, points) * 256.0


def test_start_grid_is_the_authors_512():
    assert START_GRID.shape == (512, 3)
    assert sorted(set(START_GRID[:, 0])) == list(np.arange(-2.0, 6.0))
    assert sorted(set(START_GRID[:, 1])) == list(np.arange(-2.0, 2.0, 0.5))
    assert np.allclose(sorted(set(START_GRID[:, 2])), np.arange(8) / 10)


@pytest.mark.parametrize("eps, beta, alpha", KNOWN)
def test_recovers_known_laws_one_at_a_time(eps, beta, alpha):
    n = _window()
    loss = eps + beta * n**-alpha
    assert (beta * n**-alpha / loss).min() > 0.1
    fit = fit_scaling_laws(n, loss, bounds=LOOSE)
    e, b, a = fit.laws()[0]
    assert abs(e - eps) <= 0.01 * eps
    assert abs(a - alpha) <= 0.02
    assert np.allclose(predict_loss(fit.laws()[0], n), loss, rtol=1e-4)


def test_recovers_known_laws_batched_with_long_series():
    """All domains in one call, 5,900 points each (coarse stages, then the polish)."""
    n = np.arange(1000, 60000, 10) * 256.0
    laws = np.array(KNOWN)
    loss = laws[:, 0, None] + laws[:, 1, None] * n[None, :] ** -laws[:, 2, None]
    fit = fit_scaling_laws(n, loss, bounds=LOOSE)
    got = fit.laws()
    assert fit.ok.all()
    assert np.all(np.abs(got[:, 0] - laws[:, 0]) <= 0.01 * laws[:, 0])
    assert np.all(np.abs(got[:, 2] - laws[:, 2]) <= 0.02)
    assert np.all(fit.n_points == n.size)


def test_recovers_a_law_next_to_a_hinge_bound():
    """log eps = 0.56, just above log_eps_min = 0.5: steps must not stall on the kink."""
    n = _window()
    loss = 1.75 + 36.5 * n**-0.25
    e, _, a = fit_scaling_laws(n, loss).laws()[0]  # default bounds
    assert abs(e - 1.75) <= 0.01 * 1.75 and abs(a - 0.25) <= 0.02


def test_grid_screen_equals_the_objective():
    from ado_ray.policies.scaling_law import _objective, _screen

    rng = np.random.default_rng(1)
    x = np.log(np.linspace(1e3, 1e6, 40))[None].repeat(3, 0)
    y = np.log(2 + 5 * np.exp(-0.3 * x)) + rng.normal(0, 0.01, x.shape)
    w = rng.integers(0, 2, x.shape).astype(float)
    fast = _screen(x, y, w, LawBounds(), 1e-3)
    rep = np.repeat(np.arange(3), 512)
    grid = np.tile(START_GRID, (3, 1))
    slow = _objective(grid, x[rep], y[rep], w[rep], LawBounds(), 1e-3).reshape(3, 512)
    assert np.allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_default_bounds_are_the_authors():
    assert LawBounds() == LawBounds(
        alpha_max=0.8, alpha_min=0.001, log_beta_max=6.5, log_eps_min=0.5
    )


def test_default_bounds_hold_eps_near_the_floor():
    """eps = 0.5 is below exp(0.5); the unit hinge keeps the fit near the bound."""
    n = _window()
    loss = 0.5 + 8.0 * n**-0.3
    fit = fit_scaling_laws(n, loss)  # default bounds
    assert np.isfinite(fit.log_params).all()
    assert fit.log_params[0, 1] > 0.0  # far above log(0.5) = -0.69


def test_per_domain_counts_and_missing_points():
    """Own-count mode: each domain has its own n; NaN/zero points are ignored."""
    rng = np.random.default_rng(3)
    n = np.cumsum(rng.integers(20, 40, size=(2, 400)), axis=1).astype(float)
    loss = np.array([2.0 + 10 * n[0] ** -0.4, 2.2 + 5 * n[1] ** -0.3])
    loss[0, rng.integers(0, 400, 30)] = np.nan
    n[1, :50] = 0.0  # not sampled yet
    fit = fit_scaling_laws(n, loss, bounds=LOOSE)
    assert fit.n_points[1] == 350
    assert fit.n_points[0] == 400 - np.isnan(loss[0]).sum()
    e, _, a = fit.laws().T
    assert np.allclose(e, [2.0, 2.2], rtol=0.01)
    assert np.allclose(a, [0.4, 0.3], atol=0.02)


def test_noisy_increasing_and_nan_series_give_finite_laws():
    rng = np.random.default_rng(0)
    n = _window(800)
    series = np.stack(
        [
            3.0 + 20 * n**-0.3 + rng.normal(0, 0.3, n.size),  # very noisy
            1.0 + 1e-6 * n,  # increasing
            np.where(rng.random(n.size) < 0.5, np.nan, 2.5 + 4 * n**-0.2),  # half NaN
            np.exp(rng.normal(1.0, 1.0, n.size)),  # log-normal noise only
            np.full(n.size, 1e6),  # absurdly large
            np.full(n.size, 1e-8),  # absurdly small
        ]
    )
    fit = fit_scaling_laws(n, series)
    assert np.isfinite(fit.log_params).all()
    assert np.isfinite(fit.objective).all()


def test_unusable_domains_get_nan_rows_and_never_raise():
    n = _window(50)
    series = np.stack(
        [
            np.full(n.size, np.nan),
            np.where(np.arange(n.size) < 2, 3.0, np.nan),  # 2 points < 3
            np.full(n.size, -1.0),  # non-positive losses
            np.full(n.size, np.inf),
            2.0 + 3 * n**-0.3,
        ]
    )
    fit = fit_scaling_laws(n, series)
    assert not fit.ok[:4].any()
    assert np.isnan(fit.log_params[:4]).all()
    assert fit.ok[4]
    # Nothing usable at all, and bad counts.
    assert not fit_scaling_laws(n, np.full((2, n.size), np.nan)).ok.any()
    assert not fit_scaling_laws(np.zeros(n.size), 2.0 + 0 * n).ok.any()


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_flat_series_gets_almost_no_reducible_loss(noise):
    rng = np.random.default_rng(1)
    n = np.arange(1000, 20000, 10) * 256.0
    loss = 3.0 * np.exp(rng.normal(0, noise, n.size))
    if noise:
        loss = savgol_filter(loss, 101, 3)
    fit = fit_scaling_laws(n, loss)
    e, b, a = fit.laws()[0]
    reducible_end = b * n[-1] ** -a
    assert reducible_end < 1e-3 * 3.0
    assert abs(e - 3.0) < 0.02


def test_tie_break_prefers_least_reducible_among_equal_fits():
    """Every (eps, beta n^-alpha) split of a constant fits exactly; we pick eps."""
    n = np.arange(1000, 2000) * 256.0
    fit = fit_scaling_laws(n, np.full(n.size, 2.5))
    e, b, a = fit.laws()[0]
    assert e == pytest.approx(2.5, rel=1e-6)
    assert b * n[-1] ** -a < 1e-3


def test_objective_matches_a_direct_evaluation():
    rng = np.random.default_rng(2)
    n = _window(100)
    loss = 2.0 + 5 * n**-0.3 + rng.normal(0, 0.01, n.size)
    theta = np.array([[1.0, 0.6, 0.2], [3.0, 0.2, 0.9], [7.0, 1.0, -0.1]])
    got = law_objective(theta, n, np.tile(loss, (3, 1)))
    for row, j in zip(theta, got, strict=True):
        lb, le, al = row
        pred = np.logaddexp(lb - al * np.log(n), le)
        r = np.abs(pred - np.log(loss))
        hub = np.where(r <= 1e-3, 0.5 * r**2, 1e-3 * (r - 0.5e-3)).sum()
        pen = max(al - 0.8, 0) + max(0.001 - al, 0) + max(lb - 6.5, 0) + max(0.5 - le, 0)
        assert j == pytest.approx(hub + pen, rel=1e-12)


def test_fit_is_no_worse_than_the_truth_on_noisy_data():
    """The solver reaches the optimum: J(fit) <= J(true parameters)."""
    rng = np.random.default_rng(5)
    n = np.arange(1000, 30000, 10) * 256.0
    laws = np.array([[2.2, 30.0, 0.3], [1.75, 36.5, 0.25], [3.0, 10.0, 0.27]])
    clean = laws[:, 0, None] + laws[:, 1, None] * n ** -laws[:, 2, None]
    noisy = clean * np.exp(rng.normal(0, 0.03, clean.shape))
    noisy = savgol_filter(noisy, 101, 3, axis=1)
    fit = fit_scaling_laws(n, noisy)
    truth = np.stack([np.log(laws[:, 1]), np.log(laws[:, 0]), laws[:, 2]], axis=1)
    assert np.all(fit.objective <= law_objective(truth, n, noisy) * (1 + 1e-6))


@pytest.mark.parametrize(
    "length, start, stride", [(3000, 0, 10), (3000, 1000, 10), (3000, 2950, 3), (500, 7, 1)]
)
def test_smooth_at_equals_savgol_filter(length, start, stride):
    rng = np.random.default_rng(length + start)
    series = rng.random((length, 4))
    want = savgol_filter(series, 101, 3, axis=0)[start::stride]
    assert np.allclose(smooth_at(series, start, stride), want, rtol=0, atol=1e-12)


def test_smooth_at_shrinks_the_window_for_short_series():
    rng = np.random.default_rng(0)
    series = rng.random((40, 2))
    assert np.allclose(smooth_at(series, 0, 1), savgol_filter(series, 39, 3, axis=0))
    short = rng.random((4, 2))
    assert np.array_equal(smooth_at(short, 0, 1), short)  # window 3 <= order + 1: none
    assert smooth_at(series, 40, 1).shape == (0, 2)
