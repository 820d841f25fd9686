"""Per-domain power-law fitting for ADO: L(n) = eps + beta * n**(-alpha).

The law is fitted in log space, as in the authors' code::

    log L(n) = logsumexp(log beta - alpha * log n, log eps)

with parameters ``theta = (log beta, log eps, alpha)``, against the log of the
(smoothed, subsampled) loss series. The objective of one domain is

    J(theta) = sum_i w_i * huber_delta(pred_i - log L_i)
             + max(alpha - alpha_max, 0) + max(alpha_min - alpha, 0)
             + max(log beta - log_beta_max, 0) + max(log_eps_min - log eps, 0)

(Huber delta 1e-3, unit-weight hinge penalties, all as in the authors' JAX code;
``w_i`` is 1 for every usable point, so J is a sum over points).

Solver
------
The authors run L-BFGS from each of 512 grid starts (log beta in -2..5 step 1,
log eps in -2..1.5 step 0.5, alpha in 0..0.7 step 0.1) and keep the best. Over
60,000 steps (5,900 points after subsampling) that is 66 million residuals per
objective evaluation for 22 domains, far too slow for a synchronous refit. We
solve the same problem in four vectorised stages (no Python loop over starts or
domains):

1. **Screen**: evaluate J at all 512 grid starts on ``screen_points`` (48)
   points per domain, spread evenly over the domain's usable points and
   re-weighted so the weighted sum estimates the full sum. The grid's structure
   makes this one log per (start, point) and no exp.
2. **Optimise**: from the ``top_starts`` (8) best grid starts per domain, plus
   two data-driven starts, run a batched Levenberg-Marquardt / IRLS solver on
   ``fit_points`` (128) points per domain. The extra starts: the best point of
   an *alpha profile* (for each alpha on a 0.01 grid, eps and beta by weighted
   linear least squares, which lands next to the optimum even where J is a long,
   flat valley that Gauss-Newton crawls along), and a *flat* start (log eps at
   the last loss, a reducible loss of 1e-4 of it, alpha 0.7). The solver uses
   analytic gradients, a Gauss-Newton matrix with Huber IRLS weights
   ``min(1, delta/|r|)``, Marquardt damping in coordinates that decorrelate log
   beta and alpha, projected steps at the hinge kinks, and keeps a step only if
   J falls. Starts whose J is more than twice their domain's best after 5
   iterations are dropped.
3. **Tie-break** (flat series are ill-posed): among the optimised candidates
   whose objective is within ``tie_rtol * J_best + atol`` of the best one
   (``atol`` is the objective of a 1e-6 RMS residual), keep the one with the
   *smallest predicted reducible loss* ``beta * n_end**(-alpha)`` at the end of
   the window. A domain that has stopped improving therefore gets the fit with
   the least reducible loss the data support, and no learning-speed credit.
4. **Polish**: the chosen candidate gets up to ``6 * polish_iter`` (24) more
   steps on 1,024 points, then up to ``polish_iter`` (4) on *all* points, so
   the answer is (close to) a minimum of the full objective, not of the coarse
   one. J never increases in any stage. (In the Huber-linear regime of noisy
   series IRLS converges only linearly, so the finer set does most of the work.)

Coarsening loses little because the series is Savitzky-Golay smoothed (window
101) before it is subsampled: consecutive points are strongly correlated. The
tests check recovery of known laws on noiseless curves (eps within 1%, alpha
within 0.02) and that on noisy curves J(fit) <= J(true parameters);
``benchmarks/policy_bench.py`` compares J against a fit on all points.

``smooth_at`` computes the Savitzky-Golay filter only at the subsampled points
(the same numbers as ``scipy.signal.savgol_filter(..., mode="interp")`` at those
indices, at a tenth of the cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "LawBounds",
    "LawFit",
    "START_GRID",
    "fit_scaling_laws",
    "law_objective",
    "predict_loss",
    "smooth_at",
]


_GRID_LOG_BETA = np.arange(-2.0, 6.0, 1.0)  # -2 .. 5
_GRID_LOG_EPS = np.arange(-2.0, 2.0, 0.5)  # -2 .. 1.5
_GRID_ALPHA = np.round(np.arange(0.0, 0.8, 0.1), 10)  # 0 .. 0.7


def _start_grid() -> np.ndarray:
    b, e, a = np.meshgrid(_GRID_LOG_BETA, _GRID_LOG_EPS, _GRID_ALPHA, indexing="ij")
    return np.stack([b.ravel(), e.ravel(), a.ravel()], axis=1)


#: The 512 starts (log beta, log eps, alpha) of the authors' fit, log beta
#: varying slowest and alpha fastest.
START_GRID: np.ndarray = _start_grid()
START_GRID.setflags(write=False)


@dataclass(frozen=True)
class LawBounds:
    """Hinge-penalty bounds of the fit (defaults: the authors' values).

    They assume ``n`` counts 1024-token sequences and natural-language losses
    (``log_eps_min = 0.5`` means eps >= 1.65 nats); loosen them for synthetic data.
    """

    alpha_max: float = 0.8
    alpha_min: float = 0.001
    log_beta_max: float = 6.5
    log_eps_min: float = 0.5


@dataclass
class LawFit:
    """Result of :func:`fit_scaling_laws` for K domains.

    ``log_params[k] = (log beta, log eps, alpha)``; a row is NaN where domain k had
    too few usable points or the fit was not finite. ``objective`` is J on all
    points; ``n_points`` the number of usable points; ``log_n_end`` the last usable
    log n of each domain.
    """

    log_params: np.ndarray
    objective: np.ndarray
    n_points: np.ndarray
    log_n_end: np.ndarray = field(repr=False)

    @property
    def ok(self) -> np.ndarray:
        """Boolean (K,): the domains with a finite fit."""
        return np.isfinite(self.log_params).all(axis=1)

    def laws(self) -> np.ndarray:
        """(K, 3) array of (eps, beta, alpha) in natural units."""
        p = self.log_params
        return np.stack([np.exp(p[:, 1]), np.exp(p[:, 0]), p[:, 2]], axis=1)


def predict_loss(laws: np.ndarray, n: np.ndarray | float) -> np.ndarray:
    """L(n) = eps + beta * n**(-alpha) for ``laws`` rows (eps, beta, alpha)."""
    laws = np.asarray(laws, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return laws[..., 0] + laws[..., 1] * n ** (-laws[..., 2])


# --------------------------------------------------------------------------
# Savitzky-Golay at selected indices
# --------------------------------------------------------------------------


def smooth_at(
    series: np.ndarray, start: int, stride: int, window: int = 101, order: int = 3
) -> np.ndarray:
    """``savgol_filter(series, window, order, axis=0, mode="interp")[start::stride]``.

    ``series`` is (T, K). Only the requested rows are computed: interior rows as
    a dot product with the filter coefficients over a strided view, the first and
    last ``window // 2`` rows by filtering the edge blocks (that is what
    ``mode="interp"`` does). The window shrinks to the largest odd number <= T
    when the series is short; with a window <= ``order`` + 1 no smoothing is done.
    """
    # Imported here: scipy.signal costs ~1 s to import, and a study is checked without it.
    from scipy.signal import savgol_coeffs, savgol_filter

    series = np.ascontiguousarray(series, dtype=np.float64)
    t_len = series.shape[0]
    idx = np.arange(start, t_len, stride)
    if idx.size == 0:
        return series[:0].copy()
    window = min(window, t_len if t_len % 2 else t_len - 1)
    if window <= order + 1:
        return series[idx].copy()
    half = window // 2
    out = np.empty((idx.size,) + series.shape[1:], dtype=np.float64)
    lo = idx < half
    hi = idx > t_len - 1 - half
    mid = ~(lo | hi)
    if lo.any():
        out[lo] = savgol_filter(series[:window], window, order, axis=0, mode="interp")[idx[lo]]
    if hi.any():
        tail = savgol_filter(series[t_len - window :], window, order, axis=0, mode="interp")
        out[hi] = tail[idx[hi] - (t_len - window)]
    if mid.any():
        mid_idx = idx[mid]
        first = int(mid_idx[0]) - half
        count = mid_idx.size
        base = series[first:]
        s0 = base.strides[0]
        view = as_strided(
            base,
            shape=(count, window) + base.shape[1:],
            strides=(s0 * stride, s0) + base.strides[1:],
            writeable=False,
        )
        coeffs = savgol_coeffs(window, order, use="dot")
        out[mid] = np.einsum("nw...,w->n...", view, coeffs)
    return out


# --------------------------------------------------------------------------
# Objective and batched solver
# --------------------------------------------------------------------------


def _box(b: LawBounds) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate hinge bounds of (log beta, log eps, alpha)."""
    lo = np.array([-np.inf, b.log_eps_min, b.alpha_min])
    hi = np.array([b.log_beta_max, np.inf, b.alpha_max])
    return lo, hi


