"""Aioli (Chen, Hu, Lourie, Cho and Ré, "Aioli: A Unified Optimization Framework for Language
Model Data Mixing", ICLR 2025, arXiv 2411.05735).

Aioli assumes the *linear dynamic mixing law* of the paper's Linear Mixing Optimization (LMO)
framework: training a round on mixture ``p`` moves each domain's held-out loss by

    L_i(after) = L_i(before) - sum_j A_ij p_j                                         (law)

and solves "minimise the average loss" by exponentiated gradient descent on the simplex
(Algorithm 1, the update line):

    p^t_j  ∝  p^{t-1}_j exp(eta * sum_i A^t_ij)                                        (EGD)

It estimates A^t online, each round, with the LearnParams subroutine (Algorithm 2): a few
steps on each of K near-one-hot mixtures, in shuffled sweeps, measuring the loss drops.

Sources: the paper (Algorithm 1 "Aioli", Algorithm 2 "LearnParams"); the authors' code,
github.com/HazyResearch/aioli at commit ``a236112`` (``trainer/aioli_trainer.py``:
``learn_params_subroutine`` L119-191 and ``AioliTrainer.train`` L194-412; options in
``main.py`` L307-359; recommended settings in ``README.md`` L41-75); Mixtera's unmerged port
(eth-easl/mixtera ``mixtera/core/algo/aioli/aioli.py``), which estimates from training losses.

The schedule (steps counted from 0; ``D = K * lp_rounds * lp_steps``; ``R = D + mix_steps``)
-----------------------------------------------------------------------------------------
Steps ``< warmup_steps`` use the (floored) prior: the authors' "restricted" setting
(``--aioli_prior`` for ``--prior_steps``, L218-301); 0 by default (their "unrestricted" one).
The prior is used for nothing else: the first update starts from uniform, as the authors'
(``weights_init`` is reset to ones, L231, L343).
From ``w = warmup_steps`` on, round ``r`` covers steps ``w + r*R .. w + (r+1)*R - 1``:

- **LearnParams**: offsets ``0 .. D-1`` of the round. Sub-phase ``m = offset // lp_steps``
  trains ``lp_steps`` steps on the near-one-hot mixture of domain ``order_r[m]``:
  ``one_hot_factor`` on it, ``(1 - one_hot_factor) / (K - 1)`` on each other domain
  (L124-126). ``order_r`` is ``lp_rounds`` permutations of the domains (L123), drawn as
  ``rng = numpy.random.default_rng([seed, r])`` then ``rng.permutation(K)`` once per sweep
  (:meth:`AioliPolicy.lp_order`).
- **Mixing**: offsets ``D .. R-1`` train on the learned mixture ``p^r`` (L350-398).

``wants_eval_at(step)`` is true (``signal="eval"``) exactly at the sub-phase boundaries
``w + r*R + m*lp_steps``, ``m = 0..K*lp_rounds``: the evaluation before LearnParams (L310-315)
and after each sub-phase (L153-161). ``observe_eval(step)`` at those steps carries the losses;
any other evaluation is ignored. The update of round ``r`` is made when the evaluation after
``w + r*R + D`` steps arrives, so the weights of step ``w + r*R + D`` (the first mixing step)
are ``p^r`` when that evaluation comes before them, as the training loop's contract has it.
(If it never comes, the update is made at ``observe(w + r*R + D)`` from the evaluations that
did come, and that one step uses ``p^{r-1}``.) With ``signal="train"`` no evaluation is
needed: the update is made at ``observe(w + r*R + D - 1)``.

The estimate of A
-----------------
The authors compute, per sub-phase with mixture j, the drops ``beta_ij = L_i(before) -
L_i(after)`` (held-out losses), average them over the ``lp_rounds`` sweeps (L160, L164), and,
with smoothed mixtures, solve ``beta_i = W A_i`` for each row, ``W_j`` being mixture j (L166-179).
We fit the same law by least squares on the mixture that was *actually* trained: with
``q(t)`` the domain shares of step t's batch (counts / total) and ``Q_s`` their sum over the
steps between two consecutive boundary evaluations ``s`` and ``s+1``,

    a_i = argmin_a  sum_s (L_i(e_s) - L_i(e_{s+1}) - Q_s . a)^2,      A_i = lp_steps * a_i

(per domain i, over the intervals whose two ends have a finite loss for i; an unmeasured
boundary merges its two intervals). When every batch has exactly the intended shares,
``Q_s = lp_steps * W_{j_s}`` and the normal equations give ``A_i = W^{-1} beta_i``: the
authors' estimate, to rounding (``tests/test_aioli.py`` checks it to 1e-9).

``signal="train"`` fits the law to the training losses of the LearnParams steps instead: per
domain i, weighted least squares (weights: i's sequence count) of ``l_i(t) = c_i - C(t) . a_i``
over the LearnParams steps t where i has a finite loss, ``C(t)`` being the shares summed over
the round's LearnParams steps before t (step t's loss is measured before its update), and
``A_i = lp_steps * a_i`` (same scale as the eval estimate). This smooths over every step of
the window instead of differencing single noisy batch means, as Mixtera's port does.

Then (``AioliTrainer.train`` L324-345): with ``normalize_A`` (the authors' scripts always set
``--aioli_normalize_A``, README L75) A is shifted by its minimum entry when that is negative
and divided by its sum; then

- ``ema`` unset (None, the default; ``--ema`` default None, ``main.py`` L348-353, "Recommended
  to not set this at first", README L72): ``log p <- log p + eta * sum_i A_ij``, from uniform:
  the paper's EGD update (L341-345);
- ``ema = g`` in [0, 1): ``Abar <- (1 - g) A + g Abar`` (``Abar = A`` at the first update) and
  ``p ∝ exp(eta * sum_i Abar_ij)`` from uniform each time, not cumulative (L334-340). ``g`` is
  the weight of the *old* value, as the authors' (lower = more recency); ``ema=0`` is not "off"
  but the latest A alone. Only Abar's column sums are kept (all the weights use; the EMA is
  linear, so they are those of the authors' smoothed matrix).

Output weights are ``floor_clip(p, delta_min)``; the LearnParams mixtures and the warmup prior
are floored the same way (the least squares uses the shares actually drawn, so it sees the
floored mixtures).

Defaults
--------
The authors' recommended run (``README.md`` L41-75: ``--lp_rounds 4 --lp_steps 4 --eta 0.2
--one_hot_factor 0.625 --aioli_normalize_A``, 250-step rounds of a 5,000-step, 2-domain run),
with ``ema`` off as README L72 recommends at first (their example sets 0.1). Round length:
the example's LearnParams takes 2*4*4 = 32 of each 250-step round (delta = 0.128, Algorithm 1's
"delta fraction per round"); by default a round is ``ceil(D * 250 / 32)`` steps, the same
fraction for any K (K=22: D=352, 2,750-step rounds). :meth:`AioliPolicy.scaled_defaults` sets
``mix_steps`` to 218/5,000 of the run (the example's), whatever K: 20 rounds per run at K=2, as
the authors' 5,000-step configurations have, and fewer as LearnParams grows with K (5,000 steps:
14.5 rounds at K=8, 8.8 at K=22). The authors, too, keep the round and let LearnParams' share
grow with K (their 3-domain run: 72 of 250 steps; 7 domains: 140 of 200).

Where we differ from the paper or the authors' code, and why
------------------------------------------------------------
1. **Realized shares** (see above). The authors' batches hold exactly the intended counts
   (``mapped_train``, ``dataset/slimpj_dataset.py`` L361-365); ours are drawn by the run's
   sampler (multinomial by default), and the training loop applies new weights
   ``training.mixture_lag - 1`` steps late. Regressing on the shares actually trained keeps
   the estimate unbiased under both; with exact shares and lag 1 it is the authors' solve.
2. **Round length.** The authors' round is ``update_steps`` steps of which LearnParams takes
   ``lp_rounds*lp_steps*K`` (L233, L321, L397); their ``n_data`` (L234) subtracts steps from
   samples, harmless only because the loop stops at ``counter % update_steps == 0``. We take
   ``mix_steps`` (the steps after LearnParams, Algorithm 1's ``(1-delta) S/T``) so that every
   value is valid for every K; the default keeps the README example's fraction (above).
3. **Shuffle stream.** The authors draw the sweep orders from NumPy's global RNG
   (``np.random.permutation``, L123, seeded by ``--selection_seed``); ours come from the
   ``seed`` option and the round index, so the schedule is a pure function of the options.
4. **Degenerate normalisation.** When A is constant (e.g. all zero) the authors' division by
   its sum (L330) yields NaN or inf weights; we use A = 0 (no move). A row we cannot
   estimate (a domain with no measured interval) is 0; a non-finite estimate is 0.
5. **Log-space weights.** The cumulative update is kept as log-weights (the authors multiply
   unnormalised weights, which can overflow over many rounds); same distribution.
6. **Floor.** ``delta_min`` (default 0: none, the authors') is ours; values >= 1/K give uniform
   weights (the limit of the floor). The EGD state keeps the unfloored p.
7. **signal="train"** is not in the paper or the authors' code (see above); Mixtera's port
   differences consecutive per-step training losses and accumulates them per domain.
8. Not implemented: ``--aioli_diagonal`` (an ablation), the Skill-It initialisation
   (``skillit_subroutine``, L31-116) and the mid-run checkpoint exit (``--break_steps``).

Counts are in optimiser steps, as the authors' (their batches: 8 sequences of 2,048 tokens),
so ``lp_steps`` at a larger batch trains more tokens per sub-phase. The LearnParams steps are
ordinary steps of the run and count in its budget.

What the training loop provides (``signal="eval"``): a held-out evaluation of every domain
after ``step`` training steps whenever :meth:`AioliPolicy.wants_eval_at` says so (``K *
lp_rounds + 1`` per round), announced by ``observe(step - 1, ..., eval_follows=True)`` and
delivered as ``observe_eval(step, losses)`` before ``observe(step)``; it may also deliver its
regular evaluations, which are ignored. With ``training.mixture_lag`` L > 1 every mixture takes
effect L - 1 steps late: the estimate is unaffected (deviation 1), the schedule shifts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import MixturePolicy, floor_clip
from .options import Needs, Option

__all__ = ["AIOLI_OPTIONS", "AioliPolicy"]

_I, _F = "int", "float"

#: Round length per LearnParams step when ``mix_steps`` is not given: the authors' README
#: example, 250-step rounds with 32 LearnParams steps (K=2, lp_rounds=4, lp_steps=4).
ROUND_PER_LP = (250, 32)
#: ``scaled_defaults``: ``mix_steps`` as the example's 218 of 5,000 steps.
MIX_FRACTION = 218 / 5000

#: Aioli's options, with the authors' recommended values (README example) where they have one.
AIOLI_OPTIONS: tuple[Option, ...] = (
    Option("eta", 0.2, _F, "exponentiated-gradient step size", low=0.0, low_open=True),
    Option("lp_rounds", 4, _I, "LearnParams sweeps over the domains per round", low=1),
    Option("lp_steps", 4, _I, "steps on each near-one-hot mixture in a sweep", low=1),
    Option(
        "one_hot_factor",
        0.625,
        _F,
        "LearnParams weight of the swept domain (the rest evenly); above 1/K",
        low=0.0,
        high=1.0,
        low_open=True,
    ),
    Option(
        "mix_steps",
        None,
        _I,
        "steps on the learned mixture after each LearnParams; default: "
        "ceil(D*250/32) - D, D = K*lp_rounds*lp_steps",
        low=1,
    ),
    Option(
        "ema",
        None,
        _F,
        "EMA weight of the old A (authors' --ema); default: off, cumulative EGD (paper)",
        low=0.0,
        high=1.0,
        high_open=True,
    ),
    Option("normalize_A", True, "bool", "shift A to >= 0 and scale it to sum 1 (authors')"),
    Option(
        "signal",
        "eval",
        "choice",
        "losses A is fitted to: held-out (paper; needs wants_eval_at) or training",
        choices=("eval", "train"),
    ),
    Option("seed", 0, _I, "seed of the LearnParams sweep orders", low=0),
    Option("warmup_steps", 0, _I, "first steps on the prior (authors' prior_steps)", low=0),
    Option(
        "delta_min",
        0.0,
        _F,
        "weight floor per domain (>= 1/K: uniform)",
        low=0.0,
        high=1.0,
    ),
)


#: Estimates beyond this magnitude are dropped (losses are O(10); sums must not overflow).
_HUGE = 1e150


def _softmax(logw: np.ndarray) -> np.ndarray:
    e = np.exp(logw - logw.max())
    return e / e.sum()


class AioliPolicy(MixturePolicy):
    """Aioli: LearnParams estimates the linear-mixing-law matrix A each round; EGD on A's columns.

    See the module docstring for the schedule, the estimate, the options and every deviation
    from the paper and the authors' code. Options: ``AIOLI_OPTIONS``, plus ``prior=`` or
    ``token_counts=`` (the warmup weights only)."""

    name = "aioli"
    options_spec = AIOLI_OPTIONS
    needs = Needs(prior=True, eval_feedback=True, exact_batches=True)
    search_space = {
        "eta": {"type": "loguniform", "low": 0.05, "high": 5.0},
        "one_hot_factor": {"type": "uniform", "low": 0.55, "high": 0.95},
    }

    @classmethod
    def scaled_defaults(cls, total_steps: int | None) -> dict[str, Any]:
        """``mix_steps`` at 218/5,000 of the run (the README example's); none when unknown."""
        if total_steps is None:
            return {}
        return {"mix_steps": max(1, round(MIX_FRACTION * total_steps))}

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        mu = self._resolve_options(options)
        assert mu is not None
        o = self._resolved
        k = self._k
        if not o["one_hot_factor"] > 1.0 / k:
            raise ValueError(
                f"one_hot_factor={o['one_hot_factor']!r} is out of range: allowed "
                f"({1.0 / k!r}, 1] (above 1/num_domains, K={k}: the LearnParams mixtures must "
                "emphasise their domain)"
            )
        self._eta = float(o["eta"])
        self._lp_steps = int(o["lp_steps"])
        self._lp_rounds = int(o["lp_rounds"])
        self._d = k * self._lp_rounds * self._lp_steps
        if o["mix_steps"] is None:
            num, den = ROUND_PER_LP
            self._mix = -(-self._d * num // den) - self._d
        else:
            self._mix = int(o["mix_steps"])
        self._r = self._d + self._mix
        self._nb = k * self._lp_rounds + 1  # boundary evaluations per round
        self._ema = None if o["ema"] is None else float(o["ema"])
        self._normalize = bool(o["normalize_A"])
        self._eval = o["signal"] == "eval"
        self._seed = int(o["seed"])
        self._warm = int(o["warmup_steps"])
        floor = float(o["delta_min"])
        self._uniform_only = floor * k >= 1.0
        self._floor = floor
        self._mu = mu
        self._prior_w = self._clip(mu).copy()
        ohf = float(o["one_hot_factor"])
        mix = np.full((k, k), (1.0 - ohf) / (k - 1))
        np.fill_diagonal(mix, ohf)
        self._lp_mix = np.stack([self._clip(row).copy() for row in mix])
        self._orders: dict[int, np.ndarray] = {}  # round -> sweep order (derived)
        # EGD state
        self._logw = np.zeros(k)
        self._abar: np.ndarray | None = None  # EMA of A's column sums (ema set)
        self._p = self._clip(_softmax(self._logw)).copy()
        self._a_raw: np.ndarray | None = None
        self._colsum: np.ndarray | None = None
        self._exponent: np.ndarray | None = None
        self._num_updates = 0
        self._updated_round = -1
        # The current round's LearnParams record.
        self._buf_round = -1
        self._cum = np.zeros(k)
        self._bl = np.full((self._nb, k), np.nan)  # boundary held-out losses
        self._bc = np.zeros((self._nb, k))  # cumulative shares at each boundary
        self._bhave = np.zeros(self._nb, dtype=bool)
        self._tl = np.full((self._d, k), np.nan)  # LearnParams training losses
        self._tw = np.zeros((self._d, k))  # their sequence counts
        self._tc = np.zeros((self._d, k))  # cumulative shares before each step

    # -- schedule ------------------------------------------------------------------------

    @property
    def lp_duration(self) -> int:
        """D = K * lp_rounds * lp_steps: LearnParams steps per round."""
        return self._d

    @property
    def round_steps(self) -> int:
        """R = D + mix_steps: steps per round."""
        return self._r

    def lp_order(self, round_index: int) -> np.ndarray:
        """The domains swept in round ``round_index``'s LearnParams, one per sub-phase."""
        r = int(round_index)
        order = self._orders.get(r)
        if order is None:
            if len(self._orders) >= 4:
                self._orders.clear()
            rng = np.random.default_rng([self._seed, r])
            order = np.concatenate([rng.permutation(self._k) for _ in range(self._lp_rounds)])
            order.flags.writeable = False
            self._orders[r] = order
        return order

    def phase_at(self, step: int) -> tuple[str, int, int]:
        """``(phase, round, domain)`` of step ``step``: ``("warmup", -1, -1)``,
        ``("learn", r, j)`` (a LearnParams step on domain j's mixture) or ``("mix", r, -1)``."""
        if step < self._warm:
            return ("warmup", -1, -1)
        r, off = divmod(step - self._warm, self._r)
        if off < self._d:
            return ("learn", r, int(self.lp_order(r)[off // self._lp_steps]))
        return ("mix", r, -1)

    def wants_eval_at(self, step: int) -> bool:
        """Whether the policy needs held-out losses measured after ``step`` training steps
        (before step ``step`` trains): the LearnParams boundaries, with ``signal="eval"``.
        A function of the options and ``step`` only."""
        if not self._eval or step < self._warm:
            return False
        off = (step - self._warm) % self._r
        return off <= self._d and off % self._lp_steps == 0

    @property
    def wants_eval_feedback(self) -> bool:
        """True with ``signal="eval"``."""
        return self._eval

    # -- public ----------------------------------------------------------------------------

    def weights(self) -> np.ndarray:
        s = self._steps
        if s < self._warm:
            return self._prior_w.copy()
        r, off = divmod(s - self._warm, self._r)
        if off < self._d:
            return self._lp_mix[self.lp_order(r)[off // self._lp_steps]].copy()
        return self._p.copy()

    @property
    def num_updates(self) -> int:
        """How many rounds have updated the mixture."""
        return self._num_updates

    @property
    def last_A(self) -> np.ndarray | None:
        """The latest estimate of A (row i: domain i's loss drop per sub-phase of training on
        each domain), before normalisation; None before the first update."""
        return None if self._a_raw is None else self._a_raw.copy()

    def diagnostics(self) -> dict[str, np.ndarray]:
        """``aioli_exponent`` (what eta multiplies in the latest update: sum_i A_ij after
        normalisation, or its EMA), ``aioli_A_colsum`` and ``aioli_A_diag`` (of the latest raw
        estimate) and ``aioli_updates``; empty before the first update."""
        if self._a_raw is None:
            return {}
        assert self._exponent is not None and self._colsum is not None
        return {
            "aioli_exponent": self._exponent.copy(),
            "aioli_A_colsum": self._colsum.copy(),
            "aioli_A_diag": np.diag(self._a_raw).copy(),
            "aioli_updates": np.full(self._k, float(self._num_updates)),
        }

    # -- events ----------------------------------------------------------------------------

    def _observe(
        self, step: int, counts: np.ndarray, losses: np.ndarray, c_min: float, total: float
    ) -> None:
        if step < self._warm:
            return
        r, off = divmod(step - self._warm, self._r)
        if off < self._d:
            if self._buf_round != r:
                self._start_round(r)
            if not self._eval:
                self._tc[off] = self._cum
                self._tw[off] = counts
                ok = (counts > 0.0) & np.isfinite(losses)
                self._tl[off] = np.where(ok, losses, np.nan)
            if total > 0.0:
                self._cum += counts / total
            if not self._eval and off == self._d - 1:
                self._update(r)
        elif off == self._d and self._updated_round != r:
            self._update(r)  # the evaluation after LearnParams never came

    def _observe_eval(self, step: int, val_losses: np.ndarray) -> None:
        if not self._eval or step < self._warm:
            return
        r, off = divmod(step - self._warm, self._r)
        if off > self._d or off % self._lp_steps or self._updated_round == r:
            return
        if self._buf_round != r:
            self._start_round(r)
        m = off // self._lp_steps
        self._bl[m] = np.where(np.isfinite(val_losses), val_losses, np.nan)
        self._bc[m] = self._cum
        self._bhave[m] = True
        if off == self._d:
            self._update(r)

    def _start_round(self, r: int) -> None:
        self._buf_round = r
        self._cum[:] = 0.0
        self._bl[:] = np.nan
        self._bc[:] = 0.0
        self._bhave[:] = False
        self._tl[:] = np.nan
        self._tw[:] = 0.0
        self._tc[:] = 0.0

    # -- the update ---------------------------------------------------------------------------

    def _clip(self, p: np.ndarray) -> np.ndarray:
        if self._uniform_only:
            return np.full(self._k, 1.0 / self._k)
        return floor_clip(p, self._floor)

    def _estimate(self, r: int) -> np.ndarray:
        """A (K x K) from round ``r``'s record (zeros where nothing was recorded)."""
        k = self._k
        a = np.zeros((k, k))
        if self._buf_round != r:
            return a
        if self._eval:
            have = self._bhave
            loss = self._bl[have]
            cum = self._bc[have]
            valid = np.isfinite(loss)  # (n, K)
            groups: dict[bytes, list[int]] = {}
            for i in range(k):
                groups.setdefault(valid[:, i].tobytes(), []).append(i)
            for rows in groups.values():
                sel = valid[:, rows[0]]
                if sel.sum() < 2:
                    continue
                q = np.diff(cum[sel], axis=0)  # (n-1, K) shares trained per interval
                drop = -np.diff(loss[sel][:, rows], axis=0)  # (n-1, len(rows))
                ok = np.isfinite(drop).all(axis=0)  # differences of huge losses overflow
                if ok.any():
                    cols = [i for i, good in zip(rows, ok) if good]
                    a[cols] = np.linalg.lstsq(q, drop[:, ok], rcond=None)[0].T
        else:
            ones = np.ones(self._d)
            for i in range(k):
                sel = np.isfinite(self._tl[:, i])
                if sel.sum() < 2:
                    continue
                sw = np.sqrt(self._tw[sel, i])
                x = np.column_stack([ones[sel], -self._tc[sel]]) * sw[:, None]
                y = self._tl[sel, i] * sw
                if np.isfinite(x).all() and np.isfinite(y).all():
                    a[i] = np.linalg.lstsq(x, y, rcond=None)[0][1:]
        a *= self._lp_steps
        # A row that is not finite, or so large that sums over it could overflow, is unusable.
        bad = ~(np.abs(a) <= _HUGE).all(axis=1)
        a[bad] = 0.0
        return a

    def _update(self, r: int) -> None:
        with np.errstate(all="ignore"):
            a = self._estimate(r)
            g = a.copy()
            if self._normalize:
                low = g.min()
                if low < 0:
                    g -= low
                total = g.sum()
                if total > 0.0 and math.isfinite(total):
                    g /= total
                else:
                    g[:] = 0.0
            col = g.sum(axis=0)
            if not np.isfinite(col).all():
                col = np.zeros(self._k)
            if self._ema is None:
                step = self._eta * col
                if np.isfinite(step).all() and np.isfinite(self._logw + step).all():
                    self._logw = self._logw + step
                exponent = col
            else:
                if self._abar is None:
                    self._abar = col.copy()
                else:
                    self._abar = (1.0 - self._ema) * col + self._ema * self._abar
                self._logw = self._eta * self._abar
                exponent = self._abar.copy()
        self._a_raw = a
        self._colsum = a.sum(axis=0)
        self._exponent = exponent
        self._p = self._clip(_softmax(self._logw)).copy()
        self._num_updates += 1
        self._updated_round = r

    # -- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        def opt(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x.copy()

        return {
            "logw": self._logw.copy(),
            "abar": opt(self._abar),
            "p": self._p.copy(),
            "a_raw": opt(self._a_raw),
            "colsum": opt(self._colsum),
            "exponent": opt(self._exponent),
            "num_updates": self._num_updates,
            "updated_round": self._updated_round,
            "buf_round": self._buf_round,
            "cum": self._cum.copy(),
            "bl": self._bl.copy(),
            "bc": self._bc.copy(),
            "bhave": self._bhave.copy(),
            "tl": self._tl.copy(),
            "tw": self._tw.copy(),
            "tc": self._tc.copy(),
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        k, nb, d = self._k, self._nb, self._d

        def vec(name: str, shape: tuple[int, ...]) -> np.ndarray:
            return np.array(state[name], dtype=np.float64).reshape(shape)

        def opt(name: str, shape: tuple[int, ...]) -> np.ndarray | None:
            return None if state[name] is None else vec(name, shape)

        try:
            new = {
                "_logw": vec("logw", (k,)),
                "_abar": opt("abar", (k,)),
                "_p": vec("p", (k,)),
                "_a_raw": opt("a_raw", (k, k)),
                "_colsum": opt("colsum", (k,)),
                "_exponent": opt("exponent", (k,)),
                "_num_updates": int(state["num_updates"]),
                "_updated_round": int(state["updated_round"]),
                "_buf_round": int(state["buf_round"]),
                "_cum": vec("cum", (k,)),
                "_bl": vec("bl", (nb, k)),
                "_bc": vec("bc", (nb, k)),
                "_bhave": np.array(state["bhave"], dtype=bool).reshape(nb),
                "_tl": vec("tl", (d, k)),
                "_tw": vec("tw", (d, k)),
                "_tc": vec("tc", (d, k)),
            }
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a valid aioli state: {err}") from None
        for name, value in new.items():
            setattr(self, name, value)
