"""ADO: Adaptive Data Optimization (Jiang et al., ICLR 2025, arXiv 2410.11820).

Algorithm 1 as we read it in the paper and the authors' code, with every knob a named
option. How a policy plugs into the platform: ``docs/architecture.md``, section 4.

Per step ``t`` (0-based) the policy records each domain's sequence count
``c_k(t)`` and mean training loss ``l_k(t)`` (a domain missing from the batch
repeats its previous loss; before it has one it takes the count-weighted mean
loss of the domains present). After warmup it fits a power law
``L_k(n) = eps_k + beta_k * n**(-alpha_k)`` per domain (see
:mod:`ado_ray.policies.scaling_law`) and answers

    h      <- (1 - gamma1) h + gamma1 * (shares actually sampled at step t)   [h(0) = mu]
    speed_k = max(alpha_k, alpha_floor) * (L_k(n_k) - eps_k) / n_k           (= -dL/dn)
    rho    ~ mu * h**s * speed, normalised, floored at delta_min
    pi(t+1) = gamma2 * rho + (1 - gamma2) * pibar(t)
    pibar(t+1) = (1 - 1/(t+2)) pibar(t) + rho / (t+2)                          [pibar = mu until the first fit]

Time convention: ``observe(step=t, ...)`` records step t; ``weights()`` then
returns the weights for step t + 1. The running average's step 1/(t+2) is the
authors' ``1/(itr + 1)``: their ``itr`` is the step the weights are for, t + 1
(``curr_dist(itr)`` in their ``AdoSelector``), so the clocks agree. Steps ``< warmup_steps`` use the prior
exactly (bitwise). The refit runs synchronously inside ``observe``: first at
the first step whose weights are past warmup and whose fit window
(``ignore_steps`` onward, every ``subsample``-th step) holds at least
``min_fit_points`` points, then every ``update_interval`` steps after it.
``last_fit_step`` is the step (the ``observe`` call) at which the latest fit
was made; the fit used the data of steps 0..last_fit_step.

Where we differ from the authors' code (``AdoSelector`` in their release), and why
--------------------------------------------------------------------------------
1. **Fit gate.** The authors first fit at step 1000 from a single point (their
   ``start_step`` 500 is not a multiple of the 1000-step interval, and
   ``ignore_steps`` is 1000). We require ``min_fit_points`` (default 20) points
   in the window: a 3-parameter law from one point is arbitrary. With the
   defaults the first fit is at step 1190. Before the first fit, post-warmup
   weights are the (floored) prior.
2. **Refit schedule.** The authors refit when ``step % 1000 == 0``; we refit at
   the first fit step (see 1) and every ``update_interval`` steps after it.
3. **Solver.** The authors run L-BFGS from all 512 grid starts on every point.
   We screen the 512 starts on a coarse point set, optimise the best 8 (plus an
   alpha-profile start and a "flat" start) with a batched Levenberg-Marquardt /
   IRLS solver on 128 points, and polish the winner on all points (see
   ``scaling_law``): about 0.1 s for 22 domains over 60k steps on one core,
   where the refit runs synchronously.
4. **Flat series.** A flat loss series is ill-posed (any split between eps and
   a slowly decaying term fits). Among near-best fits we keep the one with the
   least reducible loss at the end of the window, so a domain that has stopped
   improving gets no learning-speed credit. The authors keep whatever the
   optimiser returns.
5. **Exact floor.** The authors' ``clip_min_probability`` computes a deficit that
   is always 0 for a distribution, so it floors and renormalises, which leaves
   entries slightly below ``delta_min``. We floor exactly (water-filling: the
   entries above the floor keep their ratios and the result sums to 1).
6. **Floor of the running average.** With ``clip="rho"`` pi is a convex
   combination of floored rho and pibar, which starts at the prior. When the
   prior has entries below ``delta_min`` (natural proportions often do), the
   authors' weights go below ``delta_min``. We start pibar at the floored prior,
   so the weights are always >= ``delta_min`` after warmup.
7. **Credit form.** The paper uses ``lambda = h**s``, and so does the authors'
   code since their fix commit bc3d8d0 ("Fixing update rule to the correct
   version": ``h**0.5``). Their first release used ``(h * (1 - h))**s``:
   ``lambda_form="(h(1-h))^s"`` reproduces it. Default ``h^s``.
8. **Count unit.** The authors' bounds assume n counts 1024-token sequences and
   hard-code that length. We count n in 1024-token units
   (``count_unit="tokens_1024"``: sequences * seq_len / 1024), which is the same
   at ``seq_len=1024``; ``count_unit="sequences"`` counts sequences.
9. **Non-finite fits** are dropped per domain (that domain keeps its previous
   law); the authors drop the whole refit if any number is not finite. A domain
   with no usable law (or a non-finite speed) takes its prior share of rho.
10. **Bad losses.** A non-finite loss for a domain with sequences in the batch is
    treated as missing (repeat the previous loss). A step with no sequences at
    all leaves ``h`` unchanged (shares are undefined).
11. **Short series.** The Savitzky-Golay window shrinks to the longest odd
    length the series allows (no smoothing below ``smoothing_order + 2``
    points); the authors' call fails on series shorter than 101 steps.
12. **Switches for Mixtera's reading**: ``clip="pi"`` floors pi instead of rho
    (and pibar then averages the unfloored rho), ``credit="policy"`` lets h track
    pi instead of the sampled shares, ``pibar_clock="since_first_fit"`` restarts
    the running average's clock at the first fit (the prior then counts as one
    sample) so the policy can leave the prior quickly in runs that are short
    compared with their warmup. Mixtera also drops the alpha floor:
    ``alpha_floor=0``.
13. **Warmup default** is the authors' ``start_step`` (500), not the paper's
    5,000. With the other defaults the weights leave the prior only after the
    first fit at step 1190 (see 1), close to the authors' effective start (their
    first fit at step 1000).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import MixturePolicy, floor_clip
from .options import Needs, Option
from .scaling_law import LawBounds, fit_scaling_laws, smooth_at

__all__ = ["ADO_DEFAULTS", "ADO_OPTIONS", "AdoPolicy"]

_I, _F, _C = "int", "float", "choice"

#: ADO's options, with the authors' defaults (their 124M configuration) where they have one.
ADO_OPTIONS: tuple[Option, ...] = (
    Option("seq_len", 1024, _I, "tokens per sequence (set from the corpus)", low=1),
    Option("warmup_steps", 500, _I, "steps sampled from the prior before the first fit", low=0),
    Option("update_interval", 1000, _I, "steps between refits", low=1),
    Option("gamma1", 0.1, _F, "credit EMA rate (h)", low=0.0, high=1.0, low_open=True),
    Option("gamma2", 0.1, _F, "weight of the new preference rho in pi", 0.0, 1.0, True),
    Option("s", 0.5, _F, "credit exponent: lambda = h^s", low=0.0),
    Option("delta_min", 0.01, _F, "weight floor per domain (below 1/K)", 0.0, 1.0, False, True),
    Option("ignore_steps", 1000, _I, "first steps left out of the fits", low=0),
    Option("subsample", 10, _I, "fit every n-th step of the window", low=1),
    Option("smoothing", True, "bool", "Savitzky-Golay smoothing of the loss series"),
    Option("smoothing_window", 101, _I, "smoothing window (odd, > smoothing_order)", low=1),
    Option("smoothing_order", 3, _I, "smoothing polynomial order", low=0),
    Option(
        "count_mode",
        "same_step_size",
        _C,
        "n counts every sequence trained (authors) or a domain's own",
        choices=("same_step_size", "own"),
    ),
    Option(
        "count_unit",
        "tokens_1024",
        _C,
        "n in 1024-token sequences (authors' bounds) or in sequences",
        choices=("tokens_1024", "sequences"),
    ),
    Option("alpha_max", 0.8, _F, "law bound: hinge above this alpha"),
    Option("alpha_min", 0.001, _F, "law bound: hinge below this alpha (< alpha_max)"),
    Option("log_beta_max", 6.5, _F, "law bound: hinge above this log beta"),
    Option("log_eps_min", 0.5, _F, "law bound: hinge below this log eps (0.5: 1.65 nats)"),
    Option("huber_delta", 1e-3, _F, "Huber delta of the fit objective", 0.0, None, True),
    Option("min_fit_points", 20, _I, "points the fit window needs before the first fit", low=3),
    Option("tie_rtol", 0.01, _F, "near-best fits within this tolerance prefer less reducible loss", low=0.0),
    Option("alpha_floor", 0.05, _F, "floor on alpha in the learning speed", low=0.0),
    Option(
        "pibar_clock",
        "global_step",
        _C,
        "pibar's clock: the global step (authors) or steps since the first fit",
        choices=("global_step", "since_first_fit"),
    ),
    Option("clip", "rho", _C, "floor rho (authors) or pi (Mixtera)", choices=("rho", "pi")),
    Option(
        "credit",
        "sampled",
        _C,
        "h tracks the sampled shares (authors) or pi (Mixtera)",
        choices=("sampled", "policy"),
    ),
    Option(
        "lambda_form",
        "h^s",
        _C,
        "credit form: the paper's h^s or the first release's (h(1-h))^s",
        choices=("h^s", "(h(1-h))^s"),
    ),
)

#: Default option values, derived from :data:`ADO_OPTIONS`.
ADO_DEFAULTS: dict[str, Any] = {o.name: o.default for o in ADO_OPTIONS}

#: The options that are step counts. The authors refit every 1,000 of their 60,000 steps
#: (1.7%); :meth:`AdoPolicy.scaled_defaults` sets each to ``STEP_FRACTION`` of the run.
STEP_OPTIONS = ("warmup_steps", "update_interval", "ignore_steps")
STEP_FRACTION = 0.02


def _resolve_extra(k: int, r: dict[str, Any]) -> None:
    """The checks that involve K or several options (the rest are the declarations')."""
    if r["delta_min"] >= 1.0 / k:
        raise ValueError(
            f"delta_min={r['delta_min']!r} is out of range: allowed [0, {1.0 / k!r}) "
            f"(1/num_domains, K={k})"
        )
    if r["smoothing_window"] % 2 == 0 or r["smoothing_window"] <= r["smoothing_order"]:
        raise ValueError(
            f"smoothing_window={r['smoothing_window']} is not allowed: allowed an odd "
            f"integer > smoothing_order ({r['smoothing_order']})"
        )
    if not r["alpha_min"] < r["alpha_max"]:
        raise ValueError(
            f"alpha_min={r['alpha_min']!r} is out of range: allowed (-inf, {r['alpha_max']!r}) "
            "(below alpha_max)"
        )


class AdoPolicy(MixturePolicy):
    """ADO: online scaling-law fits turned into learning-speed-weighted, smoothed weights.

    See the module docstring. Options and defaults: ``ADO_OPTIONS``,
    plus ``prior=`` (a distribution) or ``token_counts=`` (normalised); the
    default prior is uniform."""

    name = "ado"
    options_spec = ADO_OPTIONS
    needs = Needs(prior=True, seq_len=True)
    # A broad space over the four mixing knobs. delta_min must stay below 1/K: 0.04 allows up
    # to 24 domains (the Pile has 22); a study with more sets its own range.
    search_space = {
        "gamma1": {"type": "loguniform", "low": 0.01, "high": 1.0},
        "gamma2": {"type": "uniform", "low": 0.01, "high": 1.0},
        "s": {"type": "uniform", "low": 0.0, "high": 1.0},
        "delta_min": {"type": "loguniform", "low": 0.001, "high": 0.04},
    }

    @classmethod
    def scaled_defaults(cls, total_steps: int | None) -> dict[str, Any]:
        """``warmup_steps``, ``update_interval`` and ``ignore_steps`` at ``STEP_FRACTION`` (2%)
        of the run; none when the length is unknown (the declared defaults apply)."""
        if total_steps is None:
            return {}
        return dict.fromkeys(STEP_OPTIONS, max(1, round(STEP_FRACTION * total_steps)))

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        mu = self._resolve_options(options)
        o = self._resolved
        _resolve_extra(self._k, o)
        k = self._k
        self._mu = mu
        self._g1 = o["gamma1"]
        self._1mg1 = 1.0 - self._g1
        self._g2 = o["gamma2"]
        self._1mg2 = 1.0 - self._g2
        self._s = o["s"]
        self._d = o["delta_min"]
        self._warmup = o["warmup_steps"]
        self._interval = o["update_interval"]
        # Rows (steps recorded) from which a fit is due: past warmup, and the window
        # (ignore_steps onward, every subsample-th step) holds min_fit_points points.
        self._fit_rows = max(
            self._warmup, o["ignore_steps"] + (o["min_fit_points"] - 1) * o["subsample"] + 1
        )
        self._unit = o["seq_len"] / 1024.0 if o["count_unit"] == "tokens_1024" else 1.0
        self._same = o["count_mode"] == "same_step_size"
        self._clip_rho = o["clip"] == "rho"
        self._credit_sampled = o["credit"] == "sampled"
        self._global_clock = o["pibar_clock"] == "global_step"
        self._h_form = o["lambda_form"] == "h^s"
        self._bounds = LawBounds(
            alpha_max=o["alpha_max"],
            alpha_min=o["alpha_min"],
            log_beta_max=o["log_beta_max"],
            log_eps_min=o["log_eps_min"],
        )
        # The floored prior: weights after warmup and before the first fit, and
        # (clip="rho") the start of pibar, so the floor holds throughout.
        self._mu_floor = floor_clip(mu, self._d).copy()
        # Growing buffers (amortised doubling).
        self._cap = 1024
        self._loss_buf = np.empty((self._cap, k))
        self._count_buf = np.empty((self._cap, k))
        self._prev = np.full(k, np.nan)
        self._cum_own = np.zeros(k)
        self._cum_total = 0.0
        self._h = mu.copy()
        self._pibar = (self._mu_floor if self._clip_rho else mu).copy()
        self._pibar_count = 0
        self._log_params: np.ndarray | None = None
        self._last_fit: int | None = None
        self._last_attempt: int | None = None
        self._num_fits = 0
        self._pi = mu.copy() if self._warmup > 0 else self._mu_floor.copy()
        self._set_law_cache()

    # -- public ------------------------------------------------------------

    def weights(self) -> np.ndarray:
        return self._pi.copy()

    @property
    def last_fit_step(self) -> int | None:
        return self._last_fit

    @property
    def num_fits(self) -> int:
        """How many refits have produced at least one finite law."""
        return self._num_fits

    def fitted_laws(self) -> np.ndarray | None:
        """(K, 3) of (eps, beta, alpha); NaN rows for domains never fitted."""
        if self._log_params is None:
            return None
        p = self._log_params
        return np.stack([np.exp(p[:, 1]), np.exp(p[:, 0]), p[:, 2]], axis=1)

    def diagnostics(self) -> dict[str, np.ndarray]:
        """The latest fitted laws (``law_eps``, ``law_beta``, ``law_alpha``) and the step they
        were fitted at (``law_fit_step``, the same for every domain); empty before the first
        fit."""
        laws = self.fitted_laws()
        if laws is None:
            return {}
        return {
            "law_eps": laws[:, 0],
            "law_beta": laws[:, 1],
            "law_alpha": laws[:, 2],
            "law_fit_step": np.full(self._k, float(self._last_fit)),
        }

    def _refit(self, t: int) -> bool:
        """Fit the laws on steps 0..t; True if at least one law is finite.

        Never raises: a failed or non-finite fit keeps the previous laws.
        """
        self._last_attempt = t
        try:
            with np.errstate(all="ignore"):
                new = self._fit(t + 1)
        except Exception as err:  # noqa: BLE001 - a refit must never stop training
            warnings.warn(
                f"ADO refit at step {t} failed, keeping the previous laws: {err!r}",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        if new is None:
            return False
        ok = np.isfinite(new).all(axis=1)
        if not ok.any():
            return False
        if self._log_params is None:
            self._log_params = np.full((self._k, 3), np.nan)
        self._log_params[ok] = new[ok]
        self._last_fit = t
        self._num_fits += 1
        self._set_law_cache()
        return True

    # -- observation -------------------------------------------------------

    def _observe(
        self, step: int, c: np.ndarray, l_: np.ndarray, c_min: float, total: float
    ) -> None:
        # Loss row: missing domains repeat their previous loss; before they have
        # one, they take the count-weighted mean loss of the domains present.
        if c_min > 0.0 and math.isfinite(float(l_.dot(self._ones))):
            row = l_
        else:
            present = (c > 0.0) & np.isfinite(l_)
            row = np.where(present, l_, self._prev)
            if present.any() and np.isnan(row).any():
                cp = c[present]
                mean = float(cp @ l_[present]) / float(cp.sum())
                row = np.where(np.isnan(row), mean, row)
        if step == self._cap:
            self._grow()
        self._loss_buf[step] = row
        self._count_buf[step] = c
        self._prev = self._loss_buf[step]
        # Credit: h tracks the shares sampled (authors) or the policy (Mixtera).
        h = self._h
        if self._credit_sampled:
            if total > 0.0:
                h *= self._1mg1
                h += (self._g1 / total) * c
        else:
            h *= self._1mg1
            h += self._g1 * self._pi
        self._cum_own += c
        self._cum_total += total
        nxt = step + 1
        # Refit when due (synchronous).
        if nxt >= self._fit_rows and (
            self._last_attempt is None or step - self._last_attempt >= self._interval
        ):
            self._refit(step)
        # Weights for the next step.
        if nxt < self._warmup:
            self._pi = self._mu
        elif self._log_params is None:
            self._pi = self._mu_floor
        else:
            self._pi = self._ado_weights(nxt)

    def _ado_weights(self, t: int) -> np.ndarray:
        # rho_k ~ mu_k * lambda_k * max(alpha_k, floor) * beta_k * n_k**-alpha_k / n_k.
        # In the same-step-size mode n is common to all domains, so the 1/n cancels.
        if self._same:
            n = self._cum_total * self._unit
            if not n > 0.0:
                return self._finish(t, self._mu.copy())
            expo = self._alpha * -math.log(n)
        else:
            n = self._cum_own * self._unit
            if not n.min() > 0.0:
                with np.errstate(all="ignore"):
                    expo = self._alpha * -np.log(n) - np.log(n)
            else:
                expo = np.log(n)
                expo *= -(self._alpha + 1.0)
        expo += self._log_beta
        np.minimum(expo, 700.0, out=expo)
        num = np.exp(expo, out=expo)
        num *= self._coef
        h = self._h
        num *= (h if self._h_form else h * (1.0 - h)) ** self._s
        tot = float(num.dot(self._ones))
        if tot > 0.0 and math.isfinite(tot):
            num /= tot
            rho = num
        else:
            rho = self._fallback(num)
        return self._finish(t, rho)

    def _finish(self, t: int, rho: np.ndarray) -> np.ndarray:
        """pi(t) from rho(t) and pibar(t-1); then update pibar."""
        d = self._d
        if self._clip_rho:
            rho = floor_clip(rho, d)
        pi = self._g2 * rho
        pi += self._1mg2 * self._pibar
        if not self._clip_rho:
            pi *= 1.0 / float(pi.dot(self._ones))
            pi = floor_clip(pi, d)
        if self._global_clock:
            a = 1.0 / (t + 1)
        else:
            self._pibar_count += 1
            a = 1.0 / (self._pibar_count + 1)
        pb = self._pibar
        pb *= 1.0 - a
        pb += a * rho
        # Guard the floor against rounding in the convex combination.
        if d > 0.0:
            np.maximum(pi, d, out=pi)
        return pi

    def _fallback(self, num: np.ndarray) -> np.ndarray:
        """rho when some speeds are not finite or all are zero: domains without a
        usable speed take their prior share, the rest share the remainder."""
        valid = np.isfinite(num) & (num >= 0.0) & (num < 1e300)
        vsum = float(num[valid].sum())
        free = 1.0 - float(self._mu[~valid].sum())
        if vsum > 0.0 and free > 0.0:
            # Shares first, then scale: free / vsum overflows when vsum is subnormal.
            share = np.divide(num, vsum, out=np.zeros_like(num), where=valid)
            return np.where(valid, share * free, self._mu)
        return self._mu.copy()

    def _set_law_cache(self) -> None:
        p = self._log_params
        if p is None:
            self._log_beta = self._alpha = self._coef = None
            return
        self._log_beta = p[:, 0].copy()
        self._alpha = p[:, 2].copy()
        self._coef = self._mu * np.maximum(p[:, 2], self._resolved["alpha_floor"])

    def _grow(self) -> None:
        cap = self._cap * 2
        for name in ("_loss_buf", "_count_buf"):
            old = getattr(self, name)
            new = np.empty((cap, self._k))
            new[: self._cap] = old[: self._cap]
            setattr(self, name, new)
        self._cap = cap

    # -- fitting -------------------------------------------------------------

    def _fit(self, rows: int) -> np.ndarray | None:
        o = self._resolved
        ig, sub = o["ignore_steps"], o["subsample"]
        idx = np.arange(ig, rows, sub)
        if idx.size == 0:
            return None
        counts = self._count_buf[:rows]
        losses = self._loss_buf[:rows]
        if self._same:
            n = np.cumsum(counts.sum(axis=1))[idx] * self._unit  # (N,)
        else:
            n = (np.cumsum(counts, axis=0)[idx] * self._unit).T  # (K, N)
        # Rows before the first recorded loss are NaN (no domain present yet).
        finite_rows = np.isfinite(losses).all(axis=1)
        if not finite_rows.any():
            return None
        r0 = int(np.argmax(finite_rows))
        y = np.full((idx.size, self._k), np.nan)
        use = idx >= r0
        if use.any():
            first = int(idx[use][0])
            if o["smoothing"]:
                y[use] = smooth_at(
                    losses[r0:], first - r0, sub, o["smoothing_window"], o["smoothing_order"]
                )
            else:
                y[use] = losses[idx[use]]
        fit = fit_scaling_laws(
            n,
            y.T,
            bounds=self._bounds,
            huber_delta=o["huber_delta"],
            min_points=o["min_fit_points"],
            tie_rtol=o["tie_rtol"],
        )
        return fit.log_params

    # -- state ---------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        rows = self._steps
        return {
            "counts": self._count_buf[:rows].copy(),
            "losses": self._loss_buf[:rows].copy(),
            "h": self._h.copy(),
            "pibar": self._pibar.copy(),
            "pibar_count": self._pibar_count,
            "pi": self._pi.copy(),
            "cum_own": self._cum_own.copy(),
            "cum_total": self._cum_total,
            "log_params": None if self._log_params is None else self._log_params.copy(),
            "last_fit_step": self._last_fit,
            "last_fit_attempt": self._last_attempt,
            "num_fits": self._num_fits,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        k = self._k
        try:
            rows = int(state["steps_observed"])
            counts = np.array(state["counts"], dtype=np.float64).reshape(rows, k)
            losses = np.array(state["losses"], dtype=np.float64).reshape(rows, k)
            vecs = {
                name: np.array(state[name], dtype=np.float64).reshape(k)
                for name in ("h", "pibar", "pi", "cum_own")
            }
            log_params = state["log_params"]
            if log_params is not None:
                log_params = np.array(log_params, dtype=np.float64).reshape(k, 3)
            cum_total = float(state["cum_total"])
            pibar_count = int(state["pibar_count"])
            last_fit = None if state["last_fit_step"] is None else int(state["last_fit_step"])
            last_attempt = (
                None if state["last_fit_attempt"] is None else int(state["last_fit_attempt"])
            )
            num_fits = int(state["num_fits"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a valid ado state: {err}") from None
        cap = 1024
        while cap < rows + 1:
            cap *= 2
        self._cap = cap
        self._loss_buf = np.empty((cap, k))
        self._count_buf = np.empty((cap, k))
        self._loss_buf[:rows] = losses
        self._count_buf[:rows] = counts
        self._prev = self._loss_buf[rows - 1] if rows else np.full(k, np.nan)
        self._h = vecs["h"]
        self._pibar = vecs["pibar"]
        self._pi = vecs["pi"]
        self._cum_own = vecs["cum_own"]
        self._cum_total = cum_total
        self._pibar_count = pibar_count
        self._log_params = log_params
        self._last_fit = last_fit
        self._last_attempt = last_attempt
        self._num_fits = num_fits
        self._set_law_cache()