def _penalty(theta: np.ndarray, b: LawBounds) -> np.ndarray:
    """Unit-weight hinge penalties (the authors' form), theta (..., 3) -> (...)."""
    lo, hi = _box(b)
    return (np.maximum(lo - theta, 0.0) + np.maximum(theta - hi, 0.0)).sum(axis=-1)


def _softplus_sigmoid(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(1 + e^z) and 1 / (1 + e^-z), computed in place of ``z`` with one exp
    and one log (the cheapest pair here: float64 exp/log dominate the fit)."""
    np.minimum(z, 700.0, out=z)
    np.exp(z, out=z)
    s = z + 1.0
    sp = np.log(s)
    np.divide(z, s, out=s)
    return sp, s


def _screen(x, y, w, bounds, delta):
    """J at all 512 grid starts for each domain, data (K, M) -> (K, 512).

    Uses the grid's structure: beta n^-alpha / eps = exp(log beta - log eps) *
    exp(-alpha log n), so only 8 exps per point (one per alpha) and one log per
    (start, point) are needed.
    """
    k = x.shape[0]
    ratio = np.exp(_GRID_LOG_BETA[:, None] - _GRID_LOG_EPS[None, :])  # (8, 8)
    decay = np.exp(-_GRID_ALPHA[None, :, None] * x[:, None, :])  # (K, 8a, M)
    z = ratio[None, :, :, None, None] * decay[:, None, None, :, :]  # (K, 8b, 8e, 8a, M)
    z += 1.0
    r = np.log(z, out=z)
    r += _GRID_LOG_EPS[None, None, :, None, None] - y[:, None, None, None, :]
    ar = np.abs(r, out=r)
    c = np.minimum(ar, delta)
    ar -= 0.5 * c
    ar *= c
    hub = ar.reshape(k, START_GRID.shape[0], -1)
    return np.matmul(hub, w[:, :, None])[:, :, 0] + _penalty(START_GRID, bounds)[None, :]


def _objective(theta, x, y, w, bounds, delta):
    """J for problems theta (P, 3) on data x, y, w (P, M) or broadcastable -> (P,)."""
    lb = theta[:, 0, None]
    le = theta[:, 1, None]
    al = theta[:, 2, None]
    z = al * x
    np.subtract(lb - le, z, out=z)
    np.minimum(z, 700.0, out=z)
    np.exp(z, out=z)
    z += 1.0
    r = np.log(z, out=z)
    r -= y
    r += le
    ar = np.abs(r, out=r)
    c = np.minimum(ar, delta)
    ar -= 0.5 * c
    ar *= c
    ar *= w
    return ar.sum(axis=-1) + _penalty(theta, bounds)


def _objective_derivs(theta, x, y, w, bounds, delta):
    """J (P,), gradient of the data term (P, 3), Gauss-Newton/IRLS matrix (P, 3, 3).

    Per point: pred = log beta - alpha x ... combined by softplus; residual r;
    Huber value c (|r| - c / 2) with c = min(|r|, delta); psi = huber'(r);
    IRLS weight omega = huber'(r) / r. All weighted sums are one batched matmul.
    """
    p, m = theta.shape[0], x.shape[-1]
    lb = theta[:, 0, None]
    le = theta[:, 1, None]
    al = theta[:, 2, None]
    feats = np.empty((p, 10, m))
    z = np.multiply(al, x, out=feats[:, 9])
    np.subtract(lb - le, z, out=z)
    sp, s = _softplus_sigmoid(z)
    r = sp
    r -= y
    r += le
    ar = np.abs(r, out=feats[:, 4])
    c = np.minimum(ar, delta, out=feats[:, 3])
    hub = np.multiply(c, -0.5, out=feats[:, 0])
    hub += ar
    hub *= c
    psi = np.copysign(c, r, out=feats[:, 1])
    om = np.maximum(ar, delta, out=feats[:, 4])
    np.divide(delta, om, out=om)
    np.multiply(psi, s, out=feats[:, 2])
    np.multiply(feats[:, 2], x, out=feats[:, 3])
    q = np.multiply(om, s, out=feats[:, 5])
    q2 = np.multiply(q, s, out=feats[:, 6])
    np.multiply(q, x, out=feats[:, 7])
    xq2 = np.multiply(q2, x, out=feats[:, 8])
    np.multiply(xq2, x, out=feats[:, 9])
    wb = np.broadcast_to(w, (p, m))[:, :, None]
    sums = np.matmul(feats, wb)[:, :, 0]
    (s_hub, s_psi, s_ps, s_psx, s_om, s_q, s_q2, s_xq, s_xq2, s_xxq2) = sums.T
    jval = s_hub + _penalty(theta, bounds)
    grad = np.stack([s_ps, s_psi - s_ps, -s_psx], axis=-1)
    h_bb = s_q2
    h_be = s_q - s_q2
    h_ee = s_om - 2.0 * s_q + s_q2
    h_ba = -s_xq2
    h_ea = -(s_xq - s_xq2)
    h_aa = s_xxq2
    hess = np.stack(
        [
            np.stack([h_bb, h_be, h_ba], axis=-1),
            np.stack([h_be, h_ee, h_ea], axis=-1),
            np.stack([h_ba, h_ea, h_aa], axis=-1),
        ],
        axis=-2,
    )
    return jval, grad, hess


def _solve3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve batched 3x3 systems a x = b by Cramer's rule (non-finite where singular)."""
    a00, a01, a02 = a[..., 0, 0], a[..., 0, 1], a[..., 0, 2]
    a10, a11, a12 = a[..., 1, 0], a[..., 1, 1], a[..., 1, 2]
    a20, a21, a22 = a[..., 2, 0], a[..., 2, 1], a[..., 2, 2]
    c00 = a11 * a22 - a12 * a21
    c01 = a12 * a20 - a10 * a22
    c02 = a10 * a21 - a11 * a20
    det = a00 * c00 + a01 * c01 + a02 * c02
    inv_det = 1.0 / det
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    x0 = (c00 * b0 + (a02 * a21 - a01 * a22) * b1 + (a01 * a12 - a02 * a11) * b2) * inv_det
    x1 = (c01 * b0 + (a00 * a22 - a02 * a20) * b1 + (a02 * a10 - a00 * a12) * b2) * inv_det
    x2 = (c02 * b0 + (a01 * a20 - a00 * a21) * b1 + (a00 * a11 - a01 * a10) * b2) * inv_det
    return np.stack([x0, x1, x2], axis=-1)


_STEP_MAX = np.array([5.0, 5.0, 0.5])


def _levenberg_marquardt(theta, x, y, w, bounds, delta, max_iter, ftol, group=None):
    """Batched damped Gauss-Newton (IRLS for the Huber loss), problems theta (P, 3)
    on data x, y, w (P, M).

    A step is kept only where it lowers J, so J never increases. The hinge
    penalties have kinks where a plain Gauss-Newton step stalls (every step
    crosses the kink and is rejected). So steps that cross a hinge bound stop on
    it, and a coordinate sitting on a bound is held there (dropped from the
    system) while moving across the kink would not lower J to first order
    (data slope within the unit penalty slope): a projected Newton step.

    A problem stops when a kept step lowers J by at most ``ftol * J`` (plus a
    tiny absolute amount), its step vanishes, or its damping explodes. Stopped
    problems are dropped from the arrays once they are a third of them.
    """
    theta = np.array(theta, dtype=np.float64)
    p_all = theta.shape[0]
    x = np.broadcast_to(x, (p_all, x.shape[-1]))
    y = np.broadcast_to(y, (p_all, y.shape[-1]))
    w = np.broadcast_to(w, (p_all, w.shape[-1]))
    lo, hi = _box(bounds)
    out_theta = theta.copy()
    out_j = np.full(p_all, np.inf)
    ids = np.arange(p_all)
    jval, grad, hess = _objective_derivs(theta, x, y, w, bounds, delta)
    lam = np.full(p_all, 1e-3)
    done = ~np.isfinite(jval)
    atol = 1e-20 * (1.0 + w.sum(axis=-1))
    eye = np.eye(3)
    if group is not None:
        group = np.asarray(group)
        best = np.full(int(group.max()) + 1, np.inf)
    for it in range(max_iter):
        if group is not None and it >= 5:
            np.minimum.at(best, group[ids], jval)
            done |= jval > 2.0 * best[group[ids]] + atol
        if done.all():
            break
        if done.sum() * 3 >= done.size:
            out_theta[ids[done]] = theta[done]
            out_j[ids[done]] = jval[done]
            keep = ~done
            ids, theta, jval, grad, hess, lam, done, atol = (
                ids[keep], theta[keep], jval[keep], grad[keep], hess[keep], lam[keep],
                done[keep], atol[keep],
            )  # fmt: skip
            x, y, w = x[keep], y[keep], w[keep]
        # Effective gradient with the hinges (one-sided on a bound).
        at_lo = theta == lo
        at_hi = theta == hi
        g = grad - (theta < lo) + (theta > hi)
        g = np.where(at_lo & (grad > 1.0), grad - 1.0, g)
        g = np.where(at_hi & (grad < -1.0), grad + 1.0, g)
        freeze = (at_lo & (grad >= 0.0) & (grad <= 1.0)) | (at_hi & (grad <= 0.0) & (grad >= -1.0))
        g[freeze] = 0.0
        # Marquardt damping, scaled in coordinates where log beta is centred on the
        # (IRLS-weighted) mean log n: that removes the strong log beta / alpha
        # correlation, which makes plain diagonal damping zig-zag along a valley.
        h_bb = hess[:, 0, 0]
        xbar = -hess[:, 0, 2] / np.maximum(h_bb, 1e-300)
        s_a = np.maximum(hess[:, 2, 2] - xbar * xbar * h_bb, 0.0)
        tmat = np.zeros_like(hess)
        tmat[:, 0, 0] = 1.0
        tmat[:, 1, 1] = 1.0
        tmat[:, 2, 2] = 1.0
        tmat[:, 0, 2] = -xbar
        dvec = np.stack([h_bb, hess[:, 1, 1], s_a], axis=-1)
        dvec = dvec + 1e-9 * (1.0 + dvec.max(axis=-1, keepdims=True))
        dmat = np.einsum("pji,pj,pjk->pik", tmat, dvec, tmat)
        damped = hess + lam[:, None, None] * dmat
        if freeze.any():
            keep_c = (~freeze).astype(np.float64)
            damped = damped * keep_c[:, :, None] * keep_c[:, None, :] + freeze[:, :, None] * eye
        step = _solve3(damped, -g)
        bad = ~np.isfinite(step).all(axis=-1)
        step[bad] = 0.0
        np.clip(step, -_STEP_MAX, _STEP_MAX, out=step)
        trial = theta + step
        # Stop on a hinge bound rather than step across it.
        cross_lo = (theta - lo) * (trial - lo) < 0.0
        cross_hi = (theta - hi) * (trial - hi) < 0.0
        trial = np.where(cross_lo, lo, np.where(cross_hi, hi, trial))
        j_new, g_new, h_new = _objective_derivs(trial, x, y, w, bounds, delta)
        accept = (j_new < jval) & ~done
        gain = jval - j_new
        theta[accept] = trial[accept]
        grad[accept] = g_new[accept]
        hess[accept] = h_new[accept]
        small = accept & (gain <= ftol * jval + atol)
        jval = np.where(accept, j_new, jval)
        lam = np.where(accept, np.maximum(lam * 0.2, 1e-12), lam * 10.0)
        tiny = np.abs(step).max(axis=-1) <= 1e-13
        done |= small | (lam > 1e10) | bad | tiny
    out_theta[ids] = theta
    out_j[ids] = jval
    return out_theta, out_j


_PROFILE_STEP = 0.01
_PROFILE_MAX = 2.0  # the profile's alpha range ends at min(alpha_max, 2)
_MID_POINTS = 1024
_MID_ITER_FACTOR = 6


def _profile_start(x, y, w, bounds, delta):
    """The best (log beta, log eps, alpha) per domain on an alpha profile, (K, 3).

    For each alpha on a 0.01 grid up to ``alpha_max`` (at most 2), L = eps + beta n^-alpha is
    linear in (eps, beta): solve the weighted least squares in linear space with
    weights 1 / L^2 (relative errors, close to the log-space fit), clamp eps and
    beta to be positive, and keep the alpha whose exact objective is lowest.
    """
    k = x.shape[0]
    hi = min(max(bounds.alpha_max, 2 * _PROFILE_STEP), _PROFILE_MAX)
    alphas = np.arange(_PROFILE_STEP, hi + 1e-12, _PROFILE_STEP)
    loss = np.exp(y)
    v = w / (loss * loss)
    vl = v * loss
    phi = np.exp(-alphas[None, :, None] * x[:, None, :])  # (K, A, M)
    s0 = v.sum(axis=-1)[:, None]
    t0 = vl.sum(axis=-1)[:, None]
    s1 = np.matmul(phi, v[:, :, None])[..., 0]
    t1 = np.matmul(phi, vl[:, :, None])[..., 0]
    phi *= phi
    s2 = np.matmul(phi, v[:, :, None])[..., 0]
    det = s0 * s2 - s1 * s1
    eps = (s2 * t0 - s1 * t1) / det
    beta = (s0 * t1 - s1 * t0) / det
    tiny = 1e-8 * np.maximum(t0 / np.maximum(s0, 1e-300), 1e-300)
    no_beta = ~(beta > 0)
    eps = np.where(no_beta, t0 / s0, eps)
    beta = np.where(no_beta, tiny, beta)
    no_eps = ~(eps > 0)
    eps = np.where(no_eps, tiny, eps)
    beta = np.where(no_eps, np.maximum(t1 / s2, tiny), beta)
    theta = np.stack(
        [np.log(beta), np.log(eps), np.broadcast_to(alphas, beta.shape)], axis=-1
    ).reshape(-1, 3)
    rep = np.repeat(np.arange(k), alphas.size)
    j = _objective(theta, x[rep], y[rep], w[rep], bounds, delta).reshape(k, alphas.size)
    j = np.where(np.isfinite(j), j, np.inf)
    pick = np.argmin(j, axis=1)
    out = theta.reshape(k, alphas.size, 3)[np.arange(k), pick]
    # A domain where nothing was finite: a harmless grid point.
    return np.where(np.isfinite(out), out, START_GRID[0])


def _coarse(x, y, w, m_valid, order, points):
    """Pick ``points`` evenly spaced usable points per domain, re-weighted so
    the weighted sum estimates the sum over all usable points."""
    k = x.shape[0]
    j = np.arange(points)
    m = m_valid[:, None]
    few = m <= points
    ranks = np.where(
        few,
        np.minimum(j[None, :], np.maximum(m - 1, 0)),
        np.rint(j[None, :] * ((m - 1) / max(points - 1, 1))).astype(np.int64),
    )
    cols = np.take_along_axis(order, ranks, axis=1)
    rows = np.arange(k)[:, None]
    wc = np.where(few, (j[None, :] < m).astype(np.float64), m / points)
    wc = wc * w[rows, cols]
    return x[rows, cols], y[rows, cols], wc


def law_objective(
    log_params: np.ndarray,
    n: np.ndarray,
    losses: np.ndarray,
    *,
    bounds: LawBounds = LawBounds(),
    huber_delta: float = 1e-3,
) -> np.ndarray:
    """The exact fit objective J of ``log_params`` (K, 3) on series (K, N) -> (K,)."""
    x, y, w = _prepare(n, losses)
    theta = np.asarray(log_params, dtype=np.float64).reshape(-1, 3)
    with np.errstate(all="ignore"):
        return _objective(theta, x, y, w, bounds, float(huber_delta))


def _prepare(n, losses):
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim == 1:
        losses = losses[None, :]
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), losses.shape)
    with np.errstate(all="ignore"):
        x = np.log(n)
        y = np.log(losses)
    valid = np.isfinite(x) & np.isfinite(y)
    x = np.where(valid, x, 0.0)
    y = np.where(valid, y, 0.0)
    return x, y, valid.astype(np.float64)


def fit_scaling_laws(
    n: np.ndarray,
    losses: np.ndarray,
    *,
    bounds: LawBounds = LawBounds(),
    huber_delta: float = 1e-3,
    min_points: int = 3,
    screen_points: int = 48,
    fit_points: int = 128,
    top_starts: int = 8,
    tie_rtol: float = 1e-2,
    max_iter: int = 40,
    polish_iter: int = 4,
) -> LawFit:
    """Fit L_k(n) = eps_k + beta_k * n**(-alpha_k) to each row of ``losses``.

    ``n`` (K, N) or broadcastable to it (e.g. (N,), shared by all domains) and
    ``losses`` (K, N) or (N,) are the points of each domain. Points with a
    non-positive or non-finite n or loss are ignored. Domains with fewer than
    ``max(min_points, 3)`` usable points get a NaN row. Never raises on bad
    numbers: a non-finite result becomes a NaN row. See the module docstring for
    the stages and the tie-break.
    """
    with np.errstate(all="ignore"):
        return _fit(
            n,
            losses,
            bounds,
            float(huber_delta),
            max(int(min_points), 3),
            max(int(screen_points), 3),
            max(int(fit_points), 3),
            max(int(top_starts), 1),
            float(tie_rtol),
            int(max_iter),
            int(polish_iter),
        )


def _fit(n, losses, bounds, delta, min_points, screen_points, fit_points, top_starts, tie_rtol,
         max_iter, polish_iter):  # fmt: skip
    stage_ftol, polish_ftol = 1e-4, 1e-10
    x, y, w = _prepare(n, losses)
    k, n_all = x.shape
    m_valid = w.sum(axis=1).astype(np.int64)
    fit_ok = m_valid >= min_points
    params = np.full((k, 3), np.nan)
    objective = np.full(k, np.nan)
    # Usable point positions first, in order (stable sort).
    order = np.argsort(w == 0.0, axis=1, kind="stable")
    last = np.take_along_axis(order, np.maximum(m_valid - 1, 0)[:, None], axis=1)[:, 0]
    x_end = x[np.arange(k), last]
    y_end = y[np.arange(k), last]
    log_n_end = np.where(fit_ok, x_end, np.nan)
    if not fit_ok.any():
        return LawFit(params, objective, m_valid, log_n_end)
    dom = np.flatnonzero(fit_ok)
    kk = dom.size
    x, y, w, m_valid_f, order = x[dom], y[dom], w[dom], m_valid[dom], order[dom]
    x_end, y_end = x_end[dom], y_end[dom]

    # Stage 1: screen the 512 grid starts on a coarse point set.
    g = START_GRID.shape[0]
    xs, ys, ws = _coarse(x, y, w, m_valid_f, order, min(screen_points, n_all))
    j0 = _screen(xs, ys, ws, bounds, delta)
    j0 = np.where(np.isfinite(j0), j0, np.inf)
    best = np.argsort(j0, axis=1, kind="stable")[:, : min(top_starts, g)]
    use_full = n_all <= fit_points
    if use_full:
        xf, yf, wf = x, y, w
    else:
        xf, yf, wf = _coarse(x, y, w, m_valid_f, order, fit_points)
    # Plus one start from the alpha profile (near the optimum even where the
    # landscape is a long, flat valley) and one data-driven start with almost no
    # reducible loss (the "flat" answer).
    al0 = 0.7
    flat = np.stack([np.log(1e-4) + y_end + al0 * x_end, y_end, np.full(kk, al0)], axis=1)
    starts = np.concatenate(
        [START_GRID[best], _profile_start(xf, yf, wf, bounds, delta)[:, None], flat[:, None]],
        axis=1,
    )
    s_count = starts.shape[1]

    # Stage 2: optimise the candidates on a medium point set.
    rep = np.repeat(np.arange(kk), s_count)
    theta, jval = _levenberg_marquardt(
        starts.reshape(-1, 3), xf[rep], yf[rep], wf[rep], bounds, delta, max_iter,
        stage_ftol if not use_full else polish_ftol, group=rep,
    )  # fmt: skip
    theta = theta.reshape(kk, s_count, 3)
    jval = jval.reshape(kk, s_count)

    # Stage 3: tie-break towards the least reducible loss at the end of the window.
    finite = np.isfinite(jval) & np.isfinite(theta).all(axis=-1)
    jval = np.where(finite, jval, np.inf)
    j_best = jval.min(axis=1, keepdims=True)
    atol = 0.5e-12 * m_valid_f[:, None]  # the J of a 1e-6 RMS residual
    near = finite & (jval <= j_best + tie_rtol * np.abs(j_best) + atol)
    log_red = theta[..., 0] - theta[..., 2] * x_end[:, None]  # log(beta * n_end**-alpha)
    log_red = np.where(near & np.isfinite(log_red), log_red, np.inf)
    pick = np.argmin(log_red, axis=1)
    rows = np.arange(kk)
    pick = np.where(np.isfinite(log_red[rows, pick]), pick, np.argmin(jval, axis=1))
    chosen = theta[rows, pick]

    # Stage 4: polish, first on a finer point set, then on all points.
    if not use_full and polish_iter > 0:
        mid = _MID_POINTS
        if n_all > 2 * mid:
            xm, ym, wm = _coarse(x, y, w, m_valid_f, order, mid)
            chosen, _ = _levenberg_marquardt(
                chosen, xm, ym, wm, bounds, delta, _MID_ITER_FACTOR * polish_iter, 1e-10
            )
        chosen, _ = _levenberg_marquardt(chosen, x, y, w, bounds, delta, polish_iter, 1e-12)
    j_full = _objective(chosen, x, y, w, bounds, delta)
    good = np.isfinite(chosen).all(axis=1) & np.isfinite(j_full)
    params[dom[good]] = chosen[good]
    objective[dom[good]] = j_full[good]
    return LawFit(params, objective, m_valid, log_n_end)
